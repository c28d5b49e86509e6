/**
 * The kernel backends (vxlan, host-gw) end to end, each on its own
 * one-machine cluster of namespaced hosts with real etcd and the real
 * daemon: full mesh, a late join, restarts, a deleted lease, the Network's
 * first subnet, repair of hand-made damage and switching backends.
 * Waits have generous give-ups; nothing asserts how fast anything happened.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createCluster, type Cluster, type Host } from '../../src/topology';
import { skipUnlessEtcd, skipUnlessRoot } from '../helpers/env';
import { addrs, eventually, fdb, fullMesh, leaseOf, link, links, neighbors, podReaches, rudderRoutes } from '../helpers/kernel-backends-net';

type Kind = 'vxlan' | 'host-gw';
const VXLAN_DEV = 'rudder.1';

const keyOf = (c: Cluster, subnet: string, prefix = c.etcdPrefix): string => `${prefix}/subnets/${subnet.replace('/', '-')}`;
const netAddr = (subnet: string): string => subnet.split('/')[0] as string;

for (const [n, kind] of (['vxlan', 'host-gw'] as const).entries()) {
  const other: Kind = kind === 'vxlan' ? 'host-gw' : 'vxlan';
  const octet = 40 + n;
  const network = `10.${octet}.0.0/16`;
  // Four /24s for four hosts: one of them must hold 10.x.0.0/24, the Network's first subnet.
  const config = { Network: network, SubnetMin: `10.${octet}.0.0`, SubnetMax: `10.${octet}.3.0`, Backend: { Type: kind } };
  const wantMtu = kind === 'vxlan' ? 1450 : 1500;

  describe(`kernel backend ${kind}`, { skip: skipUnlessRoot || skipUnlessEtcd }, () => {
    let c: Cluster;
    const h = (i: number): Host => c.host(i);

    /** What host `viewer` has programmed for `peer`'s lease. */
    async function programmedFor(viewer: Host, peerSubnet: string, peerIp: string, mac: string | undefined): Promise<{ route: boolean; neigh: boolean; fdb: boolean }> {
      const route = (await rudderRoutes(viewer)).some((r) => r.dst === peerSubnet);
      if (kind !== 'vxlan') return { route, neigh: false, fdb: false };
      const neigh = (await neighbors(viewer, VXLAN_DEV)).some((x) => x.dst === netAddr(peerSubnet));
      const f = (await fdb(viewer, VXLAN_DEV)).some((x) => x.mac === mac || x.dst === peerIp);
      return { route, neigh, fdb: f };
    }

    before(async () => {
      c = await createCluster({ hosts: 3, underlayMtu: 1500 });
      await c.putConfig(config);
    });
    after(async () => {
      await c?.teardown();
    });

    it('3 hosts: subnet files with the right MTU, every pod reaches every other pod', async () => {
      for (const i of [1, 2, 3]) {
        const { env } = await h(i).up();
        assert.equal(env.mtu, wantMtu, `${h(i).name} RUDDER_MTU`);
        assert.equal(env.network, network);
      }
      await fullMesh(c, [h(1), h(2), h(3)]);
    });

    it(`programs the ${kind} kernel state for each peer`, async () => {
      for (const viewer of [h(1), h(2), h(3)]) {
        const routes = await rudderRoutes(viewer);
        for (const peer of [h(1), h(2), h(3)]) {
          if (peer === viewer) continue;
          const l = await leaseOf(c, peer);
          assert.equal(l.value['BackendType'], kind);
          const r = routes.find((x) => x.dst === l.subnet);
          assert.ok(r, `${viewer.name} has a route to ${l.subnet}: ${JSON.stringify(routes)}`);
          if (kind === 'host-gw') {
            assert.equal(r.gateway, peer.underlayIp);
            assert.equal(r.dev, 'eth0');
          } else {
            assert.equal(r.gateway, netAddr(l.subnet));
            assert.equal(r.dev, VXLAN_DEV);
            assert.ok(r.flags?.includes('onlink'), `onlink: ${JSON.stringify(r)}`);
            const mac = l.value['BackendData'] as { VtepMAC?: string };
            assert.match(mac.VtepMAC ?? '', /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
            const ne = (await neighbors(viewer, VXLAN_DEV)).find((x) => x.dst === netAddr(l.subnet));
            assert.equal(ne?.lladdr, mac.VtepMAC, `${viewer.name} neighbor for ${l.subnet}`);
            assert.ok(ne?.state?.includes('PERMANENT'));
            const fe = (await fdb(viewer, VXLAN_DEV)).filter((x) => x.mac === mac.VtepMAC);
            assert.deepEqual(fe.map((x) => x.dst), [peer.underlayIp], `${viewer.name} fdb for ${mac.VtepMAC}`);
          }
        }
        if (kind === 'vxlan') {
          const own = await leaseOf(c, viewer);
          const dev = await link(viewer, VXLAN_DEV);
          assert.ok(dev, `${viewer.name} has ${VXLAN_DEV}`);
          assert.equal(dev.mtu, 1450);
          assert.equal(dev.linkinfo?.info_kind, 'vxlan');
          assert.equal(dev.linkinfo?.info_data?.id, 1);
          assert.equal(dev.linkinfo?.info_data?.port, 8472);
          assert.equal(dev.linkinfo?.info_data?.learning, false);
          assert.equal(dev.linkinfo?.info_data?.local, viewer.underlayIp);
          assert.equal(dev.address, (own.value['BackendData'] as { VtepMAC: string }).VtepMAC, 'device MAC = published VtepMAC');
          assert.deepEqual(await addrs(viewer, VXLAN_DEV), [`${netAddr(own.subnet)}/32`]);
        } else {
          assert.equal((await links(viewer)).filter((l) => l.ifname === 'rudder0' || /^rudder\.\d+$/.test(l.ifname)).length, 0, 'host-gw makes no device');
        }
      }
    });

    it('a late-joining 4th host is reached without restarting the others', async () => {
      const pids = [1, 2, 3].map((i) => h(i).rudder?.pid);
      const h4 = await c.addHost();
      await h4.up();
      for (const i of [1, 2, 3]) {
        await podReaches(c, h4, h(i));
        await podReaches(c, h(i), h4);
      }
      assert.deepEqual([1, 2, 3].map((i) => h(i).rudder?.pid), pids, 'no daemon was restarted');
      assert.ok([1, 2, 3].every((i) => h(i).rudder?.running));
    });

    it("the host holding the Network's first subnet works like any other", async () => {
      const first = `10.${octet}.0.0/24`;
      const holders: Host[] = [];
      for (const i of [1, 2, 3, 4]) if ((await leaseOf(c, h(i))).subnet === first) holders.push(h(i));
      assert.equal(holders.length, 1, `one host holds ${first}`);
      const holder = holders[0] as Host;
      assert.equal(holder.readSubnetFile()?.subnet, `10.${octet}.0.1/24`);
      for (const i of [1, 2, 3, 4]) {
        if (h(i) === holder) continue;
        await podReaches(c, holder, h(i));
        await podReaches(c, h(i), holder);
      }
    });

    it(`a restarted daemon keeps its subnet${kind === 'vxlan' ? ' and VTEP MAC' : ''} and traffic works after`, async () => {
      const before1 = await leaseOf(c, h(1));
      const stamp = h(1).subnetFileStamp();
      await h(1).restartRudder();
      const env = await h(1).waitSubnetFile({ changedSince: stamp });
      assert.equal(env.mtu, wantMtu);
      const after1 = await leaseOf(c, h(1));
      assert.equal(after1.subnet, before1.subnet);
      assert.deepEqual(after1.value['BackendData'], before1.value['BackendData']);
      await fullMesh(c, [h(1), h(2), h(3), h(4)]);

      if (kind === 'vxlan') {
        // A crash, and the device deleted while the daemon was down: the MAC still comes back unchanged.
        await h(1).killRudder();
        await h(1).exec(['ip', 'link', 'del', VXLAN_DEV]);
        const stamp2 = h(1).subnetFileStamp();
        await h(1).startRudder();
        await h(1).waitSubnetFile({ changedSince: stamp2 });
        const again = await leaseOf(c, h(1));
        assert.equal(again.subnet, before1.subnet);
        assert.deepEqual(again.value['BackendData'], before1.value['BackendData'], 'VtepMAC unchanged after crash + deleted device');
        assert.equal((await link(h(1), VXLAN_DEV))?.address, (before1.value['BackendData'] as { VtepMAC: string }).VtepMAC);
        for (const i of [2, 3, 4]) {
          await podReaches(c, h(1), h(i));
          await podReaches(c, h(i), h(1));
        }
      }
    });

    it('a route deleted by hand is restored', async () => {
      const target = await leaseOf(c, h(3));
      // The deletion succeeded (exec throws otherwise); the daemon may restore the route before anyone
      // looks, so the kernel is polled for the restored route rather than for the gap.
      await h(2).exec(['ip', 'route', 'del', target.subnet]);
      await eventually(c, `${h(2).name} restoring its route to ${target.subnet}`, async () => (await rudderRoutes(h(2))).some((r) => r.dst === target.subnet));
      await podReaches(c, h(2), h(3));
    });

    if (kind === 'vxlan') {
      it(`a ${VXLAN_DEV} deleted by hand is re-created with every peer`, async () => {
        await h(2).exec(['ip', 'link', 'del', VXLAN_DEV]);
        await eventually(c, `${h(2).name} re-creating ${VXLAN_DEV}`, async () => (await link(h(2), VXLAN_DEV)) !== null);
        for (const i of [1, 3, 4]) {
          await podReaches(c, h(2), h(i));
          await podReaches(c, h(i), h(2));
        }
      });
    }

    if (kind === 'host-gw') {
      it('a lease whose PublicIP is not directly reachable gets a clear error and no route', async () => {
        const subnet = `10.${octet}.200.0/24`;
        const key = keyOf(c, subnet);
        await c.etcdctl(['put', key, JSON.stringify({ PublicIP: '192.0.2.9', BackendType: 'host-gw', BackendData: {} })]);
        try {
          await eventually(c, `an error naming ${subnet.replace('/', '-')} in ${h(1).logFile}`, async () => /not routing lease 10\.\d+\.200\.0-24: its PublicIP 192\.0\.2\.9/.test(h(1).rudderLog(20000)));
          assert.ok(!(await rudderRoutes(h(1))).some((r) => r.dst === subnet), 'no route for the unreachable lease');
          assert.ok(h(1).rudder?.running, 'the daemon keeps running');
        } finally {
          await c.etcdctl(['del', key]);
        }
      });
    }

    it("a deleted lease removes its state on every other host", async () => {
      const h4 = h(4);
      const l4 = await leaseOf(c, h4);
      const mac = (l4.value['BackendData'] as { VtepMAC?: string }).VtepMAC;
      for (const v of [1, 2, 3]) {
        const p = await programmedFor(h(v), l4.subnet, h4.underlayIp, mac);
        assert.ok(p.route && (kind !== 'vxlan' || (p.neigh && p.fdb)), `${h(v).name} has ${h4.name}'s state before: ${JSON.stringify(p)}`);
      }
      await h4.stopRudder();
      await c.etcdctl(['del', keyOf(c, l4.subnet)]);
      for (const v of [1, 2, 3]) {
        await eventually(c, `${h(v).name} removing route/neighbor/fdb of ${l4.subnet}`, async () => {
          const p = await programmedFor(h(v), l4.subnet, h4.underlayIp, mac);
          return !p.route && !p.neigh && !p.fdb;
        });
      }
      await fullMesh(c, [h(1), h(2), h(3)]);
    });

    it(`switching a host to ${other} removes the ${kind} device and routes`, async () => {
      const h3 = h(3);
      const prefix = '/rudder-switched';
      await c.putConfig({ ...config, Backend: { Type: other } }, prefix);
      // A crash, so the old backend could not clean up after itself: the new one must.
      await h3.killRudder();
      assert.ok((await rudderRoutes(h3)).length > 0, 'old routes are still there after the crash');
      const stamp = h3.subnetFileStamp();
      await h3.startRudder([`-etcd-prefix=${prefix}`]);
      const env = await h3.waitSubnetFile({ changedSince: stamp });
      assert.equal(env.mtu, other === 'vxlan' ? 1450 : 1500);
      // Alone in the new network: no Rudder route may be left, and only the new backend's device.
      await eventually(c, `${h3.name} without ${kind} leftovers`, async () => {
        const routes = await rudderRoutes(h3);
        const dev = await link(h3, VXLAN_DEV);
        return routes.length === 0 && (other === 'vxlan' ? dev !== null : dev === null);
      });
      assert.equal((await leaseOf(c, h3, prefix)).value['BackendType'], other);
      assert.ok(h3.rudder?.running);
    });

    if (kind === 'host-gw') {
      it('a host whose -public-ip is not its own address (NAT) fails clearly and publishes no lease', async () => {
        const h5 = await c.addHost();
        const proc = await h5.startRudder(['-public-ip=198.18.0.200']);
        const exit = await proc.exited;
        assert.equal(exit.code, 1, h5.rudderLog());
        assert.match(h5.rudderLog(), /public IP 198\.18\.0\.200 is not an address of eth0/);
        assert.match(h5.rudderLog(), /E_BACKEND/);
        assert.ok(!(await c.listSubnets()).some((l) => l.value['PublicIP'] === '198.18.0.200'), 'no lease for the NAT address');
      });
    }
  });
}
