/**
 * The Kubernetes subnet source against a scripted API server (plain HTTP on
 * 127.0.0.1): what the real kube-apiserver cannot be made to do on demand.
 * A watch that answers `410 Gone` is recovered by listing again with no
 * spurious removal; a Node deleted meanwhile is a removal; the keeper says
 * why it cannot take a subnet (no podCIDR, one outside Network) and patches
 * only its own annotations (again when its BackendData changes) and the
 * NetworkUnavailable condition. Dual-stack: the keeper names the Node and
 * spec.podCIDRs while there is no IPv6 entry, then publishes public-ipv6
 * (public-ipv6-overwrite winning) and backend-v6-data; peers are read with their IPv6 half; IPv6-only too.
 */
import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { parseConfig } from '../../src/config';
import { isRudderError } from '../../src/errors';
import { formatCidr, parseIp } from '../../src/ip/ipv4';
import { formatIp6, parseIp6 } from '../../src/ip/ipv6';
import { memoryLogger } from '../../src/log';
import { KubeClient } from '../../src/subnet/kube/client';
import { KubeKeeper, KubePeers } from '../../src/subnet/kube/source';
import { formatLeaseKey, type LeaseEvent } from '../../src/subnet/lease';
import { LeaseWatcher } from '../../src/subnet/watcher';
import { waitUntil } from '../helpers/wait';

type Node = { metadata: { name: string; resourceVersion: string; annotations: Record<string, string> }; spec: { podCIDR?: string; podCIDRs?: string[] } };

const node = (name: string, cidr: string | undefined, ip: string | undefined): Node => ({
  metadata: { name, resourceVersion: '1', annotations: ip === undefined ? {} : { 'rudder.io/public-ip': ip, 'rudder.io/backend-type': 'host-gw', 'rudder.io/backend-data': 'null' } },
  spec: cidr === undefined ? {} : { podCIDR: cidr },
});

