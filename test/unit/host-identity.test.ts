/**
 * Host identity (issue 17, item 6) and flanneld's subnet file as a memory
 * (item 2): the pure acquisition planner, the lease codec's RudderHostID,
 * where the identity comes from, the manager over an in-memory registry,
 * and the FLANNEL_ flavour of the subnet file parser.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { leasesTable } from '../../src/cli/commands';
import { parseConfig } from '../../src/config';
import { isRudderError } from '../../src/errors';
import { Cidr, cidrEquals, formatCidr, parseCidr, parseIp } from '../../src/ip/ipv4';
import { memoryLogger } from '../../src/log';
import { parseSubnetFile, readRememberedSubnet } from '../../src/subnet/file';
import { derivedHostId, hostIdFile, resolveHostId } from '../../src/subnet/host-id';
import type { Lease } from '../../src/subnet/lease';
import { SubnetManager, leaseOwner, planAcquire } from '../../src/subnet/manager';
import { LeaseList, LeaseRecord, LeaseValue, Registry, leaseValue, parseLeaseEntry } from '../../src/subnet/registry';
import { tempDir, writeFile } from '../helpers/tmp';

const cidr = (s: string): Cidr => parseCidr(s, true) ?? assert.fail(`bad cidr ${s}`);
const ip = (s: string): number => parseIp(s) ?? assert.fail(`bad ip ${s}`);
const cfg = parseConfig('{"Network":"10.42.0.0/16"}');

function rec(subnet: string, pub: string, hostId?: string, etcdLeaseId = '7'): LeaseRecord {
  const lease: Lease = { subnet: cidr(subnet), publicIP: ip(pub), backendType: 'udp', backendData: {}, expiresAt: null };
  return { lease: hostId === undefined ? lease : { ...lease, hostId }, modRevision: '1', etcdLeaseId };
}

describe('acquisition planner (pure)', () => {
  const me = { publicIP: ip('198.18.0.9'), hostId: 'aaaa' };

  test('whose a lease is: identity first, PublicIP only when a side has none', () => {
    assert.equal(leaseOwner(rec('10.42.1.0/24', '198.18.0.9', 'aaaa').lease, me), 'mine');
    assert.equal(leaseOwner(rec('10.42.1.0/24', '198.18.0.7', 'aaaa').lease, me), 'mine', 'our identity, a new address');
    assert.equal(leaseOwner(rec('10.42.1.0/24', '198.18.0.9', 'bbbb').lease, me), 'twin');
    assert.equal(leaseOwner(rec('10.42.1.0/24', '198.18.0.7', 'bbbb').lease, me), 'other');
    assert.equal(leaseOwner(rec('10.42.1.0/24', '198.18.0.9').lease, me), 'mine', "flannel's lease, or an older Rudder's");
    assert.equal(leaseOwner(rec('10.42.1.0/24', '198.18.0.7').lease, me), 'other');
    // Without an identity of our own: PublicIP alone, as before.
    assert.equal(leaseOwner(rec('10.42.1.0/24', '198.18.0.9', 'bbbb').lease, { publicIP: ip('198.18.0.9') }), 'mine');
  });

  test("another host's live lease on our PublicIP is a conflict, even beside a lease of ours", () => {
    const twin = rec('10.42.108.0/24', '198.18.0.9', 'bbbb');
    const p = planAcquire([rec('10.42.3.0/24', '198.18.0.9', 'aaaa'), twin], me, cfg, null);
    assert.equal(p.kind, 'conflict');
    assert.equal(p.kind === 'conflict' && p.twin, twin);
  });

  test('reuse: our identity, or no identity and our PublicIP; the remembered one preferred', () => {
    const a = rec('10.42.3.0/24', '198.18.0.9', 'aaaa');
    const b = rec('10.42.4.0/24', '198.18.0.9');
    const p = planAcquire([rec('10.42.9.0/24', '198.18.0.1', 'cccc'), a, b], me, cfg, cidr('10.42.4.0/24'));
    assert.deepEqual(p, { kind: 'reuse', record: b });
    assert.deepEqual(planAcquire([b], me, cfg, null), { kind: 'reuse', record: b });
  });

  test('remembered: tried once when free; held by another host: pick', () => {
    const other = rec('10.42.5.0/24', '198.18.0.1', 'cccc');
    assert.equal(planAcquire([other], me, cfg, cidr('10.42.6.0/24')).kind, 'remembered');
    assert.deepEqual(planAcquire([other], me, cfg, cidr('10.42.5.0/24')), { kind: 'pick', rememberedHeld: true });
    assert.deepEqual(planAcquire([other], me, cfg, cidr('10.42.6.0/24'), false), { kind: 'pick', rememberedHeld: false });
  });
});

describe('lease value codec', () => {
  test('RudderHostID is written when known and read back; flannel values have none', () => {
    const v = leaseValue(ip('198.18.0.9'), 'vxlan', { VtepMAC: 'aa:bb:cc:dd:ee:ff' }, 'h-1');
    assert.deepEqual(JSON.parse(JSON.stringify(v)), { PublicIP: '198.18.0.9', BackendType: 'vxlan', BackendData: { VtepMAC: 'aa:bb:cc:dd:ee:ff' }, RudderHostID: 'h-1' });
    assert.equal('RudderHostID' in leaseValue(ip('198.18.0.9'), 'udp', {}), false);
    const r = parseLeaseEntry('10.42.1.0-24', JSON.stringify(v), null);
    assert.ok('lease' in r);
    assert.equal(r.lease.hostId, 'h-1');
    const f = parseLeaseEntry('10.42.1.0-24', '{"PublicIP":"198.18.0.9","BackendType":"udp"}', null);
    assert.ok('lease' in f);
    assert.equal(f.lease.hostId, undefined);
    const bad = parseLeaseEntry('10.42.1.0-24', '{"PublicIP":"198.18.0.9","RudderHostID":7}', null);
    assert.ok('error' in bad && /RudderHostID=7: expected/.test(bad.error));
  });
});

describe('where the identity comes from', () => {
  test('the flag wins; else the host-id file; else one is created from machine-id, stable and per subnet file', async (t) => {
    const dir = tempDir(t);
    const mid = writeFile(dir, 'machine-id', '3d1219c7c4c5404aaa1f6d2a48adfda4\n');
    const sf1 = path.join(dir, 'h1', 'subnet.env');
    const sf2 = path.join(dir, 'h2', 'subnet.env');
    assert.deepEqual(await resolveHostId({ override: 'pinned', subnetFile: sf1, machineIdFile: mid }), { id: 'pinned', source: 'flag' });
    await assert.rejects(resolveHostId({ override: 'a b', subnetFile: sf1 }), (e: unknown) => isRudderError(e, 'E_FLAG'));

    const h1 = await resolveHostId({ subnetFile: sf1, machineIdFile: mid });
    assert.equal(h1.source, 'machine-id');
    assert.equal(h1.id, derivedHostId('3d1219c7c4c5404aaa1f6d2a48adfda4', sf1));
    assert.equal(h1.file, hostIdFile(sf1));
    assert.equal(fs.readFileSync(hostIdFile(sf1), 'utf8'), `${h1.id}\n`);
    assert.equal(fs.statSync(hostIdFile(sf1)).mode & 0o777, 0o644);
    // The same machine, another subnet file (a host in a namespace): another identity.
    const h2 = await resolveHostId({ subnetFile: sf2, machineIdFile: mid });
    assert.notEqual(h2.id, h1.id);
    // Kept: the file is read back; after a reboot (the file gone) machine-id gives the same.
    assert.deepEqual(await resolveHostId({ subnetFile: sf1, machineIdFile: mid }), { id: h1.id, source: 'file', file: h1.file });
    fs.rmSync(hostIdFile(sf1));
    assert.equal((await resolveHostId({ subnetFile: sf1, machineIdFile: mid })).id, h1.id);
    // A file written by hand is preferred over machine-id.
    fs.writeFileSync(hostIdFile(sf1), 'node-17\n');
    assert.equal((await resolveHostId({ subnetFile: sf1, machineIdFile: mid })).id, 'node-17');
  });

  test('no machine-id: random, kept in the file; concurrent first starts agree', async (t) => {
    const dir = tempDir(t);
    const sf = path.join(dir, 'subnet.env');
    const all = await Promise.all(Array.from({ length: 8 }, () => resolveHostId({ subnetFile: sf, machineIdFile: path.join(dir, 'none') })));
    const ids = new Set(all.map((h) => h.id));
    assert.equal(ids.size, 1, 'one winner');
    assert.match([...ids][0] as string, /^[0-9a-f]{32}$/);
    assert.equal(all.filter((h) => h.source === 'random').length, 1);
    assert.deepEqual(fs.readdirSync(dir), ['host-id'], 'no temp files left');
  });
});

/** Leases in memory with etcd's compare semantics, recording every write. */
class MemRegistry implements Registry {
  readonly leases = new Map<string, LeaseRecord>();
  readonly writes: string[] = [];
  private rev = 1;
  private put(subnet: Cidr, v: LeaseValue, etcdLeaseId: string): LeaseRecord {
    const p = parseLeaseEntry(formatCidr(subnet).replace('/', '-'), JSON.stringify(v), null);
    if (!('lease' in p)) throw new Error(p.error);
    const r = { lease: p.lease, modRevision: String(++this.rev), etcdLeaseId };
    this.leases.set(formatCidr(subnet), r);
    this.writes.push(`${formatCidr(subnet)} ${JSON.stringify(v)}`);
    return r;
  }
  async listLeases(): Promise<LeaseList> {
    return { records: [...this.leases.values()], revision: String(this.rev), invalid: [] };
  }
  async createLease(subnet: Cidr, v: LeaseValue): Promise<LeaseRecord | null> {
    return this.leases.has(formatCidr(subnet)) ? null : this.put(subnet, v, String(this.rev + 100));
  }
  async updateLease(prev: LeaseRecord, v: LeaseValue): Promise<LeaseRecord | null> {
    const cur = this.leases.get(formatCidr(prev.lease.subnet));
    if (cur?.modRevision !== prev.modRevision) return null;
    return this.put(prev.lease.subnet, v, prev.etcdLeaseId === '0' ? '0' : String(this.rev + 100));
  }
  async renewLease(): Promise<number | null> {
    return Date.now() + 60_000;
  }
  async timeToLive(): Promise<number | null> {
    return 60_000;
  }
  async getConfig(): Promise<string | null> {
    return null;
  }
  async putConfig(): Promise<boolean> {
    return false;
  }
  async watchConfig(): Promise<() => void> {
    return () => undefined;
  }
  async watchLeases(): Promise<() => void> {
    return () => undefined;
  }
  close(): void {}
}

