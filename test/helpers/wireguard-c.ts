/**
 * Building the WireGuard core's C test programs (native/wireguard/test) with
 * gcc for the unit and e2e tests: gnu11, -Wall -Wextra -Werror, linked with
 * the system libcrypto (the addon will use Node's OpenSSL instead; the core
 * only needs libcrypto's EVP API, which both provide).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { NATIVE } from './native-c';

export { hasGcc, hasSanitizers } from './native-c';

/** Every source of the core, relative to native/. */
export const WG_CORE = ['wireguard/crypto.c', 'wireguard/replay.c', 'wireguard/timers.c', 'wireguard/cookie.c', 'wireguard/noise.c'];

export const SANITIZE = ['-O1', '-g', '-fsanitize=address,undefined', '-fno-sanitize-recover=all'];

/** Whether the OpenSSL development files are there (Debian libssl-dev). */
export const hasLibcrypto =
  spawnSync('gcc', ['-x', 'c', '-o', '/dev/null', '-', '-lcrypto'], {
    input: '#include <openssl/evp.h>\nint main(void){return EVP_MD_fetch(NULL,"BLAKE2S-256",NULL)==NULL;}',
    encoding: 'utf8',
  }).status === 0;

/**
 * libcrypto linked into the program and its symbols exported, as Node links it: the core then finds
 * ChaCha20_ctr32 and Poly1305_* and takes its direct path (crypto.c). A libcrypto.so exports neither.
 */
export const LINK_STATIC_EXPORTED = ['-rdynamic', '-l:libcrypto.a', '-lpthread'];

/** Whether LINK_STATIC_EXPORTED links here (Debian's libssl-dev ships libcrypto.a). */
export const hasStaticLibcrypto =
  spawnSync('gcc', ['-x', 'c', '-o', '/dev/null', '-', ...LINK_STATIC_EXPORTED], {
    input: '#include <openssl/evp.h>\nint main(void){return EVP_MD_fetch(NULL,"BLAKE2S-256",NULL)==NULL;}',
    encoding: 'utf8',
  }).status === 0;

/** Compiles `program` (relative to native/wireguard/test) with the core into `out`, linked with `link`. */
export function compileWg(out: string, program: string, flags: readonly string[], link: readonly string[] = ['-lcrypto']): void {
  const sources = [path.join(NATIVE, 'wireguard', 'test', program), ...WG_CORE.map((s) => path.join(NATIVE, s))];
  const r = spawnSync('gcc', ['-std=gnu11', '-Wall', '-Wextra', '-Werror', ...flags, '-o', out, ...sources, ...link], { encoding: 'utf8' });
  assert.equal(r.status, 0, `gcc ${program} ${flags.join(' ')} failed:\n${r.stderr}`);
}

/** Node's own OpenSSL headers (Debian's nodejs package ships them). */
export const NODE_INCLUDE = '/usr/include/node';

/**
 * Compiles `program` with the core into a shared object that runs the
 * program at load (test/node_openssl.c), against Node's headers and without
 * -lcrypto: loaded into Node, it uses the OpenSSL Node links.
 */
export function compileWgForNode(out: string, program: string): void {
  const sources = [
    path.join(NATIVE, 'wireguard', 'test', program),
    path.join(NATIVE, 'wireguard', 'test', 'node_openssl.c'),
    ...WG_CORE.map((s) => path.join(NATIVE, s)),
  ];
  const r = spawnSync(
    'gcc',
    ['-std=gnu11', '-Wall', '-Wextra', '-Werror', '-O2', '-fPIC', '-shared', `-I${NODE_INCLUDE}`, '-Dmain=test_main', '-o', out, ...sources],
    { encoding: 'utf8' },
  );
  assert.equal(r.status, 0, `gcc -shared ${program} failed:\n${r.stderr}`);
}
