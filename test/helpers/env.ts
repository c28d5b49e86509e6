/** What a suite needs from the machine, as `skip` reasons for node:test (false = runnable). */
import { spawnSync } from 'node:child_process';

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** e2e tests build network namespaces: root and iproute2 needed. */
export const skipUnlessRoot: string | false =
  process.getuid?.() !== 0 ? 'needs root (network namespaces)' : !have('ip') ? 'needs iproute2 (ip)' : false;

/** Integration tests run the real etcd server. */
export const skipUnlessEtcd: string | false = have('etcd') && have('etcdctl') ? false : 'needs etcd and etcdctl (Debian etcd-server, etcd-client)';