function mgr(reg: Registry, pub: string, hostId?: string): SubnetManager {
  return new SubnetManager({
    registry: reg,
    config: cfg,
    publicIP: ip(pub),
    backendType: 'udp',
    backendData: {},
    hostId,
    etcdPrefix: '/coreos.com/network',
    ttlMs: 60_000,
    renewMarginMs: 10_000,
    log: memoryLogger(),
  });
}

describe('manager with identities', () => {
  test('two hosts with one PublicIP: the second gets a clear error and writes nothing', async () => {
    const reg = new MemRegistry();
    const first = await mgr(reg, '198.18.0.9', 'host-one').acquire(null);
    const before = [...reg.writes];
    await assert.rejects(mgr(reg, '198.18.0.9', 'host-two').acquire(first.subnet), (e: unknown) => {
      assert.ok(isRudderError(e, 'E_PUBLIC_IP_CONFLICT'), String(e));
      const m = (e).message;
      for (const s of ['198.18.0.9', `/coreos.com/network/subnets/${formatCidr(first.subnet).replace('/', '-')}`, 'host-one', 'host-two', '-public-ip']) {
        assert.ok(m.includes(s), `${s} in: ${m}`);
      }
      return true;
    });
    assert.deepEqual(reg.writes, before, 'nothing written');
    // The same host again (a restart) reuses its lease and keeps its identity.
    const again = await mgr(reg, '198.18.0.9', 'host-one').acquire(null);
    assert.ok(cidrEquals(again.subnet, first.subnet));
    assert.equal(again.hostId, 'host-one');
    assert.equal(reg.leases.size, 1);
  });

  test("a lease without identity on our PublicIP (flannel's) is taken over in place and gains ours", async () => {
    const reg = new MemRegistry();
    await reg.createLease(cidr('10.42.108.0/24'), { PublicIP: '198.18.0.9', BackendType: 'udp', BackendData: {} });
    const l = await mgr(reg, '198.18.0.9', 'host-one').acquire(null);
    assert.equal(formatCidr(l.subnet), '10.42.108.0/24');
    assert.match(reg.writes.at(-1) as string, /"RudderHostID":"host-one"/);
  });

  test('our identity with a new PublicIP: the same lease, rewritten', async () => {
    const reg = new MemRegistry();
    const a = await mgr(reg, '198.18.0.9', 'host-one').acquire(null);
    const b = await mgr(reg, '198.18.0.10', 'host-one').acquire(null);
    assert.ok(cidrEquals(a.subnet, b.subnet));
    assert.equal(b.publicIP, ip('198.18.0.10'));
    assert.equal(reg.leases.size, 1);
  });

  test('own key rewritten by another identity with our PublicIP: lost, not ignored', async () => {
    const reg = new MemRegistry();
    const m = mgr(reg, '198.18.0.9', 'host-one');
    const l = await m.acquire(null);
    m.ownKeyChanged({ ...l, hostId: 'host-one' });
    m.ownKeyChanged({ ...l, hostId: 'host-two' });
    const ac = new AbortController();
    await assert.rejects(m.keep(ac.signal), (e: unknown) => isRudderError(e, 'E_LEASE_LOST') && /host host-two/.test((e as Error).message));
  });
});

