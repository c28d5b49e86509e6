/**
 * A host running the reference userspace WireGuard (Debian's wireguard-go,
 * configured with `wg`) in a network of Rudder hosts with
 * `{"Backend":{"Type":"wireguard"}}`: its lease is written by hand in
 * flannel's shape (`BackendType` "wireguard", `BackendData` with only the
 * `PublicKey`: the port is the network's `ListenPort`), its pod sits behind a
 * bridge like a Rudder host's. Proved with the real daemon (etcd, lease
 * watch, key file, data plane), without and with a PSK: pods reach each
 * other both ways, the handshake initiated by Rudder first, then — after
 * wireguard-go restarts with the same key — by wireguard-go (its own log
 * says which side sent the initiation). The data plane alone against
 * wireguard-go is test/e2e/wireguard-dataplane.test.ts.
 * Without a PSK, two more promises:
 *   - the endpoint is pinned to the lease: wireguard-go's transport
 *     datagrams, rewritten on the way out (nftables, stateless) to come from
 *     another address and port, are dropped by Rudder as unknown senders
 *     (counted on -metrics-addr; no echo gets through), Rudder keeps sending
 *     only to the lease's endpoint (a capture on its underlay), and
 *     `rudder peers` and `wg show` keep showing it; the same captured
 *     datagrams sent again from the lease's endpoint are delivered (they
 *     were genuine), and traffic goes on;
 *   - the TAI64N floor across a restart whose wall clock went back an hour
 *     (libfaketime on the restarted daemon only, CLOCK_MONOTONIC untouched):
 *     after Rudder's initiation was accepted, a restart without the floor
 *     file is refused by wireguard-go ("invalid initiation", no echo; the
 *     floor that run saved shows its data plane's clock an hour back), a
 *     restart with it initiates above the floor and pods reach each other.
 * Both were checked to fail against a data plane broken on purpose (an
 * endpoint that follows the sender; a floor ignored at open).
 * Waits have generous give-ups; nothing asserts how fast anything happened.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { UAPI_DIR_ENV, tai64nFile } from '../../src/backend/wireguard';
import { createCluster, parseSubnetEnv, run, type Cluster, type Host, type ManagedProcess, type PingResult } from '../../src/topology';

import { skipUnlessEtcd, skipUnlessRoot } from '../helpers/env';
import { fetchIn } from '../helpers/fetch-in-ns';
import { leaseOf, podReaches } from '../helpers/kernel-backends-net';
import { INJECT_PY } from '../helpers/packets';
import { parseMetrics } from '../helpers/prometheus';
import { waitUntil } from '../helpers/wait';

const haveWg = ['wireguard-go', 'wg'].every((b) => ['/usr/bin', '/usr/sbin', '/bin', '/sbin'].some((d) => fs.existsSync(path.join(d, b))));
const skip = skipUnlessRoot || skipUnlessEtcd || (!haveWg && 'needs wireguard-go and wg (Debian wireguard-go, wireguard-tools)');

const LISTEN_PORT = 51820;
const METRICS_PORT = 9108;
const TUN = 'rudder-wg';
/** Where wireguard-go's datagrams seem to come from while they "roam": an address of no lease, another port. */
const ROAM_IP = '198.18.1.2';
const ROAM_PORT = 40000;

/** libfaketime (Debian faketime), the multi-threaded variant: the daemon's clock set back for one run. */
const LIBFAKETIME = ['x86_64-linux-gnu', 'aarch64-linux-gnu', '.']
  .map((d) => path.join('/usr/lib', d, 'faketime', 'libfaketimeMT.so.1'))
  .find((f) => fs.existsSync(f));

/**
 * Captures UDP to or from port PORT on DEV (every frame, both directions)
 * until SIGTERM; prints "listening", then one JSON object: "flows" counts
 * datagrams per "src:sport>dst:dport type", "from" lists (hex) the
 * transport messages whose source is FROM_IP:FROM_PORT.
 *   argv: dev port from_ip from_port
 */
