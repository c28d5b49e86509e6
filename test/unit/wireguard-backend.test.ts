/**
 * The wireguard backend's own logic: the key file (create, reuse, bad files
 * refused by name, permissions), the TAI64N floor file, the config keys,
 * the peer table → setPeers payload, and start/apply/stop against a fake
 * data plane and a fake netlink facade. The real thing end to end is
 * test/e2e/wireguard-backend.test.ts.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DEFAULT_WIREGUARD_PORT, configToJson, validateConfig } from '../../src/config';
import { isRudderError } from '../../src/errors';
import { formatCidr, parseCidr, parseIp } from '../../src/ip/ipv4';
import { formatCidr6, parseCidr6 } from '../../src/ip/ipv6';
import { memoryLogger } from '../../src/log';
import type { DataPlaneOffloads, DataPlaneOptions } from '../../src/dataplane/types';
import type { WireGuardCounters, WireGuardDataPlane, WireGuardOptions, WireGuardPeer } from '../../src/dataplane/native';
import type { Lease, LeaseEvent } from '../../src/subnet/lease';
import type { BackendContext } from '../../src/backend/types';
import { FALLBACK_METRIC } from '../../src/backend/udp';
import { createBackend } from '../../src/backend';
import {
  WireGuardPeerTable,
  createWireGuardBackend,
  loadOrCreateKey,
  parseBackendData,
  publicKeyOf,
  generatePrivateKey,
  readTai64nFloor,
  tai64nFile,
  writeTai64nFloor,
  UAPI_DIR_ENV,
  controlSocketOf,
  requestRotate,
} from '../../src/backend/wireguard';
import { FakeNetlink } from '../helpers/netlink-fake';

const ip = (s: string): number => parseIp(s) as number;
const cidr = (s: string) => parseCidr(s, true) as { ip: number; prefix: number };
const signal = (): AbortSignal => new AbortController().signal;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rudder-wg-unit-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const fresh = (): string => path.join(tmp, `d${++n}`, 'sub', 'wireguard.key');
/** Each backend its own status socket directory (never /var/run/wireguard). */
const uapiEnv = (): Record<string, string> => ({ [UAPI_DIR_ENV]: path.join(tmp, `u${++n}`) });

function keypair(): { priv: Buffer; pub: string } {
  const priv = generatePrivateKey();
  return { priv, pub: publicKeyOf(priv) };
}

function lease(subnet: string, publicIP: string, data: Record<string, unknown>, backendType = 'wireguard'): Lease {
  return { subnet: cidr(subnet), publicIP: ip(publicIP), backendType, backendData: data, expiresAt: null };
}
const added = (l: Lease): LeaseEvent => ({ type: 'added', lease: l });
const removed = (l: Lease): LeaseEvent => ({ type: 'removed', lease: l });

