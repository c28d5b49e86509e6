/**
 * The etcd harness itself: a real etcd on loopback, usable with Rudder's etcd
 * client, surviving restarts and crashes with its data, and gone after stop.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { after, describe, it } from 'node:test';
import { EtcdClient } from '../../src/etcd/client';
import { isRudderError } from '../../src/errors';
import { startEtcd, startEtcdCluster, pidAlive, type EtcdServer } from '../../src/topology';
import { skipUnlessEtcd } from '../helpers/env';
import { waitUntil } from '../helpers/wait';

function client(endpoints: string[]): EtcdClient {
  return new EtcdClient({ endpoints });
}

/** Resolves true when something accepts TCP connections on the endpoint. */
function accepts(endpoint: string): Promise<boolean> {
  const u = new URL(endpoint);
  return new Promise((resolve) => {
    const s = net.connect({ host: u.hostname, port: Number(u.port) });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function withClient<T>(endpoints: string[], fn: (c: EtcdClient) => Promise<T>): Promise<T> {
  const c = client(endpoints);
  try {
    return await fn(c);
  } finally {
    c.close();
  }
}

describe('etcd harness (loopback)', { skip: skipUnlessEtcd }, () => {
  const servers: EtcdServer[] = [];
  after(async () => {
    await Promise.all(servers.map((s) => s.dispose()));
  });

  it("starts a healthy etcd on 127.0.0.1 that Rudder's etcd client can use", async () => {
    const e = await startEtcd();
    servers.push(e);
    assert.equal(e.endpoints.length, 1);
    assert.match(e.endpoints[0] ?? '', /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.ok(e.pid !== null && pidAlive(e.pid), 'etcd process is alive');
    // The PID is etcd itself, not a wrapper, so signals reach the server.
    assert.equal(fs.readFileSync(`/proc/${e.pid}/comm`, 'utf8').trim(), 'etcd');
    assert.ok(fs.existsSync(e.logFile), 'log file exists');
    assert.equal(await e.healthy(), true);

    await withClient(e.endpoints, async (c) => {
      await c.put('/harness/hello', 'world');
      assert.equal(await c.get('/harness/hello'), 'world');
      assert.equal(await c.get('/harness/absent'), null);
    });
  });

  it('two servers run side by side on different ports with separate data', async () => {
    const [a, b] = await Promise.all([startEtcd({ name: 'a' }), startEtcd({ name: 'b' })]);
    servers.push(a, b);
    assert.notEqual(a.clientPort, b.clientPort);
    assert.notEqual(a.dataDir, b.dataDir);
    await withClient(a.endpoints, async (c) => void (await c.put('/only/in/a', '1')));
    assert.equal(await withClient(b.endpoints, (c) => c.get('/only/in/a')), null);
    assert.equal(await withClient(a.endpoints, (c) => c.get('/only/in/a')), '1');
  });

  it('restart keeps the data, the ports and the data dir; the process is new', async () => {
    const e = await startEtcd();
    servers.push(e);
    const before = { pid: e.pid, endpoints: e.endpoints, dataDir: e.dataDir };
    await withClient(e.endpoints, async (c) => void (await c.put('/harness/persist', 'kept')));

    await e.restart();

    assert.notEqual(e.pid, before.pid);
    assert.ok(before.pid !== null && !pidAlive(before.pid), 'old process is gone');
    assert.deepEqual(e.endpoints, before.endpoints);
    assert.equal(e.dataDir, before.dataDir);
    assert.equal(await withClient(e.endpoints, (c) => c.get('/harness/persist')), 'kept');
  });

  it('kill (SIGKILL) looks like a crash; start() again recovers the data', async () => {
    const e = await startEtcd();
    servers.push(e);
    await withClient(e.endpoints, async (c) => void (await c.put('/harness/crash', 'survives')));
    const pid = e.pid;
    await e.kill();
    assert.equal(e.running, false);
    assert.equal(e.process?.exit?.signal, 'SIGKILL');
    assert.ok(pid !== null && !pidAlive(pid));

    await e.start();
    assert.equal(await withClient(e.endpoints, (c) => c.get('/harness/crash')), 'survives');
  });

  it('stop ends the process and frees the port; dispose removes the data dir', async () => {
    const e = await startEtcd();
    const pid = e.pid;
    assert.equal(await accepts(e.clientUrl), true);

    await e.stop();

    assert.equal(e.running, false);
    assert.equal(e.pid, null);
    assert.ok(pid !== null && !pidAlive(pid), 'process gone after stop');
    // SIGTERM was enough: etcd shut down by itself, no SIGKILL needed.
    assert.notEqual(e.process?.exit?.signal, 'SIGKILL');
    // The listening socket goes with the process.
    assert.equal(await accepts(e.clientUrl), false);
    assert.ok(fs.existsSync(e.dataDir), 'data dir kept after stop (for start/restart)');

    await e.dispose();
    assert.equal(fs.existsSync(e.dataDir), false, 'data dir removed by dispose');
  });

  it('reports an etcd that cannot start as E_ETCD with its command and log', async () => {
    const err = await startEtcd({ extraArgs: ['--no-such-flag-for-etcd'] }).then(
      () => null,
      (e: unknown) => e,
    );
    if (!isRudderError(err, 'E_ETCD')) assert.fail(`expected an E_ETCD RudderError, got ${String(err)}`);
    assert.match(err.message, /exited/);
    assert.match(err.message, /--no-such-flag-for-etcd/);
    assert.match(err.message, /flag provided but not defined|unknown flag/i);
  });

  it('a 3-member cluster serves through any member and survives losing one', async (t) => {
    const cl = await startEtcdCluster();
    t.after(() => cl.dispose());
    assert.equal(cl.members.length, 3);
    assert.equal(new Set(cl.endpoints).size, 3);

    const m1 = cl.member(0).endpoints;
    const m3 = cl.member(2).endpoints;
    await withClient(m1, async (c) => void (await c.put('/cluster/k', 'v1')));
    // A linearizable read through another member sees the write.
    assert.equal(await withClient(m3, (c) => c.get('/cluster/k')), 'v1');

    await cl.member(0).kill();
    // Two of three keep quorum: writes through the survivors still succeed.
    // Leader election after the loss may take a moment; the wait is a give-up, not a timing check.
    await waitUntil(() => withClient(m3, async (c) => void (await c.put('/cluster/k', 'v2'))).then(() => true), {
      what: 'a write after losing one member',
    });
    assert.equal(await withClient(cl.member(1).endpoints, (c) => c.get('/cluster/k')), 'v2');

    await cl.member(0).start();
    await waitUntil(async () => (await withClient(m1, (c) => c.get('/cluster/k'))) === 'v2', {
      what: 'the restarted member to catch up',
    });
  });
});
