/**
 * Kubernetes mode's source and keeper alone, in a host namespace, against a
 * real API server: what the daemon does up to the subnet file, for a network
 * whose backend cannot run here yet. Usage:
 *   node kube-keeper-child.js JSON   {kubeconfig, netConf, node, subnetFile, publicIP, publicIPv6?}
 * Retries acquire as the daemon does (every 200 ms, each failure printed as
 * a JSON line {error}), writes the subnet file, then prints one JSON line
 * {lease, publicIPv6, peers: [{key, publicIPv6, backendV6Data}], invalid}.
 */
import { parseConfig } from '../../src/config';
import { isRudderError } from '../../src/errors';
import { parseIp } from '../../src/ip/ipv4';
import { formatIp6, parseIp6 } from '../../src/ip/ipv6';
import { memoryLogger } from '../../src/log';
import { subnetFileOf, writeSubnetFile } from '../../src/subnet/file';
import { kubeSource } from '../../src/subnet/kube/source';
import { formatLeaseKey, type Lease } from '../../src/subnet/lease';

interface Args {
  kubeconfig: string;
  netConf: string;
  node: string;
  subnetFile: string;
  publicIP: string;
  publicIPv6?: string;
}

const say = (o: unknown): void => void process.stdout.write(JSON.stringify(o) + '\n');

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2] ?? '{}') as Args;
  const log = memoryLogger();
  const source = kubeSource({ kubeconfigFile: a.kubeconfig, annotationPrefix: 'rudder.io', netConfigPath: a.netConf, nodeName: a.node, log });
  const text = await source.peers.getConfig();
  if (text === null) throw new Error(`no config at ${a.netConf}`);
  const config = parseConfig(text);
  const publicIPv6 = a.publicIPv6 === undefined ? null : parseIp6(a.publicIPv6);
  const keeper = source.keeper({
    config,
    publicIP: parseIp(a.publicIP) ?? 0,
    ...(config.ipv6 ? { publicIPv6, backendV6Data: { Test: 6 } } : {}),
    backendType: 'host-gw',
    backendData: { Test: 4 },
    ttlMs: 1,
    renewMarginMs: 1,
    log,
  });
  let lease: Lease | null = null;
  while (lease === null) {
    try {
      lease = await keeper.acquire(null, null);
    } catch (e) {
      if (!isRudderError(e, 'E_ACQUIRE') && !isRudderError(e, 'E_KUBE')) throw e;
      say({ error: e.message });
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  await writeSubnetFile(a.subnetFile, subnetFileOf(config, lease, 1500, false));
  const list = await source.peers.listLeases();
  say({
    lease: formatLeaseKey(lease),
    publicIPv6: lease.publicIPv6 === undefined ? null : formatIp6(lease.publicIPv6),
    peers: list.records.map((r) => ({
      key: formatLeaseKey(r.lease),
      publicIPv6: r.lease.publicIPv6 === undefined ? null : formatIp6(r.lease.publicIPv6),
      backendV6Data: r.lease.backendV6Data ?? null,
    })),
    invalid: list.invalid,
  });
  source.peers.close();
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
