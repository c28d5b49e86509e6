/**
 * The udp and wireguard backends over an IPv6 underlay, planning only (pure):
 * which family a host picks, which endpoint each peer gets, why a peer is
 * unusable, and the udp MTU. The data plane itself is covered by
 * test/e2e/ipv6-underlay.test.ts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isRudderError } from '../../src/errors';
import { parseCidr, parseIp } from '../../src/ip/ipv4';
import { formatCidr6, parseCidr6, parseIp6 } from '../../src/ip/ipv6';
import { NO_IPV4, type Lease } from '../../src/subnet/lease';
import type { ExternalInterface } from '../../src/backend/types';
import { formatEndpoint, underlayOf } from '../../src/backend/tun-network';
import { UDP_OVERHEAD, UDP_OVERHEAD_V6, UdpPeerTable, peerAddress } from '../../src/backend/udp';
import { describeRoute } from '../../src/backend/udp/table';
import { WireGuardPeerTable, endpointOf } from '../../src/backend/wireguard';

const ip = (s: string): number => parseIp(s) as number;
const ip6 = (s: string): bigint => parseIp6(s) as bigint;
const c4 = (s: string) => parseCidr(s, true) as { ip: number; prefix: number };
const c6 = (s: string) => parseCidr6(s, true) as { ip: bigint; prefix: number };
const KEY = (n: number): string => Buffer.alloc(32, n).toString('base64');

/** A lease with both subnets (or IPv6 only when v4 is null) and the given underlay addresses. */
function lease(v4: string | null, v6: string, pub: { ip?: string; ip6?: string }, type = 'udp', data: Record<string, unknown> = {}, data6?: Record<string, unknown>): Lease {
  return {
    subnet: v4 === null ? NO_IPV4 : c4(v4),
    ipv6Subnet: c6(v6),
    publicIP: pub.ip === undefined ? 0 : ip(pub.ip),
    ...(pub.ip6 !== undefined ? { publicIPv6: ip6(pub.ip6) } : {}),
    ...(data6 !== undefined ? { backendV6Data: data6 } : {}),
    backendType: type,
    backendData: data,
    expiresAt: null,
  };
}

const ext = (publicIP: string | null, publicIPv6?: string): ExternalInterface => ({
  name: 'eth0',
  index: 2,
  address: publicIP === null ? 0 : ip(publicIP),
  publicIP: publicIP === null ? 0 : ip(publicIP),
  mtu: 1500,
  ...(publicIPv6 !== undefined ? { publicIPv6: ip6(publicIPv6) } : {}),
});

describe('underlay family of a host', () => {
  it('IPv4 when the host has an IPv4 PublicIP, IPv6 when it has only a PublicIPv6', () => {
    assert.equal(underlayOf('udp', ext('198.18.0.1', '2001:2::1')), 'ipv4');
    assert.equal(underlayOf('udp', ext('198.18.0.1')), 'ipv4');
    assert.equal(underlayOf('wireguard', ext(null, '2001:2::1')), 'ipv6');
  });

  it('neither: a named error', () => {
    assert.throws(
      () => underlayOf('udp', ext(null)),
      (e: unknown) => isRudderError(e) && e.code === 'E_BACKEND' && /udp: interface eth0 .*no IPv4 PublicIP and no PublicIPv6/.test(e.message),
    );
  });

  it('endpoints print as address:port, IPv6 in brackets; udp overhead is 48 on IPv6', () => {
    assert.equal(formatEndpoint(ip('198.18.0.2'), undefined, 8285), '198.18.0.2:8285');
    assert.equal(formatEndpoint(0, ip6('2001:2::2'), 8285), '[2001:2::2]:8285');
    assert.deepEqual([UDP_OVERHEAD, UDP_OVERHEAD_V6], [28, 48]);
  });
});

