/**
 * src/subnet/file.ts: the subnet file's one writer and one strict parser.
 * Round trips, and every rejection naming the file, the key or line, the
 * value and what was expected.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RudderError } from '../../src/errors';
import { formatIp, parseCidr, type Cidr } from '../../src/ip/ipv4';
import {
  formatSubnetFile,
  parseSubnetFile,
  readRememberedSubnet,
  readSubnetFile,
  SubnetFileUnreadable,
  writeSubnetFile,
  type SubnetFileContents,
} from '../../src/subnet/file';
import { tempDir } from '../helpers/tmp';

const cidr = (s: string): Cidr => parseCidr(s, true) as Cidr;

function rejects(text: string, ...fragments: string[]): void {
  assert.throws(
    () => parseSubnetFile(text, '/run/t.env'),
    (e: unknown) => {
      assert.ok(e instanceof RudderError, String(e));
      assert.equal(e.code, 'E_SUBNET_FILE');
      assert.ok(!e.message.includes('\n'), e.message);
      for (const f of ['/run/t.env', ...fragments]) assert.ok(e.message.includes(f), `${JSON.stringify(e.message)} lacks ${JSON.stringify(f)}`);
      return true;
    },
    text,
  );
}

const OK: Record<string, string> = { RUDDER_NETWORK: '10.0.0.0/16', RUDDER_SUBNET: '10.0.5.1/24', RUDDER_MTU: '1472', RUDDER_IPMASQ: 'false' };
const fileWith = (over: Record<string, string | null>): string =>
  Object.entries({ ...OK, ...over })
    .filter(([, v]) => v !== null)
    .map(([k, v]) => `${k}=${v}`)
    .join('\n') + '\n';

describe('subnet file: format and parse', () => {
  it('round-trips what the daemon writes, for many leases', () => {
    const cases: SubnetFileContents[] = [
      { network: cidr('10.0.0.0/16'), subnet: cidr('10.0.5.0/24'), mtu: 1472, ipMasq: false },
      { network: cidr('10.0.0.0/16'), subnet: cidr('10.0.0.0/24'), mtu: 1450, ipMasq: true },
      { network: cidr('172.16.0.0/24'), subnet: cidr('172.16.0.128/25'), mtu: 1500, ipMasq: false },
      { network: cidr('10.0.0.0/8'), subnet: cidr('10.255.255.252/30'), mtu: 68, ipMasq: true },
      { network: cidr('10.0.0.0/16'), subnet: cidr('10.0.5.0/24'), mtu: 65535, ipMasq: false, ipv6Network: 'fd00::/48', ipv6Subnet: 'fd00:0:0:5::1/64' },
    ];
    for (const c of cases) {
      const text = formatSubnetFile(c);
      const f = parseSubnetFile(text, 'f', { complete: true });
      assert.deepEqual({ network: f.network, subnet: f.subnet, mtu: f.mtu, ipMasq: f.ipMasq, ipv6Network: f.ipv6Network, ipv6Subnet: f.ipv6Subnet }, { ipv6Network: undefined, ipv6Subnet: undefined, ...c });
      assert.equal(f.address.prefix, c.subnet.prefix);
      assert.equal(f.address.ip, c.subnet.ip + 1, 'RUDDER_SUBNET is the first host address');
      assert.equal(formatSubnetFile(f), text, 'formatting the parsed file gives the same text');
    }
  });
  it('keeps RUDDER_SUBNET\'s address as written and masks the lease', () => {
    const f = parseSubnetFile(fileWith({ RUDDER_SUBNET: '10.0.5.77/24' }), 'f');
    assert.equal(formatIp(f.address.ip), '10.0.5.77');
    assert.equal(formatIp(f.subnet.ip), '10.0.5.0');
  });
  it('reads comments, blank lines, quotes, unknown keys; RUDDER_IPMASQ absent means false unless complete', () => {
    const text = '# written by hand\n\n  RUDDER_NETWORK="10.1.0.0/16"\nRUDDER_SUBNET=10.1.3.1/24\nRUDDER_MTU=1400\nOTHER=x\n';
    const f = parseSubnetFile(text, 'f');
    assert.equal(f.ipMasq, false);
    assert.equal(f.raw.get('OTHER'), 'x');
    assert.equal(formatIp(f.network.ip), '10.1.0.0');
    assert.throws(() => parseSubnetFile(text, '/run/t.env', { complete: true }), /\/run\/t\.env: RUDDER_IPMASQ missing/);
  });
  it('rejects each bad key, naming the file, the key, the value and the expected form', () => {
    for (const k of ['RUDDER_NETWORK', 'RUDDER_SUBNET', 'RUDDER_MTU']) {
      rejects(fileWith({ [k]: null }), `${k} missing`);
      rejects(fileWith({ [k]: '' }), `${k} missing`);
    }
    rejects('', 'RUDDER_NETWORK missing');
    rejects(fileWith({ RUDDER_NETWORK: '10.0.0.1/16' }), 'RUDDER_NETWORK=10.0.0.1/16', 'expected a network CIDR');
    rejects(fileWith({ RUDDER_NETWORK: '10.0.0.0' }), 'RUDDER_NETWORK=10.0.0.0', 'expected');
    rejects(fileWith({ RUDDER_NETWORK: '10.0.0.0/31', RUDDER_SUBNET: '10.0.0.1/32' }), 'RUDDER_NETWORK=10.0.0.0/31', 'length 1 to 30');
    rejects(fileWith({ RUDDER_SUBNET: '10.0.5.1' }), 'RUDDER_SUBNET=10.0.5.1: expected an address/length');
    rejects(fileWith({ RUDDER_SUBNET: 'x' }), 'RUDDER_SUBNET=x', 'expected');
    rejects(fileWith({ RUDDER_SUBNET: '10.0.5.1/16' }), 'RUDDER_SUBNET=10.0.5.1/16', 'longer than RUDDER_NETWORK\'s /16');
    rejects(fileWith({ RUDDER_SUBNET: '10.0.5.1/31' }), 'RUDDER_SUBNET=10.0.5.1/31', 'at most /30');
    rejects(fileWith({ RUDDER_SUBNET: '10.9.5.1/24' }), 'RUDDER_SUBNET=10.9.5.1/24', 'inside RUDDER_NETWORK=10.0.0.0/16');
    rejects(fileWith({ RUDDER_MTU: 'big' }), 'RUDDER_MTU=big: expected an integer between 68 and 65535');
    rejects(fileWith({ RUDDER_MTU: '67' }), 'RUDDER_MTU=67', 'between 68 and 65535');
    rejects(fileWith({ RUDDER_MTU: '65536' }), 'RUDDER_MTU=65536');
    rejects(fileWith({ RUDDER_MTU: '1e3' }), 'RUDDER_MTU=1e3');
    rejects(fileWith({ RUDDER_IPMASQ: 'yes' }), 'RUDDER_IPMASQ=yes: expected true or false');
    rejects(fileWith({ RUDDER_IPV6_NETWORK: 'fd00::' }), 'RUDDER_IPV6_NETWORK=fd00::', 'an IPv6 address/length');
    rejects(fileWith({ RUDDER_IPV6_SUBNET: '10.0.0.1/64' }), 'RUDDER_IPV6_SUBNET=10.0.0.1/64', 'an IPv6 address/length');
  });
  it('rejects a line that is not KEY=value, and a key given twice, naming the line', () => {
    rejects(`${fileWith({})}export RUDDER_X=1\n`, 'line 5', '"export RUDDER_X=1"', 'expected KEY=value');
    rejects(`${fileWith({})}garbage\n`, 'line 5', '"garbage"');
    rejects(`${fileWith({})}RUDDER_MTU=1400\n`, 'line 5', 'RUDDER_MTU given twice (first on line 3)');
  });
});

describe('subnet file: on disk', () => {
  it('writes atomically and reads back; a missing file is SubnetFileUnreadable (ENOENT) naming it', async (t) => {
    const dir = tempDir(t, 'rudder-subnet-file-');
    const file = path.join(dir, 'sub', 'subnet.env');
    await assert.rejects(readSubnetFile(file), (e: unknown) => e instanceof SubnetFileUnreadable && e.errno === 'ENOENT' && e.message.includes(file));
    assert.equal(await readRememberedSubnet(file), null);
    const c: SubnetFileContents = { network: cidr('10.0.0.0/16'), subnet: cidr('10.0.7.0/24'), mtu: 1450, ipMasq: true };
    await writeSubnetFile(file, c);
    assert.deepEqual(fs.readdirSync(path.dirname(file)), ['subnet.env'], 'no temp file left');
    const f = await readSubnetFile(file, { complete: true });
    assert.deepEqual(f.subnet, c.subnet);
    assert.deepEqual(await readRememberedSubnet(file), c.subnet);
  });
  it('an invalid file is no memory of a subnet, and says why', async (t) => {
    const file = path.join(tempDir(t, 'rudder-subnet-file-'), 'subnet.env');
    fs.writeFileSync(file, fileWith({ RUDDER_MTU: 'big' }));
    const why: string[] = [];
    assert.equal(await readRememberedSubnet(file, (e) => why.push((e as Error).message)), null);
    assert.match(why[0] ?? '', /RUDDER_MTU=big/);
  });
});
