/**
 * End-to-end proof of the data plane's WireGuard mode on a real kernel.
 *
 * Two Rudder hosts: network namespaces joined by a veth underlay
 * (198.18.0.0/24), each running dataplane-child with a WireGuard-mode data
 * plane (TUN rudder-wg, two queues, offloads on; the TUN configured with
 * iproute2 as the udp backend does). Proved: pings both ways (a handshake,
 * then transport both ways), peer status; a 100 MB TCP transfer arrives
 * checksum-identical; a capture of the underlay (AF_PACKET on the receiver's
 * veth) holds only WireGuard messages and never a ping's known payload;
 * forged datagrams (random bytes with the peer's source address and port),
 * replayed captured datagrams, tampered ones and a packet whose inner source
 * is outside the sender's allowed IPs are never delivered, each counted
 * under its reason, and traffic goes on.
 *
 * Interop: one Rudder host and the real wireguard-go (configured with `wg`),
 * without and with a preshared key: pings both ways, the handshake
 * initiated once from each side; after Rudder swaps its private key
 * (setPrivateKey) the old key is refused and the new one works.
 *
 * Under load: wg_probe (native/wireguard/test/wg_probe.c) floods a Rudder
 * host with initiations; Rudder answers with cookie replies the probe
 * decrypts, then accepts its mac2-carrying initiations while still under
 * load, and echo requests get their replies.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import { generatePrivateKey, rawPublicKeyOf } from '../../src/backend/wireguard/key';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { WireGuardCounters, WireGuardPeer } from '../../src/dataplane/native';
import type { DataPlaneOptions } from '../../src/dataplane/types';
import { DataPlaneChild, ip4, must, run, Sandbox, type RunResult } from '../helpers/dataplane-net';
import { SANITIZE, compileWg, hasGcc, hasLibcrypto } from '../helpers/wireguard-c';
import { INJECT_PY } from '../helpers/packets';
import { tailFile } from '../../src/topology';

const PORT = 8472;
const WG_GO_PORT = 51820;
const NETWORK = '10.42.0.0/16';
const H1 = { underlay: '198.18.0.1', subnet: '10.42.1.0' };
const H2 = { underlay: '198.18.0.2', subnet: '10.42.2.0' };
const H3 = { underlay: '198.18.0.3', subnet: '10.42.3.0' };
type Host = typeof H1;
const PY = '/usr/bin/python3';

const isRoot = process.getuid?.() === 0;
const haveTools = spawnSync('sh', ['-c', `command -v socat && test -x ${PY}`], { stdio: 'ignore' }).status === 0;
const haveWg = spawnSync('sh', ['-c', 'command -v wireguard-go && command -v wg'], { stdio: 'ignore' }).status === 0;
const skip = !isRoot ? 'needs root (network namespaces, TUN)' : !haveTools ? 'needs socat and python3' : false;

interface Keys {
  priv: Buffer;
  pub: Buffer;
}

function x25519(): Keys {
  const priv = generatePrivateKey();
  return { priv, pub: rawPublicKeyOf(priv) };
}

function optsFor(h: Host): DataPlaneOptions {
  return {
    tunName: 'rudder-wg',
    bindAddress: ip4(h.underlay),
    port: PORT,
    localSubnet: { ip: ip4(h.subnet), prefix: 24 },
    icmpSource: ip4(h.subnet),
    mtu: 1420,
    queues: 2,
  };
}

function peerOf(keys: Keys, h: Host, port = PORT): WireGuardPeer & { publicKey: Buffer } {
  return { publicKey: keys.pub, endpoint: { ip: ip4(h.underlay), port }, allowedIps: [{ ip: ip4(h.subnet), prefix: 24 }] };
}

/** setPeers over JSON: keys as hex. */
const wirePeers = (peers: WireGuardPeer[]): unknown[] => peers.map((p) => ({ ...p, publicKey: p.publicKey.toString('hex') }));

function received(r: RunResult): number {
  const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
  assert.ok(m, `no ping summary in: ${r.stdout}${r.stderr}`);
  return Number(m[2]);
}

const ping = (ns: string, ...args: string[]): Promise<RunResult> => run('ip', ['netns', 'exec', ns, 'ping', ...args]);