const CAPTURE = `
import json, signal, socket, sys, threading
dev, port, from_ip, from_port = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind((dev, 0))
s.settimeout(0.1)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
flows, frm = {}, []
print("listening", flush=True)
while not stop.is_set():
    try:
        f = s.recv(70000)
    except socket.timeout:
        continue
    ip = f[14:] if f[12:14] == b"\\x08\\x00" else b""
    if len(ip) < 28 or ip[9] != 17:
        continue
    udp = ip[(ip[0] & 15) * 4:]
    sport, dport = int.from_bytes(udp[0:2], "big"), int.from_bytes(udp[2:4], "big")
    if port not in (sport, dport) or len(udp) < 9:
        continue
    src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
    k = "%s:%d>%s:%d %d" % (src, sport, dst, dport, udp[8])
    flows[k] = flows.get(k, 0) + 1
    if src == from_ip and sport == from_port and udp[8] == 4:
        frm.append(udp[8:].hex())
print(json.dumps({"flows": flows, "from": frm}), flush=True)
`;

for (const [n, withPsk] of [false, true].entries()) {
  const label = withPsk ? 'with a PSK' : 'without a PSK';
  const octet = 60 + n;
  const network = `10.${octet}.0.0/16`;
  /** The wireguard-go host's subnet (its lease is written by hand). */
  const goSubnet = `10.${octet}.200.0/24`;

  describe(`wireguard backend beside a wireguard-go host (${label})`, { skip }, () => {
    let c: Cluster;
    let rh: Host; // runs rudder
    let gh: Host; // runs wireguard-go
    let ifname = '';
    let goLog = '';
    let go: ManagedProcess | null = null;
    let goPubKey = '';
    const psk = withPsk ? Buffer.from(Array.from({ length: 32 }, (_, i) => (i * 37 + 11) & 0xff)).toString('base64') : undefined;
    const wg = async (args: readonly string[]): Promise<string> => (await gh.exec(['wg', ...args])).stdout;

    async function startGo(): Promise<void> {
      fs.appendFileSync(goLog, `--- harness: starting wireguard-go ${ifname} at ${new Date().toISOString()}\n`);
      go = await gh.ns.spawn(['wireguard-go', '-f', ifname], { logFile: goLog, label: `wireguard-go ${gh.name}`, env: { ...process.env, LOG_LEVEL: 'verbose' } });
      await waitUntil(async () => (await gh.exec(['wg', 'show', ifname], { allowFailure: true })).code === 0 || undefined, {
        giveUpMs: c.giveUpMs,
        intervalMs: 100,
        what: `wireguard-go ${ifname} in ${gh.ns.name} (log ${goLog})`,
      });
      const rudderKey = (await leaseOf(c, rh)).value['BackendData'] as { PublicKey: string };
      const rudderSubnet = (await leaseOf(c, rh)).subnet;
      await wg(['set', ifname, 'private-key', path.join(gh.dir, 'wg.key'), 'listen-port', String(LISTEN_PORT)]);
      await wg(['set', ifname, 'peer', rudderKey.PublicKey, ...(psk !== undefined ? ['preshared-key', path.join(gh.dir, 'psk')] : []), 'allowed-ips', rudderSubnet, 'endpoint', `${rh.underlayIp}:${LISTEN_PORT}`]);
      await gh.ns.ip(['link', 'set', ifname, 'mtu', '1420', 'up']);
      await gh.ns.ip(['route', 'replace', network, 'dev', ifname]);
    }

    /** The lines of wireguard-go's log since `mark` (a byte offset). */
    const goLogSince = (mark: number): string => fs.readFileSync(goLog).subarray(mark).toString('utf8');

    before(async () => {
      c = await createCluster({ hosts: 2, underlayMtu: 1500 });
      rh = c.host(1);
      gh = c.host(2);
      rh.rudderArgs.push(`-wireguard-key-file=${path.join(rh.dir, 'wireguard.key')}`, `-metrics-addr=${rh.underlayIp}:${METRICS_PORT}`);
      await c.putConfig({ Network: network, Backend: { Type: 'wireguard', ...(psk !== undefined ? { PSK: psk } : {}) } });
      ifname = `wgg${c.tag.tag}`;
      goLog = path.join(gh.dir, 'wireguard-go.log');

      // The wireguard-go host: a key from `wg genkey`, a lease in flannel's shape, a pod behind a bridge.
      const priv = (await run(['wg', 'genkey'])).stdout.trim();
      const pub = (await run(['wg', 'pubkey'], { input: `${priv}\n` })).stdout.trim();
      fs.writeFileSync(path.join(gh.dir, 'wg.key'), `${priv}\n`, { mode: 0o600 });
      if (psk !== undefined) fs.writeFileSync(path.join(gh.dir, 'psk'), `${psk}\n`, { mode: 0o600 });
      goPubKey = pub;
      const lease = { PublicIP: gh.underlayIp, PublicIPv6: null, BackendType: 'wireguard', BackendData: { PublicKey: pub } };
      const put = await c.etcdctl(['put', `${c.etcdPrefix}/subnets/${goSubnet.replace('/', '-')}`, JSON.stringify(lease)]);
      assert.equal(put.code, 0, put.stderr);
      const [a, b, cc] = goSubnet.split('.') as [string, string, string];
      await gh.setupPod(parseSubnetEnv(`RUDDER_NETWORK=${network}\nRUDDER_SUBNET=${a}.${b}.${cc}.1/24\nRUDDER_MTU=1420\nRUDDER_IPMASQ=false\n`, 'the wireguard-go host'));

      await rh.up();
      await startGo();
    });

    after(async () => {
      await go?.stop();
      await c?.teardown();
    });

    it('Rudder initiates: pods reach each other both ways', async () => {
      const mark = fs.statSync(goLog).size;
      await podReaches(c, rh, gh);
      await podReaches(c, gh, rh);
      const log = goLogSince(mark);
      assert.match(log, /Received handshake initiation/, `wireguard-go answered Rudder's initiation (log ${goLog})`);
      const shake = (await wg(['show', ifname, 'latest-handshakes'])).trim().split(/\s+/);
      assert.ok(Number(shake[1]) > 0, `wireguard-go has a handshake with Rudder: ${shake.join(' ')}`);
      const transfer = (await wg(['show', ifname, 'transfer'])).trim().split(/\s+/);
      assert.ok(Number(transfer[1]) > 0 && Number(transfer[2]) > 0, `bytes both ways: ${transfer.join(' ')}`);
    });

    it('wireguard-go restarts with the same key and initiates: pods reach each other both ways', async () => {
      await go?.stop();
      const mark = fs.statSync(goLog).size;
      await startGo();
      // wireguard-go sends first: it has no session, so it initiates; Rudder answers as responder.
      await podReaches(c, gh, rh);
      await podReaches(c, rh, gh);
      const log = goLogSince(mark);
      assert.match(log, /Sending handshake initiation/, `wireguard-go initiated (log ${goLog})`);
      assert.match(log, /Received handshake response/, `Rudder answered (log ${goLog}; rudder log ${rh.logFile})`);
    });

    /** Runs `argv` on rh with its status socket directory where wg(8) and `rudder peers` look (/var/run/wireguard). */
    const withSocketDir = (argv: readonly string[]) =>
      rh.exec(['unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'mount --bind "$0" /run && exec "$@"', path.dirname(rh.uapiDir), ...argv], { allowFailure: true });
    const metrics = async (): Promise<Map<string, number>> => {
      const r = await fetchIn(rh.ns, `http://${rh.underlayIp}:${METRICS_PORT}/metrics`);
      assert.equal(r.status, 200, r.raw);
      return parseMetrics(r.body ?? '');
    };
    const goPub = (): string => goPubKey;
    /** wireguard-go's endpoint as Rudder shows it: `rudder peers -json` and `wg show` on rh's status socket. */
    const shownEndpoints = async (): Promise<string[]> => {
      const r = await withSocketDir([c.rudderBin, 'peers', '-json']);
      assert.equal(r.code, 0, `rudder peers: ${r.stderr}`);
      const peers = (JSON.parse(r.stdout) as { peers: Array<{ publicKey: string; endpoint: string }> }).peers;
      const wgs = await withSocketDir(['wg', 'show', TUN, 'endpoints']);
      assert.equal(wgs.code, 0, `wg show ${TUN} endpoints: ${wgs.stderr}`);
      const line = wgs.stdout.split('\n').find((l) => l.startsWith(goPub()));
      return [peers.find((p) => p.publicKey === goPub())?.endpoint ?? 'none', line?.split('\t')[1] ?? 'none'];
    };

    if (!withPsk) {
      it('the endpoint is pinned: wireguard-go\'s valid datagrams from another address and port are dropped and move nothing', async () => {
        await podReaches(c, gh, rh);
        await podReaches(c, rh, gh);
        const lease = `${gh.underlayIp}:${LISTEN_PORT}`;
        assert.deepEqual(await shownEndpoints(), [lease, lease], 'before: the lease\'s endpoint');
        const m0 = await metrics();
        const cap = await rh.ns.spawn(['python3', '-c', CAPTURE, 'eth0', String(LISTEN_PORT), ROAM_IP, String(ROAM_PORT)], { logFile: path.join(rh.dir, 'roam-capture.log'), label: 'capture on rh' });
        await waitUntil(() => fs.readFileSync(path.join(rh.dir, 'roam-capture.log'), 'utf8').includes('listening') || undefined, { giveUpMs: 15_000, intervalMs: 50, what: 'the capture on rh' });
        // wireguard-go's datagrams to Rudder leave from ROAM_IP:ROAM_PORT (rewritten statelessly on the way
        // out, so each is still a transport message sealed with the live session); what Rudder sends is untouched.
        await gh.ns.ip(['addr', 'add', `${ROAM_IP}/32`, 'dev', 'eth0']);
        await gh.exec(['nft', '-f', '-'], {
          input: `table ip rudder_roam {\n chain out {\n  type filter hook output priority 0;\n  ip daddr ${rh.underlayIp} udp sport ${LISTEN_PORT} ip saddr set ${ROAM_IP} udp sport set ${ROAM_PORT}\n }\n}\n`,
        });
        const pings: PingResult[] = [];
        try {
          assert.ok(gh.pod && rh.pod, 'pods');
          // gh's echo requests, then its replies to rh's: wireguard-go's data, one datagram at a time (no GSO
          // message of two, so each captured datagram can be sent again as it is).
          pings.push(await gh.pod.ping(rh.pod.ip, { count: 10, intervalS: 0.3, replyWaitS: 1 }));
          pings.push(await rh.pod.ping(gh.pod.ip, { count: 10, intervalS: 0.3, replyWaitS: 1 }));
        } finally {
          await gh.exec(['nft', 'delete', 'table', 'ip', 'rudder_roam'], { allowFailure: true });
          await gh.ns.ip(['addr', 'del', `${ROAM_IP}/32`, 'dev', 'eth0']);
        }
        const [pf, pt] = pings as [PingResult, PingResult];
        const during = await shownEndpoints();
        const m1 = await metrics();
        cap.signal('SIGTERM');
        await cap.exited;
        const out = fs.readFileSync(path.join(rh.dir, 'roam-capture.log'), 'utf8');
        const seen = JSON.parse(out.trim().split('\n').pop() ?? '{}') as { flows: Record<string, number>; from: string[] };
        const flows = Object.entries(seen.flows);
        const count = (re: RegExp): number => flows.filter(([k]) => re.test(k)).reduce((n, [, v]) => n + v, 0);
        const esc = (a: string): string => a.replace(/\./g, '\\.');
        const roamed = count(new RegExp(`^${esc(ROAM_IP)}:${ROAM_PORT}>${esc(rh.underlayIp)}:${LISTEN_PORT} 4$`));
        const rudderToLease = count(new RegExp(`^${esc(rh.underlayIp)}:${LISTEN_PORT}>${esc(gh.underlayIp)}:${LISTEN_PORT} `));
        const rudderElsewhere = count(new RegExp(`^${esc(rh.underlayIp)}:${LISTEN_PORT}>(?!${esc(gh.underlayIp)}:${LISTEN_PORT} )`));
        const unknownSender = (m: Map<string, number>): number => m.get('rudder_dataplane_drops_total{reason="unknown_sender"}') ?? 0;
        console.log(`# roam: ${roamed} transport datagrams from ${ROAM_IP}:${ROAM_PORT}, Rudder sent ${rudderToLease} to the lease's endpoint and ${rudderElsewhere} elsewhere; unknown_sender +${unknownSender(m1) - unknownSender(m0)}; echoes ${pf.received}/${pf.transmitted} and ${pt.received}/${pt.transmitted}`);
        assert.ok(roamed >= 20, `wireguard-go's transport datagrams came from ${ROAM_IP}:${ROAM_PORT}: ${JSON.stringify(seen.flows)}`);
        assert.ok(unknownSender(m1) - unknownSender(m0) >= roamed, `each was dropped as an unknown sender: ${unknownSender(m0)} → ${unknownSender(m1)}`);
        assert.equal(pf.received + pt.received, 0, `nothing from the other address was delivered (no echo replies): ${pf.output}\n${pt.output}`);
        assert.ok(rudderToLease >= 10, `Rudder kept sending to the lease's endpoint ${lease}: ${JSON.stringify(seen.flows)}`);
        assert.equal(rudderElsewhere, 0, `Rudder sent nothing anywhere else: ${JSON.stringify(seen.flows)}`);
        assert.deepEqual(during, [lease, lease], 'rudder peers and wg show: still the lease\'s endpoint');

        // The very datagrams dropped, sent again from the lease's endpoint: delivered (they were genuine).
        const data = seen.from.filter((h) => h.length > 32 * 2);
        const inj = await gh.exec(['python3', '-c', INJECT_PY, gh.underlayIp, String(LISTEN_PORT), rh.underlayIp, String(LISTEN_PORT)], { input: seen.from.join('\n') + '\n' });
        assert.equal(Number(inj.stdout.trim()), seen.from.length, inj.stdout);
        const rx = (m: Map<string, number>): number => m.get('rudder_dataplane_packets_total{direction="rx"}') ?? 0;
        const bad = (m: Map<string, number>): number => (m.get('rudder_dataplane_drops_total{reason="wg_bad_mac"}') ?? 0) + (m.get('rudder_dataplane_drops_total{reason="wg_replay"}') ?? 0);
        let m2 = m1;
        await waitUntil(
          async () => {
            m2 = await metrics();
            return rx(m2) - rx(m1) >= data.length || undefined;
          },
          { giveUpMs: 10_000, intervalMs: 200, what: `rh delivering the ${data.length} re-sent datagrams` },
        ).catch(() => undefined);
        console.log(`# roam: ${data.length} of the dropped data datagrams re-sent from ${lease}: rx +${rx(m2) - rx(m1)}`);
        assert.ok(data.length >= 10, `data datagrams among the dropped ones: ${data.length}`);
        assert.ok(rx(m2) - rx(m1) >= data.length, `re-sent from ${lease}, the ${data.length} dropped datagrams were delivered: rx ${rx(m1)} → ${rx(m2)}`);
        assert.equal(bad(m2), bad(m1), 'none of them failed the tag or the replay window');
        await podReaches(c, gh, rh);
        await podReaches(c, rh, gh);
        assert.deepEqual(await shownEndpoints(), [lease, lease], 'after: the lease\'s endpoint');
      });

      it('restarted with its wall clock an hour back (libfaketime): refused without the TAI64N floor, accepted with it', { skip: !LIBFAKETIME && 'needs libfaketime (Debian faketime)' }, async () => {
        const floorFile = tai64nFile(path.join(rh.dir, 'wireguard.key'));
        /** Seconds (Unix) of a TAI64N timestamp file: 24 hex digits, 2^62 + seconds then nanoseconds. */
        const floorSecs = (): number => Number(BigInt(`0x${fs.readFileSync(floorFile, 'latin1').slice(0, 16)}`) - (1n << 62n));
        /** Starts rh's daemon, under libfaketime an hour behind when `back` (CLOCK_MONOTONIC left alone: timers stay right). */
        const start = async (back: boolean): Promise<void> => {
          const stamp = rh.subnetFileStamp();
          const env = { ...c.rudderEnv, [UAPI_DIR_ENV]: rh.uapiDir, ...(back ? { LD_PRELOAD: LIBFAKETIME, FAKETIME: '-1h', FAKETIME_DONT_FAKE_MONOTONIC: '1' } : {}) };
          fs.appendFileSync(rh.logFile, `--- harness: starting rudder on ${rh.name}${back ? ' with its clock an hour back (libfaketime)' : ''}\n`);
          rh.rudder = await rh.ns.spawn(rh.rudderArgv(), { logFile: rh.logFile, label: `rudder ${rh.name}`, env });
          await rh.waitSubnetFile({ changedSince: stamp });
        };
        // wireguard-go must hold a recent timestamp of Rudder's: a restart with the floor makes Rudder initiate at once.
        await rh.stopRudder();
        let mark = fs.statSync(goLog).size;
        await start(false);
        await podReaches(c, rh, gh);
        // Last, an echo from wireguard-go answered by Rudder: no data of wireguard-go's waits for an answer,
        // so its own "new handshake after 15 s without reply" does not start a session during the next steps.
        await podReaches(c, gh, rh);
        assert.match(goLogSince(mark), /Received handshake initiation/, `wireguard-go took Rudder's initiation (log ${goLog})`);
        await rh.stopRudder();
        const floor = fs.readFileSync(floorFile);
        const accepted = floorSecs();
        assert.ok(Math.abs(accepted - Date.now() / 1000) < 120, `the floor saved at stop is the last initiation's time: ${accepted}`);

        // Floor lost, clock an hour back: wireguard-go takes the initiations for replays and stays silent.
        fs.rmSync(floorFile);
        mark = fs.statSync(goLog).size;
        await start(true);
        assert.ok(rh.pod && gh.pod, 'pods');
        const lost = await rh.pod.ping(gh.pod.ip, { count: 4, intervalS: 1, replyWaitS: 1 });
        await waitUntil(() => /Received invalid initiation message/.test(goLogSince(mark)) || undefined, { giveUpMs: 15_000, intervalMs: 200, what: `wireguard-go refusing Rudder's initiation (log ${goLog})` });
        assert.equal(lost.received, 0, `no echo without the floor: ${lost.output}`);
        assert.doesNotMatch(goLogSince(mark), /Received handshake initiation/);
        await rh.stopRudder();
        // What the data plane's clock said (its CLOCK_REALTIME, read through libfaketime): an hour back.
        const back = floorSecs();
        assert.ok(Math.abs(Date.now() / 1000 - 3600 - back) < 120, `the faked run's initiations were stamped an hour back: ${back} vs now ${Math.round(Date.now() / 1000)}`);

        // Floor kept, clock an hour back: the restarted daemon initiates above the floor and wireguard-go accepts.
        fs.writeFileSync(floorFile, floor, { mode: 0o600 });
        mark = fs.statSync(goLog).size;
        await start(true);
        await podReaches(c, rh, gh);
        await podReaches(c, gh, rh);
        const log = goLogSince(mark);
        assert.match(log, /Received handshake initiation/, `wireguard-go took the initiation (log ${goLog})`);
        assert.doesNotMatch(log, /Received invalid initiation message/);
        assert.doesNotMatch(log, /Sending handshake initiation/, 'the session is Rudder\'s initiation, not wireguard-go\'s');
        // The session's latest handshake as the faked daemon stamped it (wg show: Unix seconds), an hour back too.
        const dump = await withSocketDir(['wg', 'show', TUN, 'latest-handshakes']);
        const at = Number(dump.stdout.split('\n').find((l) => l.startsWith(goPub()))?.split('\t')[1]);
        assert.ok(Math.abs(Date.now() / 1000 - 3600 - at) < 120, `latest handshake ${at}, an hour back: ${dump.stdout}${dump.stderr}`);
      });
    }
  });
}
