/**
 * The wireguard backend end to end, with real everything: etcd in its
 * namespace, `bin/rudder` daemons in three host namespaces with
 * `{"Backend":{"Type":"wireguard"}}` (the one config line a user writes),
 * the native data plane in WireGuard mode, pods behind each host's bridge.
 * Each host has its own key file in its directory (the hosts share one file
 * system). Proved: every pod reaches every other; the lease publishes the
 * key file's public key and the port; the key file is 0600; a restarted
 * daemon keeps its key and its peers reconnect with nobody acting; a key
 * rotation (the command, SIGHUP) republishes the lease and every pod
 * reaches every other again; a removed lease removes the peer. Status: Debian's `wg show` and
 * `rudder peers` read each daemon's status socket (its directory, per host
 * here, bind-mounted over /run where wg looks) and list the peers with
 * endpoints, allowed IPs and a recent handshake; `wg set` is refused; the
 * metrics endpoint has the handshake and per-peer series. A route to a peer whose MTU is below a
 * full datagram makes the kernel refuse the data plane's UDP GSO messages: 64 MB of TCP still
 * arrive sha256-identical, and tx_gso_refused on the metrics endpoint shows the messages were
 * resent datagram by datagram (send.c). The protocol itself (capture, forgery,
 * replay, interop) is proved by test/e2e/wireguard-dataplane.test.ts.
 * Waits have generous give-ups; nothing asserts how fast anything happened.
 */
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { createCluster, type Cluster, type Host } from '../../src/topology';
import { parseKeyFile, publicKeyOf, tai64nFile } from '../../src/backend/wireguard';
import { skipUnlessEtcd, skipUnlessRoot } from '../helpers/env';
import { eventually, fullMesh, leaseOf, link, podReaches } from '../helpers/kernel-backends-net';
import { fetchIn } from '../helpers/fetch-in-ns';
import { parseMetrics } from '../helpers/prometheus';

const NETWORK = '10.42.0.0/16';
const CONFIG = { Network: NETWORK, Backend: { Type: 'wireguard' } };
const TUN = 'rudder-wg';
const METRICS_PORT = 9108;
/** A handshake this old or older is not "recent" (REJECT_AFTER_TIME). */
const RECENT_S = 180;

const execFileP = promisify(execFile);
const keyFileOf = (h: Host): string => path.join(h.dir, 'wireguard.key');
const publicKeyIn = (file: string): string => publicKeyOf(parseKeyFile(file, fs.readFileSync(file)));
const keyOf = (c: Cluster, subnet: string): string => `${c.etcdPrefix}/subnets/${subnet.replace('/', '-')}`;

