/**
 * What the kernel-backend e2e test reads from a host namespace (`ip -j`,
 * harness side only) and the waits it repeats: pod-to-pod reachability and
 * the lease a host holds.
 */
import { run, type Cluster, type Host } from '../../src/topology';
import { waitUntil } from './wait';

export interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string | number;
  flags?: string[];
}
export interface IpNeigh {
  dst: string;
  lladdr?: string;
  state?: string[];
}
export interface IpFdb {
  mac: string;
  dst?: string;
}

async function ipJson<T>(h: Host, args: readonly string[], tool: 'ip' | 'bridge' = 'ip'): Promise<T[]> {
  const r = await run([tool, '-n', h.ns.name, '-j', ...args], { allowFailure: true });
  if (r.code !== 0) return []; // e.g. the device does not exist (yet)
  const text = r.stdout.trim();
  return text === '' ? [] : (JSON.parse(text) as T[]);
}

/** Routes of the main table stamped with Rudder's protocol (0x52 = 82). */
export async function rudderRoutes(h: Host): Promise<IpRoute[]> {
  return ipJson<IpRoute>(h, ['-4', 'route', 'show', 'table', 'main', 'proto', '82']);
}

export async function neighbors(h: Host, dev: string): Promise<IpNeigh[]> {
  return ipJson<IpNeigh>(h, ['-4', 'neigh', 'show', 'dev', dev]);
}

export async function fdb(h: Host, dev: string): Promise<IpFdb[]> {
  return ipJson<IpFdb>(h, ['fdb', 'show', 'dev', dev], 'bridge');
}

export interface IpLink {
  ifname: string;
  address?: string;
  mtu: number;
  operstate?: string;
  flags?: string[];
  linkinfo?: { info_kind?: string; info_data?: { id?: number; port?: number; learning?: boolean; local?: string } };
}

export async function link(h: Host, dev: string): Promise<IpLink | null> {
  const l = await ipJson<IpLink>(h, ['-d', 'link', 'show', 'dev', dev]);
  return l[0] ?? null;
}

export async function links(h: Host): Promise<IpLink[]> {
  return ipJson<IpLink>(h, ['-d', 'link', 'show']);
}

export async function addrs(h: Host, dev: string): Promise<string[]> {
  const arr = await ipJson<{ addr_info: Array<{ local: string; prefixlen: number }> }>(h, ['-4', 'addr', 'show', 'dev', dev]);
  return (arr[0]?.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`);
}

/** The lease (subnet and value) whose PublicIP is this host's underlay address. */
export async function leaseOf(c: Cluster, h: Host, prefix = c.etcdPrefix): Promise<{ subnet: string; value: Record<string, unknown> }> {
  const all = await c.listSubnets(prefix);
  const mine = all.filter((l) => l.value['PublicIP'] === h.underlayIp);
  if (mine.length !== 1) throw new Error(`${h.name}: expected one lease with PublicIP ${h.underlayIp} under ${prefix}, found ${JSON.stringify(all)}`);
  return mine[0] as { subnet: string; value: Record<string, unknown> };
}

/** Waits until `from`'s pod gets an echo reply from `to`'s pod (routes may still be converging). */
export async function podReaches(c: Cluster, from: Host, to: Host): Promise<void> {
  const src = from.pod;
  const dst = to.pod;
  if (src === null || dst === null) throw new Error(`${from.name} → ${to.name}: pod missing`);
  await waitUntil(
    async () => {
      const r = await src.ping(dst.ip, { count: 1, replyWaitS: 1 });
      if (r.received < 1) throw new Error(`no reply: ${r.output.trim()}`);
      return true;
    },
    { giveUpMs: c.giveUpMs, intervalMs: 300, what: `pod of ${from.name} (${src.ip}) reaching pod of ${to.name} (${dst.ip}) (logs: ${from.logFile}, ${to.logFile})` },
  );
}

/** Every pod reaches every other pod. */
export async function fullMesh(c: Cluster, hosts: readonly Host[]): Promise<void> {
  for (const a of hosts) for (const b of hosts) if (a !== b) await podReaches(c, a, b);
}

/** Polls `probe` (true = done) with the cluster's generous give-up; the message says what was awaited. */
export async function eventually(c: Cluster, what: string, probe: () => Promise<boolean>): Promise<void> {
  await waitUntil(async () => (await probe()) || undefined, { giveUpMs: c.giveUpMs, intervalMs: 250, what });
}
