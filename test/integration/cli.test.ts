/**
 * bin/rudder as a user runs it: help, version, flag errors, and the etcd
 * subcommands (config check|get|set, leases) against a real etcd server on
 * loopback. Nothing here touches the kernel's network state.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EtcdClient } from '../../src/etcd/client';
import { EtcdServer, startEtcd } from '../../src/topology/etcd';

const BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'rudder');
let etcd: EtcdServer;
let raw: EtcdClient;
let dir: string;

before(async () => {
  etcd = await startEtcd();
  raw = new EtcdClient({ endpoints: etcd.endpoints });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rudder-cli-'));
});
after(async () => {
  raw?.close();
  await etcd?.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});

function rudder(args: string[], env: Record<string, string> = {}, input?: string): { code: number | null; out: string; err: string } {
  const clean: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('RUDDER_')) clean[k] = v;
  const r = spawnSync(BIN, args, { env: { ...clean, ...env }, encoding: 'utf8', input });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const ep = (): string => `-etcd-endpoint=${etcd.endpoints.join(',')}`;

describe('flags', () => {
  test('-help lists every flag with its default and exits 0', () => {
    for (const h of ['-help', '--help', '-h']) {
      const r = rudder([h]);
      assert.equal(r.code, 0);
      for (const f of ['etcd-endpoint', 'etcd-prefix', 'etcd-cafile', 'etcd-certfile', 'etcd-keyfile', 'etcd-username', 'etcd-password', 'iface', 'public-ip', 'port', 'subnet-file', 'subnet-lease-renew-margin', 'subnet-lease-ttl', 'ip-masq', 'metrics-addr', 'v', 'version']) {
        assert.match(r.out, new RegExp(`^  -${f}\\b`, 'm'), `help lists -${f}`);
      }
      assert.match(r.out, /default "http:\/\/127\.0\.0\.1:4001,http:\/\/127\.0\.0\.1:2379"/);
      assert.match(r.out, /default "\/run\/rudder\/subnet\.env"/);
      assert.match(r.out, /default "8285"/);
    }
  });

  test('-version prints the package version', () => {
    const pkg = JSON.parse(fs.readFileSync(path.resolve(BIN, '..', '..', 'package.json'), 'utf8')) as { version: string };
    for (const v of ['-version', '--version', 'version']) {
      const r = rudder([v]);
      assert.equal(r.code, 0);
      assert.equal(r.out.trim(), pkg.version);
    }
  });

  test('a bad flag exits 2 with the flag, the value, the expected form and usage', () => {
    const r = rudder(['-port=abc']);
    assert.equal(r.code, 2);
    assert.match(r.err, /-port="abc": expected an integer between 1 and 65535/);
    assert.match(r.err, /Usage: rudder/);
    const u = rudder(['--etcd-endpont=http://x:1']);
    assert.equal(u.code, 2);
    assert.match(u.err, /unknown flag --etcd-endpont.*did you mean -etcd-endpoint/);
    const e = rudder([], { RUDDER_PUBLIC_IP: '1.2.3' });
    assert.equal(e.code, 2);
    assert.match(e.err, /RUDDER_PUBLIC_IP="1\.2\.3": expected/);
    const c = rudder(['bogus']);
    assert.equal(c.code, 2);
    assert.match(c.err, /unknown command "bogus"/);
  });
});

describe('config', () => {
  test('config check validates a file offline and prints the defaults', () => {
    const good = path.join(dir, 'good.json');
    fs.writeFileSync(good, '{"Network":"10.1.0.0/16","Backend":{"Type":"vxlan"}}');
    const r = rudder(['config', 'check', good]);
    assert.equal(r.code, 0, r.err);
    const shown = JSON.parse(r.out) as Record<string, unknown>;
    assert.equal(shown.SubnetLen, 24);
    assert.equal(shown.SubnetMin, '10.1.0.0');
    assert.equal(shown.SubnetMax, '10.1.255.0');
    assert.deepEqual(shown.Backend, { Type: 'vxlan', VNI: 1, Port: 8472 });

    const bad = path.join(dir, 'bad.json');
    fs.writeFileSync(bad, '{"Network":"10.1.0.0/16","SubnetMin":"10.1.0.7"}');
    const b = rudder(['config', 'check', bad]);
    assert.equal(b.code, 1);
    assert.match(b.err, /SubnetMin="10\.1\.0\.7": expected the network address of a \/24 subnet/);
  });

  test('config set validates before writing; get reads it back; --if-absent never overwrites', async () => {
    const prefix = '/cli1/network';
    const bad = rudder([ep(), `-etcd-prefix=${prefix}`, 'config', 'set', '{"Network":"10.2.0.0/16","Backend":{"Type":"gre"}}']);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /Backend\.Type="gre": expected one of "udp", "vxlan", "host-gw"/);
    assert.equal(await raw.get(`${prefix}/config`), null, 'nothing written for an invalid config');

    const set = rudder([ep(), `-etcd-prefix=${prefix}`, 'config', 'set', '{"Network":"10.2.0.0/16"}']);
    assert.equal(set.code, 0, set.err);
    assert.equal(await raw.get(`${prefix}/config`), '{"Network":"10.2.0.0/16"}');
    const get = rudder([ep(), `-etcd-prefix=${prefix}`, 'config', 'get']);
    assert.equal(get.code, 0);
    assert.equal(get.out.trim(), '{"Network":"10.2.0.0/16"}');

    const file = path.join(dir, 'other.json');
    fs.writeFileSync(file, '{"Network":"10.3.0.0/16"}');
    const keep = rudder([ep(), `-etcd-prefix=${prefix}`, 'config', 'set', '--if-absent', file]);
    assert.equal(keep.code, 0);
    assert.match(keep.err, /already exists/);
    assert.equal(await raw.get(`${prefix}/config`), '{"Network":"10.2.0.0/16"}');
    const fresh = rudder([ep(), '-etcd-prefix=/cli2/network', 'config', 'set', file, '--if-absent']);
    assert.equal(fresh.code, 0);
    assert.equal(await raw.get('/cli2/network/config'), '{"Network":"10.3.0.0/16"}');
    // The environment works as well as flags.
    const viaEnv = rudder(['config', 'get'], { RUDDER_ETCD_ENDPOINT: etcd.endpoints.join(','), RUDDER_ETCD_PREFIX: '/cli2/network' });
    assert.equal(viaEnv.out.trim(), '{"Network":"10.3.0.0/16"}');
    const none = rudder([ep(), '-etcd-prefix=/nothing/here', 'config', 'get']);
    assert.equal(none.code, 1);
    assert.match(none.err, /no network config at \/nothing\/here\/config/);
  });

  test('an unreachable etcd is named in a clear error', () => {
    const r = rudder(['-etcd-endpoint=http://127.0.0.1:9', 'config', 'get']);
    assert.equal(r.code, 1);
    assert.match(r.err, /etcd http:\/\/127\.0\.0\.1:9: read config/);
  });
});

describe('leases', () => {
  test('a table of subnet, PublicIP, backend and expiry or reservation', async () => {
    const prefix = '/cli3/network';
    const l = await raw.leaseGrant(3600);
    await raw.put(`${prefix}/subnets/10.4.7.0-24`, '{"PublicIP":"198.18.0.7","BackendType":"udp","BackendData":{}}', { lease: l });
    await raw.put(`${prefix}/subnets/10.4.1.0-24`, '{"PublicIP":"198.18.0.1","BackendType":"vxlan","BackendData":{"VtepMAC":"aa:bb:cc:dd:ee:ff"}}');
    await raw.put(`${prefix}/subnets/junk`, 'x');
    const r = rudder([ep(), `-etcd-prefix=${prefix}`, 'leases']);
    assert.equal(r.code, 0, r.err);
    const lines = r.out.trim().split('\n');
    assert.match(lines[0] as string, /^SUBNET\s+PUBLIC IP\s+BACKEND\s+EXPIRES IN$/);
    assert.match(lines[1] as string, /^10\.4\.1\.0\/24\s+198\.18\.0\.1\s+vxlan\s+reservation$/);
    assert.match(lines[2] as string, /^10\.4\.7\.0\/24\s+198\.18\.0\.7\s+udp\s+(59m\d\ds|1h00m)$/);
    assert.match(r.err, /invalid entry \/cli3\/network\/subnets\/junk/);
    await raw.leaseRevoke(l);
  });
});

describe('flags after the command name', () => {
  const json = (n: string): string => `{"Network":"${n}"}`;
  // Two clusters on one etcd: /cli-a and /cli-b; the flag after the name must select B.
  before(async () => {
    await raw.put('/cli-a/network/config', json('10.10.0.0/16'));
    await raw.put('/cli-b/network/config', json('10.20.0.0/16'));
    await raw.put('/cli-a/network/subnets/10.10.1.0-24', '{"PublicIP":"198.18.0.1","BackendType":"udp","BackendData":{}}');
    await raw.put('/cli-b/network/subnets/10.20.2.0-24', '{"PublicIP":"198.18.0.2","BackendType":"udp","BackendData":{}}');
  });

  test('-etcd-prefix after config get / leases selects the other cluster, in every spelling', () => {
    for (const args of [
      [ep(), '-etcd-prefix=/cli-a/network', 'config', 'get', '-etcd-prefix=/cli-b/network'],
      ['config', 'get', ep(), '-etcd-prefix=/cli-b/network'],
      ['config', 'get', '--etcd-prefix', '/cli-b/network', '--etcd-endpoint', etcd.endpoints.join(',')],
    ]) {
      const r = rudder(args, { RUDDER_ETCD_PREFIX: '/cli-a/network' });
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.err}`);
      assert.equal(r.out.trim(), json('10.20.0.0/16'), args.join(' '));
    }
    const l = rudder([ep(), '-etcd-prefix=/cli-a/network', 'leases', '-etcd-prefix=/cli-b/network']);
    assert.equal(l.code, 0, l.err);
    assert.match(l.out, /^10\.20\.2\.0\/24\s+198\.18\.0\.2/m);
    assert.doesNotMatch(l.out, /10\.10\.1\.0/);
  });

  test('-etcd-endpoint after the name selects the other endpoint (the default one is dead)', () => {
    const dead = { RUDDER_ETCD_ENDPOINT: 'http://127.0.0.1:9' };
    const l = rudder(['leases', ep(), '-etcd-prefix=/cli-b/network'], dead);
    assert.equal(l.code, 0, l.err);
    assert.match(l.out, /^10\.20\.2\.0\/24/m);
    const g = rudder(['-etcd-prefix=/cli-a/network', 'config', 'get', '--etcd-endpoints', etcd.endpoints.join(','), '-etcd-prefix=/cli-b/network'], dead);
    assert.equal(g.code, 0, g.err);
    assert.equal(g.out.trim(), json('10.20.0.0/16'));
    // Without the flag after the name, the dead endpoint is used: the flag is what selected the live one.
    assert.equal(rudder(['leases', '-etcd-prefix=/cli-b/network'], dead).code, 1);
  });

  test('config set takes its flags before or after the operand', async () => {
    const set = rudder(['config', 'set', json('10.30.0.0/16'), ep(), '-etcd-prefix=/cli-c/network']);
    assert.equal(set.code, 0, set.err);
    assert.equal(await raw.get('/cli-c/network/config'), json('10.30.0.0/16'));
    const keep = rudder(['config', 'set', '-if-absent', ep(), json('10.31.0.0/16'), '-etcd-prefix', '/cli-c/network']);
    assert.equal(keep.code, 0, keep.err);
    assert.match(keep.err, /already exists/);
    assert.equal(await raw.get('/cli-c/network/config'), json('10.30.0.0/16'));
    const before = rudder(['-if-absent', ep(), '-etcd-prefix=/cli-d/network', 'config', 'set', json('10.32.0.0/16')]);
    assert.equal(before.code, 0, before.err);
    assert.equal(await raw.get('/cli-d/network/config'), json('10.32.0.0/16'));
  });

  test('a flag a command does not take exits 2 with that command\'s usage', () => {
    const cases: Array<[string[], RegExp, RegExp]> = [
      [['leases', '-iface=eth0'], /^rudder leases: -iface is not a flag of "rudder leases"/m, /Usage: rudder leases/],
      [['leases', '--port', '1'], /^rudder leases: --port is not a flag/m, /Usage: rudder leases/],
      [['config', 'get', '-subnet-file=/x'], /^rudder config get: -subnet-file is not a flag/m, /Usage: rudder config get/],
      [['config', 'set', '-ip-masq', json('10.0.0.0/16')], /^rudder config set: -ip-masq is not a flag/m, /Usage: rudder config set/],
      [['config', 'check', '-etcd-prefix=/x', 'f.json'], /^rudder config check: -etcd-prefix is not a flag/m, /Usage: rudder config check/],
      [['version', '-v=1'], /^rudder version: -v is not a flag/m, /Usage: rudder version/],
      [['-watch', 'leases'], /^rudder leases: -watch is not a flag/m, /Usage: rudder leases/],
      [['docker-opts', '-etcd-prefix=/x'], /^rudder docker-opts: unknown flag -etcd-prefix/m, /Usage: rudder docker-opts/],
      [['cni-config', '-etcd-endpoint=http://x:1'], /^rudder cni-config: unknown flag -etcd-endpoint/m, /Usage: rudder cni-config/],
      [['leases', 'extra'], /^rudder leases: unexpected argument "extra"/m, /Usage: rudder leases/],
    ];
    for (const [args, msg, usage] of cases) {
      const r = rudder(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
      assert.match(r.err, msg, args.join(' '));
      assert.match(r.err, usage, args.join(' '));
      assert.equal(r.out, '', args.join(' '));
    }
  });

  test('rudder <command> -help prints that command\'s usage and exits 0', () => {
    const cases: Array<[string[], RegExp, string[]]> = [
      [['leases', '-help'], /^Usage: rudder leases/, ['etcd-endpoint', 'etcd-prefix', 'etcd-password']],
      [['config', 'get', '--help'], /^Usage: rudder config get/, ['etcd-endpoint', 'etcd-prefix']],
      [['config', 'set', '-h'], /^Usage: rudder config set/, ['etcd-prefix', 'if-absent']],
      [['config', 'check', '-help'], /^Usage: rudder config check FILE/, ['help']],
      [['-help', 'leases'], /^Usage: rudder leases/, ['etcd-prefix']],
      [['docker-opts', '-help'], /^Usage: rudder docker-opts/, ['subnet-file', 'format']],
      [['cni-config', '-help'], /^Usage: rudder cni-config/, ['out', 'watch', 'subnet-file']],
      [['version', '-help'], /^Usage: rudder version/, ['help']],
    ];
    for (const [args, title, flags] of cases) {
      const r = rudder(args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.err}`);
      assert.match(r.out, title, args.join(' '));
      for (const f of flags) assert.match(r.out, new RegExp(`^  -${f}\\b`, 'm'), `${args.join(' ')} lists -${f}`);
    }
  });
});
