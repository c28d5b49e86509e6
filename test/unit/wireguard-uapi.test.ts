/**
 * The WireGuard status socket (src/backend/wireguard/uapi.ts): the `get`
 * answer's text and its parser, the per-connection framing (get, refused
 * set, garbage), the socket's file handling (mode 0600, stale socket
 * replaced, a live one or a non-socket left alone, symlinks never
 * followed, removed at close), the wireguard backend serving it from its
 * data plane's peers(), and `rudder peers`' output. Real `wg show` against
 * a running daemon is in test/e2e/wireguard-backend.test.ts.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { isRudderError } from '../../src/errors';
import { parseCidr, parseIp } from '../../src/ip/ipv4';
import { memoryLogger } from '../../src/log';
import { validateConfig } from '../../src/config';
import type { WireGuardDataPlane, WireGuardPeerStatus } from '../../src/dataplane/native';
import type { BackendContext } from '../../src/backend/types';
import { UapiSession, formatGet, parseGet, queryUapi, serveUapi, uapiSocketPath, UAPI_DIR_ENV, peerReport } from '../../src/backend/wireguard/uapi';
import { createWireGuardBackend, generatePrivateKey, loadOrCreateKey, publicKeyOf } from '../../src/backend/wireguard';
import { formatAge, formatBytes, peersCommand, peersReport, peersTable } from '../../src/cli/peers';
import type { ParsedFlags } from '../../src/util/flags';
import { FakeNetlink } from '../helpers/netlink-fake';

const ip = (s: string): number => parseIp(s) as number;
const cidr = (s: string) => parseCidr(s, true) as { ip: number; prefix: number };

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rudder-uapi-unit-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const freshDir = (): string => path.join(tmp, `d${++n}`, 'wireguard');

const KEY_A = Buffer.alloc(32, 0xa1);
const KEY_B = Buffer.alloc(32, 0xb2);
const PRIV = Buffer.from('00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff', 'hex');

const PEERS: WireGuardPeerStatus[] = [
  { publicKey: KEY_A, endpoint: { ip: ip('198.18.0.2'), port: 51820 }, allowedIps: [cidr('10.42.2.0/24'), cidr('10.42.9.0/24')], latestHandshakeMs: 1_700_000_000_123, rxBytes: 1234, txBytes: 5678 },
  { publicKey: KEY_B, endpoint: { ip: ip('198.18.0.3'), port: 4000 }, allowedIps: [cidr('10.42.3.0/24')], latestHandshakeMs: 0, rxBytes: 0, txBytes: 148 },
];

describe('status answer (get=1): format and parse', () => {
  it('lists the device, then each peer, in the protocol\'s keys, hex keys, ending errno=0 and a blank line; no PSK', () => {
    const text = formatGet({ privateKey: PRIV, listenPort: 51820, persistentKeepalive: 25, peers: PEERS }).toString('latin1');
    assert.equal(
      text,
      [
        `private_key=${PRIV.toString('hex')}`,
        'listen_port=51820',
        `public_key=${KEY_A.toString('hex')}`,
        'protocol_version=1',
        'endpoint=198.18.0.2:51820',
        'last_handshake_time_sec=1700000000',
        'last_handshake_time_nsec=123000000',
        'tx_bytes=5678',
        'rx_bytes=1234',
        'persistent_keepalive_interval=25',
        'allowed_ip=10.42.2.0/24',
        'allowed_ip=10.42.9.0/24',
        `public_key=${KEY_B.toString('hex')}`,
        'protocol_version=1',
        'endpoint=198.18.0.3:4000',
        'last_handshake_time_sec=0',
        'last_handshake_time_nsec=0',
        'tx_bytes=148',
        'rx_bytes=0',
        'persistent_keepalive_interval=25',
        'allowed_ip=10.42.3.0/24',
        'errno=0',
        '',
        '',
      ].join('\n'),
    );
    assert.doesNotMatch(text, /preshared_key/);
  });

  it('leaves private_key out when the key in use is not known; an empty device is listen_port and errno only', () => {
    assert.equal(formatGet({ listenPort: 1, persistentKeepalive: 0, peers: [] }).toString('latin1'), 'listen_port=1\nerrno=0\n\n');
  });

  it('parses back what it formats (keys in base64, handshake time in ms)', () => {
    const st = parseGet(formatGet({ privateKey: PRIV, listenPort: 51820, persistentKeepalive: 25, peers: PEERS }).toString('latin1'));
    assert.ok(st.privateKey?.equals(PRIV));
    assert.equal(st.listenPort, 51820);
    assert.deepEqual(st.peers, [
      { publicKey: KEY_A.toString('base64'), endpoint: '198.18.0.2:51820', allowedIps: ['10.42.2.0/24', '10.42.9.0/24'], latestHandshakeMs: 1_700_000_000_123, rxBytes: 1234, txBytes: 5678, persistentKeepalive: 25 },
      { publicKey: KEY_B.toString('base64'), endpoint: '198.18.0.3:4000', allowedIps: ['10.42.3.0/24'], latestHandshakeMs: 0, rxBytes: 0, txBytes: 148, persistentKeepalive: 25 },
    ]);
  });

  it('skips keys it does not know; refuses a non-zero errno, a missing end, malformed keys and numbers', () => {
    const key = KEY_A.toString('hex');
    assert.deepEqual(parseGet(`fwmark=7\nlisten_port=9\npublic_key=${key}\nfuture_key=x\nerrno=0\n\n`).peers.length, 1);
    const bad: Array<[string, RegExp]> = [
      ['listen_port=9\nerrno=-1\n\n', /errno=1/],
      ['listen_port=9\nerrno=0\n', /without its blank line/],
      ['listen_port=9\n\n', /no errno/],
      [`public_key=${key.slice(2)}\nerrno=0\n\n`, /64 lowercase hex/],
      [`public_key=${key}\nrx_bytes=-3\nerrno=0\n\n`, /rx_bytes="-3": expected a decimal number/],
      ['listen_port\nerrno=0\n\n', /expected key=value/],
    ];
    for (const [text, re] of bad) assert.throws(() => parseGet(text), (e: unknown) => isRudderError(e, 'E_UAPI') && re.test(e.message), JSON.stringify(text));
  });
});

describe('status connection framing', () => {
  const session = () => {
    const sets: string[][] = [];
    let fail = false;
    const s = new UapiSession({
      get: () => {
        if (fail) throw new Error('data plane stopped');
        return Buffer.from('listen_port=1\nerrno=0\n\n');
      },
      set: (keys) => void sets.push([...keys]),
    });
    const text = (chunks: string[]): { text: string; close: boolean } => {
      let out = '';
      let close = false;
      for (const c of chunks) {
        const r = s.feed(c);
        out += r.out.map((x) => x.toString()).join('');
        close ||= r.close;
      }
      return { text: out, close };
    };
    return { text, sets, failGet: () => (fail = true) };
  };

  it('answers get=1 however the request is cut, and several requests on one connection', () => {
    const s = session();
    assert.deepEqual(s.text(['ge', 't=1', '\n', '\nget=1\n\n']), { text: 'listen_port=1\nerrno=0\n\n'.repeat(2), close: false });
  });

  it('refuses set=1 with errno=-1 after reading it whole; the key names reach the log hook, never the values', () => {
    const s = session();
    const r = s.text([`set=1\nprivate_key=${PRIV.toString('hex')}\npublic_key=ab\nallowed_ip=10.0.0.0/8\n`, '\nget=1\n\n']);
    assert.equal(r.text, 'errno=-1\n\nlisten_port=1\nerrno=0\n\n');
    assert.deepEqual(s.sets, [['private_key', 'public_key', 'allowed_ip']]);
  });

  it('closes on a line that is no request, on get=1 followed by more, and on an endless line', () => {
    assert.deepEqual(session().text(['hello\n']), { text: '', close: true });
    assert.deepEqual(session().text(['get=1\nx\n']), { text: 'errno=-22\n\n', close: true });
    assert.equal(session().text(['x'.repeat(5000)]).close, true);
  });

  it('answers errno=-5 when the status cannot be read', () => {
    const s = session();
    s.failGet();
    assert.equal(s.text(['get=1\n\n']).text, 'errno=-5\n\n');
  });
});

describe('status socket', () => {
  const get = (): Buffer => formatGet({ listenPort: 51820, persistentKeepalive: 0, peers: PEERS });

  it('is 0600 in a 0700 directory it creates, answers queryUapi, and is removed at close', async () => {
    const dir = freshDir();
    const s = await serveUapi({ dir, device: 'wgx', log: memoryLogger(0), get });
    assert.equal(s.path, uapiSocketPath(dir, 'wgx'));
    assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
    const st = fs.lstatSync(s.path);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o600);
    const st2 = parseGet(await queryUapi(s.path));
    assert.equal(st2.peers.length, 2);
    await s.close();
    assert.equal(fs.existsSync(s.path), false);
  });

  it('replaces a stale socket; refuses one that answers; never follows a symlink; leaves other files alone', async () => {
    const dir = freshDir();
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const file = uapiSocketPath(dir, 'wgx');
    // Stale: a socket file nobody listens on.
    const dead = net.createServer();
    await new Promise<void>((r) => dead.listen(file, r));
    const ino = fs.lstatSync(file).ino;
    // Closing a server removes its file; keep one: hard-link it aside and back.
    fs.linkSync(file, `${file}.keep`);
    await new Promise<void>((r) => dead.close(() => r()));
    fs.renameSync(`${file}.keep`, file);
    assert.equal(fs.lstatSync(file).ino, ino);
    const log = memoryLogger(1);
    const s = await serveUapi({ dir, device: 'wgx', log, get });
    assert.equal(parseGet(await queryUapi(file)).listenPort, 51820, 'the new socket answers');
    assert.ok(log.lines.some((l) => l.includes('replacing a stale status socket')), log.lines.join('\n'));

    // Live: a second server is refused and the first keeps answering.
    await assert.rejects(serveUapi({ dir, device: 'wgx', log, get }), (e: unknown) => isRudderError(e, 'E_UAPI') && /served by another process/.test(e.message));
    assert.equal(parseGet(await queryUapi(file)).listenPort, 51820);
    await s.close();

    // A symlink where the socket goes: removed, its target untouched.
    const target = path.join(tmp, `target${++n}`);
    fs.writeFileSync(target, 'keep me');
    fs.symlinkSync(target, file);
    const s2 = await serveUapi({ dir, device: 'wgx', log, get });
    assert.equal(fs.readFileSync(target, 'utf8'), 'keep me');
    assert.ok(fs.lstatSync(file).isSocket());
    await s2.close();

    fs.writeFileSync(file, 'not a socket');
    await assert.rejects(serveUapi({ dir, device: 'wgx', log, get }), /exists and is not a socket: left alone/);
    assert.equal(fs.readFileSync(file, 'utf8'), 'not a socket');
  });

  it('refuses a directory that is a symlink or writable by others', async () => {
    const real = freshDir();
    fs.mkdirSync(real, { recursive: true, mode: 0o700 });
    const link = path.join(tmp, `link${++n}`);
    fs.symlinkSync(real, link);
    await assert.rejects(serveUapi({ dir: link, device: 'wgx', log: memoryLogger(0), get }), /not a directory \(a symlink is never followed\)/);
    const open = freshDir();
    fs.mkdirSync(open, { recursive: true });
    fs.chmodSync(open, 0o777);
    await assert.rejects(serveUapi({ dir: open, device: 'wgx', log: memoryLogger(0), get }), /writable by others/);
    assert.deepEqual(fs.readdirSync(real), []);
  });

  it('queryUapi: a missing socket is E_UAPI with the errno in the cause', async () => {
    await assert.rejects(queryUapi(path.join(tmp, 'none.sock')), (e: unknown) => isRudderError(e, 'E_UAPI') && (e.cause as { code?: string }).code === 'ENOENT');
  });
});

describe('wireguard backend serves the status socket', () => {
  it('from its data plane\'s peers, with the key file\'s private key while it is the key in use; removed at stop', async () => {
    const dir = freshDir();
    const keyFile = path.join(tmp, `k${++n}`, 'wireguard.key');
    const nl = new FakeNetlink();
    const dp = {
      ifname: 'rudder-wg',
      offloads: { requested: true, tunVnetHdr: true, tso: true, uso: false, udpGso: true, udpGro: true, busyPoll: true, queues: 1, note: '' },
      setRoutes: () => undefined,
      setPeers: () => undefined,
      peers: () => PEERS,
      lastTai64n: () => Buffer.alloc(12),
      counters: () => ({}),
      stop: () => nl.removeLink(9),
    } as unknown as WireGuardDataPlane;
    const ctx: BackendContext = {
      config: validateConfig({ Network: '10.42.0.0/16', Backend: { Type: 'wireguard', ListenPort: 4000, PersistentKeepaliveInterval: 25 } }),
      extIface: { name: 'eth0', index: 2, address: ip('198.18.0.1'), publicIP: ip('198.18.0.1'), mtu: 1500 },
      log: memoryLogger(1),
      portFlag: undefined,
      wireguardKeyFile: keyFile,
    };
    const b = createWireGuardBackend(ctx, {
      openDataPlane: (o) => {
        nl.addLink(o.tunName, 'tun', undefined, { index: 9, up: false });
        return dp;
      },
      openNetlink: () => nl,
      every: () => () => undefined,
      env: { [UAPI_DIR_ENV]: dir },
    });
    const data = await b.prepare(new AbortController().signal);
    const net = await b.start({ subnet: cidr('10.42.1.0/24'), publicIP: ip('198.18.0.1'), backendType: 'wireguard', backendData: {}, expiresAt: null }, new AbortController().signal);
    const file = uapiSocketPath(dir, 'rudder-wg');
    const st = parseGet(await queryUapi(file));
    assert.ok(st.privateKey, 'private_key sent');
    assert.equal(publicKeyOf(st.privateKey), data['PublicKey']);
    assert.equal(st.listenPort, 4000);
    assert.deepEqual(st.peers.map((p) => [p.publicKey, p.endpoint, p.persistentKeepalive]), [
      [KEY_A.toString('base64'), '198.18.0.2:51820', 25],
      [KEY_B.toString('base64'), '198.18.0.3:4000', 25],
    ]);
    assert.deepEqual(net.peerStatus?.(), peerReport(PEERS));

    // The key file no longer holds the key in use: no private_key (wg show prints no public key).
    fs.writeFileSync(keyFile, generatePrivateKey().toString('base64') + '\n');
    assert.equal(parseGet(await queryUapi(file)).privateKey, undefined);
    assert.notEqual(loadOrCreateKey(keyFile).publicKey, data['PublicKey']);

    await net.stop();
    assert.equal(fs.existsSync(file), false, 'removed at stop');
  });
});

describe('rudder peers', () => {
  const flags = (json: boolean): ParsedFlags => ({ values: new Map<string, string | boolean>([['wireguard-device', 'rudder-wg'], ['json', json]]), given: new Set(), sources: new Map(), rest: [] });
  const io = () => {
    const out: string[] = [];
    const err: string[] = [];
    return { out, err, io: { out: (s: string) => void out.push(s), err: (s: string) => void err.push(s) } };
  };

  it('formats ages and byte counts as wg does', () => {
    assert.equal(formatAge(0, 5000), 'never');
    assert.equal(formatAge(1000, 76_000), '1m15s ago');
    assert.equal(formatAge(1000, 7_201_000), '2h00m ago');
    assert.equal(formatBytes(148), '148 B');
    assert.equal(formatBytes(1536), '1.50 KiB');
    assert.equal(formatBytes(5 * 1024 * 1024 * 1024), '5.00 GiB');
  });

  it('a table per peer: public key, endpoint, allowed IPs, latest handshake, bytes; the interface\'s public key from private_key', () => {
    const answer = formatGet({ privateKey: PRIV, listenPort: 51820, persistentKeepalive: 0, peers: PEERS }).toString('latin1');
    const now = 1_700_000_012_123;
    const r = peersReport('rudder-wg', answer, now);
    assert.equal(r.publicKey, publicKeyOf(PRIV));
    assert.equal(r.peers[0]?.latestHandshakeAgeSeconds, 12);
    assert.equal(r.peers[1]?.latestHandshake, null);
    const lines = peersTable(r, now);
    assert.equal(lines[0], `interface rudder-wg: public key ${publicKeyOf(PRIV)}, listening port 51820`);
    assert.match(lines[1] ?? '', /^PUBLIC KEY\s+ENDPOINT\s+ALLOWED IPS\s+LATEST HANDSHAKE\s+RECEIVED\s+SENT$/);
    assert.match(lines[2] ?? '', new RegExp(`^${KEY_A.toString('base64').replace(/[+/]/g, '\\$&')}\\s+198\\.18\\.0\\.2:51820\\s+10\\.42\\.2\\.0/24,10\\.42\\.9\\.0/24\\s+12s ago\\s+1\\.21 KiB\\s+5\\.54 KiB$`));
    assert.match(lines[3] ?? '', /198\.18\.0\.3:4000\s+10\.42\.3\.0\/24\s+never\s+0 B\s+148 B$/);
  });

  it('reads the daemon\'s socket (table or -json); without one, names the network\'s backend and points to rudder leases', async () => {
    const dir = freshDir();
    const s = await serveUapi({ dir, device: 'rudder-wg', log: memoryLogger(0), get: () => formatGet({ listenPort: 51820, persistentKeepalive: 0, peers: PEERS }) });
    try {
      const a = io();
      assert.equal(await peersCommand(flags(true), a.io, { env: { [UAPI_DIR_ENV]: dir }, backendType: async () => assert.fail('etcd asked') }), 0);
      const j = JSON.parse(a.out.join('\n')) as { device: string; peers: Array<{ endpoint: string; allowedIps: string[] }> };
      assert.equal(j.device, 'rudder-wg');
      assert.deepEqual(j.peers.map((p) => [p.endpoint, p.allowedIps]), [['198.18.0.2:51820', ['10.42.2.0/24', '10.42.9.0/24']], ['198.18.0.3:4000', ['10.42.3.0/24']]]);
      const t = io();
      assert.equal(await peersCommand(flags(false), t.io, { env: { [UAPI_DIR_ENV]: dir }, backendType: async () => null }), 0);
      assert.match(t.out.join('\n'), /public key \(not reported\), listening port 51820\nPUBLIC KEY/);
    } finally {
      await s.close();
    }
    const u = io();
    assert.equal(await peersCommand(flags(false), u.io, { env: { [UAPI_DIR_ENV]: dir }, backendType: async () => 'udp' }), 1);
    assert.match(u.err.join('\n'), /the network's backend is "udp", which has no WireGuard peers: `rudder leases` lists every host's lease/);
    const w = io();
    assert.equal(await peersCommand(flags(false), w.io, { env: { [UAPI_DIR_ENV]: dir }, backendType: async () => 'wireguard' }), 1);
    assert.match(w.err.join('\n'), /no status socket .*rudder-wg\.sock: the daemon does not run on this host/);
  });
});
