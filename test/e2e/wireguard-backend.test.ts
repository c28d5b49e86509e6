/**
 * The wireguard backend end to end, with real everything: etcd in its
 * namespace, `bin/rudder` daemons in three host namespaces with
 * `{"Backend":{"Type":"wireguard"}}` (the one config line a user writes),
 * the native data plane in WireGuard mode, pods behind each host's bridge.
 * Each host has its own key file in its directory (the hosts share one file
 * system). Proved: every pod reaches every other; the lease publishes the
 * key file's public key and the port; the key file is 0600; a restarted
 * daemon keeps its key and its peers reconnect with nobody acting; a key
 * rotation (the command, SIGHUP) republishes the lease and every pod
 * reaches every other again; a removed lease removes the peer. The protocol itself (capture, forgery,
 * replay, interop) is proved by test/e2e/wireguard-dataplane.test.ts.
 * Waits have generous give-ups; nothing asserts how fast anything happened.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { createCluster, type Cluster, type Host } from '../../src/topology';
import { parseKeyFile, publicKeyOf, tai64nFile } from '../../src/backend/wireguard';
import { skipUnlessEtcd, skipUnlessRoot } from '../helpers/env';
import { eventually, fullMesh, leaseOf, link, podReaches } from '../helpers/kernel-backends-net';

const NETWORK = '10.42.0.0/16';
const CONFIG = { Network: NETWORK, Backend: { Type: 'wireguard' } };
const TUN = 'rudder-wg';

const execFileP = promisify(execFile);
const keyFileOf = (h: Host): string => path.join(h.dir, 'wireguard.key');
const publicKeyIn = (file: string): string => publicKeyOf(parseKeyFile(file, fs.readFileSync(file)));
const keyOf = (c: Cluster, subnet: string): string => `${c.etcdPrefix}/subnets/${subnet.replace('/', '-')}`;

describe('wireguard backend', { skip: skipUnlessRoot || skipUnlessEtcd }, () => {
  let c: Cluster;
  const h = (i: number): Host => c.host(i);

  before(async () => {
    c = await createCluster({ hosts: 3, underlayMtu: 1500 });
    for (const x of c.hosts) x.rudderArgs.push(`-wireguard-key-file=${keyFileOf(x)}`);
    await c.putConfig(CONFIG);
  });
  after(async () => {
    await c?.teardown();
  });

  it('3 hosts: MTU 1420 in the subnet files, every pod reaches every other pod', async () => {
    for (const i of [1, 2, 3]) {
      const { env } = await h(i).up();
      assert.equal(env.mtu, 1420, `${h(i).name} RUDDER_MTU`);
      assert.equal(env.network, NETWORK);
    }
    await fullMesh(c, [h(1), h(2), h(3)]);
  });

  it('each lease publishes the key file\'s public key and the port; key files are 0600 and differ', async () => {
    const keys = new Set<string>();
    for (const x of [h(1), h(2), h(3)]) {
      const file = keyFileOf(x);
      assert.equal(fs.statSync(file).mode & 0o777, 0o600, `${file} mode`);
      const l = await leaseOf(c, x);
      assert.equal(l.value['BackendType'], 'wireguard');
      const data = l.value['BackendData'] as { PublicKey?: string; Port?: number };
      assert.deepEqual(data, { PublicKey: publicKeyIn(file), Port: 51820 });
      keys.add(data.PublicKey ?? '');
      const dev = await link(x, TUN);
      assert.ok(dev, `${x.name} has ${TUN}`);
      assert.equal(dev.mtu, 1420);
    }
    assert.equal(keys.size, 3);
  });

  it('a restarted daemon keeps its key, and its peers reconnect without anyone acting', async () => {
    const h2 = h(2);
    const before = fs.readFileSync(keyFileOf(h2));
    const pub = (await leaseOf(c, h2)).value['BackendData'];
    const pid = h2.rudder?.pid;
    await h2.stopRudder();
    const floor = fs.readFileSync(tai64nFile(keyFileOf(h2)), 'latin1');
    assert.match(floor, /^[0-9a-f]{24}\n$/, 'the TAI64N floor is saved at stop');
    await h2.startRudder();
    await h2.waitSubnetFile();
    assert.notEqual(h2.rudder?.pid, pid);
    assert.ok(fs.readFileSync(keyFileOf(h2)).equals(before), 'same key file');
    assert.deepEqual((await leaseOf(c, h2)).value['BackendData'], pub, 'same BackendData');
    // The peers still hold sessions with the old run's keys: traffic from them must bring a new handshake.
    await podReaches(c, h(1), h2);
    await podReaches(c, h(3), h2);
    await fullMesh(c, [h(1), h2, h(3)]);
  });

  it('key rotation (rudder wireguard rotate-key, SIGHUP): new 0600 key file, the lease republished, every pod reaches every other again', async () => {
    const [h1, h3] = [h(1), h(3)];
    const old1 = publicKeyIn(keyFileOf(h1));
    const { stdout } = await execFileP(c.rudderBin, ['wireguard', 'rotate-key', `-wireguard-key-file=${keyFileOf(h1)}`]);
    const new1 = stdout.trim();
    assert.notEqual(new1, old1);
    assert.equal(publicKeyIn(keyFileOf(h1)), new1, 'the command prints the key file\'s new public key');
    assert.equal(fs.statSync(keyFileOf(h1)).mode & 0o777, 0o600);

    const old3 = publicKeyIn(keyFileOf(h3));
    const pid = h3.rudder?.pid;
    assert.ok(pid !== undefined);
    process.kill(pid, 'SIGHUP');
    await eventually(c, `${h3.name} rotating its key on SIGHUP`, async () => publicKeyIn(keyFileOf(h3)) !== old3);
    assert.equal(fs.statSync(keyFileOf(h3)).mode & 0o777, 0o600);

    for (const [x, pub] of [[h1, new1], [h3, publicKeyIn(keyFileOf(h3))]] as const) {
      await eventually(c, `${x.name}'s lease publishing ${pub}`, async () => ((await leaseOf(c, x)).value['BackendData'] as { PublicKey?: string }).PublicKey === pub);
      assert.deepEqual((await leaseOf(c, x)).value['BackendData'], { PublicKey: pub, Port: 51820 });
    }
    assert.equal(h3.rudder?.pid, pid, 'SIGHUP does not stop the daemon');
    await fullMesh(c, [h1, h(2), h3]);
  });

  it('a removed lease removes its peer on every other host', async () => {
    const h3 = h(3);
    const l3 = await leaseOf(c, h3);
    const pub = (l3.value['BackendData'] as { PublicKey: string }).PublicKey;
    await h3.stopRudder();
    await c.etcdctl(['del', keyOf(c, l3.subnet)]);
    for (const v of [h(1), h(2)]) {
      await eventually(c, `${v.name} removing the peer of ${l3.subnet}`, async () =>
        fs
          .readFileSync(v.logFile, 'utf8')
          .split('\n')
          .some((line) => line.includes('wireguard peer removed') && line.includes(l3.subnet) && line.includes(pub)),
      );
    }
    await fullMesh(c, [h(1), h(2)]);
  });
});