async function configureTun(ns: string, ifname: string, h: Host): Promise<void> {
  await must('ip', ['-n', ns, 'link', 'set', ifname, 'mtu', '1420', 'up']);
  await must('ip', ['-n', ns, 'addr', 'add', `${h.subnet}/32`, 'dev', ifname]);
  await must('ip', ['-n', ns, 'route', 'add', NETWORK, 'dev', ifname]);
}

/**
 * Captures UDP datagrams to `port` arriving on `dev` (AF_PACKET, IPv4 in
 * Ethernet) for `seconds`; prints each UDP payload as one hex line.
 */
const SNIFF = `
import socket, sys, time
dev, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind((dev, 0))
s.settimeout(0.1)
print("listening", flush=True)
end = time.time() + secs
while time.time() < end:
    try:
        f = s.recv(70000)
    except socket.timeout:
        continue
    ip = f[14:]
    if len(ip) < 28 or ip[9] != 17:
        continue
    ihl = (ip[0] & 15) * 4
    udp = ip[ihl:]
    if int.from_bytes(udp[2:4], "big") != port:
        continue
    print(udp[8:].hex(), flush=True)
`;

/** Runs `python3 -c code args` in ns, with `input` on stdin. */
function python(ns: string, code: string, args: string[], input = ''): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const p = spawn('ip', ['netns', 'exec', ns, PY, '-c', code, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.once('error', reject);
    p.once('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    p.stdin.end(input);
  });
}

/** Starts a capture and resolves once it listens; `done` resolves with the captured payloads. */
async function sniff(ns: string, dev: string, port: number, seconds: number): Promise<{ done: Promise<Buffer[]> }> {
  const p = spawn('ip', ['netns', 'exec', ns, PY, '-c', SNIFF, dev, String(port), String(seconds)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  let listening!: () => void;
  const ready = new Promise<void>((r) => (listening = r));
  p.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    if (out.includes('listening')) listening();
  });
  const done = new Promise<Buffer[]>((resolve) =>
    p.once('exit', () =>
      resolve(
        out
          .split('\n')
          .filter((l) => l && l !== 'listening')
          .map((l) => Buffer.from(l, 'hex')),
      ),
    ),
  );
  await ready;
  return { done };
}

