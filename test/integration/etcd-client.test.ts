/**
 * src/etcd/client.ts against a real etcd on loopback: what the gateway's JSON
 * turns into (keys, values, revisions, lease IDs), transactions, leases,
 * watches (events, compaction), several endpoints, a black-holed etcd (every
 * request and a watch's creation end at their deadline), and auth tokens
 * that expire (fetched again).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { EtcdClient, type WatchResponse, prefixEnd } from '../../src/etcd/client';
import { isRudderError } from '../../src/errors';
import { cleanEtcdEnv, run, startEtcd, type EtcdServer } from '../../src/topology';
import { waitUntil } from '../../src/topology/util';
import { skipUnlessEtcd } from '../helpers/env';
import { FaultProxy } from '../helpers/faults-proxy';

describe('prefixEnd', () => {
  it('increments the last byte below 0xff', () => {
    assert.deepEqual(prefixEnd('/a/'), Buffer.from('/a0'));
    assert.deepEqual(prefixEnd(Buffer.from([0x61, 0xff])), Buffer.from([0x62]));
    assert.deepEqual(prefixEnd(Buffer.from([0xff])), Buffer.from([0]));
  });
});

describe('etcd client (integration)', { skip: skipUnlessEtcd }, () => {
  let etcd: EtcdServer;
  let c: EtcdClient;
  const closers: Array<() => unknown> = [];
  before(async () => {
    etcd = await startEtcd();
    c = new EtcdClient({ endpoints: etcd.endpoints, timeoutMs: 3000 });
  });
  after(async () => {
    for (const f of closers) await f();
    c?.close();
    await etcd?.dispose();
  });

  it('put, get, range by prefix, delete: keys, values and revisions as etcd has them', async () => {
    const p1 = await c.put('/kv/a', 'one');
    const p2 = await c.put('/kv/b', Buffer.from([0, 1, 2, 0xff]));
    assert.ok(BigInt(p2.revision) === BigInt(p1.revision) + 1n);
    assert.equal(await c.get('/kv/a'), 'one');
    assert.equal(await c.get('/kv/none'), null);
    const r = await c.range('/kv/', { prefix: true });
    assert.equal(r.count, 2);
    assert.equal(r.revision, p2.revision);
    assert.deepEqual(r.kvs.map((k) => k.key.toString()), ['/kv/a', '/kv/b']);
    assert.deepEqual(r.kvs[1]?.value, Buffer.from([0, 1, 2, 0xff]));
    assert.equal(r.kvs[0]?.modRevision, p1.revision);
    assert.equal(r.kvs[0]?.createRevision, p1.revision);
    assert.equal(r.kvs[0]?.lease, '0');
    assert.equal((await c.range('/kv/', { prefix: true, countOnly: true })).count, 2);
    assert.equal((await c.deleteRange('/kv/', { prefix: true })).deleted, 2);
    assert.equal((await c.range('/kv/', { prefix: true })).count, 0);
  });

  it('txn: create-if-absent and compare-and-swap on mod revision', async () => {
    const create = { compare: [{ key: '/txn/k', target: 'CREATE' as const, result: 'EQUAL' as const, against: '0' }], success: [{ put: { key: '/txn/k', value: 'v1' } }] };
    const first = await c.txn(create);
    assert.equal(first.succeeded, true);
    assert.equal((await c.txn(create)).succeeded, false);
    const cas = (rev: string, v: string): Promise<{ succeeded: boolean }> =>
      c.txn({ compare: [{ key: '/txn/k', target: 'MOD', result: 'EQUAL', against: rev }], success: [{ put: { key: '/txn/k', value: v } }] });
    assert.equal((await cas('1', 'x')).succeeded, false);
    assert.equal((await cas(first.revision, 'v2')).succeeded, true);
    assert.equal(await c.get('/txn/k'), 'v2');
  });

  it('leases: grant, attach, keep-alive, time-to-live, revoke (the key goes with it)', async () => {
    const id = await c.leaseGrant(60);
    assert.match(id, /^[1-9]\d*$/);
    await c.put('/lease/k', 'v', { lease: id });
    assert.equal((await c.range('/lease/k')).kvs[0]?.lease, id);
    assert.equal(await c.leaseKeepAlive(id), 60);
    const ttl = await c.leaseTimeToLive(id);
    assert.ok(ttl > 50 && ttl <= 60, `ttl ${ttl}`);
    await c.leaseRevoke(id);
    assert.equal(await c.get('/lease/k'), null);
    assert.equal(await c.leaseKeepAlive(id), 0);
    assert.ok((await c.leaseTimeToLive(id)) <= 0);
  });

  it('watch: events in order from a revision; a compacted revision breaks the watch', async () => {
    const start = await c.put('/w/a', '1');
    await c.put('/w/b', '2');
    await c.deleteRange('/w/a');
    const got: string[] = [];
    const stop = await c.watch('/w/', { prefix: true, startRevision: start.revision }, {
      onResponse: (r: WatchResponse) => got.push(...r.events.map((e) => `${e.type} ${e.kv.key.toString()} ${e.kv.value.toString()}`)),
      onBroken: (e) => got.push(`broken ${e.message}`),
    });
    await c.put('/w/c', '3');
    await waitUntil(() => got.length >= 4, { what: 'four events' });
    stop();
    await c.put('/w/d', '4');
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(got, ['put /w/a 1', 'put /w/b 2', 'delete /w/a ', 'put /w/c 3']);

    const head = await c.put('/w/e', '5');
    await c.compact(head.revision);
    const broken = await new Promise<Error>((resolve, reject) => {
      c.watch('/w/', { prefix: true, startRevision: start.revision }, { onResponse: () => reject(new Error('events from a compacted revision')), onBroken: resolve }).catch(resolve);
    });
    assert.match(broken.message, new RegExp(`compacted at revision ${head.revision}`));
  });

  it('several endpoints: a dead one is skipped, for reads and writes', async () => {
    const two = new EtcdClient({ endpoints: ['http://127.0.0.1:1', ...etcd.endpoints], timeoutMs: 3000 });
    closers.push(() => two.close());
    await two.put('/multi/k', 'v');
    assert.equal(await two.get('/multi/k'), 'v');
    const none = new EtcdClient({ endpoints: ['http://127.0.0.1:1', 'http://127.0.0.1:2'], timeoutMs: 3000 });
    closers.push(() => none.close());
    await assert.rejects(none.get('/multi/k'), (e: unknown) => isRudderError(e, 'E_ETCD') && /range: every endpoint failed: http:\/\/127\.0\.0\.1:1: .*ECONNREFUSED.*; http:\/\/127\.0\.0\.1:2: /.test(e.message));
  });

  it('a black-holed etcd: requests and a watch creation fail at their deadline; a broken watch is reported', async () => {
    const proxy = await FaultProxy.start(etcd.endpoints[0] as string);
    closers.push(() => proxy.close());
    const viaProxy = new EtcdClient({ endpoints: [proxy.url], timeoutMs: 800 });
    closers.push(() => viaProxy.close());
    assert.equal(await viaProxy.get('/kv/none'), null);
    let brokenBy: Error | null = null;
    await viaProxy.watch('/bh/', { prefix: true }, { onResponse: () => undefined, onBroken: (e) => (brokenBy = e) });
    proxy.pause();
    const t0 = Date.now();
    await assert.rejects(viaProxy.get('/kv/none'), (e: unknown) => isRudderError(e, 'E_ETCD') && /no answer within 800 ms/.test(e.message));
    await assert.rejects(viaProxy.watch('/bh2/', { prefix: true }, { onResponse: () => undefined, onBroken: () => undefined }), (e: unknown) => isRudderError(e, 'E_ETCD') && /watch: .*no answer within 800 ms/.test(e.message));
    assert.ok(Date.now() - t0 < 5000, 'both ended near their deadline');
    proxy.resume();
    proxy.cut();
    await waitUntil(() => brokenBy !== null, { what: 'the cut watch to be reported broken' });
    proxy.heal();
    assert.equal(await viaProxy.get('/kv/none'), null, 'works again after the partition');
  });
});

describe('etcd client with auth (integration)', { skip: skipUnlessEtcd }, () => {
  let etcd: EtcdServer;
  before(async () => {
    // Simple tokens that live 1 s: every request after a pause meets an expired token.
    etcd = await startEtcd({ extraArgs: ['--auth-token-ttl=1'] });
    const etcdctl = (args: string[]): Promise<unknown> =>
      run(['etcdctl', `--endpoints=${etcd.clientUrl}`, ...args], { env: cleanEtcdEnv({ ETCDCTL_API: '3' }), errorCode: 'E_ETCD' });
    await etcdctl(['user', 'add', 'root:root-pw-1']);
    await etcdctl(['auth', 'enable']);
  });
  after(async () => {
    await etcd?.dispose();
  });

  it('authenticates, and authenticates again when etcd no longer knows the token', async () => {
    const c = new EtcdClient({ endpoints: etcd.endpoints, auth: { username: 'root', password: 'root-pw-1' }, timeoutMs: 3000 });
    try {
      await c.put('/auth/k', 'v1');
      await new Promise((r) => setTimeout(r, 2500));
      assert.equal(await c.get('/auth/k'), 'v1');
      const bad = new EtcdClient({ endpoints: etcd.endpoints, auth: { username: 'root', password: 'nope' }, timeoutMs: 3000 });
      await assert.rejects(bad.get('/auth/k'), (e: unknown) => isRudderError(e, 'E_ETCD') && /authentication failed/.test(e.message) && !e.message.includes('nope'));
      bad.close();
    } finally {
      c.close();
    }
  });
});
