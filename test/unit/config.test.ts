import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { NetworkConfig, configToJson, parseConfig, validateConfig } from '../../src/config';
import { RudderError } from '../../src/errors';
import { formatCidr, formatIp } from '../../src/ip/ipv4';

const ok = (o: unknown): NetworkConfig => validateConfig(o);
const withNet = (extra: Record<string, unknown>, net = '10.0.0.0/16'): NetworkConfig => ok({ Network: net, ...extra });

/**
 * Asserts an E_CONFIG rejection whose one-line message names the key, shows
 * the value and says what was expected.
 */
function rejects(input: unknown, key: string, value: string, ...expected: string[]): void {
  let caught: unknown;
  try {
    if (typeof input === 'string') parseConfig(input);
    else validateConfig(input);
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof RudderError, `expected a RudderError for ${JSON.stringify(input)}, got ${String(caught)}`);
  assert.equal(caught.code, 'E_CONFIG');
  const m = caught.message;
  assert.ok(!m.includes('\n'), `one line: ${m}`);
  // Text that is not JSON has no key to name: `key` is then ''.
  if (key !== '') assert.ok(m.includes(`${key}=${value}`), `message ${JSON.stringify(m)} should contain ${JSON.stringify(`${key}=${value}`)}`);
  assert.ok(m.includes('expected'), `message ${JSON.stringify(m)} should say what was expected`);
  for (const e of expected) assert.ok(m.includes(e), `message ${JSON.stringify(m)} should contain ${JSON.stringify(e)}`);
}

describe('config defaults', () => {
  it('needs only Network', () => {
    const c = ok({ Network: '10.0.0.0/16' });
    assert.equal(formatCidr(c.network), '10.0.0.0/16');
    assert.equal(c.subnetLen, 24);
    assert.equal(formatIp(c.subnetMin), '10.0.0.0', 'the first subnet is allowed (its address is the Network\'s)');
    assert.equal(formatIp(c.subnetMax), '10.0.255.0');
    assert.deepEqual(c.backend, { Type: 'udp' });
  });
  it('defaults SubnetLen to 24, or Network prefix + 1 for /24 and smaller', () => {
    const cases: Array<[string, number, string, string]> = [
      ['10.0.0.0/8', 24, '10.0.0.0', '10.255.255.0'],
      ['10.0.0.0/16', 24, '10.0.0.0', '10.0.255.0'],
      ['172.16.0.0/23', 24, '172.16.0.0', '172.16.1.0'],
      ['10.0.5.0/24', 25, '10.0.5.0', '10.0.5.128'],
      ['10.0.5.0/25', 26, '10.0.5.0', '10.0.5.64'],
      ['10.0.5.128/25', 26, '10.0.5.128', '10.0.5.192'],
      ['10.0.5.8/29', 30, '10.0.5.8', '10.0.5.12'],
      ['0.0.0.0/0', 24, '0.0.0.0', '255.255.255.0'],
      ['255.255.255.0/24', 25, '255.255.255.0', '255.255.255.128'],
    ];
    for (const [net, len, min, max] of cases) {
      const c = ok({ Network: net });
      assert.equal(c.subnetLen, len, net);
      assert.equal(formatIp(c.subnetMin), min, `${net} SubnetMin`);
      assert.equal(formatIp(c.subnetMax), max, `${net} SubnetMax`);
    }
  });
  it('computes SubnetMin/Max defaults for an explicit SubnetLen', () => {
    const c = withNet({ SubnetLen: 28 }, '10.0.0.0/16');
    assert.equal(formatIp(c.subnetMin), '10.0.0.0');
    assert.equal(formatIp(c.subnetMax), '10.0.255.240');
    const d = withNet({ SubnetLen: 9 }, '10.0.0.0/8');
    assert.equal(formatIp(d.subnetMax), '10.128.0.0');
  });
  it('keeps explicit SubnetMin/SubnetMax', () => {
    const c = withNet({ SubnetMin: '10.0.10.0', SubnetMax: '10.0.20.0' });
    assert.equal(formatIp(c.subnetMin), '10.0.10.0');
    assert.equal(formatIp(c.subnetMax), '10.0.20.0');
    const one = withNet({ SubnetMin: '10.0.7.0', SubnetMax: '10.0.7.0' });
    assert.equal(one.subnetMin, one.subnetMax, 'a range of one subnet is valid');
  });
  it('defaults Backend.Type to udp and fills the vxlan defaults', () => {
    assert.deepEqual(withNet({ Backend: {} }).backend, { Type: 'udp' });
    assert.deepEqual(withNet({ Backend: { Type: 'udp', Port: 9000 } }).backend, { Type: 'udp', Port: 9000 });
    assert.equal(withNet({ Backend: { Type: 'udp' } }).backend.Port, undefined, 'udp: left undefined so -port and then 8285 apply');
    assert.deepEqual(withNet({ Backend: { Type: 'vxlan' } }).backend, { Type: 'vxlan', VNI: 1, Port: 8472 });
    assert.deepEqual(withNet({ Backend: { Type: 'vxlan', VNI: 42, Port: 4789 } }).backend, { Type: 'vxlan', VNI: 42, Port: 4789 });
    assert.deepEqual(withNet({ Backend: { Type: 'host-gw' } }).backend, { Type: 'host-gw' });
  });
  it('accepts the flannel IPv4/IPv6 switches it ignores', () => {
    assert.doesNotThrow(() => withNet({ EnableIPv4: true, EnableIPv6: false }));
  });
  it('parses JSON text and prints the defaults back out', () => {
    const c = parseConfig('{"Network":"10.1.0.0/16","Backend":{"Type":"vxlan"}}');
    assert.deepEqual(configToJson(c), {
      Network: '10.1.0.0/16',
      SubnetLen: 24,
      SubnetMin: '10.1.0.0',
      SubnetMax: '10.1.255.0',
      Backend: { Type: 'vxlan', VNI: 1, Port: 8472 },
    });
    // The printed form is itself a valid config that means the same.
    assert.deepEqual(ok(configToJson(c)), c);
  });
});