describe('WireGuard data plane between two namespaced Rudder hosts', { skip }, () => {
  let sb: Sandbox;
  let ns1 = '';
  let ns2 = '';
  let h1: DataPlaneChild;
  let h2: DataPlaneChild;
  let dir = '';
  const k1 = x25519();
  const k2 = x25519();
  let captured: Buffer[] = [];
  let tso1 = false;

  const counters = (c: DataPlaneChild): Promise<WireGuardCounters> => c.request<WireGuardCounters>('counters', { key: 'main' });
  const inject = (lines: Buffer[]): Promise<RunResult> =>
    python(ns1, INJECT_PY, [H1.underlay, String(PORT), H2.underlay, String(PORT)], lines.map((b) => b.toString('hex')).join('\n') + '\n');

  before(async () => {
    sb = new Sandbox();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), `rudder-wgdp-${sb.tag}-`));
    ns1 = await sb.netns('w1');
    ns2 = await sb.netns('w2');
    await must('ip', ['-n', ns1, 'link', 'add', 'v1', 'type', 'veth', 'peer', 'name', 'v2', 'netns', ns2]);
    await must('ip', ['-n', ns1, 'addr', 'add', `${H1.underlay}/24`, 'dev', 'v1']);
    await must('ip', ['-n', ns2, 'addr', 'add', `${H2.underlay}/24`, 'dev', 'v2']);
    await must('ip', ['-n', ns1, 'link', 'set', 'v1', 'up']);
    await must('ip', ['-n', ns2, 'link', 'set', 'v2', 'up']);
    h1 = await DataPlaneChild.start(sb, ns1);
    h2 = await DataPlaneChild.start(sb, ns2);
    for (const [c, ns, h, k] of [
      [h1, ns1, H1, k1],
      [h2, ns2, H2, k2],
    ] as const) {
      const r = await c.request<{ ifname: string; offloads: { tso: boolean } }>('openWg', {
        key: 'main',
        opts: optsFor(h),
        wg: { privateKey: k.priv.toString('hex') },
      });
      assert.equal(r.ifname, 'rudder-wg');
      if (c === h1) tso1 = r.offloads.tso;
      await configureTun(ns, 'rudder-wg', h);
    }
    await h1.request('setPeers', { key: 'main', peers: wirePeers([peerOf(k2, H2)]) });
    await h2.request('setPeers', { key: 'main', peers: wirePeers([peerOf(k1, H1)]) });
  });

  after(() => {
    sb?.cleanupSync();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('carries pings both ways after a handshake; peer status shows it', async () => {
    const r1 = await ping(ns1, '-c', '3', '-i', '0.2', '-W', '5', H2.subnet);
    assert.equal(received(r1), 3, r1.stdout + r1.stderr);
    const r2 = await ping(ns2, '-c', '3', '-i', '0.2', '-W', '5', H1.subnet);
    assert.equal(received(r2), 3, r2.stdout + r2.stderr);
    const c1 = await counters(h1);
    const c2 = await counters(h2);
    assert.ok(c1.wgHandshakesSent >= 1 && c1.wgHandshakesCompleted >= 1, JSON.stringify(c1));
    assert.ok(c2.wgHandshakesReceived >= 1 && c2.wgHandshakesCompleted >= 1, JSON.stringify(c2));
    assert.ok(c1.rxPackets >= 3 && c2.rxPackets >= 3);
    const peers = await h1.request<{ publicKey: string; endpoint: { ip: number; port: number }; allowedIps: unknown[]; latestHandshakeMs: number; rxBytes: number; txBytes: number }[]>('peers', { key: 'main' });
    assert.equal(peers.length, 1);
    const p = peers[0];
    assert.ok(p);
    assert.equal(p.publicKey, k2.pub.toString('hex'));
    assert.deepEqual(p.endpoint, { ip: ip4(H2.underlay), port: PORT });
    assert.deepEqual(p.allowedIps, [{ ip: ip4(H2.subnet), prefix: 24 }]);
    assert.ok(p.latestHandshakeMs > Date.now() - 60_000 && p.latestHandshakeMs <= Date.now() + 1000, String(p.latestHandshakeMs));
    assert.ok(p.rxBytes > 0 && p.txBytes > 0);
    const tai = await h1.request<string>('lastTai64n', { key: 'main' });
    assert.equal(tai.length, 24);
    assert.notEqual(tai, '0'.repeat(24));
  });

  it('moves 100 MB of TCP checksum-identical', async () => {
    const src = path.join(dir, 'in.bin');
    const dst = path.join(dir, 'out.bin');
    await must('sh', ['-c', `head -c 100M /dev/urandom > ${src}`]);
    const listener = spawn('ip', ['netns', 'exec', ns2, 'socat', '-u', `TCP-LISTEN:5001,bind=${H2.subnet},reuseaddr`, `OPEN:${dst},creat,trunc`], {
      stdio: 'ignore',
    });
    sb.track(listener);
    const exited = new Promise<number | null>((r) => listener.once('exit', (c) => r(c)));
    const send = await run('ip', ['netns', 'exec', ns1, 'socat', '-u', `OPEN:${src}`, `TCP:${H2.subnet}:5001,retry=50,interval=0.1`]);
    assert.equal(send.code, 0, send.stderr);
    assert.equal(await exited, 0);
    const sum = (f: string): string => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');
    assert.equal(fs.statSync(dst).size, 100 * 1024 * 1024);
    assert.equal(sum(dst), sum(src));
    // With TUN TSO the sender sealed segments of super-packets (headers and payload in two pieces).
    if (tso1) assert.ok((await counters(h1)).txGsoPackets > 0, 'super-packets were segmented and sealed');
    fs.rmSync(src);
    fs.rmSync(dst);
  });

  it('shows the underlay only WireGuard messages, never a ping payload', async () => {
    const pattern = 'c0ffee11c0ffee22c0ffee33c0ffee44';
    const cap = await sniff(ns2, 'v2', PORT, 2.5);
    const r = await ping(ns1, '-c', '5', '-i', '0.2', '-W', '5', '-p', pattern, H2.subnet);
    assert.equal(received(r), 5, r.stdout + r.stderr);
    captured = await cap.done;
    const data = captured.filter((b) => b[0] === 4 && b.length > 32);
    assert.ok(data.length >= 5, `captured ${captured.length} datagrams, ${data.length} transport data`);
    for (const b of captured) {
      assert.ok(b[0] !== undefined && b[0] >= 1 && b[0] <= 4 && b.readUInt32LE(0) === b[0], `not a WireGuard message: ${b.toString('hex')}`);
      assert.equal(b.toString('hex').includes(pattern.slice(0, 16)), false, 'ping payload in clear on the underlay');
    }
    captured = data;
  });

  it('never delivers forged, replayed or tampered datagrams; counts each by reason; traffic goes on', async () => {
    assert.ok(captured.length >= 5);
    const before = await counters(h2);
    // Forged: random bytes as type-4 messages with random receiver indices.
    const forged = Array.from({ length: 20 }, () => {
      const b = crypto.randomBytes(96);
      b.writeUInt32LE(4, 0);
      return b;
    });
    // Forged with a live receiver index: the tag check refuses them.
    const liveIndex = captured[0]?.readUInt32LE(4) ?? 0;
    const forgedLive = Array.from({ length: 10 }, () => {
      const b = crypto.randomBytes(96);
      b.writeUInt32LE(4, 0);
      b.writeUInt32LE(liveIndex, 4);
      return b;
    });
    // Tampered: a captured message with one ciphertext bit flipped and a fresh counter.
    const tampered = captured.slice(0, 5).map((c, i) => {
      const b = Buffer.from(c);
      b.writeBigUInt64LE(1n << 40n + BigInt(i), 8);
      b[20] = (b[20] ?? 0) ^ 1;
      return b;
    });
    const replayed = captured.slice(0, 5);
    for (const batch of [forged, forgedLive, tampered, replayed]) {
      const r = await inject(batch);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), String(batch.length));
    }
    let after = before;
    const end = Date.now() + 10_000;
    while (Date.now() < end) {
      after = await counters(h2);
      if (after.wgDropReplay - before.wgDropReplay >= 5 && after.wgDropBadMac - before.wgDropBadMac >= 15) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(after.rxPackets, before.rxPackets, 'nothing forged reached the TUN');
    assert.equal(after.wgDropUnknownIndex - before.wgDropUnknownIndex, 20);
    assert.equal(after.wgDropBadMac - before.wgDropBadMac, 15);
    assert.equal(after.wgDropReplay - before.wgDropReplay, 5);

    // A packet whose inner source is not in the sender's allowed IPs: sealed by h1, refused by h2.
    await must('ip', ['-n', ns1, 'addr', 'add', '10.42.7.1/32', 'dev', 'rudder-wg']);
    const b2 = await counters(h2);
    const r = await ping(ns1, '-c', '2', '-i', '0.2', '-W', '1', '-I', '10.42.7.1', H2.subnet);
    assert.equal(received(r), 0);
    const a2 = await counters(h2);
    assert.equal(a2.wgDropAllowedIps - b2.wgDropAllowedIps, 2);
    assert.equal(a2.rxPackets, b2.rxPackets);

    const ok = await ping(ns1, '-c', '3', '-i', '0.2', '-W', '5', H2.subnet);
    assert.equal(received(ok), 3, 'traffic goes on');
  });

  it('stops a removed peer: setPeers([]) leaves no route to it', async () => {
    await h1.request('setPeers', { key: 'main', peers: [] });
    assert.deepEqual(await h1.request('peers', { key: 'main' }), []);
    const r = await ping(ns1, '-c', '1', '-W', '1', H2.subnet);
    assert.equal(received(r), 0);
    await h1.request('setPeers', { key: 'main', peers: wirePeers([peerOf(k2, H2)]) });
    const ok = await ping(ns1, '-c', '3', '-i', '0.3', '-W', '5', H2.subnet);
    assert.ok(received(ok) >= 2, 'a new session after the peer came back');
  });

  it('refuses bad peers with E_DATAPLANE naming the value; setRoutes is refused in WireGuard mode', async () => {
    const bad = { ...peerOf(k2, H2), allowedIps: [{ ip: ip4(H2.subnet), prefix: 33 }] };
    await assert.rejects(h1.request('setPeers', { key: 'main', peers: wirePeers([bad]) }), (e: unknown) => {
      const err = e as { code?: string; message?: string };
      return err.code === 'E_DATAPLANE' && /allowedIps\[0\]\.prefix must be an integer 0\.\.32, got 33/.test(err.message ?? '');
    });
    const twice = wirePeers([peerOf(k2, H2), peerOf(k2, H1)]);
    await assert.rejects(h1.request('setPeers', { key: 'main', peers: twice }), /appears twice/);
    await assert.rejects(h1.request('setRoutes', { key: 'main', routes: [] }), /takes setPeers, not setRoutes/);
    const ok = await ping(ns1, '-c', '1', '-W', '5', H2.subnet);
    assert.equal(received(ok), 1, 'the peer set in force is untouched');
  });
});