describe('kube source against a scripted API server', () => {
  let server: http.Server;
  let url: string;
  let nodes: Node[] = [];
  let rv = 100;
  const watches: string[] = [];
  const auths: string[] = [];
  const requests: { method: string; path: string; body: string; type: string }[] = [];
  /** What the next watch does: answer 410, or stream and stay open. */
  let watchMode: 'gone' | 'open' | 'end' = 'gone';
  const openWatches: http.ServerResponse[] = [];

  before(async () => {
    server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const u = new URL(req.url ?? '/', 'http://x');
        requests.push({ method: req.method ?? '', path: u.pathname, body, type: req.headers['content-type'] ?? '' });
        auths.push(req.headers.authorization ?? '');
        if (u.pathname === '/api/v1/nodes' && u.searchParams.get('watch') === 'true') {
          watches.push(u.searchParams.get('resourceVersion') ?? '');
          res.writeHead(200, { 'Content-Type': 'application/json' });
          if (watchMode === 'end') {
            watchMode = 'open';
            res.write(JSON.stringify({ type: 'ADDED', object: { ...node('d', '10.1.4.0/24', '198.18.0.4'), metadata: { ...node('d', '10.1.4.0/24', '198.18.0.4').metadata, resourceVersion: '130' } } }) + '\n');
            setTimeout(() => res.end(), 1200);
          } else if (watchMode === 'gone') {
            res.end(JSON.stringify({ type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version' } }) + '\n');
          } else openWatches.push(res);
          return;
        }
        if (u.pathname === '/api/v1/nodes' && req.method === 'GET') {
          res.writeHead(200, { 'Content-Type': 'application/json' });
          res.end(JSON.stringify({ kind: 'NodeList', metadata: { resourceVersion: String(rv) }, items: nodes }));
          return;
        }
        const m = /^\/api\/v1\/nodes\/([^/]+)(\/status)?$/.exec(u.pathname);
        const n = m ? nodes.find((x) => x.metadata.name === m[1]) : undefined;
        if (!n) {
          res.writeHead(404, { 'Content-Type': 'application/json' });
          res.end(JSON.stringify({ kind: 'Status', code: 404, reason: 'NotFound', message: `nodes "${m?.[1] ?? ''}" not found` }));
          return;
        }
        if (req.method === 'PATCH' && !m?.[2]) Object.assign(n.metadata.annotations, (JSON.parse(body) as { metadata: { annotations: Record<string, string> } }).metadata.annotations);
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(n));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    for (const w of openWatches) w.destroy();
    await new Promise((r) => server.close(r));
  });

  const client = (): KubeClient => new KubeClient({ server: url, token: 't', insecureSkipTlsVerify: false, origin: 'test' });

  it('a 410 Gone watch is recovered by a re-list: no spurious removal, a real one is seen', async () => {
    nodes = [node('a', '10.1.1.0/24', '198.18.0.1'), node('b', '10.1.2.0/24', '198.18.0.2'), node('c', undefined, undefined)];
    const log = memoryLogger();
    const peers = new KubePeers(client(), 'rudder.io', '/nonexistent', 'a');
    const events: LeaseEvent[] = [];
    const w = new LeaseWatcher(peers, log, async (evs) => void events.push(...evs));
    const ac = new AbortController();
    const running = w.run(ac.signal);
    try {
      await waitUntil(() => w.lists >= 3 || undefined, { what: 'the watcher to re-list after 410s' });
      assert.deepEqual(events.map((e) => `${e.type} ${formatCidr(e.lease.subnet)}`), ['added 10.1.1.0/24', 'added 10.1.2.0/24'], 'no removal from a 410');
      assert.ok(watches.every((v) => v === '100'), `watched from the listed resourceVersion: ${watches.join(',')}`);
      assert.ok(log.lines.some((l) => l.includes('410 Gone')), log.lines.join('\n'));
      assert.ok(log.lines.some((l) => l.includes('Node c') && l.includes('no IPv4 spec.podCIDR yet')), 'a Node without podCIDR is reported');
      nodes = nodes.filter((n) => n.metadata.name !== 'b');
      rv = 120;
      await waitUntil(() => events.length === 3 || undefined, { what: 'the removal of b after a re-list' });
      assert.equal(`${events[2]?.type} ${formatCidr(events[2]!.lease.subnet)}`, 'removed 10.1.2.0/24');
      // A watch the server ends cleanly is reopened from the last resourceVersion, with no re-list.
      watches.length = 0;
      watchMode = 'end';
      await waitUntil(() => watches.length >= 1 || undefined, { what: 'the watch the server will end' });
      const lists = w.lists;
      await waitUntil(() => watches.length >= 2 || undefined, { what: 'the watch reopened after a clean end' });
      assert.equal(watches[1], '130', `reopened from the event's resourceVersion: ${watches.join(',')}`);
      assert.equal(w.lists, lists, 'no re-list');
      assert.equal(`${events[3]?.type} ${formatCidr(events[3]!.lease.subnet)}`, 'added 10.1.4.0/24');
    } finally {
      ac.abort();
      await running;
      peers.close();
    }
  });

  it('the keeper: says why there is no subnet yet, then publishes annotations and the condition', async () => {
    watchMode = 'open';
    nodes = [node('me', undefined, undefined)];
    const log = memoryLogger();
    const c = client();
    const keeper = new KubeKeeper(
      { config: parseConfig('{"Network":"10.1.0.0/16","Backend":{"Type":"vxlan"}}'), publicIP: parseIp('198.18.0.9') as number, backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: '02:00:00:00:00:09' }, ttlMs: 1, renewMarginMs: 1, log },
      c,
      'rudder.io',
      'me',
    );
    try {
      await assert.rejects(keeper.acquire(null), (e) => isRudderError(e, 'E_ACQUIRE') && /no spec\.podCIDR yet: kube-controller-manager allocates one when run with --allocate-node-cidrs=true and --cluster-cidr=10\.1\.0\.0\/16/.test(e.message));
      nodes[0]!.spec.podCIDR = '10.9.3.0/24';
      await assert.rejects(keeper.acquire(null), (e) => isRudderError(e, 'E_ACQUIRE') && /podCIDR 10\.9\.3\.0\/24, outside the configured Network 10\.1\.0\.0\/16/.test(e.message));
      nodes[0]!.spec.podCIDR = '10.1.3.0/24';
      nodes[0]!.metadata.annotations['rudder.io/public-ip-overwrite'] = '203.0.113.7';
      const lease = await keeper.acquire(null);
      assert.equal(formatCidr(lease.subnet), '10.1.3.0/24');
      const a = nodes[0]!.metadata.annotations;
      assert.equal(a['rudder.io/public-ip'], '203.0.113.7', 'the overwrite annotation wins');
      assert.equal(a['rudder.io/backend-data'], '{"VNI":1,"VtepMAC":"02:00:00:00:00:09"}');
      const ac = new AbortController();
      const keeping = keeper.keep(ac.signal);
      await waitUntil(() => requests.find((r) => r.path === '/api/v1/nodes/me/status'), { what: 'the status patch' });
      // New BackendData (a rotated wireguard key): the annotation is patched, the lease says so.
      keeper.setBackendData({ VNI: 1, VtepMAC: '02:00:00:00:00:0a' });
      await waitUntil(() => nodes[0]!.metadata.annotations['rudder.io/backend-data']?.includes('0a') || undefined, { what: 'the backend-data annotation republished' });
      assert.deepEqual(keeper.lease.backendData, { VNI: 1, VtepMAC: '02:00:00:00:00:0a' });
      ac.abort();
      await keeping;
      const st = requests.find((r) => r.path === '/api/v1/nodes/me/status')!;
      assert.equal(st.type, 'application/strategic-merge-patch+json');
      assert.match(st.body, /"type":"NetworkUnavailable","status":"False","reason":"RudderIsUp"/);
      assert.ok(requests.filter((r) => r.method === 'PATCH').every((r) => r.path.startsWith('/api/v1/nodes/me')), 'only its own Node is written');
    } finally {
      c.close();
    }
  });

  it('dual-stack: the keeper names the Node and the field it waits for, then publishes both families; peers carry theirs', async () => {
    watchMode = 'open';
    nodes = [
      node('me6', '10.1.7.0/24', undefined),
      {
        metadata: {
          name: 'peer6',
          resourceVersion: '1',
          annotations: {
            'rudder.io/public-ip': '198.18.0.8',
            'rudder.io/public-ipv6': '2001:2::8',
            'rudder.io/backend-type': 'host-gw',
            'rudder.io/backend-data': 'null',
            'rudder.io/backend-v6-data': 'null',
          },
        },
        spec: { podCIDR: '10.1.8.0/24', podCIDRs: ['10.1.8.0/24', 'fd01:0:0:8::/64'] },
      },
    ];
    const log = memoryLogger();
    const c = client();
    const config = parseConfig('{"Network":"10.1.0.0/16","EnableIPv6":true,"IPv6Network":"fd01::/48","Backend":{"Type":"host-gw"}}');
    const keeper = new KubeKeeper(
      { config, publicIP: parseIp('198.18.0.7') as number, publicIPv6: parseIp6('2001:2::7'), backendType: 'host-gw', backendData: {}, backendV6Data: {}, ttlMs: 1, renewMarginMs: 1, log },
      c,
      'rudder.io',
      'me6',
    );
    const peers = new KubePeers(c, 'rudder.io', '/nonexistent', 'me6');
    try {
      await assert.rejects(keeper.acquire(null, null), (e) => isRudderError(e, 'E_ACQUIRE') && /^Node me6 has no IPv6 entry in spec\.podCIDRs \(10\.1\.7\.0\/24\), and EnableIPv6 needs one: run a dual-stack cluster \(kube-controller-manager --allocate-node-cidrs=true --cluster-cidr=10\.1\.0\.0\/16,fd01::\/48\); waiting$/.test(e.message));
      nodes[0]!.spec.podCIDRs = ['10.1.7.0/24', 'fd09:0:0:7::/64'];
      await assert.rejects(keeper.acquire(null, null), (e) => isRudderError(e, 'E_ACQUIRE') && /Node me6 has the IPv6 spec\.podCIDRs entry fd09:0:0:7::\/64, outside the configured IPv6Network fd01::\/48/.test(e.message));
      nodes[0]!.spec.podCIDRs = ['10.1.7.0/24', 'fd01:0:0:7::/64'];
      const lease = await keeper.acquire(null, null);
      assert.equal(formatLeaseKey(lease), '10.1.7.0-24&fd01:0:0:7::-64');
      assert.equal(lease.publicIPv6 !== undefined && formatIp6(lease.publicIPv6), '2001:2::7');
      const a = nodes[0]!.metadata.annotations;
      assert.equal(a['rudder.io/public-ip'], '198.18.0.7');
      assert.equal(a['rudder.io/public-ipv6'], '2001:2::7');
      assert.equal(a['rudder.io/backend-v6-data'], '{}');
      // public-ipv6-overwrite wins, as in flannel (read at the next acquire, as public-ip-overwrite).
      a['rudder.io/public-ipv6-overwrite'] = '2001:db8::7';
      const over = await keeper.acquire(null, null);
      assert.equal(over.publicIPv6 !== undefined && formatIp6(over.publicIPv6), '2001:db8::7');
      assert.equal(a['rudder.io/public-ipv6'], '2001:db8::7');
      assert.ok(log.lines.some((l) => /public IPv6 from the node annotation/.test(l)), log.lines.join('\n'));
      delete a['rudder.io/public-ipv6-overwrite'];
      await keeper.acquire(null, null);
      assert.equal(a['rudder.io/public-ipv6'], '2001:2::7', 'back to its own once the overwrite is gone');

      // The peers are read for the keeper's families.
      peers.useConfig(config);
      const list = await peers.listLeases();
      const keys = list.records.map((r) => formatLeaseKey(r.lease)).sort();
      assert.deepEqual(keys, ['10.1.7.0-24&fd01:0:0:7::-64', '10.1.8.0-24&fd01:0:0:8::-64']);
      const peer = list.records.find((r) => r.lease.publicIP === parseIp('198.18.0.8'))!.lease;
      assert.equal(peer.publicIPv6 !== undefined && formatIp6(peer.publicIPv6), '2001:2::8');
      assert.deepEqual(peer.backendV6Data, {});
    } finally {
      c.close();
    }
  });

  it('IPv6-only: the Node\'s IPv6 podCIDR alone is the lease', async () => {
    nodes = [{ metadata: { name: 'only6', resourceVersion: '1', annotations: {} }, spec: { podCIDR: 'fd01:0:0:9::/64', podCIDRs: ['fd01:0:0:9::/64'] } }];
    const c = client();
    const keeper = new KubeKeeper(
      { config: parseConfig('{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd01::/48","Backend":{"Type":"host-gw"}}'), publicIP: 0, publicIPv6: parseIp6('2001:2::9'), backendType: 'host-gw', backendData: {}, backendV6Data: {}, ttlMs: 1, renewMarginMs: 1, log: memoryLogger() },
      c,
      'rudder.io',
      'only6',
    );
    try {
      const lease = await keeper.acquire(null, null);
      assert.equal(formatLeaseKey(lease), '0.0.0.0-0&fd01:0:0:9::-64');
      const a = nodes[0]!.metadata.annotations;
      assert.equal(a['rudder.io/public-ip'], undefined, 'no IPv4 underlay: no public-ip');
      assert.equal(a['rudder.io/public-ipv6'], '2001:2::9');
    } finally {
      c.close();
    }
  });

  it('a rotated token file is read again', async () => {
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rudder-token-'));
    const tokenFile = path.join(dir, 'token');
    fs.writeFileSync(tokenFile, 'first\n');
    const c = new KubeClient({ server: url, tokenFile, insecureSkipTlsVerify: false, origin: 'test' }, { tokenRereadMs: 0 });
    try {
      await c.request('GET', '/api/v1/nodes');
      fs.writeFileSync(tokenFile, 'second\n');
      await c.request('GET', '/api/v1/nodes');
      assert.deepEqual(auths.slice(-2), ['Bearer first', 'Bearer second']);
    } finally {
      c.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an unreachable API server is named with what failed', async () => {
    const c = new KubeClient({ server: 'http://127.0.0.1:1', insecureSkipTlsVerify: false, origin: 'test' });
    try {
      await assert.rejects(c.request('GET', '/api/v1/nodes'), (e) => isRudderError(e, 'E_KUBE') && /Kubernetes API server http:\/\/127\.0\.0\.1:1 unreachable: GET http:\/\/127\.0\.0\.1:1\/api\/v1\/nodes: .*ECONNREFUSED/.test(e.message));
    } finally {
      c.close();
    }
  });
});