describe('wireguard key file', () => {
  it('is created on first start: base64 + newline, mode 0600, new directories 0700; the public key matches', () => {
    const file = fresh();
    const k = loadOrCreateKey(file);
    assert.equal(k.created, true);
    assert.deepEqual(k.warnings, []);
    assert.equal(k.privateKey.length, 32);
    const text = fs.readFileSync(file, 'latin1');
    assert.match(text, /^[A-Za-z0-9+/]{43}=\n$/);
    assert.equal(Buffer.from(text.trim(), 'base64').equals(k.privateKey), true);
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    assert.equal(fs.statSync(path.dirname(file)).mode & 0o777, 0o700);
    assert.equal(fs.statSync(path.dirname(path.dirname(file))).mode & 0o777, 0o700);
    assert.equal(k.publicKey, publicKeyOf(k.privateKey));
    // Clamped as RFC 7748 decodes a scalar (as `wg genkey` writes keys): low 3 bits clear, bit 255 clear, bit 254 set.
    assert.equal((k.privateKey[0] ?? 1) & 7, 0);
    assert.equal((k.privateKey[31] ?? 0) & 0xc0, 0x40);
    assert.deepEqual(fs.readdirSync(path.dirname(file)), ['wireguard.key'], 'no temporary file left');
  });

  it('is reused on later starts (same key), and a key written by `wg genkey` is taken as is', () => {
    const file = fresh();
    const a = loadOrCreateKey(file);
    const b = loadOrCreateKey(file);
    assert.equal(b.created, false);
    assert.equal(b.publicKey, a.publicKey);
    assert.ok(b.privateKey.equals(a.privateKey));
    const kp = keypair();
    fs.writeFileSync(file, kp.priv.toString('base64'), { mode: 0o600 }); // no newline
    assert.equal(loadOrCreateKey(file).publicKey, kp.pub);
  });

  it('derives the public key as X25519 does (RFC 7748 test vector)', () => {
    const priv = Buffer.from('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a', 'hex');
    assert.equal(Buffer.from(publicKeyOf(priv), 'base64').toString('hex'), '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
  });

  it('refuses a file that is not a key, naming the file and never showing its content', () => {
    for (const bad of ['', 'hello\n', `${Buffer.alloc(31, 7).toString('base64')}\n`, `${Buffer.alloc(33, 7).toString('base64')}\n`, `${Buffer.alloc(32, 7).toString('base64')}\n\n`, ` ${Buffer.alloc(32, 7).toString('base64')}`]) {
      const file = fresh();
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, bad, { mode: 0o600 });
      assert.throws(
        () => loadOrCreateKey(file),
        (e: unknown) => isRudderError(e, 'E_BACKEND') && e.message.includes(`key file ${file}`) && e.message.includes('expected the base64 of 32 bytes') && (bad.trim() === '' || !e.message.includes(bad.trim())),
        JSON.stringify(bad),
      );
      assert.equal(fs.readFileSync(file, 'latin1'), bad, 'a bad key file is left alone');
    }
    const dir = fresh();
    fs.mkdirSync(dir, { recursive: true });
    assert.throws(() => loadOrCreateKey(dir), (e: unknown) => isRudderError(e, 'E_BACKEND') && e.message.includes(`key file ${dir}: cannot be read`));
  });

  it('warns when others can read the key', () => {
    const file = fresh();
    loadOrCreateKey(file);
    fs.chmodSync(file, 0o644);
    const k = loadOrCreateKey(file);
    assert.equal(k.warnings.length, 1);
    assert.match(k.warnings[0] ?? '', /mode 0644: others can read .*expected 0600/);
  });

  it('keeps the TAI64N floor beside it: written atomically 0600, read back; a damaged one is reported and ignored', () => {
    const file = fresh();
    loadOrCreateKey(file);
    const tf = tai64nFile(file);
    assert.deepEqual(readTai64nFloor(tf), [undefined, undefined]);
    const t = Buffer.from('400000006553f1000000000a', 'hex');
    writeTai64nFloor(tf, t);
    assert.equal(fs.statSync(tf).mode & 0o777, 0o600);
    assert.ok(readTai64nFloor(tf)[0]?.equals(t));
    fs.writeFileSync(tf, 'zz');
    const [f, why] = readTai64nFloor(tf);
    assert.equal(f, undefined);
    assert.match(why ?? '', /expected 24 hex digits/);
  });
});