/**
 * Starts wireguard-go as `ifname` in `ns` and waits for its UAPI socket
 * (/var/run/wireguard/<ifname>.sock), which is what `wg` talks to. Without
 * that socket `wg` asks the kernel's WireGuard instead, absent here, and
 * says "Protocol not supported": that message only means "no wireguard-go
 * socket (yet)". wireguard-go logs to `logFile`. Once, beside another e2e
 * on a loaded machine, it never served its socket and its output was not
 * kept; so if it exits before serving it, the log says so and it is started
 * once more; a second exit, or a running process that never serves the
 * socket within the generous give-up, fails with its log.
 */
async function startWireguardGo(sb: Sandbox, ns: string, ifname: string, logFile: string): Promise<void> {
  const sock = `/var/run/wireguard/${ifname}.sock`;
  for (let attempt = 1; ; attempt++) {
    fs.appendFileSync(logFile, `--- test: starting wireguard-go ${ifname} in ${ns} (attempt ${attempt}) at ${new Date().toISOString()}\n`);
    const out = fs.openSync(logFile, 'a');
    const go = spawn('ip', ['netns', 'exec', ns, 'wireguard-go', '-f', ifname], { stdio: ['ignore', out, out], env: { ...process.env, LOG_LEVEL: 'verbose' } });
    fs.closeSync(out);
    sb.track(go);
    let exited: string | undefined;
    go.once('exit', (code, signal) => (exited = code !== null ? `exit code ${code}` : `signal ${signal ?? '?'}`));
    const end = Date.now() + 60_000;
    for (;;) {
      const r = await run('ip', ['netns', 'exec', ns, 'wg', 'show', ifname]);
      if (r.code === 0) return;
      if (exited !== undefined) break;
      if (Date.now() > end) assert.fail(`wireguard-go ${ifname} runs but serves no ${sock} (wg: ${r.stderr.trim()}); its log ${logFile}:\n${tailFile(logFile)}`);
      await new Promise((r2) => setTimeout(r2, 100));
    }
    if (attempt >= 2) assert.fail(`wireguard-go ${ifname} exited twice before serving ${sock} (${exited}); its log ${logFile}:\n${tailFile(logFile)}`);
    console.error(`wireguard-go ${ifname} exited before serving ${sock} (${exited}); starting it once more. Its log ${logFile}:\n${tailFile(logFile)}`);
  }
}