describe('republishing BackendData (a rotated wireguard key)', () => {
  test('setBackendData: keep() rewrites our key with the new data, same subnet and identity (compare-and-swap on its current revision)', async () => {
    const reg = new MemRegistry();
    const m = mgr(reg, '198.18.0.9', 'host-one');
    const l = await m.acquire(null);
    const ac = new AbortController();
    const keeping = m.keep(ac.signal);
    m.setBackendData({ PublicKey: 'new', Port: 51820 });
    for (let i = 0; i < 200 && !(reg.writes.at(-1) ?? '').includes('"PublicKey":"new"'); i++) await new Promise((r) => setTimeout(r, 10));
    ac.abort();
    await keeping;
    const last = reg.writes.at(-1) as string;
    assert.ok(last.startsWith(`${formatCidr(l.subnet)} `), last);
    assert.match(last, /"BackendData":\{"PublicKey":"new","Port":51820\}/);
    assert.match(last, /"RudderHostID":"host-one"/);
    assert.deepEqual(m.lease.backendData, { PublicKey: 'new', Port: 51820 });
    assert.equal(reg.leases.size, 1);
  });
});

describe('rudder leases', () => {
  test('a HOST column (8 characters of the identity) once a lease has one', async () => {
    const reg = new MemRegistry();
    const out: string[] = [];
    const io = { out: (s: string) => void out.push(s), err: () => undefined };
    await reg.createLease(cidr('10.42.1.0/24'), leaseValue(ip('198.18.0.1'), 'udp', {}));
    await leasesTable(reg, io);
    assert.match(out[0] as string, /^SUBNET\s+PUBLIC IP\s+BACKEND\s+EXPIRES IN$/);
    out.length = 0;
    await reg.createLease(cidr('10.42.2.0/24'), leaseValue(ip('198.18.0.2'), 'udp', {}, '0123456789abcdef'));
    await leasesTable(reg, io);
    assert.match(out[0] as string, /^SUBNET\s+PUBLIC IP\s+BACKEND\s+EXPIRES IN\s+HOST$/);
    assert.match(out[1] as string, /^10\.42\.1\.0\/24\s+198\.18\.0\.1\s+udp\s+1m00s\s+-$/);
    assert.match(out[2] as string, /^10\.42\.2\.0\/24\s+198\.18\.0\.2\s+udp\s+1m00s\s+01234567$/);
  });
});

