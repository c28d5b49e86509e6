/**
 * `rudder peers`: this host's WireGuard peers as its daemon sees them —
 * endpoint, allowed IPs, latest handshake, bytes — read from the daemon's
 * status socket (/var/run/wireguard/<device>.sock, the one `wg show` reads;
 * the format is src/backend/wireguard/uapi.ts's). A table, or JSON with
 * -json. Without a socket it says why: another backend (named from the
 * network config in etcd when it can be read), or no daemon running.
 */
import * as fs from 'node:fs';
import { RudderError, describeError } from '../errors';
import { formatUsage, HELP_FLAG, type FlagSpec, type ParsedFlags } from '../util/flags';
import { parseGet, queryUapi, uapiDir, uapiSocketPath, type UapiPeerStatus } from '../backend/wireguard/uapi';
import { publicKeyOf } from '../backend/wireguard/key';
import { WG_TUN } from '../backend/common';
import { ETCD_FLAGS } from './flags';
import type { Out } from './commands';

export const PEERS_FLAGS: readonly FlagSpec[] = [
  { name: 'wireguard-device', kind: 'string', default: WG_TUN, help: 'the wireguard backend\'s device: its status socket /var/run/wireguard/<device>.sock is read' },
  { name: 'json', kind: 'bool', env: false, help: 'print JSON instead of a table' },
  ...ETCD_FLAGS,
  HELP_FLAG,
];

export const PEERS_SUMMARY = 'list this host\'s WireGuard peers (wireguard backend): endpoint, allowed IPs, latest handshake, bytes';

export function peersUsage(): string {
  return formatUsage(
    `Usage: rudder peers [-wireguard-device=NAME] [-json]\n\nLists this host's WireGuard peers as the running daemon sees them: endpoint, allowed IPs,\nlatest handshake and bytes each way (the daemon's status socket, the one \`wg show\` reads).\nThe etcd flags are used only to name the network's backend when no wireguard daemon runs here.`,
    PEERS_FLAGS,
  );
}

/** 1536 → "1.50 KiB", as wg(8) prints transfer amounts. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(2)} ${units[u]}`;
}

/** 75_000 → "1m15s ago"; 0 (no handshake) → "never". */
export function formatAge(latestMs: number, nowMs: number): string {
  if (latestMs <= 0) return 'never';
  const s = Math.max(0, Math.round((nowMs - latestMs) / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return `${h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`} ago`;
}

export interface PeersReport {
  device: string;
  publicKey: string | null;
  listenPort: number | null;
  peers: Array<UapiPeerStatus & { latestHandshake: string | null; latestHandshakeAgeSeconds: number | null }>;
}

/** The command's output from a status answer (pure). */
export function peersReport(device: string, answer: string, nowMs: number): PeersReport {
  const st = parseGet(answer);
  let publicKey: string | null = null;
  if (st.privateKey) {
    try {
      publicKey = publicKeyOf(st.privateKey);
    } finally {
      st.privateKey.fill(0);
    }
  }
  const peers = [...st.peers]
    .sort((a, b) => (a.endpoint ?? '').localeCompare(b.endpoint ?? '', 'en', { numeric: true }))
    .map((p) => ({
      ...p,
      latestHandshake: p.latestHandshakeMs > 0 ? new Date(p.latestHandshakeMs).toISOString() : null,
      latestHandshakeAgeSeconds: p.latestHandshakeMs > 0 ? Math.max(0, Math.round((nowMs - p.latestHandshakeMs) / 1000)) : null,
    }));
  return { device, publicKey, listenPort: st.listenPort ?? null, peers };
}

export function peersTable(r: PeersReport, nowMs: number): string[] {
  const head = `interface ${r.device}: public key ${r.publicKey ?? '(not reported)'}, listening port ${r.listenPort ?? '?'}`;
  if (r.peers.length === 0) return [head, 'no peers'];
  const rows: string[][] = [['PUBLIC KEY', 'ENDPOINT', 'ALLOWED IPS', 'LATEST HANDSHAKE', 'RECEIVED', 'SENT']];
  for (const p of r.peers) {
    rows.push([p.publicKey, p.endpoint ?? '(none)', p.allowedIps.join(',') || '(none)', formatAge(p.latestHandshakeMs, nowMs), formatBytes(p.rxBytes), formatBytes(p.txBytes)]);
  }
  const widths = (rows[0] as string[]).map((_, c) => Math.max(...rows.map((x) => (x[c] ?? '').length)));
  return [head, ...rows.map((x) => x.map((v, c) => v.padEnd(widths[c] ?? 0)).join('  ').trimEnd())];
}

export interface PeersDeps {
  env: Readonly<Record<string, string | undefined>>;
  /** The network config's Backend.Type from etcd, null when it cannot be read (only asked without a socket). */
  backendType(): Promise<string | null>;
  now?: () => number;
}

/** `rudder peers`: 0 with the table, 1 when there is no wireguard daemon to ask (said why on stderr). */
export async function peersCommand(p: ParsedFlags, io: Out, d: PeersDeps): Promise<number> {
  const device = String(p.values.get('wireguard-device') ?? WG_TUN);
  if (device === '' || device.includes('/')) throw new RudderError('E_FLAG', `-wireguard-device=${JSON.stringify(device)}: expected a device name such as ${WG_TUN}`);
  const file = uapiSocketPath(uapiDir(d.env), device);
  if (!fs.existsSync(file)) {
    const type = await d.backendType();
    if (type !== null && type !== 'wireguard') {
      io.err(`rudder peers: the network's backend is "${type}", which has no WireGuard peers: \`rudder leases\` lists every host's lease`);
    } else if (type === 'wireguard') {
      io.err(`rudder peers: no status socket ${file}: the daemon does not run on this host, or has not started its wireguard backend yet`);
    } else {
      io.err(`rudder peers: no status socket ${file}: no wireguard backend runs on this host (with another backend, \`rudder leases\` lists every host's lease)`);
    }
    return 1;
  }
  let answer: string;
  try {
    answer = await queryUapi(file);
  } catch (e) {
    const errno = (e as { cause?: { code?: unknown } }).cause?.code;
    if (errno === 'ECONNREFUSED') {
      io.err(`rudder peers: nobody answers on ${file}: a socket left by a daemon that is gone? (${describeError(e)})`);
      return 1;
    }
    throw e;
  }
  const now = (d.now ?? Date.now)();
  const report = peersReport(device, answer, now);
  if (p.values.get('json') === true) io.out(JSON.stringify(report, null, 2));
  else for (const line of peersTable(report, now)) io.out(line);
  return 0;
}
