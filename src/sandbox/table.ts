/**
 * What the sandbox shows (pure): the hosts table and the pod-to-pod
 * reachability matrix, from a status snapshot.
 */

export interface HostStatus {
  /** h1, h2, ... */
  name: string;
  /** The host's underlay address. */
  underlayIp: string;
  /** PublicIP of the host's lease in etcd; null when etcd has no lease for it (or could not be read). */
  publicIp: string | null;
  /** The lease, e.g. 10.0.5.0/24; null before the subnet file exists. */
  subnet: string | null;
  /** BackendType of the lease in etcd; null when unknown. */
  backend: string | null;
  /** Daemon process: running, or exited with how. */
  daemon: { running: boolean; pid: number | null; exit: string | null };
  /** Pod namespace and address, once built. */
  podNs: string | null;
  podIp: string | null;
}

/** RTT in ms of one ping from pod `from` to pod `to`; null = no reply. */
export type Matrix = Array<Array<number | null>>;

export interface Snapshot {
  hosts: HostStatus[];
  /** matrix[i][j]: from hosts[i]'s pod to hosts[j]'s pod (the diagonal is not measured). */
  matrix: Matrix;
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

export function hostsTable(s: Snapshot): string[] {
  const rows = [['HOST', 'PUBLIC IP', 'SUBNET', 'BACKEND', 'DAEMON', 'POD', 'POD IP']];
  for (const h of s.hosts) {
    rows.push([h.name, h.publicIp ?? '-', h.subnet ?? '-', h.backend ?? '-', daemonState(h.daemon), h.podNs ?? '-', h.podIp ?? '-']);
  }
  return pad(rows);
}

/** Ordered pod pairs (i ≠ j) with no reply. */
export function failingPairs(s: Snapshot): Array<{ from: HostStatus; to: HostStatus }> {
  const out: Array<{ from: HostStatus; to: HostStatus }> = [];
  s.hosts.forEach((from, i) =>
    s.hosts.forEach((to, j) => {
      if (i !== j && (s.matrix[i]?.[j] ?? null) === null) out.push({ from, to });
    }),
  );
  return out;
}

export function pairCount(s: Snapshot): number {
  return s.hosts.length * (s.hosts.length - 1);
}

export function matrixTable(s: Snapshot): string[] {
  const rows = [['from \\ to', ...s.hosts.map((h) => h.name)]];
  s.hosts.forEach((from, i) => {
    rows.push([from.name, ...s.hosts.map((_, j) => (i === j ? '-' : formatRtt(s.matrix[i]?.[j] ?? null)))]);
  });
  return pad(rows);
}

/** The whole status block: hosts, matrix, a one-line verdict. */
export function renderSnapshot(s: Snapshot): string[] {
  const total = pairCount(s);
  const ok = total - failingPairs(s).length;
  const lines = [...hostsTable(s), ''];
  if (s.hosts.length > 1) {
    lines.push(`Pod-to-pod reachability (RTT in ms, ${UNREACHABLE} = no reply):`, ...matrixTable(s).map((l) => `  ${l}`), '');
    lines.push(`reachable: ${ok}/${total} pod pairs`);
  } else {
    lines.push('reachable: 0/0 pod pairs (one host: nothing to reach; try --hosts 3)');
  }
  if (s.etcdError) lines.push(`etcd: ${s.etcdError}`);
  return lines;
}
