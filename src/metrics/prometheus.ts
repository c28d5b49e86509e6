/**
 * Telemetry + a daemon snapshot → Prometheus metrics (prom-client). Every
 * value is read in a collect callback at scrape time: no timers, nothing
 * cached between scrapes.
 *
 * Data plane counters come as a flat record (DataPlaneCounters of the udp
 * backend): txPackets/rxPackets and txBytes/rxBytes become `direction`
 * labels, dropXxx becomes a `reason` label, xxxErrors a `kind` label; any
 * other counter is exported as rudder_dataplane_other_total{name=...}, so a new
 * native counter shows up without a change here. WireGuard mode's wgDropXxx
 * are drops too (reason `wg_xxx`), its wgHandshakesXxx become
 * rudder_wireguard_handshakes_total{kind}; per-peer series (handshake age,
 * bytes) come from the snapshot's peerStatus.
 */
import { Counter, Gauge, Registry } from 'prom-client';
import type { DaemonSnapshot, Telemetry } from './telemetry';

export const DAEMON_STATES = ['waiting-config', 'acquiring', 'programming', 'ready', 'stopping', 'stopped'] as const;

/** camelCase → snake_case: unknownSender → unknown_sender. */
export function snake(s: string): string {
  return s.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();
}

export interface DataplaneSeries {
  packets: Array<{ direction: string; value: number }>;
  bytes: Array<{ direction: string; value: number }>;
  drops: Array<{ reason: string; value: number }>;
  errors: Array<{ kind: string; value: number }>;
  /** WireGuard: sent, received, completed. */
  handshakes: Array<{ kind: string; value: number }>;
  other: Array<{ name: string; value: number }>;
}

/** Sorts the data plane's counters into labelled series (pure). */
export function dataplaneSeries(c: Readonly<Record<string, number>>): DataplaneSeries {
  const out: DataplaneSeries = { packets: [], bytes: [], drops: [], errors: [], handshakes: [], other: [] };
  for (const [k, v] of Object.entries(c)) {
    if (typeof v !== 'number' || !Number.isFinite(v)) continue;
    let m: RegExpExecArray | null;
    if ((m = /^(tx|rx)Packets$/.exec(k))) out.packets.push({ direction: m[1] as string, value: v });
    else if ((m = /^(tx|rx)Bytes$/.exec(k))) out.bytes.push({ direction: m[1] as string, value: v });
    else if ((m = /^wgDrop([A-Z]\w*)$/.exec(k))) out.drops.push({ reason: `wg_${snake((m[1] as string).replace(/^./, (x) => x.toLowerCase()))}`, value: v });
    else if ((m = /^wgHandshakes([A-Z]\w*)$/.exec(k))) out.handshakes.push({ kind: snake((m[1] as string).replace(/^./, (x) => x.toLowerCase())), value: v });
    else if ((m = /^drop([A-Z]\w*)$/.exec(k))) out.drops.push({ reason: snake((m[1] as string).replace(/^./, (x) => x.toLowerCase())), value: v });
    else if ((m = /^(\w+)Errors$/.exec(k))) out.errors.push({ kind: snake(m[1] as string), value: v });
    else out.other.push({ name: snake(k), value: v });
  }
  return out;
}

export interface RudderMetrics {
  readonly registry: Registry;
  /** The exposition text: takes one daemon snapshot, then runs every collect callback. */
  scrape(): Promise<string>;
}

/** The subnets of the lease held, IPv4's first (none without a lease). */
function leaseSubnets(l: DaemonSnapshot['lease']): string[] {
  if (!l) return [];
  return [...(l.subnet !== null ? [l.subnet] : []), ...(l.ipv6Subnet !== undefined ? [l.ipv6Subnet] : [])];
}

