/**
 * The daemon's control plane in real namespaces with a real etcd: systemd
 * readiness, an etcd outage that must not touch the data path, and
 * renewal afterwards.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Cluster, createCluster } from '../../src/topology/cluster';
import { ManagedProcess } from '../../src/topology/exec';
import { sleep, waitUntil } from '../../src/topology/util';

function podIp(subnet: string): string {
  // RUDDER_SUBNET is a.b.c.1/len; the harness puts the pod at .2.
  return subnet.replace(/\.1\/\d+$/, '.2');
}

describe('readiness', () => {
  let c: Cluster | undefined;
  let dir: string;
  let listener: ManagedProcess | undefined;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rudder-notify-'));
  });
  after(async () => {
    await listener?.stop(2000);
    await c?.teardown();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('READY=1 reaches NOTIFY_SOCKET once the lease is held and the subnet file written', async () => {
    const sock = path.join(dir, 'notify.sock');
    const received = path.join(dir, 'received');
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('RUDDER_')) env[k] = v;
    c = await createCluster({ hosts: 1, rudderEnv: { ...env, NOTIFY_SOCKET: sock } });
    // A unix datagram receiver standing in for systemd (filesystem sockets are visible from every namespace).
    listener = await ManagedProcess.start(['socat', '-u', `UNIX-RECV:${sock}`, `CREATE:${received}`], { label: 'notify listener', logFile: path.join(dir, 'socat.log') });
    await waitUntil(() => fs.existsSync(sock), { what: 'notify socket' });
    await c.putConfig({ Network: '10.44.0.0/16' });
    const h = c.host(1);
    await h.startRudder();
    const env1 = await h.waitSubnetFile();
    const text = await waitUntil(() => (fs.existsSync(received) ? fs.readFileSync(received, 'utf8') : false) || false, { what: 'a notify datagram' });
    assert.match(text, /READY=1/);
    assert.match(text, new RegExp(`STATUS=subnet ${env1.subnet.replace(/\.1\//, '.0/').replace(/\./g, '\\.')}`));
    assert.ok(fs.existsSync(h.subnetFile), 'subnet file exists by the time READY=1 is sent');
  });
});

describe('etcd outage', () => {
  let c: Cluster | undefined;
  after(async () => {
    await c?.teardown();
  });

  test('losing etcd never touches the data path; daemons reconnect and renew with the same subnets', async () => {
    // A short TTL so that renewals happen during the test (the margin is half of it).
    c = await createCluster({ hosts: 2, rudderArgs: ['-subnet-lease-ttl=8s', '-subnet-lease-renew-margin=4s'] });
    await c.putConfig({ Network: '10.45.0.0/16' });
    const a = await c.host(1).up();
    const b = await c.host(2).up();
    await waitUntil(async () => (await a.pod.ping(podIp(b.env.subnet), { count: 1, replyWaitS: 1 })).received === 1, { what: 'path h1 → h2' });
    const before = await c.listSubnets();

    await c.etcd.stop();
    // Traffic keeps flowing across the whole outage (longer than the lease TTL).
    const during = await a.pod.ping(podIp(b.env.subnet), { count: 40, intervalS: 0.3 });
    assert.equal(during.received, during.transmitted, `no packet lost during the outage: ${during.output}`);
    for (const h of [c.host(1), c.host(2)]) assert.ok(h.rudder?.running, `${h.name}'s daemon still runs`);
    await waitUntil(() => /etcd unreachable/.test(c!.host(1).rudderLog(20000)), { what: 'h1 logs that etcd is unreachable' });

    await c.etcd.restart();
    await waitUntil(() => /lease renewed/.test(c!.host(1).rudderLog(4000).split('etcd unreachable').pop() ?? ''), { what: 'a renewal after the outage', giveUpMs: 60_000 });
    await sleep(9_000); // longer than one TTL: leases must be alive through renewals, not leftovers
    const afterList = await c.listSubnets();
    const key = (l: Array<{ subnet: string; value: Record<string, unknown> }>): string[] => l.map((x) => `${x.subnet} ${String(x.value.PublicIP)}`).sort();
    assert.deepEqual(key(afterList), key(before), 'the same hosts hold the same subnets');
    assert.ok(afterList.every((x) => x.hasLease), 'still leases, not reservations');
    assert.equal(c.host(1).readSubnetFile()?.subnet, a.env.subnet);
    const again = await a.pod.ping(podIp(b.env.subnet), { count: 3 });
    assert.equal(again.received, 3);
  });
});