describe('wireguard backend', { skip: skipUnlessRoot || skipUnlessEtcd }, () => {
  let c: Cluster;
  const h = (i: number): Host => c.host(i);

  before(async () => {
    c = await createCluster({ hosts: 3, underlayMtu: 1500 });
    for (const x of c.hosts) x.rudderArgs.push(`-wireguard-key-file=${keyFileOf(x)}`, `-metrics-addr=${x.underlayIp}:${METRICS_PORT}`);
    await c.putConfig(CONFIG);
  });
  after(async () => {
    await c?.teardown();
  });

  it('3 hosts: MTU 1420 in the subnet files, every pod reaches every other pod', async () => {
    for (const i of [1, 2, 3]) {
      const { env } = await h(i).up();
      assert.equal(env.mtu, 1420, `${h(i).name} RUDDER_MTU`);
      assert.equal(env.network, NETWORK);
      // Node's bundled OpenSSL exports ChaCha20_ctr32 and Poly1305_*: the daemon seals below EVP.
      const started = fs.readFileSync(h(i).logFile, 'utf8').split('\n').find((l) => l.includes('wireguard backend started'));
      assert.match(started ?? '', / cipher=direct\b/, `${h(i).name}: ${started}`);
    }
    await fullMesh(c, [h(1), h(2), h(3)]);
  });

  it('each lease publishes the key file\'s public key and the port; key files are 0600 and differ', async () => {
    const keys = new Set<string>();
    for (const x of [h(1), h(2), h(3)]) {
      const file = keyFileOf(x);
      assert.equal(fs.statSync(file).mode & 0o777, 0o600, `${file} mode`);
      const l = await leaseOf(c, x);
      assert.equal(l.value['BackendType'], 'wireguard');
      const data = l.value['BackendData'] as { PublicKey?: string; Port?: number };
      assert.deepEqual(data, { PublicKey: publicKeyIn(file), Port: 51820 });
      keys.add(data.PublicKey ?? '');
      const dev = await link(x, TUN);
      assert.ok(dev, `${x.name} has ${TUN}`);
      assert.equal(dev.mtu, 1420);
    }
    assert.equal(keys.size, 3);
  });

  /**
   * Runs `argv` in `x`'s namespace with the host's status socket directory
   * where wg(8) and `rudder peers` look by default (/var/run/wireguard),
   * in a mount namespace of its own.
   */
  const withSocketDir = (x: Host, argv: readonly string[]) =>
    x.exec(['unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'mount --bind "$0" /run && exec "$@"', path.dirname(x.uapiDir), ...argv], { allowFailure: true });

  /** Each other host as a peer of `x` should see it: key, endpoint, allowed IPs. */
  const expectedPeers = async (x: Host): Promise<Map<string, { endpoint: string; allowed: string }>> => {
    const m = new Map<string, { endpoint: string; allowed: string }>();
    for (const o of [h(1), h(2), h(3)]) {
      if (o === x) continue;
      const l = await leaseOf(c, o);
      m.set((l.value['BackendData'] as { PublicKey: string }).PublicKey, { endpoint: `${o.underlayIp}:51820`, allowed: l.subnet });
    }
    return m;
  };

  it('wg show (wireguard-tools) lists each host\'s peers: endpoint, allowed IPs, a recent handshake, bytes; wg set is refused', async () => {
    for (const x of [h(1), h(2), h(3)]) {
      const sock = path.join(x.uapiDir, `${TUN}.sock`);
      assert.equal(fs.statSync(sock).mode & 0o777, 0o600, `${sock} mode`);
      const want = await expectedPeers(x);
      const dump = await withSocketDir(x, ['wg', 'show', TUN, 'dump']);
      assert.equal(dump.code, 0, `wg show ${TUN} dump on ${x.name}: ${dump.stderr}`);
      const [iface, ...peerLines] = dump.stdout.trim().split('\n').map((l) => l.split('\t'));
      assert.equal(iface?.[1], publicKeyIn(keyFileOf(x)), `${x.name}: the interface's public key`);
      assert.equal(iface?.[2], '51820', `${x.name}: listening port`);
      const now = Date.now() / 1000;
      const seen = new Map<string, { endpoint: string; allowed: string }>();
      for (const [pub, _psk, endpoint, allowed, handshake, rx, tx] of peerLines) {
        seen.set(pub ?? '', { endpoint: endpoint ?? '', allowed: allowed ?? '' });
        const age = now - Number(handshake);
        assert.ok(age >= -5 && age < RECENT_S, `${x.name}: peer ${pub} latest handshake ${handshake} is recent (age ${age.toFixed(0)} s)`);
        assert.ok(Number(rx) > 0 && Number(tx) > 0, `${x.name}: peer ${pub} transfer ${rx}/${tx}`);
      }
      assert.deepEqual(seen, want, `${x.name}: wg show's peers are the other hosts`);
      const pretty = await withSocketDir(x, ['wg', 'show', TUN]);
      assert.equal(pretty.code, 0, pretty.stderr);
      for (const [pub, p] of want) {
        assert.match(pretty.stdout, new RegExp(`peer: ${pub.replace(/[+/]/g, '\\$&')}\\n\\s+endpoint: ${p.endpoint.replace(/\./g, '\\.')}\\n\\s+allowed ips: ${p.allowed}\\n\\s+latest handshake: (?:Now|[^\\n]*ago)`), `${x.name}: wg show\n${pretty.stdout}`);
      }
    }
    const set = await withSocketDir(h(1), ['wg', 'set', TUN, 'listen-port', '4000']);
    assert.notEqual(set.code, 0, 'wg set is refused');
    assert.match(set.stderr, /Operation not permitted/);
    assert.ok(fs.readFileSync(h(1).logFile, 'utf8').includes("refused a status socket 'set'"), 'the daemon logs the refusal');
    const again = await withSocketDir(h(1), ['wg', 'show', TUN, 'listen-port']);
    assert.equal(again.stdout.trim(), '51820', 'nothing changed');
  });

  it('rudder peers shows the same peers; the metrics endpoint has handshakes and per-peer series', async () => {
    for (const x of [h(1), h(2), h(3)]) {
      const want = await expectedPeers(x);
      const r = await withSocketDir(x, [c.rudderBin, 'peers', '-json']);
      assert.equal(r.code, 0, `rudder peers on ${x.name}: ${r.stderr}`);
      const rep = JSON.parse(r.stdout) as { publicKey: string; peers: Array<{ publicKey: string; endpoint: string; allowedIps: string[]; latestHandshakeAgeSeconds: number | null; rxBytes: number }> };
      assert.equal(rep.publicKey, publicKeyIn(keyFileOf(x)));
      assert.deepEqual(new Map(rep.peers.map((p) => [p.publicKey, { endpoint: p.endpoint, allowed: p.allowedIps.join(',') }])), want, `${x.name}: rudder peers`);
      for (const p of rep.peers) assert.ok(p.latestHandshakeAgeSeconds !== null && p.latestHandshakeAgeSeconds < RECENT_S && p.rxBytes > 0, `${x.name}: ${JSON.stringify(p)}`);
      const table = await withSocketDir(x, [c.rudderBin, 'peers']);
      assert.equal(table.code, 0, table.stderr);
      for (const [pub, p] of want) assert.ok(table.stdout.split('\n').some((l) => l.startsWith(pub) && l.includes(p.endpoint) && l.includes(p.allowed) && / ago /.test(l)), `${x.name}: table row of ${pub}\n${table.stdout}`);

      const res = await fetchIn(x.ns, `http://${x.underlayIp}:${METRICS_PORT}/metrics`);
      assert.equal(res.status, 200, res.raw);
      const m = parseMetrics(res.body ?? '');
      assert.ok((m.get('rudder_wireguard_handshakes_total{kind="completed"}') ?? 0) > 0, `${x.name}: handshakes completed`);
      assert.ok(m.has('rudder_wireguard_handshakes_total{kind="sent"}'), `${x.name}: handshakes sent`);
      assert.ok(m.has('rudder_dataplane_drops_total{reason="wg_bad_mac"}'), `${x.name}: WireGuard drops by reason`);
      for (const [pub, p] of want) {
        const age = m.get(`rudder_wireguard_peer_handshake_age_seconds{public_key="${pub}",endpoint="${p.endpoint}"}`);
        assert.ok(age !== undefined && age >= 0 && age < RECENT_S, `${x.name}: handshake age of ${pub}: ${age}`);
        assert.ok((m.get(`rudder_wireguard_peer_bytes_total{public_key="${pub}",endpoint="${p.endpoint}",direction="rx"}`) ?? 0) > 0, `${x.name}: bytes from ${pub}`);
      }
    }
  });

  /** The data plane's tx_gso_refused counter of `x` (UDP GSO messages resent datagram by datagram), from its metrics endpoint. */
  const gsoRefused = async (x: Host): Promise<number> => {
    const res = await fetchIn(x.ns, `http://${x.underlayIp}:${METRICS_PORT}/metrics`);
    assert.equal(res.status, 200, res.raw);
    const v = parseMetrics(res.body ?? '').get('rudder_dataplane_other_total{name="tx_gso_refused"}');
    assert.ok(v !== undefined, `${x.name} exports tx_gso_refused`);
    return v;
  };

  it('a path MTU below the datagrams makes the kernel refuse UDP GSO: 64 MB of TCP still arrive sha256-identical, sent datagram by datagram', async () => {
    const [h1, h2] = [h(1), h(2)];
    const p1 = h1.pod;
    const p2 = h2.pod;
    assert.ok(p1 && p2, 'pods');
    const dir = fs.mkdtempSync(path.join(c.dir, 'gso-'));
    const src = path.join(dir, 'in');
    const dst = path.join(dir, 'out');
    fs.writeFileSync(src, crypto.randomBytes(64 << 20));
    const before = await gsoRefused(h1);
    // A route to h2 with an MTU below a full datagram (1420 + 60): a UDP GSO sendmsg to it fails
    // (EMSGSIZE), one datagram alone is fragmented (the socket does not set DF). Turning tx checksumming
    // off, the other classic refusal, no longer refuses on this kernel (6.18 checksums GSO in software).
    const route = [`${h2.underlayIp}/32`, 'dev', 'eth0', 'mtu', '1400'];
    await h1.ns.ip(['route', 'add', ...route]);
    try {
      const listener = await p2.ns.spawn(['socat', '-u', 'TCP-LISTEN:5003,reuseaddr', `OPEN:${dst},creat,trunc`], { logFile: path.join(dir, 'socat.log'), label: `socat listener in pod of ${h2.name}` });
      try {
        // A give-up: a fallback that lost the refused datagrams would leave TCP crawling on retransmissions.
        await p1.exec(['timeout', '120', 'socat', '-u', `FILE:${src}`, `TCP:${p2.ip}:5003,retry=200,interval=0.2`]);
        assert.deepEqual(await listener.exited, { code: 0, signal: null }, listener.logTail());
      } finally {
        await listener.stop(2_000);
      }
    } finally {
      await h1.ns.ip(['route', 'del', ...route]);
    }
    assert.equal(fs.statSync(dst).size, 64 << 20, 'received size');
    const digest = (f: string): string => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');
    assert.equal(digest(dst), digest(src), 'sha256 of what arrived equals what was sent');
    fs.rmSync(dir, { recursive: true, force: true });
    const after = await gsoRefused(h1);
    console.log(`# tx_gso_refused on ${h1.name} during the transfer: ${after - before}`);
    assert.ok(after > before, `${h1.name}'s refused GSO messages were resent one by one (tx_gso_refused ${before} → ${after})`);
  });

  it('a restarted daemon keeps its key, and its peers reconnect without anyone acting', async () => {
    const h2 = h(2);
    const before = fs.readFileSync(keyFileOf(h2));
    const pub = (await leaseOf(c, h2)).value['BackendData'];
    const pid = h2.rudder?.pid;
    await h2.stopRudder();
    assert.equal(fs.existsSync(path.join(h2.uapiDir, `${TUN}.sock`)), false, 'the status socket is removed at stop');
    const floor = fs.readFileSync(tai64nFile(keyFileOf(h2)), 'latin1');
    assert.match(floor, /^[0-9a-f]{24}\n$/, 'the TAI64N floor is saved at stop');
    await h2.startRudder();
    await h2.waitSubnetFile();
    assert.notEqual(h2.rudder?.pid, pid);
    assert.ok(fs.readFileSync(keyFileOf(h2)).equals(before), 'same key file');
    assert.deepEqual((await leaseOf(c, h2)).value['BackendData'], pub, 'same BackendData');
    // The peers still hold sessions with the old run's keys: traffic from them must bring a new handshake.
    await podReaches(c, h(1), h2);
    await podReaches(c, h(3), h2);
    await fullMesh(c, [h(1), h2, h(3)]);
  });

  it('key rotation (rudder wireguard rotate-key, SIGHUP): new 0600 key file, the lease republished, every pod reaches every other again', async () => {
    const [h1, h3] = [h(1), h(3)];
    const old1 = publicKeyIn(keyFileOf(h1));
    const { stdout } = await execFileP(c.rudderBin, ['wireguard', 'rotate-key', `-wireguard-key-file=${keyFileOf(h1)}`]);
    const new1 = stdout.trim();
    assert.notEqual(new1, old1);
    assert.equal(publicKeyIn(keyFileOf(h1)), new1, 'the command prints the key file\'s new public key');
    assert.equal(fs.statSync(keyFileOf(h1)).mode & 0o777, 0o600);

    const old3 = publicKeyIn(keyFileOf(h3));
    const pid = h3.rudder?.pid;
    assert.ok(pid !== undefined);
    process.kill(pid, 'SIGHUP');
    await eventually(c, `${h3.name} rotating its key on SIGHUP`, async () => publicKeyIn(keyFileOf(h3)) !== old3);
    assert.equal(fs.statSync(keyFileOf(h3)).mode & 0o777, 0o600);

    for (const [x, pub] of [[h1, new1], [h3, publicKeyIn(keyFileOf(h3))]] as const) {
      await eventually(c, `${x.name}'s lease publishing ${pub}`, async () => ((await leaseOf(c, x)).value['BackendData'] as { PublicKey?: string }).PublicKey === pub);
      assert.deepEqual((await leaseOf(c, x)).value['BackendData'], { PublicKey: pub, Port: 51820 });
    }
    assert.equal(h3.rudder?.pid, pid, 'SIGHUP does not stop the daemon');
    await fullMesh(c, [h1, h(2), h3]);
    // wg show names the key in use now (the status socket follows the rotation).
    const shown = await withSocketDir(h1, ['wg', 'show', TUN, 'public-key']);
    assert.equal(shown.stdout.trim(), new1, `wg show ${TUN} public-key on ${h1.name}: ${shown.stderr}`);
  });

  it('a removed lease removes its peer on every other host', async () => {
    const h3 = h(3);
    const l3 = await leaseOf(c, h3);
    const pub = (l3.value['BackendData'] as { PublicKey: string }).PublicKey;
    await h3.stopRudder();
    // No daemon: rudder peers says so, having read the network's backend from etcd.
    const none = await withSocketDir(h3, [c.rudderBin, 'peers', `-etcd-endpoint=${c.etcdEndpoints.join(',')}`, `-etcd-prefix=${c.etcdPrefix}`]);
    assert.equal(none.code, 1, none.stdout);
    assert.match(none.stderr, /no status socket \/var\/run\/wireguard\/rudder-wg\.sock: the daemon does not run on this host/);
    await c.etcdctl(['del', keyOf(c, l3.subnet)]);
    for (const v of [h(1), h(2)]) {
      await eventually(c, `${v.name} removing the peer of ${l3.subnet}`, async () =>
        fs
          .readFileSync(v.logFile, 'utf8')
          .split('\n')
          .some((line) => line.includes('wireguard peer removed') && line.includes(l3.subnet) && line.includes(pub)),
      );
    }
    await fullMesh(c, [h(1), h(2)]);
  });
});
