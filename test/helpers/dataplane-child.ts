/**
 * Runs inside a test "host" namespace and keeps native data planes open for
 * the e2e test, driven by JSON lines: requests on stdin
 * `{"id":1,"op":"open","key":"a","opts":{...}}`, answers on stdout
 * `{"id":1,"ok":true,"result":...}` or `{"id":1,"ok":false,"error":{code,message}}`.
 * Ops: open, openWg, setRoutes, setPeers, peers, lastTai64n, setPrivateKey
 * (hex), counters, stop,
 * sendUdp, notify, exit (WireGuard keys travel as hex). When stdin
 * closes (the test died), every data plane is stopped and the process exits.
 */
import * as dgram from 'node:dgram';
import * as readline from 'node:readline';
import { openDataPlane, openWireGuardDataPlane, type NativeDataPlane, type WireGuardDataPlane } from '../../src/dataplane/native';
import { sdNotify } from '../../src/systemd/notify';
import type { DataPlaneOptions, DataPlaneRoute } from '../../src/dataplane/types';

interface Request {
  id: number;
  op: string;
  key?: string;
  opts?: DataPlaneOptions;
  routes?: DataPlaneRoute[];
  from?: string;
  to?: string;
  port?: number;
  hex?: string;
  path?: string;
  message?: string;
  wg?: { privateKey: string; psk?: string; persistentKeepalive?: number; tai64nFloor?: string };
  peers?: { publicKey: string; endpoint: { ip: number; port: number }; allowedIps: { ip: number; prefix: number }[] }[];
}

const planes = new Map<string, NativeDataPlane>();
const wgPlanes = new Map<string, WireGuardDataPlane>();

function wgPlane(key: string | undefined): WireGuardDataPlane {
  const p = wgPlanes.get(key ?? '');
  if (!p) throw new Error(`no WireGuard data plane open under key ${String(key)}`);
  return p;
}

const hex = (s: string | undefined): Buffer | undefined => (s === undefined ? undefined : Buffer.from(s, 'hex'));

function plane(key: string | undefined): NativeDataPlane {
  const p = planes.get(key ?? '');
  if (!p) throw new Error(`no data plane open under key ${String(key)}`);
  return p;
}

function sendUdp(from: string, to: string, port: number, payload: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.once('error', (e) => {
      s.close();
      reject(e);
    });
    s.bind({ address: from, port: 0 }, () => {
      s.send(payload, port, to, (e) => {
        s.close();
        if (e) reject(e);
        else resolve();
      });
    });
  });
}

async function handle(req: Request): Promise<unknown> {
  switch (req.op) {
    case 'open': {
      if (!req.key || !req.opts) throw new Error('open needs key and opts');
      if (planes.has(req.key)) throw new Error(`key ${req.key} already open`);
      const p = openDataPlane(req.opts);
      planes.set(req.key, p);
      return { ifname: p.ifname, offloads: p.offloads };
    }
    case 'openWg': {
      if (!req.key || !req.opts || !req.wg) throw new Error('openWg needs key, opts and wg');
      if (planes.has(req.key)) throw new Error(`key ${req.key} already open`);
      const w = req.wg;
      const p = openWireGuardDataPlane(req.opts, {
        privateKey: Buffer.from(w.privateKey, 'hex'),
        ...(w.psk !== undefined ? { psk: hex(w.psk) } : {}),
        ...(w.persistentKeepalive !== undefined ? { persistentKeepalive: w.persistentKeepalive } : {}),
        ...(w.tai64nFloor !== undefined ? { tai64nFloor: hex(w.tai64nFloor) } : {}),
      });
      planes.set(req.key, p);
      wgPlanes.set(req.key, p);
      return { ifname: p.ifname, offloads: p.offloads };
    }
    case 'setPeers':
      wgPlane(req.key).setPeers((req.peers ?? []).map((q) => ({ ...q, publicKey: Buffer.from(q.publicKey, 'hex') })));
      return null;
    case 'peers':
      return wgPlane(req.key)
        .peers()
        .map((q) => ({ ...q, publicKey: q.publicKey.toString('hex') }));
    case 'lastTai64n':
      return wgPlane(req.key).lastTai64n().toString('hex');
    case 'setPrivateKey':
      wgPlane(req.key).setPrivateKey(Buffer.from(req.hex ?? '', 'hex'));
      return null;
    case 'setRoutes':
      plane(req.key).setRoutes(req.routes ?? []);
      return null;
    case 'counters':
      return plane(req.key).counters();
    case 'stop': {
      const p = plane(req.key);
      p.stop();
      p.stop(); // idempotent by contract
      planes.delete(req.key ?? '');
      wgPlanes.delete(req.key ?? '');
      return p.counters();
    }
    case 'sendUdp':
      await sendUdp(req.from ?? '0.0.0.0', req.to ?? '', req.port ?? 0, Buffer.from(req.hex ?? '', 'hex'));
      return null;
    case 'notify':
      sdNotify(req.path ?? '', req.message ?? '');
      return null;
    case 'exit':
      shutdown(0);
      return null;
    default:
      throw new Error(`unknown op ${req.op}`);
  }
}

function shutdown(code: number): void {
  for (const p of planes.values()) {
    try {
      p.stop();
    } catch {
      // exiting anyway
    }
  }
  planes.clear();
  process.exit(code);
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (!line.trim()) return;
  let req: Request;
  try {
    req = JSON.parse(line) as Request;
  } catch {
    process.stdout.write(`${JSON.stringify({ id: -1, ok: false, error: { code: 'E_PROTO', message: 'bad JSON' } })}\n`);
    return;
  }
  handle(req).then(
    (result) => process.stdout.write(`${JSON.stringify({ id: req.id, ok: true, result })}\n`),
    (e: unknown) => {
      const err = e as { name?: unknown; code?: unknown; message?: unknown };
      process.stdout.write(
        `${JSON.stringify({ id: req.id, ok: false, error: { name: String(err.name), code: String(err.code), message: String(err.message) } })}\n`,
      );
    },
  );
});
rl.on('close', () => shutdown(0));
process.on('SIGTERM', () => shutdown(0));
process.stdout.write(`${JSON.stringify({ id: 0, ok: true, result: 'ready' })}\n`);
