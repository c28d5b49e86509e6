/**
 * A separate process that builds a small cluster and then ends badly, so the
 * e2e tests can check that the clean-up registry (or, after SIGKILL, the
 * leftover sweep) removes everything. Usage:
 *   node topology-child.js PREFIX MODE     MODE: throw | reject | exit | wait
 * It prints one JSON line {namespaces, pids, dir} once the cluster is up.
 */
import { createCluster } from '../../src/topology/cluster';

async function main(): Promise<void> {
  const [prefix, mode] = process.argv.slice(2);
  if (!prefix || !mode) throw new Error('usage: topology-child PREFIX MODE');
  const c = await createCluster({ prefix, hosts: 1 });
  const host = c.host(1);
  // A process of our own inside a host, like an iperf3 server a test forgot.
  const sleeper = await host.ns.spawn(['sleep', '100000'], { logFile: `${host.dir}/sleep.log` });
  const info = {
    namespaces: c.cleanup.trackedNamespaces,
    pids: [c.etcd.pid, sleeper.pid],
    dir: c.dir,
  };
  process.stdout.write(JSON.stringify(info) + '\n');
  switch (mode) {
    case 'throw':
      setImmediate(() => {
        throw new Error('child: uncaught exception on purpose');
      });
      break;
    case 'reject':
      void Promise.reject(new Error('child: unhandled rejection on purpose'));
      break;
    case 'exit':
      process.exit(3);
      break;
    case 'wait':
      // Until a signal arrives; the parent sends SIGINT, SIGTERM or SIGKILL.
      setInterval(() => undefined, 1 << 30);
      break;
    default:
      throw new Error(`unknown mode ${mode}`);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`topology-child: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(2);
});
