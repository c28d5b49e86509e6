/*
 * Runs a test program's main() (renamed test_main with -Dmain=test_main) from
 * a shared-object constructor, so the unit test can dlopen the program into
 * a Node process: built without -lcrypto and against Node's headers
 * (/usr/include/node), every libcrypto symbol then resolves to the OpenSSL
 * that Node links statically and exports — the one the addon will use.
 * The test reads the program's output from the child's stdout; the
 * "Module did not self-register" error that follows is expected.
 * Threads and locking: runs once, at load, on the loading thread.
 */
#include <stdio.h>

int test_main(void);

__attribute__((constructor)) static void run_at_load(void)
{
	int rc = test_main();
	printf("exit status %d\n", rc);
	fflush(stdout);
}
