/**
 * What the sandbox shows (pure): the hosts table and the pod-to-pod
 * reachability matrix, from a status snapshot. With IPv6 (--ipv6,
 * --ipv6-only) the hosts table has a column per family for the public
 * address, the subnet and the pod address, and the matrix a column per
 * family for each destination; an IPv4-only sandbox looks as it always did.
 */
import type { Family } from './flags';

export interface HostStatus {
  /** h1, h2, ... */
  name: string;
  /** The host's underlay address. */
  underlayIp: string;
  /** PublicIP of the host's lease in etcd; null when etcd has no lease for it (or could not be read). */
  publicIp: string | null;
  /** The lease, e.g. 10.0.5.0/24; null before the subnet file exists. */
  subnet: string | null;
  /** PublicIPv6 of the lease; null when none (IPv6 sandboxes). */
  publicIpv6?: string | null;
  /** The lease's IPv6 subnet, e.g. fd10:0:0:5::/64 (IPv6 sandboxes). */
  ipv6Subnet?: string | null;
  /** BackendType of the lease in etcd; null when unknown. */
  backend: string | null;
  /** Daemon process: running, or exited with how. */
  daemon: { running: boolean; pid: number | null; exit: string | null };
  /** Pod namespace and address, once built. */
  podNs: string | null;
  podIp: string | null;
  /** The pod's IPv6 address (IPv6 sandboxes). */
  podIpv6?: string | null;
}

/** RTT in ms of one ping from pod `from` to pod `to`; null = no reply. */
export type Matrix = Array<Array<number | null>>;

export interface Snapshot {
  hosts: HostStatus[];
  /** The families the sandbox carries, IPv4's first; absent: IPv4 only. */
  families?: readonly Family[];
  /** matrix[i][j]: from hosts[i]'s pod to hosts[j]'s pod over IPv4 (the diagonal is not measured). */
  matrix: Matrix;
  /** The same over IPv6 (IPv6 sandboxes). */
  matrix6?: Matrix;
  /** When etcd could not be read for this snapshot, why. */
  etcdError: string | null;
}

export const UNREACHABLE = '✗';

function pad(rows: string[][]): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, [...c].length)));
  return rows.map((r) => r.map((c, i) => c + ' '.repeat((widths[i] ?? 0) - [...c].length)).join('  ').trimEnd());
}

export function daemonState(d: HostStatus['daemon']): string {
  if (d.pid === null) return 'not started';
  return d.running ? `running (pid ${d.pid})` : `exited (${d.exit ?? '?'}; pid ${d.pid})`;
}

export function formatRtt(ms: number | null): string {
  if (ms === null) return UNREACHABLE;
  return ms < 10 ? ms.toFixed(2) : ms.toFixed(1);
}

const familiesOf = (s: Snapshot): readonly Family[] => s.families ?? ['ipv4'];
const LABEL: Record<Family, string> = { ipv4: 'IPv4', ipv6: 'IPv6' };

function matrixOf(s: Snapshot, f: Family): Matrix {
  return (f === 'ipv4' ? s.matrix : s.matrix6) ?? [];
}

export function hostsTable(s: Snapshot): string[] {
  const fam = familiesOf(s);
  const v4 = fam.includes('ipv4');
  const v6 = fam.includes('ipv6');
  type Col = [string, (h: HostStatus) => string];
  const cols: Col[] = [
    ['HOST', (h) => h.name],
    ['PUBLIC IP', (h) => h.publicIp ?? '-'],
    ...(v6 ? ([['PUBLIC IPV6', (h) => h.publicIpv6 ?? '-']] as Col[]) : []),
    ...(v4 ? ([['SUBNET', (h) => h.subnet ?? '-']] as Col[]) : []),
    ...(v6 ? ([['IPV6 SUBNET', (h) => h.ipv6Subnet ?? '-']] as Col[]) : []),
    ['BACKEND', (h) => h.backend ?? '-'],
    ['DAEMON', (h) => daemonState(h.daemon)],
    ['POD', (h) => h.podNs ?? '-'],
    ...(v4 ? ([['POD IP', (h) => h.podIp ?? '-']] as Col[]) : []),
    ...(v6 ? ([['POD IPV6', (h) => h.podIpv6 ?? '-']] as Col[]) : []),
  ];
  return pad([cols.map(([t]) => t), ...s.hosts.map((h) => cols.map(([, cell]) => cell(h)))]);
}

/** Ordered pod pairs (i ≠ j) with no reply, per family. */
export function failingPairs(s: Snapshot): Array<{ from: HostStatus; to: HostStatus; family: Family }> {
  const out: Array<{ from: HostStatus; to: HostStatus; family: Family }> = [];
  for (const family of familiesOf(s)) {
    const m = matrixOf(s, family);
    s.hosts.forEach((from, i) =>
      s.hosts.forEach((to, j) => {
        if (i !== j && (m[i]?.[j] ?? null) === null) out.push({ from, to, family });
      }),
    );
  }
  return out;
}

/** Ordered pod pairs times families. */
export function pairCount(s: Snapshot): number {
  return s.hosts.length * (s.hosts.length - 1) * familiesOf(s).length;
}

/** A pod's address in one family. */
export function podAddress(h: HostStatus, f: Family): string | null {
  return f === 'ipv4' ? h.podIp : (h.podIpv6 ?? null);
}

export function matrixTable(s: Snapshot): string[] {
  const fam = familiesOf(s);
  // One family: a column per host, as always; two: a column per host and family.
  const cols = s.hosts.flatMap((to, j) => fam.map((f) => ({ j, f, title: fam.length > 1 ? `${to.name} ${f === 'ipv4' ? 'v4' : 'v6'}` : to.name })));
  const rows = [['from \\ to', ...cols.map((c) => c.title)]];
  s.hosts.forEach((from, i) => {
    rows.push([from.name, ...cols.map((c) => (i === c.j ? '-' : formatRtt(matrixOf(s, c.f)[i]?.[c.j] ?? null)))]);
  });
  return pad(rows);
}

/** The whole status block: hosts, matrix, a one-line verdict. */
export function renderSnapshot(s: Snapshot): string[] {
  const fam = familiesOf(s);
  const total = pairCount(s);
  const failing = failingPairs(s);
  const ok = total - failing.length;
  const lines = [...hostsTable(s), ''];
  if (s.hosts.length > 1) {
    const over = fam.length > 1 ? '; a column per destination and family' : fam[0] === 'ipv6' ? ', over IPv6' : '';
    lines.push(`Pod-to-pod reachability (RTT in ms, ${UNREACHABLE} = no reply${over}):`, ...matrixTable(s).map((l) => `  ${l}`), '');
    if (fam.length > 1) {
      const per = s.hosts.length * (s.hosts.length - 1);
      const by = fam.map((f) => `${LABEL[f]} ${per - failing.filter((p) => p.family === f).length}/${per}`).join(', ');
      lines.push(`reachable: ${ok}/${total} pod pairs and families (${by})`);
    } else lines.push(`reachable: ${ok}/${total} pod pairs`);
  } else {
    lines.push('reachable: 0/0 pod pairs (one host: nothing to reach; try --hosts 3)');
  }
  if (s.etcdError) lines.push(`etcd: ${s.etcdError}`);
  return lines;
}