/** Metrics whose values are read from `telemetry` and `snapshot()` when scraped. */
export function createMetrics(telemetry: Telemetry, snapshot: () => DaemonSnapshot): RudderMetrics {
  const registers = new Registry();
  const r = [registers];
  // One snapshot per scrape, so the series of one scrape agree with each other.
  let current: DaemonSnapshot | null = null;
  const snap = (): DaemonSnapshot => current ?? snapshot();

  new Gauge({
    name: 'rudder_daemon_state',
    help: 'Daemon state: 1 for the current state, 0 for the others',
    labelNames: ['state'],
    registers: r,
    collect() {
      const s = snap();
      for (const st of DAEMON_STATES) this.set({ state: st }, s.state === st ? 1 : 0);
    },
  });
  new Gauge({
    name: 'rudder_ready',
    help: '1 when the lease is held, the backend programmed and the subnet file written (what /readyz reports)',
    registers: r,
    collect() {
      this.set(snap().state === 'ready' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'rudder_lease_held',
    help: '1 while this host holds a subnet lease (or reservation); one series per subnet (IPv4, IPv6)',
    labelNames: ['subnet', 'backend'],
    registers: r,
    collect() {
      this.reset();
      const s = snap();
      for (const subnet of leaseSubnets(s.lease)) this.set({ subnet, backend: s.backend ?? '' }, 1);
    },
  });
  new Gauge({
    name: 'rudder_lease_reservation',
    help: '1 when the subnet is a reservation (an etcd key without an etcd lease: never expires), 0 otherwise',
    registers: r,
    collect() {
      this.set(snap().lease?.reservation ? 1 : 0);
    },
  });
  new Gauge({
    name: 'rudder_lease_expiry_seconds',
    help: 'Seconds until the lease expires (no series for a reservation, which never expires, or without a lease)',
    labelNames: ['subnet'],
    registers: r,
    collect() {
      this.reset();
      const l = snap().lease;
      if (l && l.expiresAt !== null) for (const subnet of leaseSubnets(l)) this.set({ subnet }, Math.max(0, (l.expiresAt - Date.now()) / 1000));
    },
  });
  new Gauge({
    name: 'rudder_peers',
    help: 'Leases of other hosts currently known',
    registers: r,
    collect() {
      this.set(snap().peers);
    },
  });
  new Gauge({
    name: 'rudder_peer_subnets',
    help: 'Subnets of other hosts\' leases currently known, by address family (a dual-stack lease has one of each)',
    labelNames: ['family'],
    registers: r,
    collect() {
      const s = snap();
      const f = s.peerSubnets ?? { ipv4: s.peers, ipv6: 0 };
      this.set({ family: 'ipv4' }, f.ipv4);
      this.set({ family: 'ipv6' }, f.ipv6);
    },
  });
  new Counter({
    name: 'rudder_etcd_errors_total',
    help: 'Failed etcd requests, by component (config read, own lease, lease watch)',
    labelNames: ['component'],
    registers: r,
    collect() {
      this.reset();
      for (const [c, v] of Object.entries(telemetry.etcdErrors)) this.inc({ component: c }, v);
    },
  });
  new Counter({
    name: 'rudder_etcd_reconnects_total',
    help: 'Times etcd answered again after failures, by component',
    labelNames: ['component'],
    registers: r,
    collect() {
      this.reset();
      for (const [c, v] of Object.entries(telemetry.etcdReconnects)) this.inc({ component: c }, v);
    },
  });
  new Counter({
    name: 'rudder_lease_events_total',
    help: 'Lease watch events (added, removed)',
    labelNames: ['type'],
    registers: r,
    collect() {
      this.reset();
      for (const [t, v] of Object.entries(telemetry.leaseEvents)) this.inc({ type: t }, v);
    },
  });
  new Gauge({
    name: 'rudder_ipmasq_active',
    help: '1 while the -ip-masq nftables table is installed, 0 otherwise (always 0 without -ip-masq)',
    registers: r,
    collect() {
      this.set(snap().ipMasq === true ? 1 : 0);
    },
  });
  new Counter({
    name: 'rudder_ipmasq_restores_total',
    help: 'Times the -ip-masq nftables table was found removed or changed and put back',
    registers: r,
    collect() {
      this.reset();
      this.inc(telemetry.ipMasqRestores);
    },
  });

  // Data plane (udp backend): absent until a backend with counters runs.
  const dp = (): DataplaneSeries | null => {
    const c = snap().dataplane;
    return c ? dataplaneSeries(c) : null;
  };
  new Counter({
    name: 'rudder_dataplane_packets_total',
    help: 'Packets moved by the data plane: tx = TUN to UDP (leaving this host), rx = UDP to TUN',
    labelNames: ['direction'],
    registers: r,
    collect() {
      this.reset();
      for (const x of dp()?.packets ?? []) this.inc({ direction: x.direction }, x.value);
    },
  });
  new Counter({
    name: 'rudder_dataplane_bytes_total',
    help: 'Bytes (inner IP packets) moved by the data plane, by direction',
    labelNames: ['direction'],
    registers: r,
    collect() {
      this.reset();
      for (const x of dp()?.bytes ?? []) this.inc({ direction: x.direction }, x.value);
    },
  });
  new Counter({
    name: 'rudder_dataplane_drops_total',
    help: 'Packets dropped by the data plane, by reason',
    labelNames: ['reason'],
    registers: r,
    collect() {
      this.reset();
      for (const x of dp()?.drops ?? []) this.inc({ reason: x.reason }, x.value);
    },
  });
  new Counter({
    name: 'rudder_dataplane_errors_total',
    help: 'I/O errors of the data plane, by kind (tun, socket)',
    labelNames: ['kind'],
    registers: r,
    collect() {
      this.reset();
      for (const x of dp()?.errors ?? []) this.inc({ kind: x.kind }, x.value);
    },
  });
  new Counter({
    name: 'rudder_wireguard_handshakes_total',
    help: 'WireGuard handshakes (wireguard backend): sent = initiations sent, received = initiations answered, completed = sessions put in use',
    labelNames: ['kind'],
    registers: r,
    collect() {
      this.reset();
      for (const x of dp()?.handshakes ?? []) this.inc({ kind: x.kind }, x.value);
    },
  });
  new Gauge({
    name: 'rudder_wireguard_peer_handshake_age_seconds',
    help: 'Seconds since the latest completed handshake with each WireGuard peer (no series before the first one)',
    labelNames: ['public_key', 'endpoint'],
    registers: r,
    collect() {
      this.reset();
      const now = Date.now();
      for (const p of snap().peerStatus ?? []) {
        if (p.latestHandshakeMs > 0) this.set({ public_key: p.publicKey, endpoint: p.endpoint }, Math.max(0, (now - p.latestHandshakeMs) / 1000));
      }
    },
  });
  new Counter({
    name: 'rudder_wireguard_peer_bytes_total',
    help: 'Bytes of WireGuard transport messages per peer: rx = received from it, tx = sent to it',
    labelNames: ['public_key', 'endpoint', 'direction'],
    registers: r,
    collect() {
      this.reset();
      for (const p of snap().peerStatus ?? []) {
        this.inc({ public_key: p.publicKey, endpoint: p.endpoint, direction: 'rx' }, p.rxBytes);
        this.inc({ public_key: p.publicKey, endpoint: p.endpoint, direction: 'tx' }, p.txBytes);
      }
    },
  });
  new Counter({
    name: 'rudder_dataplane_other_total',
    help: 'Other data plane counters, by name (e.g. icmp_sent: ICMP errors generated)',
    labelNames: ['name'],
    registers: r,
    collect() {
      this.reset();
      for (const x of dp()?.other ?? []) this.inc({ name: x.name }, x.value);
    },
  });
  return {
    registry: registers,
    async scrape(): Promise<string> {
      current = snapshot();
      try {
        return await registers.metrics();
      } finally {
        current = null;
      }
    },
  };
}