describe('WireGuard interop: a Rudder data plane and the real wireguard-go', { skip: skip || (!haveWg && 'needs wireguard-go and wg') }, () => {
  let sb: Sandbox;
  let nsR = '';
  let nsG = '';
  let rh: DataPlaneChild;
  let dir = '';
  let ifname = '';
  const kr = x25519();
  const kg = x25519();
  const psk = crypto.randomBytes(32);

  const wg = (...args: string[]): Promise<string> => must('ip', ['netns', 'exec', nsG, 'wg', ...args]);
  const counters = (): Promise<WireGuardCounters> => rh.request<WireGuardCounters>('counters', { key: 'main' });

  /** (Re)opens Rudder's data plane (a PSK is set at open) with wireguard-go as its one peer, and resets wireguard-go's peer. */
  async function fresh(withPsk: boolean): Promise<void> {
    await rh.request('stop', { key: 'main' }).catch(() => undefined);
    await rh.request('openWg', {
      key: 'main',
      opts: optsFor(H1),
      wg: { privateKey: kr.priv.toString('hex'), ...(withPsk ? { psk: psk.toString('hex') } : {}) },
    });
    await configureTun(nsR, 'rudder-wg', H1);
    await rh.request('setPeers', { key: 'main', peers: wirePeers([peerOf(kg, H3, WG_GO_PORT)]) });
    const pub = kr.pub.toString('base64');
    await wg('set', ifname, 'peer', pub, 'remove');
    const pskArgs = withPsk ? ['preshared-key', path.join(dir, 'psk')] : [];
    await wg('set', ifname, 'peer', pub, ...pskArgs, 'allowed-ips', `${H1.subnet}/24`, 'endpoint', `${H1.underlay}:${PORT}`);
  }

  before(async () => {
    sb = new Sandbox();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), `rudder-wgdp-${sb.tag}-`));
    nsR = await sb.netns('wr');
    nsG = await sb.netns('wg');
    await must('ip', ['-n', nsR, 'link', 'add', 'v1', 'type', 'veth', 'peer', 'name', 'v2', 'netns', nsG]);
    await must('ip', ['-n', nsR, 'addr', 'add', `${H1.underlay}/24`, 'dev', 'v1']);
    await must('ip', ['-n', nsG, 'addr', 'add', `${H3.underlay}/24`, 'dev', 'v2']);
    await must('ip', ['-n', nsR, 'link', 'set', 'v1', 'up']);
    await must('ip', ['-n', nsG, 'link', 'set', 'v2', 'up']);
    fs.writeFileSync(path.join(dir, 'wg.key'), `${kg.priv.toString('base64')}\n`, { mode: 0o600 });
    fs.writeFileSync(path.join(dir, 'psk'), `${psk.toString('base64')}\n`, { mode: 0o600 });
    // The UAPI socket (/var/run/wireguard/<ifname>.sock) is not per namespace: the tag keeps it unique.
    ifname = `wgr${sb.tag}`;
    await startWireguardGo(sb, nsG, ifname, path.join(dir, 'wireguard-go.log'));
    await wg('set', ifname, 'private-key', path.join(dir, 'wg.key'), 'listen-port', String(WG_GO_PORT));
    await must('ip', ['-n', nsG, 'link', 'set', ifname, 'mtu', '1420', 'up']);
    await must('ip', ['-n', nsG, 'addr', 'add', `${H3.subnet}/32`, 'dev', ifname]);
    await must('ip', ['-n', nsG, 'route', 'add', NETWORK, 'dev', ifname]);
    rh = await DataPlaneChild.start(sb, nsR);
  });

  after(() => {
    sb?.cleanupSync();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    // wireguard-go ended by SIGKILL leaves its UAPI socket behind.
    if (ifname) fs.rmSync(`/var/run/wireguard/${ifname}.sock`, { force: true });
  });

  for (const withPsk of [false, true]) {
    const label = withPsk ? 'with a preshared key' : 'without a preshared key';

    it(`Rudder initiates; pings both ways (${label})`, async () => {
      await fresh(withPsk);
      const r = await ping(nsR, '-c', '3', '-i', '0.3', '-W', '5', H3.subnet);
      assert.equal(received(r), 3, r.stdout + r.stderr);
      const back = await ping(nsG, '-c', '3', '-i', '0.3', '-W', '5', H1.subnet);
      assert.equal(received(back), 3, back.stdout + back.stderr);
      const c = await counters();
      assert.ok(c.wgHandshakesSent >= 1 && c.wgHandshakesCompleted >= 1, JSON.stringify(c));
      assert.equal(c.wgHandshakesReceived, 0, 'Rudder was the initiator');
    });

    it(`wireguard-go initiates; pings both ways (${label})`, async () => {
      await fresh(withPsk);
      const r = await ping(nsG, '-c', '3', '-i', '0.3', '-W', '5', H1.subnet);
      assert.equal(received(r), 3, r.stdout + r.stderr);
      const back = await ping(nsR, '-c', '3', '-i', '0.3', '-W', '5', H3.subnet);
      assert.equal(received(back), 3, back.stdout + back.stderr);
      const c = await counters();
      assert.ok(c.wgHandshakesReceived >= 1 && c.wgHandshakesCompleted >= 1, JSON.stringify(c));
      assert.equal(c.wgHandshakesSent, 0, 'wireguard-go was the initiator');
    });
  }

  it('a key swap (setPrivateKey) ends the session; wireguard-go with the old key is refused, with the new one pings go both ways', async () => {
    await fresh(false);
    const r = await ping(nsR, '-c', '2', '-i', '0.3', '-W', '5', H3.subnet);
    assert.equal(received(r), 2, r.stdout + r.stderr);
    const kr2 = x25519();
    await rh.request('setPrivateKey', { key: 'main', hex: kr2.priv.toString('hex') });
    const old = await ping(nsG, '-c', '2', '-i', '0.3', '-W', '1', H1.subnet);
    assert.equal(received(old), 0, 'the old session and key are gone');
    await wg('set', ifname, 'peer', kr.pub.toString('base64'), 'remove');
    await wg('set', ifname, 'peer', kr2.pub.toString('base64'), 'allowed-ips', `${H1.subnet}/24`, 'endpoint', `${H1.underlay}:${PORT}`);
    const there = await ping(nsG, '-c', '3', '-i', '0.3', '-W', '5', H1.subnet);
    assert.equal(received(there), 3, there.stdout + there.stderr);
    const back = await ping(nsR, '-c', '3', '-i', '0.3', '-W', '5', H3.subnet);
    assert.equal(received(back), 3, back.stdout + back.stderr);
    await wg('set', ifname, 'peer', kr2.pub.toString('base64'), 'remove');
  });
});

