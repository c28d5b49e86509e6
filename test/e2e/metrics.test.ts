/**
 * -metrics-addr end to end: a daemon in host 1's namespace serves /metrics,
 * /healthz and /readyz on its underlay address 198.18.0.1; the test scrapes
 * it from the etcd namespace with node's http client (curl is not a
 * dependency). Checks the life cycle (healthz while waiting for a config,
 * readyz 503 → 200), that the data plane counters move with real traffic
 * between pods, that drops move with junk sent to the udp port from a
 * namespace that holds no lease, and that an etcd outage is counted.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createCluster, type Cluster, type Host, type Netns, type Pod } from '../../src/topology';
import { skipUnlessEtcd, skipUnlessRoot } from '../helpers/env';
import { waitUntil } from '../helpers/wait';
import { fetchIn } from '../helpers/fetch-in-ns';
import { parseMetrics } from '../helpers/prometheus';
import { ipv4Udp } from '../helpers/packets';

const GIVE_UP_MS = 90_000;
const METRICS_PORT = 9108;
const UDP_PORT = 8285;

/** Sends `count` UDP datagrams of `payload` (hex) to host:port from inside a namespace. */
const SEND_UDP = `
const dgram = require('node:dgram');
const [host, port, count, hex] = process.argv.slice(1);
const s = dgram.createSocket('udp4');
let left = Number(count);
const next = () => {
  if (left-- === 0) return s.close();
  s.send(Buffer.from(hex, 'hex'), Number(port), host, (e) => { if (e) { console.error(e.message); process.exit(1); } next(); });
};
next();
`;

function sum(m: Map<string, number>, name: string): number {
  let s = 0;
  for (const [k, v] of m) if (k === name || k.startsWith(name + '{')) s += v;
  return s;
}

function val(m: Map<string, number>, series: string): number {
  const v = m.get(series);
  assert.ok(v !== undefined, `series ${series} present; have: ${[...m.keys()].filter((k) => k.startsWith(series.split('{')[0] ?? '')).join(', ')}`);
  return v;
}

