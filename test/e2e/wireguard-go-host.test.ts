/**
 * A host running the reference userspace WireGuard (Debian's wireguard-go,
 * configured with `wg`) in a network of Rudder hosts with
 * `{"Backend":{"Type":"wireguard"}}`: its lease is written by hand in
 * flannel's shape (`BackendType` "wireguard", `BackendData` with only the
 * `PublicKey`: the port is the network's `ListenPort`), its pod sits behind a
 * bridge like a Rudder host's. Proved with the real daemon (etcd, lease
 * watch, key file, data plane), without and with a PSK: pods reach each
 * other both ways, the handshake initiated by Rudder first, then — after
 * wireguard-go restarts with the same key — by wireguard-go (its own log
 * says which side sent the initiation). The data plane alone against
 * wireguard-go is test/e2e/wireguard-dataplane.test.ts.
 * Waits have generous give-ups; nothing asserts how fast anything happened.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createCluster, parseSubnetEnv, run, type Cluster, type Host, type ManagedProcess } from '../../src/topology';

import { skipUnlessEtcd, skipUnlessRoot } from '../helpers/env';
import { leaseOf, podReaches } from '../helpers/kernel-backends-net';
import { waitUntil } from '../helpers/wait';

const haveWg = ['wireguard-go', 'wg'].every((b) => ['/usr/bin', '/usr/sbin', '/bin', '/sbin'].some((d) => fs.existsSync(path.join(d, b))));
const skip = skipUnlessRoot || skipUnlessEtcd || (!haveWg && 'needs wireguard-go and wg (Debian wireguard-go, wireguard-tools)');

const LISTEN_PORT = 51820;

for (const [n, withPsk] of [false, true].entries()) {
  const label = withPsk ? 'with a PSK' : 'without a PSK';
  const octet = 60 + n;
  const network = `10.${octet}.0.0/16`;
  /** The wireguard-go host's subnet (its lease is written by hand). */
  const goSubnet = `10.${octet}.200.0/24`;

  describe(`wireguard backend beside a wireguard-go host (${label})`, { skip }, () => {
    let c: Cluster;
    let rh: Host; // runs rudder
    let gh: Host; // runs wireguard-go
    let ifname = '';
    let goLog = '';
    let go: ManagedProcess | null = null;
    const psk = withPsk ? Buffer.from(Array.from({ length: 32 }, (_, i) => (i * 37 + 11) & 0xff)).toString('base64') : undefined;
    const wg = async (args: readonly string[]): Promise<string> => (await gh.exec(['wg', ...args])).stdout;

    async function startGo(): Promise<void> {
      fs.appendFileSync(goLog, `--- harness: starting wireguard-go ${ifname} at ${new Date().toISOString()}\n`);
      go = await gh.ns.spawn(['wireguard-go', '-f', ifname], { logFile: goLog, label: `wireguard-go ${gh.name}`, env: { ...process.env, LOG_LEVEL: 'verbose' } });
      await waitUntil(async () => (await gh.exec(['wg', 'show', ifname], { allowFailure: true })).code === 0 || undefined, {
        giveUpMs: c.giveUpMs,
        intervalMs: 100,
        what: `wireguard-go ${ifname} in ${gh.ns.name} (log ${goLog})`,
      });
      const rudderKey = (await leaseOf(c, rh)).value['BackendData'] as { PublicKey: string };
      const rudderSubnet = (await leaseOf(c, rh)).subnet;
      await wg(['set', ifname, 'private-key', path.join(gh.dir, 'wg.key'), 'listen-port', String(LISTEN_PORT)]);
      await wg(['set', ifname, 'peer', rudderKey.PublicKey, ...(psk !== undefined ? ['preshared-key', path.join(gh.dir, 'psk')] : []), 'allowed-ips', rudderSubnet, 'endpoint', `${rh.underlayIp}:${LISTEN_PORT}`]);
      await gh.ns.ip(['link', 'set', ifname, 'mtu', '1420', 'up']);
      await gh.ns.ip(['route', 'replace', network, 'dev', ifname]);
    }

    /** The lines of wireguard-go's log since `mark` (a byte offset). */
    const goLogSince = (mark: number): string => fs.readFileSync(goLog).subarray(mark).toString('utf8');

    before(async () => {
      c = await createCluster({ hosts: 2, underlayMtu: 1500 });
      rh = c.host(1);
      gh = c.host(2);
      rh.rudderArgs.push(`-wireguard-key-file=${path.join(rh.dir, 'wireguard.key')}`);
      await c.putConfig({ Network: network, Backend: { Type: 'wireguard', ...(psk !== undefined ? { PSK: psk } : {}) } });
      ifname = `wgg${c.tag.tag}`;
      goLog = path.join(gh.dir, 'wireguard-go.log');

      // The wireguard-go host: a key from `wg genkey`, a lease in flannel's shape, a pod behind a bridge.
      const priv = (await run(['wg', 'genkey'])).stdout.trim();
      const pub = (await run(['wg', 'pubkey'], { input: `${priv}\n` })).stdout.trim();
      fs.writeFileSync(path.join(gh.dir, 'wg.key'), `${priv}\n`, { mode: 0o600 });
      if (psk !== undefined) fs.writeFileSync(path.join(gh.dir, 'psk'), `${psk}\n`, { mode: 0o600 });
      const lease = { PublicIP: gh.underlayIp, PublicIPv6: null, BackendType: 'wireguard', BackendData: { PublicKey: pub } };
      const put = await c.etcdctl(['put', `${c.etcdPrefix}/subnets/${goSubnet.replace('/', '-')}`, JSON.stringify(lease)]);
      assert.equal(put.code, 0, put.stderr);
      const [a, b, cc] = goSubnet.split('.') as [string, string, string];
      await gh.setupPod(parseSubnetEnv(`RUDDER_NETWORK=${network}\nRUDDER_SUBNET=${a}.${b}.${cc}.1/24\nRUDDER_MTU=1420\nRUDDER_IPMASQ=false\n`, 'the wireguard-go host'));

      await rh.up();
      await startGo();
    });

    after(async () => {
      await go?.stop();
      await c?.teardown();
    });

    it('Rudder initiates: pods reach each other both ways', async () => {
      const mark = fs.statSync(goLog).size;
      await podReaches(c, rh, gh);
      await podReaches(c, gh, rh);
      const log = goLogSince(mark);
      assert.match(log, /Received handshake initiation/, `wireguard-go answered Rudder's initiation (log ${goLog})`);
      const shake = (await wg(['show', ifname, 'latest-handshakes'])).trim().split(/\s+/);
      assert.ok(Number(shake[1]) > 0, `wireguard-go has a handshake with Rudder: ${shake.join(' ')}`);
      const transfer = (await wg(['show', ifname, 'transfer'])).trim().split(/\s+/);
      assert.ok(Number(transfer[1]) > 0 && Number(transfer[2]) > 0, `bytes both ways: ${transfer.join(' ')}`);
    });

    it('wireguard-go restarts with the same key and initiates: pods reach each other both ways', async () => {
      await go?.stop();
      const mark = fs.statSync(goLog).size;
      await startGo();
      // wireguard-go sends first: it has no session, so it initiates; Rudder answers as responder.
      await podReaches(c, gh, rh);
      await podReaches(c, rh, gh);
      const log = goLogSince(mark);
      assert.match(log, /Sending handshake initiation/, `wireguard-go initiated (log ${goLog})`);
      assert.match(log, /Received handshake response/, `Rudder answered (log ${goLog}; rudder log ${rh.logFile})`);
    });
  });
}