describe('WireGuard data plane under a flood of initiations: cookie replies, then mac2', {
  skip: skip || (!hasGcc ? 'gcc not installed' : !hasLibcrypto ? 'libssl-dev not installed' : false),
}, () => {
  const PROBE = { underlay: '198.18.0.9', subnet: '10.42.9.0', overlay: '10.42.9.1' };
  const PROBE_PORT = 51009;
  let sb: Sandbox;
  let nsR = '';
  let nsP = '';
  let rh: DataPlaneChild;
  let dir = '';
  let probe = '';
  const kr = x25519();
  const kp = x25519();

  before(async () => {
    sb = new Sandbox();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), `rudder-wgdp-${sb.tag}-`));
    probe = path.join(dir, 'wg_probe');
    compileWg(probe, 'wg_probe.c', SANITIZE);
    nsR = await sb.netns('fr');
    nsP = await sb.netns('fp');
    await must('ip', ['-n', nsR, 'link', 'add', 'v1', 'type', 'veth', 'peer', 'name', 'v2', 'netns', nsP]);
    await must('ip', ['-n', nsR, 'addr', 'add', `${H1.underlay}/24`, 'dev', 'v1']);
    await must('ip', ['-n', nsP, 'addr', 'add', `${PROBE.underlay}/24`, 'dev', 'v2']);
    await must('ip', ['-n', nsR, 'link', 'set', 'v1', 'up']);
    await must('ip', ['-n', nsP, 'link', 'set', 'v2', 'up']);
    rh = await DataPlaneChild.start(sb, nsR);
    await rh.request('openWg', { key: 'main', opts: optsFor(H1), wg: { privateKey: kr.priv.toString('hex') } });
    await configureTun(nsR, 'rudder-wg', H1);
    await rh.request('setPeers', { key: 'main', peers: wirePeers([peerOf(kp, PROBE, PROBE_PORT)]) });
  });

  after(() => {
    sb?.cleanupSync();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('answers the flood with cookie replies, accepts mac2 under load, and keeps forwarding', async () => {
    const argv = [
      probe, 'initiate', String(PROBE_PORT), H1.underlay, String(PORT), kp.priv.toString('hex'), kr.pub.toString('hex'), '-',
      PROBE.overlay, H1.subnet, '2', '3000', '40',
    ];
    const r = await run('ip', ['netns', 'exec', nsP, ...argv]);
    const out = r.stdout + r.stderr;
    assert.equal(r.code, 0, out);
    assert.match(out, /cookie reply decrypted and taken/);
    assert.match(out, /round 2 with mac2: 0 cookie replies, [1-9]\d* responses/);
    assert.match(out, /PROBE OK initiate replies=2/);
    const c = await rh.request<WireGuardCounters>('counters', { key: 'main' });
    assert.ok(c.wgCookiesSent > 0 && c.wgDropCookieRequired >= c.wgCookiesSent, JSON.stringify(c));
    assert.ok(c.wgHandshakesReceived >= 1 && c.wgHandshakesCompleted >= 1, JSON.stringify(c));
    assert.ok(c.wgDropReplay > 0, 'copies of one initiation are refused as replays');
  });
});