describe('udp peer table over an IPv6 underlay', () => {
  const own = lease('10.0.5.0/24', 'fd42:42:0:5::/64', { ip6: '2001:2::5' });

  it('routes both inner families of a peer to its PublicIPv6', () => {
    const t = new UdpPeerTable(8285, own, 'ipv6');
    const ch = t.apply([
      { type: 'added', lease: lease('10.0.7.0/24', 'fd42:42:0:7::/64', { ip6: '2001:2::7' }, 'udp', { Port: 9000 }) },
      { type: 'added', lease: lease(null, 'fd42:42:0:3::/64', { ip6: '2001:2::3' }) },
    ]);
    assert.deepEqual(ch.invalid, []);
    assert.deepEqual(t.table().map(describeRoute), ['10.0.7.0/24 → [2001:2::7]:9000']);
    assert.deepEqual(t.table6().map(describeRoute), ['fd42:42:0:3::/64 → [2001:2::3]:8285', 'fd42:42:0:7::/64 → [2001:2::7]:9000']);
    assert.ok(t.table().every((r) => r.publicIP === 0));
  });

  it('a peer with a PublicIP but no PublicIPv6 is unusable, with why', () => {
    const t = new UdpPeerTable(8285, own, 'ipv6');
    const ch = t.apply([{ type: 'added', lease: lease('10.0.8.0/24', 'fd42:42:0:8::/64', { ip: '198.18.0.8' }) }]);
    assert.deepEqual([t.table().length, t.table6().length], [0, 0]);
    assert.equal(ch.invalid.length, 1);
    assert.match(ch.invalid[0]?.why ?? '', /no PublicIPv6, and this host's underlay is IPv6/);
  });

  it('an IPv4 underlay keeps using the PublicIP (and refuses a peer without one)', () => {
    assert.deepEqual(peerAddress(lease('10.0.8.0/24', 'fd42:42:0:8::/64', { ip: '198.18.0.8', ip6: '2001:2::8' }), 'ipv4'), { publicIP: ip('198.18.0.8') });
    const why = peerAddress(lease('10.0.8.0/24', 'fd42:42:0:8::/64', { ip6: '2001:2::8' }), 'ipv4');
    assert.ok(typeof why === 'string' && /no IPv4 PublicIP/.test(why), typeof why === 'string' ? why : 'an address');
    assert.deepEqual(peerAddress(lease('10.0.8.0/24', 'fd42:42:0:8::/64', { ip: '198.18.0.8', ip6: '2001:2::8' }), 'ipv6'), { publicIP: 0, publicIPv6: ip6('2001:2::8') });
  });

  it('a peer whose PublicIPv6 changes gets its routes replaced', () => {
    const t = new UdpPeerTable(8285, own, 'ipv6');
    const a = lease('10.0.7.0/24', 'fd42:42:0:7::/64', { ip6: '2001:2::7' });
    t.apply([{ type: 'added', lease: a }]);
    const ch = t.apply([{ type: 'added', lease: { ...a, publicIPv6: ip6('2001:2::77') } }]);
    assert.deepEqual(ch.set.map(describeRoute), ['10.0.7.0/24 → [2001:2::77]:8285']);
    assert.deepEqual(t.table6().map((r) => formatCidr6(r)), ['fd42:42:0:7::/64']);
  });
});

describe('wireguard peer table over an IPv6 underlay', () => {
  const own = lease('10.0.5.0/24', 'fd42:42:0:5::/64', { ip6: '2001:2::5' }, 'wireguard', { PublicKey: KEY(5) });

  it('the endpoint is the PublicIPv6 with BackendV6Data.Port, else BackendData.Port, else the default', () => {
    const t = new WireGuardPeerTable(own, KEY(5), 51820, 'ipv6');
    const ch = t.apply([
      { type: 'added', lease: lease('10.0.6.0/24', 'fd42:42:0:6::/64', { ip: '198.18.0.6', ip6: '2001:2::6' }, 'wireguard', { PublicKey: KEY(6), Port: 7000 }, { PublicKey: KEY(6), Port: 7006 }) },
      { type: 'added', lease: lease('10.0.7.0/24', 'fd42:42:0:7::/64', { ip6: '2001:2::7' }, 'wireguard', { PublicKey: KEY(7), Port: 7007 }) },
      { type: 'added', lease: lease(null, 'fd42:42:0:8::/64', { ip6: '2001:2::8' }, 'wireguard', { PublicKey: KEY(8) }) },
    ]);
    assert.deepEqual(ch.invalid, []);
    const { peers } = t.payload();
    assert.deepEqual(
      peers.map((p) => [formatEndpoint(p.endpoint.ip, p.endpoint.ip6, p.endpoint.port), (p.allowedIps6 ?? []).map((a) => formatCidr6(a)).join()]),
      [
        ['[2001:2::8]:51820', 'fd42:42:0:8::/64'],
        ['[2001:2::6]:7006', 'fd42:42:0:6::/64'],
        ['[2001:2::7]:7007', 'fd42:42:0:7::/64'],
      ],
    );
    assert.ok(peers.every((p) => p.endpoint.ip === 0));
  });

  it('unusable: no PublicIPv6, or a bad BackendV6Data.Port; an IPv4 underlay wants the PublicIP', () => {
    const t = new WireGuardPeerTable(own, KEY(5), 51820, 'ipv6');
    const ch = t.apply([
      { type: 'added', lease: lease('10.0.6.0/24', 'fd42:42:0:6::/64', { ip: '198.18.0.6' }, 'wireguard', { PublicKey: KEY(6) }) },
      { type: 'added', lease: lease('10.0.7.0/24', 'fd42:42:0:7::/64', { ip6: '2001:2::7' }, 'wireguard', { PublicKey: KEY(7) }, { PublicKey: KEY(7), Port: 'x' }) },
    ]);
    assert.deepEqual(ch.invalid.map((x) => x.why).sort(), [
      'BackendV6Data.Port="x": expected a UDP port between 1 and 65535',
      "no PublicIPv6, and this host's underlay is IPv6 (it has no IPv4 PublicIP): expected a lease with a PublicIPv6",
    ]);
    assert.equal(t.payload().peers.length, 0);
    const l = lease('10.0.6.0/24', 'fd42:42:0:6::/64', { ip6: '2001:2::6' }, 'wireguard', { PublicKey: KEY(6) });
    const why = endpointOf(l, 51820, 'ipv4');
    assert.ok(typeof why === 'string' && /no IPv4 PublicIP/.test(why), typeof why === 'string' ? why : 'an endpoint');
    assert.deepEqual(endpointOf({ ...l, publicIP: ip('198.18.0.6') }, 51820, 'ipv4'), { ip: ip('198.18.0.6'), port: 51820 });
  });
});
