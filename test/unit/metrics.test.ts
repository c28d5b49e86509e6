import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { isRudderError } from '../../src/errors';
import { memoryLogger } from '../../src/log';
import { createMetrics, dataplaneSeries, snake } from '../../src/metrics/prometheus';
import { startMetricsServer } from '../../src/metrics/server';
import { Telemetry, type DaemonSnapshot } from '../../src/metrics/telemetry';

const base: DaemonSnapshot = { state: 'waiting-config', lease: null, backend: null, peers: 0, dataplane: null, ipMasq: null };

/** Value of one sample line `name{labels} value` in exposition text; undefined if absent. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(series + ' ')) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

test('snake case and data plane counters sorted into labelled series', () => {
  assert.equal(snake('unknownSender'), 'unknown_sender');
  assert.equal(snake('notIPv4'), 'not_ipv4');
  const s = dataplaneSeries({ txPackets: 1, rxPackets: 2, txBytes: 3, rxBytes: 4, dropUnknownSender: 5, dropTtl: 6, dropNotIPv4: 7, tunErrors: 8, icmpSent: 9 });
  assert.deepEqual(s.packets, [{ direction: 'tx', value: 1 }, { direction: 'rx', value: 2 }]);
  assert.deepEqual(s.bytes, [{ direction: 'tx', value: 3 }, { direction: 'rx', value: 4 }]);
  assert.deepEqual(s.drops, [{ reason: 'unknown_sender', value: 5 }, { reason: 'ttl', value: 6 }, { reason: 'not_ipv4', value: 7 }]);
  assert.deepEqual(s.errors, [{ kind: 'tun', value: 8 }]);
  assert.deepEqual(s.other, [{ name: 'icmp_sent', value: 9 }]);
});

test('metrics are read at scrape time from the telemetry and the daemon snapshot', async () => {
  const t = new Telemetry();
  let snap: DaemonSnapshot = base;
  let snapshots = 0;
  const m = createMetrics(t, () => {
    snapshots++;
    return snap;
  });
  let text = await m.scrape();
  assert.equal(snapshots, 1, 'one snapshot per scrape');
  assert.equal(sample(text, 'rudder_daemon_state{state="waiting-config"}'), 1);
  assert.equal(sample(text, 'rudder_daemon_state{state="ready"}'), 0);
  assert.equal(sample(text, 'rudder_ready'), 0);
  assert.equal(sample(text, 'rudder_lease_reservation'), 0);
  assert.doesNotMatch(text, /^rudder_lease_expiry_seconds/m, 'no lease, no expiry');
  assert.equal(sample(text, 'rudder_dataplane_packets_total{direction="tx"}'), undefined);
  assert.equal(sample(text, 'rudder_ipmasq_active'), 0, '-ip-masq off');
  assert.equal(sample(text, 'rudder_etcd_errors_total{component="watch"}'), 0);

  t.etcdError('watch');
  t.etcdError('watch');
  t.etcdReconnected('lease');
  t.leaseEvent('added', 3);
  t.leaseEvent('removed');
  t.ipMasqRestores++;
  const expiresAt = Date.now() + 120_000;
  snap = {
    state: 'ready',
    lease: { subnet: '10.5.3.0/24', expiresAt, reservation: false },
    backend: 'udp',
    peers: 2,
    dataplane: { txPackets: 10, rxPackets: 11, txBytes: 840, rxBytes: 924, dropUnknownSender: 4, dropNoRoute: 1 },
    ipMasq: true,
  };
  text = await m.scrape();
  assert.equal(sample(text, 'rudder_daemon_state{state="ready"}'), 1);
  assert.equal(sample(text, 'rudder_daemon_state{state="waiting-config"}'), 0);
  assert.equal(sample(text, 'rudder_ready'), 1);
  assert.equal(sample(text, 'rudder_lease_held{subnet="10.5.3.0/24",backend="udp"}'), 1);
  const exp = sample(text, 'rudder_lease_expiry_seconds{subnet="10.5.3.0/24"}');
  assert.ok(exp !== undefined && exp > 100 && exp <= 120, `expiry ${exp}`);
  assert.equal(sample(text, 'rudder_peers'), 2);
  assert.equal(sample(text, 'rudder_etcd_errors_total{component="watch"}'), 2);
  assert.equal(sample(text, 'rudder_etcd_reconnects_total{component="lease"}'), 1);
  assert.equal(sample(text, 'rudder_lease_events_total{type="added"}'), 3);
  assert.equal(sample(text, 'rudder_lease_events_total{type="removed"}'), 1);
  assert.equal(sample(text, 'rudder_dataplane_packets_total{direction="rx"}'), 11);
  assert.equal(sample(text, 'rudder_dataplane_bytes_total{direction="tx"}'), 840);
  assert.equal(sample(text, 'rudder_dataplane_drops_total{reason="unknown_sender"}'), 4);
  assert.equal(sample(text, 'rudder_dataplane_drops_total{reason="no_route"}'), 1);
  assert.equal(sample(text, 'rudder_ipmasq_active'), 1);
  assert.equal(sample(text, 'rudder_ipmasq_restores_total'), 1);
  assert.match(text, /# TYPE rudder_dataplane_drops_total counter/);

  // A reservation never expires: flagged, and no expiry series.
  snap = { ...snap, lease: { subnet: '10.5.0.0/24', expiresAt: null, reservation: true } };
  text = await m.scrape();
  assert.equal(sample(text, 'rudder_lease_reservation'), 1);
  assert.doesNotMatch(text, /^rudder_lease_expiry_seconds/m);
  assert.equal(sample(text, 'rudder_lease_held{subnet="10.5.3.0/24",backend="udp"}'), undefined, 'old lease series gone');
  assert.equal(sample(text, 'rudder_lease_held{subnet="10.5.0.0/24",backend="udp"}'), 1);
});

test('dual-stack: a series per subnet of the lease held, peer subnets by family', async () => {
  let snap: DaemonSnapshot = {
    ...base,
    state: 'ready',
    lease: { subnet: '10.5.3.0/24', ipv6Subnet: 'fd42:42:0:3::/64', expiresAt: Date.now() + 60_000, reservation: false },
    backend: 'vxlan',
    peers: 3,
    peerSubnets: { ipv4: 3, ipv6: 2 },
  };
  const m = createMetrics(new Telemetry(), () => snap);
  let text = await m.scrape();
  assert.equal(sample(text, 'rudder_lease_held{subnet="10.5.3.0/24",backend="vxlan"}'), 1);
  assert.equal(sample(text, 'rudder_lease_held{subnet="fd42:42:0:3::/64",backend="vxlan"}'), 1);
  assert.ok((sample(text, 'rudder_lease_expiry_seconds{subnet="fd42:42:0:3::/64"}') ?? 0) > 50);
  assert.equal(sample(text, 'rudder_peers'), 3);
  assert.equal(sample(text, 'rudder_peer_subnets{family="ipv4"}'), 3);
  assert.equal(sample(text, 'rudder_peer_subnets{family="ipv6"}'), 2);
  // IPv6-only: no IPv4 series at all.
  snap = { ...snap, lease: { subnet: null, ipv6Subnet: 'fd42:42:0:3::/64', expiresAt: null, reservation: true }, peerSubnets: { ipv4: 0, ipv6: 3 } };
  text = await m.scrape();
  assert.deepEqual(text.split('\n').filter((l) => l.startsWith('rudder_lease_held{')), ['rudder_lease_held{subnet="fd42:42:0:3::/64",backend="vxlan"} 1']);
  assert.equal(sample(text, 'rudder_peer_subnets{family="ipv4"}'), 0);
  // A snapshot without the split (IPv4 only) counts every peer as IPv4.
  snap = { ...base, peers: 4 };
  assert.equal(sample(await m.scrape(), 'rudder_peer_subnets{family="ipv4"}'), 4);
});

function get(addr: string, path: string): Promise<{ status: number; body: string; type: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(`http://${addr}${path}`, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, type: String(res.headers['content-type']) }));
      })
      .on('error', reject);
  });
}

test('HTTP endpoint: /healthz always 200, /readyz 503 with the state until ready, /metrics, 404, close', async () => {
  let state = 'waiting-config';
  const t = new Telemetry();
  const s = await startMetricsServer({ addr: '127.0.0.1:0', metrics: createMetrics(t, () => ({ ...base, state })), state: () => state, log: memoryLogger() });
  try {
    assert.match(s.address, /^127\.0\.0\.1:\d+$/);
    assert.equal((await get(s.address, '/healthz')).status, 200);
    const nr = await get(s.address, '/readyz');
    assert.equal(nr.status, 503);
    assert.match(nr.body, /waiting-config/);
    state = 'ready';
    assert.equal((await get(s.address, '/readyz')).status, 200);
    const m = await get(s.address, '/metrics');
    assert.equal(m.status, 200);
    assert.match(m.type, /^text\/plain; version=0\.0\.4/);
    assert.match(m.body, /^rudder_ready 1$/m);
    assert.equal((await get(s.address, '/nope')).status, 404);
  } finally {
    await s.close();
  }
  await assert.rejects(get(s.address, '/healthz'), 'closed');
});

test('HTTP endpoint: an address that cannot be bound is a typed error naming it', async () => {
  const t = new Telemetry();
  const opts = { metrics: createMetrics(t, () => base), state: () => 'ready', log: memoryLogger() };
  const first = await startMetricsServer({ addr: '127.0.0.1:0', ...opts });
  try {
    await assert.rejects(startMetricsServer({ addr: first.address, ...opts }), (e: unknown) => isRudderError(e, 'E_METRICS') && e.message.includes(first.address) && /EADDRINUSE/.test(e.message));
  } finally {
    await first.close();
  }
});

test('WireGuard: drops by reason, handshakes by kind, per-peer handshake age and bytes labelled by key and endpoint', async () => {
  const s = dataplaneSeries({ wgHandshakesSent: 3, wgHandshakesReceived: 2, wgHandshakesCompleted: 4, wgCookiesSent: 1, wgDropBadMac: 5, wgDropAllowedIps: 6, dropUnknownSender: 7 });
  assert.deepEqual(s.handshakes, [{ kind: 'sent', value: 3 }, { kind: 'received', value: 2 }, { kind: 'completed', value: 4 }]);
  assert.deepEqual(s.drops, [{ reason: 'wg_bad_mac', value: 5 }, { reason: 'wg_allowed_ips', value: 6 }, { reason: 'unknown_sender', value: 7 }]);
  assert.deepEqual(s.other, [{ name: 'wg_cookies_sent', value: 1 }]);

  const now = Date.now();
  const k1 = 'A'.repeat(43) + '=';
  const k2 = 'B'.repeat(43) + '=';
  const m = createMetrics(new Telemetry(), () => ({
    ...base,
    state: 'ready',
    backend: 'wireguard',
    dataplane: { wgHandshakesSent: 3, wgHandshakesCompleted: 4, wgDropReplay: 9 },
    peerStatus: [
      { publicKey: k1, endpoint: '198.18.0.2:51820', allowedIps: ['10.42.2.0/24'], latestHandshakeMs: now - 30_000, rxBytes: 100, txBytes: 200 },
      { publicKey: k2, endpoint: '198.18.0.3:51820', allowedIps: ['10.42.3.0/24'], latestHandshakeMs: 0, rxBytes: 0, txBytes: 148 },
    ],
  }));
  const text = await m.scrape();
  assert.equal(sample(text, 'rudder_wireguard_handshakes_total{kind="sent"}'), 3);
  assert.equal(sample(text, 'rudder_wireguard_handshakes_total{kind="completed"}'), 4);
  assert.equal(sample(text, 'rudder_dataplane_drops_total{reason="wg_replay"}'), 9);
  const age = sample(text, `rudder_wireguard_peer_handshake_age_seconds{public_key="${k1}",endpoint="198.18.0.2:51820"}`);
  assert.ok(age !== undefined && age >= 30 && age < 40, `age ${age}`);
  assert.doesNotMatch(text, new RegExp(`handshake_age_seconds\\{public_key="${k2}"`), 'no age before the first handshake');
  assert.equal(sample(text, `rudder_wireguard_peer_bytes_total{public_key="${k1}",endpoint="198.18.0.2:51820",direction="rx"}`), 100);
  assert.equal(sample(text, `rudder_wireguard_peer_bytes_total{public_key="${k2}",endpoint="198.18.0.3:51820",direction="tx"}`), 148);
});