describe('wireguard config keys', () => {
  const net = { Network: '10.42.0.0/16' };
  const rejects = (backend: Record<string, unknown>, ...want: string[]): void => {
    assert.throws(
      () => validateConfig({ ...net, Backend: { Type: 'wireguard', ...backend } }),
      (e: unknown) => isRudderError(e, 'E_CONFIG') && want.every((w) => e.message.includes(w)),
      JSON.stringify(backend),
    );
  };

  it('fills the defaults: ListenPort 51820, no keepalive', () => {
    const c = validateConfig({ ...net, Backend: { Type: 'wireguard' } });
    assert.deepEqual(c.backend, { Type: 'wireguard', ListenPort: DEFAULT_WIREGUARD_PORT, PersistentKeepaliveInterval: 0 });
    assert.equal(DEFAULT_WIREGUARD_PORT, 51820);
    assert.deepEqual(configToJson(c).Backend, { Type: 'wireguard', ListenPort: 51820, PersistentKeepaliveInterval: 0 });
    const psk = crypto.randomBytes(32).toString('base64');
    const all = validateConfig({ ...net, Backend: { Type: 'wireguard', ListenPort: 4000, PSK: psk, PersistentKeepaliveInterval: 25, MTU: 1380 } });
    assert.deepEqual(all.backend, { Type: 'wireguard', ListenPort: 4000, PSK: psk, PersistentKeepaliveInterval: 25, MTU: 1380 });
  });

  it('rejects bad values by key, value and what was expected', () => {
    rejects({ ListenPort: 0 }, 'Backend.ListenPort=0', 'UDP port between 1 and 65535');
    rejects({ ListenPort: '51820' }, 'Backend.ListenPort="51820"');
    rejects({ PersistentKeepaliveInterval: -1 }, 'Backend.PersistentKeepaliveInterval=-1', 'between 0 (off) and 65535');
    rejects({ PersistentKeepaliveInterval: 2.5 }, 'Backend.PersistentKeepaliveInterval=2.5');
    rejects({ MTU: 67 }, 'Backend.MTU=67', 'between 68 and 65535');
    const short = crypto.randomBytes(16).toString('base64');
    rejects({ PSK: short }, 'Backend.PSK=<a string of 24 characters>', 'base64 of 32 bytes');
    rejects({ PSK: 'x'.repeat(44) }, 'Backend.PSK=<a string of 44 characters>');
    rejects({ PSK: 32 }, 'Backend.PSK=<number>');
    assert.throws(() => validateConfig({ ...net, Backend: { Type: 'wireguard', PSK: short } }), (e: unknown) => e instanceof Error && !e.message.includes(short), 'the PSK is never echoed');
  });

  it('leaves the other backends as they were', () => {
    assert.deepEqual(validateConfig({ ...net, Backend: { Type: 'udp', ListenPort: 'whatever' } }).backend, { Type: 'udp', ListenPort: 'whatever' });
  });
});