describe('config validation', () => {
  it('rejects text that is not JSON', () => {
    rejects('{"Network": "10.0.0.0/16"', '', '', 'config: not valid JSON', 'an object like {"Network":"10.0.0.0/16"}');
    rejects('', '', '', 'config: not valid JSON');
    rejects("{'Network': '10.0.0.0/16'}", '', '', 'config: not valid JSON');
  });
  it('rejects JSON that is not an object', () => {
    rejects('[]', 'config', '[]', 'JSON object');
    rejects('"10.0.0.0/16"', 'config', '"10.0.0.0/16"', 'JSON object');
    rejects('null', 'config', 'null', 'JSON object');
    rejects(42, 'config', '42', 'JSON object');
  });
  it('rejects unknown keys, including wrong case', () => {
    rejects({ Network: '10.0.0.0/16', Subnetlen: 24 }, 'Subnetlen', '24', 'SubnetLen', 'case-sensitive');
    rejects({ network: '10.0.0.0/16' }, 'network', '"10.0.0.0/16"', 'Network');
    rejects({ Network: '10.0.0.0/16', Foo: { a: 1 } }, 'Foo', '{"a":1}', 'one of the keys');
  });
  it('requires Network as an IPv4 CIDR', () => {
    rejects({}, 'Network', 'undefined', 'mandatory', 'CIDR');
    rejects({ Network: 10 }, 'Network', '10', 'IPv4 CIDR string');
    rejects({ Network: null }, 'Network', 'null', 'IPv4 CIDR');
    for (const bad of ['10.0.0.0', '10.0.0.0/33', '256.0.0.0/8', '10.0.0/16', 'fd00::/64', '10.0.0.0/016', 'ten/8', '']) {
      rejects({ Network: bad }, 'Network', JSON.stringify(bad), 'IPv4 CIDR such as "10.0.0.0/16"');
    }
  });
  it('rejects host bits set in Network, showing the network address meant', () => {
    rejects({ Network: '10.0.0.1/16' }, 'Network', '"10.0.0.1/16"', 'no host bits', '10.0.0.0/16');
    rejects({ Network: '10.0.5.128/24' }, 'Network', '"10.0.5.128/24"', '10.0.5.0/24');
  });
  it('rejects a Network too small to hold two subnets of at most /30', () => {
    rejects({ Network: '10.0.0.0/31' }, 'Network', '"10.0.0.0/31"', 'prefix length of at most /29');
    rejects({ Network: '10.0.0.0/32' }, 'Network', '"10.0.0.0/32"', 'at most /29');
    // A /30 cannot be cut into subnets of /30 or less: say so about Network,
    // not about a SubnetLen the user never wrote.
    rejects({ Network: '10.0.0.4/30' }, 'Network', '"10.0.0.4/30"', 'at most /29');
  });
  it('bounds SubnetLen: larger than the Network prefix, at most 30', () => {
    rejects({ Network: '10.0.0.0/16', SubnetLen: 16 }, 'SubnetLen', '16', 'larger than the Network prefix (16)', 'at most 30');
    rejects({ Network: '10.0.0.0/16', SubnetLen: 8 }, 'SubnetLen', '8', 'larger than the Network prefix (16)');
    rejects({ Network: '10.0.0.0/16', SubnetLen: 31 }, 'SubnetLen', '31', 'at most 30');
    rejects({ Network: '10.0.0.0/16', SubnetLen: 32 }, 'SubnetLen', '32', 'at most 30');
    rejects({ Network: '10.0.0.0/16', SubnetLen: -1 }, 'SubnetLen', '-1', 'larger than the Network prefix');
    assert.equal(withNet({ SubnetLen: 17 }).subnetLen, 17);
    assert.equal(withNet({ SubnetLen: 30 }).subnetLen, 30);
    assert.equal(withNet({ SubnetLen: 30 }, '10.0.0.0/29').subnetLen, 30);
  });
  it('rejects a SubnetLen that is not an integer', () => {
    rejects({ Network: '10.0.0.0/16', SubnetLen: '24' }, 'SubnetLen', '"24"', 'integer');
    rejects({ Network: '10.0.0.0/16', SubnetLen: 24.5 }, 'SubnetLen', '24.5', 'integer');
    rejects({ Network: '10.0.0.0/16', SubnetLen: null }, 'SubnetLen', 'null', 'integer');
  });
  for (const key of ['SubnetMin', 'SubnetMax'] as const) {
    it(`checks ${key}: an IPv4 string, inside Network, subnet-aligned`, () => {
      rejects({ Network: '10.0.0.0/16', [key]: 5 }, key, '5', 'IPv4 address string');
      rejects({ Network: '10.0.0.0/16', [key]: '10.0.300.0' }, key, '"10.0.300.0"', 'IPv4 address');
      rejects({ Network: '10.0.0.0/16', [key]: '10.0.5.0/24' }, key, '"10.0.5.0/24"', 'IPv4 address');
      rejects({ Network: '10.0.0.0/16', [key]: '10.1.0.0' }, key, '"10.1.0.0"', 'inside Network 10.0.0.0/16');
      rejects({ Network: '10.0.0.0/16', [key]: '9.255.255.0' }, key, '"9.255.255.0"', 'inside Network 10.0.0.0/16');
      rejects({ Network: '10.0.0.0/16', [key]: '10.0.5.1' }, key, '"10.0.5.1"', 'network address of a /24 subnet');
      rejects({ Network: '10.0.0.0/16', SubnetLen: 26, [key]: '10.0.5.32' }, key, '"10.0.5.32"', '/26', '64 addresses');
      assert.equal(formatIp(withNet({ SubnetLen: 26, [key]: '10.0.5.64' })[key === 'SubnetMin' ? 'subnetMin' : 'subnetMax']), '10.0.5.64');
    });
  }
  it('rejects SubnetMin above SubnetMax, explicit or against a default', () => {
    rejects({ Network: '10.0.0.0/16', SubnetMin: '10.0.20.0', SubnetMax: '10.0.10.0' }, 'SubnetMin', '"10.0.20.0"', 'not above SubnetMax (10.0.10.0)');
    rejects({ Network: '10.0.0.0/16', SubnetMax: '10.0.0.0', SubnetMin: '10.0.1.0' }, 'SubnetMin', '"10.0.1.0"', 'SubnetMax (10.0.0.0)');
  });
  it('rejects an unknown or malformed Backend', () => {
    rejects({ Network: '10.0.0.0/16', Backend: 'udp' }, 'Backend', '"udp"', 'object such as {"Type":"udp"}');
    rejects({ Network: '10.0.0.0/16', Backend: [] }, 'Backend', '[]', 'object');
    rejects({ Network: '10.0.0.0/16', Backend: null }, 'Backend', 'null', 'object');
    rejects({ Network: '10.0.0.0/16', Backend: { Type: 'gre' } }, 'Backend.Type', '"gre"', '"udp", "vxlan", "host-gw"');
    rejects({ Network: '10.0.0.0/16', Backend: { Type: 'UDP' } }, 'Backend.Type', '"UDP"', '"udp"');
    rejects({ Network: '10.0.0.0/16', Backend: { Type: 1 } }, 'Backend.Type', '1', 'one of');
  });
  it('checks Backend.Port', () => {
    for (const p of [0, 65536, -1, 8285.5, '8285', null]) {
      rejects({ Network: '10.0.0.0/16', Backend: { Type: 'udp', Port: p } }, 'Backend.Port', JSON.stringify(p), 'UDP port between 1 and 65535');
    }
    rejects({ Network: '10.0.0.0/16', Backend: { Type: 'vxlan', Port: 70000 } }, 'Backend.Port', '70000', 'between 1 and 65535');
    assert.equal(withNet({ Backend: { Port: 1 } }).backend.Port, 1);
    assert.equal(withNet({ Backend: { Port: 65535 } }).backend.Port, 65535);
  });
  it('checks Backend.VNI', () => {
    for (const v of [-1, 16777216, 1.5, '1']) {
      rejects({ Network: '10.0.0.0/16', Backend: { Type: 'vxlan', VNI: v } }, 'Backend.VNI', JSON.stringify(v), 'integer between 0 and 16777215');
    }
    rejects({ Network: '10.0.0.0/16', Backend: { Type: 'udp', VNI: 1 } }, 'Backend.VNI', '1', 'Backend.Type is "vxlan"');
    rejects({ Network: '10.0.0.0/16', Backend: { VNI: 1 } }, 'Backend.VNI', '1', 'vxlan');
    assert.equal(withNet({ Backend: { Type: 'vxlan', VNI: 16777215 } }).backend.VNI, 16777215);
    assert.equal(withNet({ Backend: { Type: 'vxlan', VNI: 0 } }).backend.VNI, 0);
  });
});
