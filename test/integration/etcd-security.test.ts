/**
 * etcd with TLS client certificates and with user/password auth, real etcd on
 * loopback, certificates made with openssl in a temp dir
 * (test/helpers/security-certs.ts).
 *
 * TLS (--client-cert-auth, https client URL): `rudder config set/get` and
 * `rudder leases` with -etcd-cafile/-etcd-certfile/-etcd-keyfile, and the
 * daemon's registry (EtcdRegistry + SubnetManager) taking a lease; a wrong
 * CA, no client certificate, a certificate from another CA and plain http
 * each fail with exit 1 and a message naming the endpoint.
 * Auth (root + a `rudder` user whose role grants only the prefix): right
 * password by flag and by RUDDER_ETCD_PASSWORD works, registry takes a lease;
 * a wrong password or a prefix outside the role fails clearly, naming the
 * endpoint; the password is never echoed.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseConfig } from '../../src/config';
import { formatCidr } from '../../src/ip/ipv4';
import { memoryLogger } from '../../src/log';
import { EtcdRegistry, type EtcdOptions } from '../../src/subnet/etcd-registry';
import { SubnetManager } from '../../src/subnet/manager';
import { cleanEtcdEnv, run, startEtcd, type EtcdServer } from '../../src/topology';
import { skipUnlessEtcd } from '../helpers/env';
import { hasOpenssl, makePki, type Pki } from '../helpers/security-certs';
import { makeTempDir, removeDir } from '../../src/topology/util';

const RUDDER = path.resolve(__dirname, '..', '..', '..', 'bin', 'rudder');

function rudder(args: string[], env: Record<string, string> = {}): { status: number | null; out: string } {
  const clean: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('RUDDER_')) clean[k] = v;
  const r = spawnSync(RUDDER, args, { env: { ...clean, ...env }, encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

async function takeLease(opts: EtcdOptions, cfg: string, publicIp: number): Promise<string> {
  const reg = new EtcdRegistry({ ...opts, requestTimeoutMs: 5000 });
  try {
    const m = new SubnetManager({ registry: reg, config: parseConfig(cfg), publicIP: publicIp, backendType: 'udp', backendData: {}, ttlMs: 60_000, renewMarginMs: 10_000, log: memoryLogger() });
    const lease = await m.acquire(null);
    const listed = await reg.listLeases();
    assert.ok(listed.records.some((r) => formatCidr(r.lease.subnet) === formatCidr(lease.subnet)), 'the lease is listed');
    return formatCidr(lease.subnet);
  } finally {
    reg.close();
  }
}

describe('etcd over TLS with client certificates', { skip: skipUnlessEtcd || (!hasOpenssl && 'needs openssl') }, () => {
  let dir = '';
  let pki: Pki;
  let etcd: EtcdServer;
  let ep = '';
  const prefix = '/tls/network';
  let good: string[] = [];

  before(async () => {
    dir = makeTempDir('rudder-pki-');
    pki = makePki(dir);
    etcd = await startEtcd({
      clientTls: { certFile: pki.serverCert, keyFile: pki.serverKey, clientCA: pki.ca, probe: { caFile: pki.ca, certFile: pki.clientCert, keyFile: pki.clientKey } },
    });
    ep = etcd.clientUrl;
    assert.match(ep, /^https:\/\//);
    good = [`-etcd-endpoint=${ep}`, `-etcd-cafile=${pki.ca}`, `-etcd-certfile=${pki.clientCert}`, `-etcd-keyfile=${pki.clientKey}`, `-etcd-prefix=${prefix}`];
  });
  after(async () => {
    await etcd?.dispose();
    if (dir) removeDir(dir);
  });

  it('config set, config get and leases work with the CA, a client certificate and its key', () => {
    const set = rudder([...good, 'config', 'set', '{"Network":"10.9.0.0/16"}']);
    assert.equal(set.status, 0, set.out);
    const get = rudder([...good, 'config', 'get']);
    assert.equal(get.status, 0, get.out);
    assert.match(get.out, /"Network":\s*"10\.9\.0\.0\/16"/);
    const leases = rudder([...good, 'leases']);
    assert.equal(leases.status, 0, leases.out);
  });

  it('the daemon\'s registry takes a lease over TLS, and `rudder leases` shows it', async () => {
    const subnet = await takeLease(
      { endpoints: [ep], prefix, cafile: pki.ca, certfile: pki.clientCert, keyfile: pki.clientKey },
      '{"Network":"10.9.0.0/16"}',
      0xc6120101,
    );
    const leases = rudder([...good, 'leases']);
    assert.equal(leases.status, 0, leases.out);
    assert.ok(leases.out.includes(subnet) && leases.out.includes('198.18.1.1'), leases.out);
  });

  const failures: Array<{ name: string; args: () => string[] }> = [
    { name: 'a CA that did not sign the server certificate', args: () => [`-etcd-endpoint=${ep}`, `-etcd-cafile=${pki.otherCa}`, `-etcd-certfile=${pki.clientCert}`, `-etcd-keyfile=${pki.clientKey}`] },
    { name: 'no client certificate', args: () => [`-etcd-endpoint=${ep}`, `-etcd-cafile=${pki.ca}`] },
    { name: 'a client certificate from another CA', args: () => [`-etcd-endpoint=${ep}`, `-etcd-cafile=${pki.ca}`, `-etcd-certfile=${pki.otherClientCert}`, `-etcd-keyfile=${pki.otherClientKey}`] },
    { name: 'plain http to the TLS port', args: () => [`-etcd-endpoint=${ep.replace('https:', 'http:')}`] },
  ];
  for (const f of failures) {
    it(`${f.name}: exit 1, a clear error naming the endpoint`, () => {
      const r = rudder([...f.args(), `-etcd-prefix=${prefix}`, 'config', 'get']);
      assert.equal(r.status, 1, r.out);
      const line = r.out.split('\n').find((l) => l.startsWith('rudder: ')) ?? '';
      assert.ok(line.includes(f.args()[0]!.slice('-etcd-endpoint='.length)), `names the endpoint: ${r.out}`);
      assert.match(line, /read config/, r.out);
      if (f.name !== 'plain http to the TLS port') assert.match(line, /TLS handshake failed: check -etcd-cafile, -etcd-certfile and -etcd-keyfile/, r.out);
      assert.doesNotMatch(r.out, /"Network"/, 'no config was read');
    });
  }
});

describe('etcd with user/password auth', { skip: skipUnlessEtcd }, () => {
  let etcd: EtcdServer;
  let ep = '';
  const prefix = '/auth/network';
  const PASSWORD = 'correct-horse-42';

  const etcdctl = (args: string[]): Promise<unknown> =>
    run(['etcdctl', `--endpoints=${ep}`, ...args], { env: cleanEtcdEnv({ ETCDCTL_API: '3' }), errorCode: 'E_ETCD' });

  before(async () => {
    etcd = await startEtcd();
    ep = etcd.clientUrl;
    await etcdctl(['user', 'add', 'root:root-pw-1']);
    await etcdctl(['role', 'add', 'rudder']);
    await etcdctl(['role', 'grant-permission', 'rudder', '--prefix=true', 'readwrite', `${prefix}/`]);
    await etcdctl(['user', 'add', `rudder:${PASSWORD}`]);
    await etcdctl(['user', 'grant-role', 'rudder', 'rudder']);
    await etcdctl(['auth', 'enable']);
  });
  after(async () => {
    await etcd?.dispose();
  });

  const base = (): string[] => [`-etcd-endpoint=${ep}`, `-etcd-prefix=${prefix}`, '-etcd-username=rudder'];

  it('works with the right password given by flag', () => {
    const set = rudder([...base(), `-etcd-password=${PASSWORD}`, 'config', 'set', '{"Network":"10.8.0.0/16"}']);
    assert.equal(set.status, 0, set.out);
    const get = rudder([...base(), `-etcd-password=${PASSWORD}`, 'config', 'get']);
    assert.equal(get.status, 0, get.out);
    assert.match(get.out, /10\.8\.0\.0\/16/);
  });

  it('works with the right password from RUDDER_ETCD_PASSWORD; the registry takes a lease', async () => {
    const get = rudder([...base(), 'config', 'get'], { RUDDER_ETCD_PASSWORD: PASSWORD });
    assert.equal(get.status, 0, get.out);
    assert.match(get.out, /10\.8\.0\.0\/16/);
    const subnet = await takeLease({ endpoints: [ep], prefix, username: 'rudder', password: PASSWORD }, '{"Network":"10.8.0.0/16"}', 0xc6120102);
    const leases = rudder([...base(), 'leases'], { RUDDER_ETCD_PASSWORD: PASSWORD });
    assert.equal(leases.status, 0, leases.out);
    assert.ok(leases.out.includes(subnet), leases.out);
  });

  it('a wrong password: exit 1, a clear error naming the endpoint, the password not echoed', () => {
    const r = rudder([...base(), '-etcd-password=wrong-pw-77', 'config', 'get']);
    assert.equal(r.status, 1, r.out);
    const line = r.out.split('\n').find((l) => l.startsWith('rudder: ')) ?? '';
    assert.ok(line.includes(ep), `names the endpoint: ${r.out}`);
    assert.match(line, /authentication failed|invalid user ID or password/i, r.out);
    assert.ok(!r.out.includes('wrong-pw-77'), 'password not echoed');
  });

  it('no credentials, or a prefix outside the role: exit 1, permission error naming the endpoint', () => {
    for (const args of [[`-etcd-endpoint=${ep}`, `-etcd-prefix=${prefix}`], [...base().slice(0, 1), '-etcd-prefix=/elsewhere/network', '-etcd-username=rudder', `-etcd-password=${PASSWORD}`]]) {
      const r = rudder([...args, 'config', 'set', '{"Network":"10.8.0.0/16"}']);
      assert.equal(r.status, 1, r.out);
      const line = r.out.split('\n').find((l) => l.startsWith('rudder: ')) ?? '';
      assert.ok(line.includes(ep), `names the endpoint: ${r.out}`);
      assert.match(line, /permission denied|user name is empty/i, r.out);
    }
  });
});