describe("flanneld's subnet file", () => {
  const text = 'FLANNEL_NETWORK=10.42.0.0/16\nFLANNEL_SUBNET=10.42.108.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n';

  test('the same strict parser reads it with the FLANNEL_ prefix', () => {
    const f = parseSubnetFile(text, '/run/flannel/subnet.env', { flavour: 'flannel', complete: true });
    assert.equal(formatCidr(f.subnet), '10.42.108.0/24');
    assert.equal(formatCidr(f.network), '10.42.0.0/16');
    assert.equal(f.mtu, 1472);
    assert.throws(() => parseSubnetFile(text, '/run/rudder/subnet.env'), /RUDDER_NETWORK missing \(is this a file written by rudder\?\)/);
    assert.throws(
      () => parseSubnetFile(text.replace('10.42.108.1/24', '10.43.1.1/24'), '/run/flannel/subnet.env', { flavour: 'flannel' }),
      /\/run\/flannel\/subnet\.env: FLANNEL_SUBNET=10\.43\.1\.1\/24: expected an address inside FLANNEL_NETWORK=10\.42\.0\.0\/16/,
    );
    assert.throws(() => parseSubnetFile('FLANNEL_SUBNET=10.42.1.1/24\n', 'f', { flavour: 'flannel' }), /FLANNEL_NETWORK missing \(is this a file written by flanneld\?\)/);
  });

  test('remembered from a file; none when absent; an invalid one is reported', async (t) => {
    const dir = tempDir(t);
    const f = writeFile(dir, 'subnet.env', text);
    assert.equal(formatCidr((await readRememberedSubnet(f, undefined, 'flannel')) as Cidr), '10.42.108.0/24');
    assert.equal(await readRememberedSubnet(path.join(dir, 'absent.env'), undefined, 'flannel'), null);
    const errs: unknown[] = [];
    assert.equal(await readRememberedSubnet(f, (e) => errs.push(e)), null, "flannel's file is not Rudder's");
    assert.equal(errs.length, 1);
  });
});