describe('metrics endpoint end to end (-metrics-addr)', { skip: skipUnlessRoot || skipUnlessEtcd }, () => {
  let c: Cluster;
  let h1: Host;
  let client: Netns; // the etcd namespace: on the underlay, holds no lease
  let base: string;

  const scrape = async (): Promise<Map<string, number>> => {
    const r = await fetchIn(client, `${base}/metrics`);
    assert.equal(r.status, 200, `GET /metrics: ${JSON.stringify(r)}`);
    return parseMetrics(r.body ?? '');
  };

  before(async () => {
    c = await createCluster({ hosts: 2, giveUpMs: GIVE_UP_MS });
    h1 = c.host(1);
    client = c.etcdNs[0] as Netns;
    base = `http://${h1.underlayIp}:${METRICS_PORT}`;
  });

  after(async () => {
    await c?.teardown();
  });

  it('serves /healthz while waiting for the config; /readyz is 503 until ready, then 200', async () => {
    await h1.startRudder([`-metrics-addr=${h1.underlayIp}:${METRICS_PORT}`]);
    const health = await waitUntil(
      async () => {
        if (!h1.rudder?.running) throw new Error(`rudder exited: ${h1.rudderLog(2000)}`);
        const r = await fetchIn(client, `${base}/healthz`);
        return r.status === 200 ? r : undefined;
      },
      { giveUpMs: GIVE_UP_MS, what: `${base}/healthz` },
    );
    assert.equal(health.status, 200);
    // No config is published yet: not ready, and the body says why.
    const notReady = await fetchIn(client, `${base}/readyz`);
    assert.equal(notReady.status, 503, JSON.stringify(notReady));
    assert.match(notReady.body ?? '', /waiting-config/);
    const m0 = await scrape();
    assert.equal(val(m0, 'rudder_daemon_state{state="waiting-config"}'), 1);
    assert.equal(val(m0, 'rudder_ready'), 0);
    assert.equal(sum(m0, 'rudder_lease_held'), 0);

    await c.putConfig({ Network: '10.61.0.0/16', Backend: { Type: 'udp' } });
    const env = await h1.waitSubnetFile();
    await h1.setupPod(env);
    const ready = await waitUntil(async () => {
      const r = await fetchIn(client, `${base}/readyz`);
      return r.status === 200 ? r : undefined;
    }, { giveUpMs: GIVE_UP_MS, what: `${base}/readyz to answer 200` });
    assert.equal(ready.status, 200);
    assert.equal((await fetchIn(client, `${base}/healthz`)).status, 200);

    const m1 = await scrape();
    const lease = env.subnet.replace(/\.1\/(\d+)$/, '.0/$1');
    assert.equal(val(m1, `rudder_lease_held{subnet="${lease}",backend="udp"}`), 1);
    assert.equal(val(m1, 'rudder_lease_reservation'), 0);
    const exp = val(m1, `rudder_lease_expiry_seconds{subnet="${lease}"}`);
    assert.ok(exp > 0 && exp <= 24 * 3600, `seconds to expiry ${exp}`);
    assert.equal(val(m1, 'rudder_daemon_state{state="ready"}'), 1);
  });

  it('counts peers, lease events and data plane packets and bytes with traffic between pods', async () => {
    const h2 = c.host(2);
    const { pod: p2 } = await h2.up();
    const p1 = h1.pod as Pod;
    assert.ok(p1, 'pod of h1');
    await waitUntil(async () => (await p1.ping(p2.ip, { count: 1, replyWaitS: 1 })).received === 1, { giveUpMs: GIVE_UP_MS, what: 'ping pod h1 → pod h2' });
    const before = await scrape();
    assert.equal(val(before, 'rudder_peers'), 1);
    assert.ok(val(before, 'rudder_lease_events_total{type="added"}') >= 2, 'own lease and the peer\'s');

    const count = 20;
    const size = 200;
    const r = await p1.ping(p2.ip, { count, intervalS: 0.05, size });
    assert.equal(r.received, count, r.output);
    const afterPing = await scrape();
    const d = (s: string): number => val(afterPing, s) - val(before, s);
    // Each request leaves h1 through the data plane (tx), each reply comes back (rx): IP 20 + ICMP 8 + payload.
    assert.ok(d('rudder_dataplane_packets_total{direction="tx"}') >= count, `tx packets +${d('rudder_dataplane_packets_total{direction="tx"}')}`);
    assert.ok(d('rudder_dataplane_packets_total{direction="rx"}') >= count, `rx packets +${d('rudder_dataplane_packets_total{direction="rx"}')}`);
    assert.ok(d('rudder_dataplane_bytes_total{direction="tx"}') >= count * (size + 28), `tx bytes +${d('rudder_dataplane_bytes_total{direction="tx"}')}`);
    assert.ok(d('rudder_dataplane_bytes_total{direction="rx"}') >= count * (size + 28), `rx bytes +${d('rudder_dataplane_bytes_total{direction="rx"}')}`);
  });

  it('counts drops of datagrams from a namespace that holds no lease (junk to the udp port)', async () => {
    const before = await scrape();
    const junk = 25;
    const pkt = ipv4Udp('10.61.200.9', (h1.pod as Pod).ip, 9, Buffer.from('junk from a namespace that holds no lease'));
    await client.exec([process.execPath, '-e', SEND_UDP, h1.underlayIp, String(UDP_PORT), String(junk), pkt.toString('hex')]);
    const afterJunk = await waitUntil(async () => {
      const m = await scrape();
      return sum(m, 'rudder_dataplane_drops_total') - sum(before, 'rudder_dataplane_drops_total') >= junk ? m : undefined;
    }, { giveUpMs: GIVE_UP_MS, what: `${junk} more drops` });
    const d = val(afterJunk, 'rudder_dataplane_drops_total{reason="unknown_sender"}') - val(before, 'rudder_dataplane_drops_total{reason="unknown_sender"}');
    assert.equal(d, junk, 'every junk datagram dropped as from an unknown sender');
    // Junk is not delivered: rx packets moved by no more than other traffic could explain (none runs now).
    assert.equal(val(afterJunk, 'rudder_dataplane_packets_total{direction="rx"}'), val(before, 'rudder_dataplane_packets_total{direction="rx"}'));
  });

  it('counts etcd errors and reconnects across an etcd outage', async () => {
    const before = await scrape();
    await c.etcd.stop();
    try {
      await waitUntil(async () => sum(await scrape(), 'rudder_etcd_errors_total') > sum(before, 'rudder_etcd_errors_total'), { giveUpMs: GIVE_UP_MS, what: 'an etcd error to be counted' });
      // The endpoint and the data path stay up while etcd is away.
      assert.equal((await fetchIn(client, `${base}/healthz`)).status, 200);
    } finally {
      await c.etcd.start();
    }
    const m = await waitUntil(async () => {
      const s = await scrape();
      return sum(s, 'rudder_etcd_reconnects_total') > sum(before, 'rudder_etcd_reconnects_total') ? s : undefined;
    }, { giveUpMs: GIVE_UP_MS, what: 'a reconnect to be counted' });
    assert.ok(sum(m, 'rudder_etcd_errors_total') > 0);
    assert.ok(/etcd unreachable/.test(h1.rudderLog(50_000)), 'the log says so too');
  });

  it('closes the endpoint on a clean stop', async () => {
    await h1.stopRudder();
    assert.deepEqual(h1.rudder?.exit, { code: 0, signal: null }, h1.rudderLog(3000));
    const r = await fetchIn(client, `${base}/healthz`);
    assert.ok(r.error, `nothing listens any more: ${JSON.stringify(r)}`);
  });
});