describe('wireguard peer table', () => {
  const own = lease('10.42.1.0/24', '198.18.0.1', {});
  const me = keypair().pub;
  const [k2, k3] = [keypair().pub, keypair().pub];

  it('parses BackendData: PublicKey base64 of 32 bytes, Port optional (the network port)', () => {
    assert.deepEqual(parseBackendData({ PublicKey: k2, Port: 4000 }, 51820), { publicKey: k2, port: 4000 });
    assert.deepEqual(parseBackendData({ PublicKey: k2 }, 51820), { publicKey: k2, port: 51820 });
    assert.match(parseBackendData({}, 1) as string, /BackendData.PublicKey=undefined: expected the base64/);
    assert.match(parseBackendData({ PublicKey: 'AAAA' }, 1) as string, /PublicKey="AAAA"/);
    assert.match(parseBackendData({ PublicKey: k2, Port: 70000 }, 1) as string, /BackendData.Port=70000/);
  });

  it('turns leases into the setPeers payload: key, pinned endpoint, allowed IPs = the subnet', () => {
    const t = new WireGuardPeerTable(own, me, 51820);
    const ch = t.apply([added(lease('10.42.3.0/24', '198.18.0.3', { PublicKey: k3, Port: 51820 })), added(lease('10.42.2.0/24', '198.18.0.2', { PublicKey: k2, Port: 4000 })), added(own)]);
    assert.equal(ch.added.length, 2);
    const p = t.payload();
    assert.deepEqual(p.conflicts, []);
    assert.deepEqual(
      p.peers.map((x) => ({ k: x.publicKey.toString('base64'), ip: x.endpoint.ip, port: x.endpoint.port, a: x.allowedIps.map((y) => formatCidr(y)) })),
      [
        { k: k2, ip: ip('198.18.0.2'), port: 4000, a: ['10.42.2.0/24'] },
        { k: k3, ip: ip('198.18.0.3'), port: 51820, a: ['10.42.3.0/24'] },
      ],
    );
    assert.ok(p.peers.every((x) => x.publicKey.length === 32));
    // Removed lease: its peer is gone from the next payload.
    const r = t.apply([removed(lease('10.42.3.0/24', '198.18.0.3', { PublicKey: k3 }))]);
    assert.equal(r.removed.length, 1);
    assert.deepEqual(t.payload().peers.map((x) => x.publicKey.toString('base64')), [k2]);
    // Same lease again: no change.
    const same = t.apply([added(lease('10.42.2.0/24', '198.18.0.2', { PublicKey: k2, Port: 4000 }))]);
    assert.equal(same.added.length + same.removed.length, 0);
  });

  it('reports other backends and unusable leases once; never its own key', () => {
    const t = new WireGuardPeerTable(own, me, 51820);
    const udp = lease('10.42.5.0/24', '198.18.0.5', {}, 'udp');
    const bad = lease('10.42.6.0/24', '198.18.0.6', { PublicKey: 'nope' });
    const mine = lease('10.42.7.0/24', '198.18.0.1', { PublicKey: me });
    const ch = t.apply([added(udp), added(bad), added(mine)]);
    assert.deepEqual(ch.ignored, [udp]);
    assert.deepEqual(ch.invalid.map((x) => formatCidr(x.lease.subnet)), ['10.42.6.0/24', '10.42.7.0/24']);
    assert.match(ch.invalid[0]?.why ?? '', /PublicKey="nope"/);
    assert.match(ch.invalid[1]?.why ?? '', /this host's own key/);
    const again = t.apply([added(udp), added(bad), added(mine)]);
    assert.equal(again.ignored.length + again.invalid.length, 0, 'reported once');
    assert.equal(t.payload().peers.length, 0);
  });

  it('keeps keys and endpoints unique: one key at one endpoint gets both subnets, clashes are left out and reported', () => {
    const t = new WireGuardPeerTable(own, me, 51820);
    t.apply([
      added(lease('10.42.2.0/24', '198.18.0.2', { PublicKey: k2, Port: 51820 })),
      added(lease('10.42.9.0/24', '198.18.0.2', { PublicKey: k2, Port: 51820 })), // old lease of the same host
      added(lease('10.42.3.0/24', '198.18.0.3', { PublicKey: k2, Port: 51820 })), // same key elsewhere
      added(lease('10.42.4.0/24', '198.18.0.2', { PublicKey: k3, Port: 51820 })), // another key at a taken endpoint
    ]);
    const p = t.payload();
    assert.equal(p.peers.length, 1);
    assert.deepEqual(p.peers[0]?.allowedIps.map((x) => formatCidr(x)), ['10.42.2.0/24', '10.42.9.0/24']);
    assert.equal(p.conflicts.length, 2);
    assert.match(p.conflicts[0] ?? '', /lease 10\.42\.3\.0\/24: PublicKey .* also published/);
    assert.match(p.conflicts[1] ?? '', /lease 10\.42\.4\.0\/24: endpoint 198\.18\.0\.2:51820 already belongs/);
  });

  it("dual-stack: a peer's IPv6 subnet is an allowed IP too; an IPv6-only lease gives no IPv4 allowed IP", () => {
    const c6 = (t: string) => parseCidr6(t, true) as { ip: bigint; prefix: number };
    const own6: Lease = { ...own, ipv6Subnet: c6('fd42:42:0:1::/64') };
    const t = new WireGuardPeerTable(own6, me, 51820);
    t.apply([
      added({ ...lease('10.42.2.0/24', '198.18.0.2', { PublicKey: k2 }), ipv6Subnet: c6('fd42:42:0:2::/64') }),
      added({ ...lease('0.0.0.0/0', '198.18.0.3', { PublicKey: k3 }), subnet: { ip: 0, prefix: 0 }, ipv6Subnet: c6('fd42:42:0:3::/64') }),
    ]);
    const p = t.payload();
    assert.deepEqual(
      p.peers.map((x) => [x.allowedIps.map((y) => formatCidr(y)), (x.allowedIps6 ?? []).map((y) => formatCidr6(y))]),
      [
        [[], ['fd42:42:0:3::/64']],
        [['10.42.2.0/24'], ['fd42:42:0:2::/64']],
      ],
    );
    // An IPv4-only host takes no IPv6 allowed IPs.
    const t4 = new WireGuardPeerTable(own, me, 51820);
    t4.apply([added({ ...lease('10.42.2.0/24', '198.18.0.2', { PublicKey: k2 }), ipv6Subnet: c6('fd42:42:0:2::/64') })]);
    assert.deepEqual(t4.payload().peers.map((x) => x.allowedIps6 ?? []), [[]]);
  });
});

class World {
  readonly nl = new FakeNetlink();
  opts: DataPlaneOptions | undefined;
  wg: WireGuardOptions | undefined;
  /** Copies of what the backend handed over, taken at open (it wipes its own afterwards). */
  keyAtOpen: Buffer | undefined;
  pskAtOpen: Buffer | undefined;
  sets: WireGuardPeer[][] = [];
  /** Copies of the keys handed to setPrivateKey; refuseKey makes it throw. */
  keys: Buffer[] = [];
  refuseKey = false;
  published: Array<Record<string, unknown>> = [];
  stopped = 0;
  tick: (() => void) | undefined;
  tai = Buffer.alloc(12);
  readonly offloads: DataPlaneOffloads = { requested: true, tunVnetHdr: true, tso: true, uso: false, udpGso: true, udpGro: true, busyPoll: true, queues: 2, note: '' };

  openDataPlane = (o: DataPlaneOptions, wg: WireGuardOptions): WireGuardDataPlane => {
    this.opts = o;
    this.wg = wg;
    this.keyAtOpen = Buffer.from(wg.privateKey);
    this.pskAtOpen = wg.psk === undefined ? undefined : Buffer.from(wg.psk);
    this.nl.addLink(o.tunName, 'tun', undefined, { index: 9, up: false });
    return {
      ifname: o.tunName,
      offloads: this.offloads,
      cipher: 'direct',
      setRoutes: () => {
        throw new Error('setRoutes in WireGuard mode');
      },
      setPeers: (p) => void this.sets.push([...p]),
      peers: () => [],
      lastTai64n: () => Buffer.from(this.tai),
      setPrivateKey: (k) => {
        if (this.refuseKey) throw new Error('injected: key refused');
        this.keys.push(Buffer.from(k));
      },
      counters: () => ({ txPackets: 1, wgHandshakesSent: 2 }) as WireGuardCounters,
      stop: () => {
        this.stopped++;
        this.nl.removeLink(9);
      },
    };
  };

  every = (_ms: number, fn: () => void): (() => void) => {
    this.tick = fn;
    return () => undefined;
  };
}

function setup(backend: Record<string, unknown> = {}, mtu = 1500) {
  const world = new World();
  const log = memoryLogger(1);
  const keyFile = fresh();
  const ctx: BackendContext = {
    config: validateConfig({ Network: '10.42.0.0/16', Backend: { Type: 'wireguard', ...backend } }),
    extIface: { name: 'eth0', index: 2, address: ip('198.18.0.1'), publicIP: ip('198.18.0.1'), mtu },
    log,
    portFlag: undefined,
    wireguardKeyFile: keyFile,
    publish: (d) => void world.published.push(d),
  };
  const b = createWireGuardBackend(ctx, { openDataPlane: world.openDataPlane, openNetlink: () => world.nl, every: world.every, env: uapiEnv() });
  return { world, log, backend: b, keyFile, own: lease('10.42.1.0/24', '198.18.0.1', {}) };
}

describe('wireguard backend', () => {
  it('is registered under "wireguard"', () => {
    const ctx: BackendContext = {
      config: validateConfig({ Network: '10.42.0.0/16', Backend: { Type: 'wireguard' } }),
      extIface: { name: 'eth0', index: 2, address: 1, publicIP: 1, mtu: 1500 },
      log: memoryLogger(0),
      portFlag: undefined,
    };
    const b = createBackend(ctx);
    assert.equal(b.type, 'wireguard');
    assert.equal(b.overhead, 80);
  });

  it('publishes PublicKey and Port, opens the data plane with the key, sets up rudder-wg failing closed, wipes the key', async () => {
    const psk = crypto.randomBytes(32);
    const w = setup({ ListenPort: 4000, PSK: psk.toString('base64'), PersistentKeepaliveInterval: 25 });
    const data = await w.backend.prepare(signal());
    const k = loadOrCreateKey(w.keyFile);
    assert.deepEqual(data, { PublicKey: k.publicKey, Port: 4000 });
    const net = await w.backend.start(w.own, signal());
    assert.equal(net.mtu, 1420);
    assert.equal(w.world.opts?.tunName, 'rudder-wg');
    assert.equal(w.world.opts?.port, 4000);
    assert.equal(w.world.opts?.mtu, 1420);
    assert.ok(w.world.keyAtOpen?.equals(k.privateKey));
    assert.ok(w.world.pskAtOpen?.equals(psk));
    assert.equal(w.world.wg?.persistentKeepalive, 25);
    assert.equal(w.world.wg?.tai64nFloor, undefined);
    assert.ok(w.world.wg?.privateKey.every((x) => x === 0), 'its copy of the private key is wiped after start');
    assert.ok(w.world.wg?.psk?.every((x) => x === 0), 'and of the PSK');
    const tun = w.world.nl.link('rudder-wg');
    assert.equal(tun?.mtu, 1420);
    assert.equal(tun?.up, true);
    const routes = w.world.nl.routes.map((r) => `${formatCidr(r.dst)} type=${r.type} metric=${r.metric ?? 0} oif=${r.oif ?? '-'}`);
    assert.ok(routes.some((r) => r.startsWith('10.42.0.0/16 ') && r.includes(`metric=${FALLBACK_METRIC}`)), `unreachable fallback: ${routes.join('; ')}`);
    assert.ok(routes.some((r) => r.startsWith('10.42.0.0/16 ') && r.includes('oif=9')), `route via rudder-wg: ${routes.join('; ')}`);
    assert.deepEqual(net.counters?.(), { txPackets: 1, wgHandshakesSent: 2 });
    await net.stop();
    assert.equal(w.world.stopped, 1);
    assert.equal(w.world.nl.routes.length, 0);
  });

  it('MTU: underlay − 80 unless Backend.MTU is set; a too small underlay is refused', async () => {
    const a = setup({}, 9000);
    await a.backend.prepare(signal());
    assert.equal((await a.backend.start(a.own, signal())).mtu, 8920);
    const b = setup({ MTU: 1300 });
    await b.backend.prepare(signal());
    assert.equal((await b.backend.start(b.own, signal())).mtu, 1300);
    assert.equal(b.world.opts?.mtu, 1300);
    const c = setup({}, 140);
    await c.backend.prepare(signal());
    await assert.rejects(c.backend.start(c.own, signal()), /MTU 140 leaves 60 after 80 bytes/);
    assert.equal(c.world.opts, undefined);
  });

  it('feeds setPeers on every lease change and logs peers set and removed', async () => {
    const w = setup();
    await w.backend.prepare(signal());
    const net = await w.backend.start(w.own, signal());
    const [k2, k3] = [keypair().pub, keypair().pub];
    const l2 = lease('10.42.2.0/24', '198.18.0.2', { PublicKey: k2, Port: 51820 });
    const l3 = lease('10.42.3.0/24', '198.18.0.3', { PublicKey: k3, Port: 51820 });
    await net.apply([added(l2), added(l3)]);
    assert.equal(w.world.sets.length, 1);
    assert.deepEqual(w.world.sets[0]?.map((p) => p.publicKey.toString('base64')), [k2, k3]);
    await net.apply([added(l2)]);
    assert.equal(w.world.sets.length, 1, 'nothing changed, nothing handed over');
    await net.apply([removed(l3)]);
    assert.deepEqual(w.world.sets[1]?.map((p) => p.publicKey.toString('base64')), [k2]);
    assert.ok(w.log.lines.some((l) => l.includes('wireguard peer removed') && l.includes(k3)), w.log.lines.join('\n'));
    await net.apply([added(lease('10.42.4.0/24', '198.18.0.4', {}, 'udp'))]);
    assert.ok(w.log.lines.some((l) => l.includes('ignoring lease of another backend')));
    await net.stop();
  });

  it('saves the TAI64N floor beside the key (on the timer when it moved, and at stop) and passes it back at the next start', async () => {
    const w = setup();
    await w.backend.prepare(signal());
    const net = await w.backend.start(w.own, signal());
    const tf = tai64nFile(w.keyFile);
    w.world.tick?.();
    assert.equal(fs.existsSync(tf), false, 'nothing sent yet: nothing saved');
    w.world.tai = Buffer.from('400000006553f1000000000a', 'hex');
    w.world.tick?.();
    assert.equal(fs.readFileSync(tf, 'latin1'), '400000006553f1000000000a\n');
    w.world.tai = Buffer.from('400000006553f1000000000b', 'hex');
    await net.stop();
    assert.equal(fs.readFileSync(tf, 'latin1'), '400000006553f1000000000b\n');

    const again = createWireGuardBackend(
      { config: validateConfig({ Network: '10.42.0.0/16', Backend: { Type: 'wireguard' } }), extIface: { name: 'eth0', index: 2, address: 1, publicIP: 1, mtu: 1500 }, log: memoryLogger(0), portFlag: undefined, wireguardKeyFile: w.keyFile },
      { openDataPlane: w.world.openDataPlane, openNetlink: () => w.world.nl, every: w.world.every, env: uapiEnv() },
    );
    await again.prepare(signal());
    await (await again.start(w.own, signal())).stop();
    assert.equal(w.world.wg?.tai64nFloor?.toString('hex'), '400000006553f1000000000b');
  });

  it('undoes everything when a step fails', async () => {
    const w = setup();
    await w.backend.prepare(signal());
    w.world.nl.onCall = (op) => {
      if (op.startsWith('ensureUnreachableRoute')) throw new Error('injected');
    };
    await assert.rejects(w.backend.start(w.own, signal()), /injected/);
    assert.equal(w.world.stopped, 1);
    assert.equal(w.world.nl.link('rudder-wg'), undefined);
  });

  it('rotates the key: a new 0600 key file, the data plane takes it, the lease is republished; also over the control socket', async () => {
    const w = setup({ ListenPort: 4000 });
    const first = await w.backend.prepare(signal());
    const net = await w.backend.start(w.own, signal());
    assert.equal(typeof net.rotateKey, 'function', 'a wireguard network rotates');
    const pub = await (net.rotateKey?.() ?? Promise.reject(new Error('no rotateKey')));
    const k = loadOrCreateKey(w.keyFile);
    assert.equal(k.publicKey, pub);
    assert.notEqual(pub, first['PublicKey']);
    assert.equal(fs.statSync(w.keyFile).mode & 0o777, 0o600);
    assert.ok(w.world.keys[0]?.equals(k.privateKey), 'the data plane got the key in the file');
    assert.deepEqual(w.world.published, [{ PublicKey: pub, Port: 4000 }]);
    assert.ok(w.log.lines.some((l) => l.includes('wireguard key rotated') && l.includes(pub)), w.log.lines.join('\n'));
    assert.ok(!w.log.lines.some((l) => l.includes(k.privateKey.toString('base64'))), 'the private key is never logged');

    const pub2 = await requestRotate(w.keyFile);
    assert.equal(loadOrCreateKey(w.keyFile).publicKey, pub2);
    assert.notEqual(pub2, pub);
    assert.deepEqual(w.world.published.at(-1), { PublicKey: pub2, Port: 4000 });
    assert.equal(fs.statSync(controlSocketOf(w.keyFile)).mode & 0o777, 0o600);
    await net.stop();
    assert.equal(fs.existsSync(controlSocketOf(w.keyFile)), false, 'the control socket goes at stop');
    await assert.rejects(requestRotate(w.keyFile), (e: unknown) => isRudderError(e, 'E_BACKEND') && /no running wireguard daemon uses the key file/.test((e as Error).message));
  });

  it('a failed rotation keeps the old key running: unwritable key file, or a data plane that refuses (old file put back)', async () => {
    const w = setup();
    await w.backend.prepare(signal());
    const net = await w.backend.start(w.own, signal());
    const before = fs.readFileSync(w.keyFile);
    w.world.refuseKey = true;
    await assert.rejects(requestRotate(w.keyFile), (e: unknown) => isRudderError(e, 'E_BACKEND') && /refused the new key/.test((e as Error).message));
    assert.ok(fs.readFileSync(w.keyFile).equals(before), 'the old key is back in the file');
    assert.deepEqual(w.world.published, []);
    assert.ok(w.log.lines.some((l) => l.includes('key rotation failed') && l.includes('E_BACKEND')), w.log.lines.join('\n'));
    w.world.refuseKey = false;
    fs.rmSync(w.keyFile);
    fs.mkdirSync(w.keyFile); // rename over a directory fails
    await assert.rejects(net.rotateKey?.() ?? Promise.resolve(), (e: unknown) => isRudderError(e, 'E_BACKEND') && /cannot be written/.test((e as Error).message));
    assert.deepEqual(w.world.keys, [], 'the data plane keeps its key');
    assert.deepEqual(w.world.published, []);
    await net.stop();
  });
});
