/**
 * One PublicIP, one subnet holder (issue 17, item 6), with real daemons in
 * namespaces and a real etcd: h1 and h2 both started with h1's address as
 * -public-ip. h2 must not take h1's lease: it logs the conflict (naming the
 * key, both identities, the address and -public-ip), keeps retrying,
 * writes no subnet file and changes no key, while h1's pod keeps reaching
 * h3's. Once h1 is gone (its key deleted, as an expiry would), h2 gets a
 * subnet of its own.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Cluster, createCluster } from '../../src/topology/cluster';
import { waitUntil } from '../../src/topology/util';
import { skipUnlessEtcd, skipUnlessRoot } from '../helpers/env';

function podIp(subnet: string): string {
  return subnet.replace(/\.1\/\d+$/, '.2'); // the harness puts the pod at .2
}

describe('host identity', { skip: skipUnlessRoot || skipUnlessEtcd }, () => {
  let c: Cluster;
  before(async () => {
    c = await createCluster({ hosts: 3 });
    await c.putConfig({ Network: '10.47.0.0/16' });
  });
  after(async () => {
    await c?.teardown();
  });

  test('a second host with the PublicIP of a live lease refuses, retries, and touches nothing', async () => {
    const h1 = c.host(1);
    const h2 = c.host(2);
    const h3 = c.host(3);
    const shared = `-public-ip=${h1.underlayIp}`;
    const a = await h1.up([shared]);
    const b = await h3.up();
    const before = await c.listSubnets();
    assert.equal(before.length, 2);
    const own = before.find((l) => l.value.PublicIP === h1.underlayIp);
    assert.ok(own, JSON.stringify(before));
    const id1 = fs.readFileSync(path.join(h1.dir, 'host-id'), 'utf8').trim();
    assert.equal(own.value.RudderHostID, id1, "h1's lease carries its identity");

    await h2.startRudder([shared]);
    const conflicts = (): string[] => h2.rudderLog(200_000).split('\n').filter((l) => l.includes('is held by another host'));
    // Logged, then retried (every 10 s).
    await waitUntil(() => conflicts().length >= 2, { what: `h2 logging the conflict twice; log ${h2.logFile}`, giveUpMs: 60_000 });
    const id2 = fs.readFileSync(path.join(h2.dir, 'host-id'), 'utf8').trim();
    assert.notEqual(id2, id1, 'hosts in namespaces of one machine have identities of their own');
    const line = conflicts()[0] as string;
    const key = `${c.etcdPrefix}/subnets/${own.subnet.replace('/', '-')}`;
    for (const s of [h1.underlayIp, key, id1, id2, '-public-ip']) assert.ok(line.includes(s), `${s} in: ${line}`);
    assert.ok(h2.rudder?.running, 'h2 keeps running (and retrying)');
    assert.equal(h2.readSubnetFile(), null, 'h2 wrote no subnet file');
    assert.deepEqual(await c.listSubnets(), before, "no key was written: h1's lease is as it was");

    // h1 keeps working both ways.
    for (const [from, to] of [[a, b], [b, a]] as const) {
      const p = await from.pod.ping(podIp(to.env.subnet), { count: 3 });
      assert.equal(p.received, 3, p.output);
    }

    // The twin goes away (stopped, its lease gone as after expiry): h2 takes a subnet of its own.
    await h1.stopRudder();
    await c.etcdctl(['del', key]);
    const env2 = await h2.waitSubnetFile({ giveUpMs: 60_000 });
    const after = await c.listSubnets();
    const mine = after.find((l) => l.value.RudderHostID === id2);
    assert.ok(mine, JSON.stringify(after));
    assert.equal(`${mine.subnet.replace(/\.0\//, '.1/')}`, env2.subnet);
  });
});
