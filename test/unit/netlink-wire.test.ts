/**
 * wire.ts encodes route and neighbor/FDB requests by hand: byte for byte
 * what the netlink package's encoders produced for the same request (the
 * objects below are the ones routes.ts and neigh.ts passed to the package
 * before), so the kernel sees no difference. Attributes are given in type
 * order: the package writes them in its argument's key order (the FDB
 * requests had lladdr first), and the kernel looks them up by type.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AttrStream, FlagsNew, rt } from 'netlink';
import { parseIp } from '../../src/ip/ipv4';
import { parseIp6 } from '../../src/ip/ipv6';
import { ip6ToBuf, bufToIp6, ackErrno, neighMessage, NLM_F_ACK, NLM_F_REQUEST, NTF_SELF, NUD_PERMANENT, routeMessage, RTM_DELNEIGH, RTM_DELROUTE, RTM_NEWNEIGH, RTM_NEWROUTE } from '../../src/netlink/wire';

const ip = (s: string): number => parseIp(s) as number;
const ipBuf = (s: string): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(ip(s));
  return b;
};
const macBuf = (m: string): Buffer => Buffer.from(m.split(':').map((h) => parseInt(h, 16)));
const CREATE_REPLACE = FlagsNew.CREATE | FlagsNew.REPLACE;
const RTPROT = 0x52;
const pkgProto = RTPROT as unknown as rt.RouteMessage['data']['protocol'];

function pkgRoute(data: rt.RouteMessage['data'], attrs: rt.RouteMessage['attrs']): Buffer {
  const out = new AttrStream();
  rt.formatRouteMessage({ kind: 'route', data, attrs }, out);
  return Buffer.concat(out.bufs);
}

function pkgNeigh(data: rt.NeighborMessage['data'], attrs: rt.NeighborMessage['attrs']): Buffer {
  const out = new AttrStream();
  rt.formatNeighborMessage({ kind: 'neighbor', data, attrs }, out);
  return Buffer.concat(out.bufs);
}

/**
 * Header checked field by field; the body must equal the package's, which
 * leaves the last attribute unpadded (a MAC: 10 bytes): wire.ts pads every
 * attribute to 4 bytes as netlink(7) and libmnl do, so nlmsg_len stays aligned.
 */
function same(msg: Buffer, type: number, flags: number, seq: number, pkgBody: Buffer): void {
  const body = Buffer.concat([pkgBody, Buffer.alloc((4 - (pkgBody.length % 4)) % 4)]);
  assert.equal(msg.readUInt32LE(0), msg.length, 'nlmsg_len');
  assert.equal(msg.readUInt16LE(4), type, 'nlmsg_type');
  assert.equal(msg.readUInt16LE(6), flags | NLM_F_REQUEST | NLM_F_ACK, 'nlmsg_flags');
  assert.equal(msg.readUInt32LE(8), seq, 'nlmsg_seq');
  assert.equal(msg.subarray(16).toString('hex'), body.toString('hex'));
}

describe('netlink wire encoding', () => {
  it('route replace: onlink via a gateway (vxlan), via a gateway (host-gw), a device route, a metric and a table above 255', () => {
    same(
      routeMessage(RTM_NEWROUTE, CREATE_REPLACE, 7, { family: 2, dstLen: 24, table: 254, protocol: RTPROT, scope: 0, type: 1, flags: 4, dst: ip('10.1.2.0'), oif: 9, gateway: ip('10.1.2.0') }),
      RTM_NEWROUTE,
      CREATE_REPLACE,
      7,
      pkgRoute({ family: 2, dstLen: 24, table: 254, protocol: pkgProto, scope: 0, type: 1, flags: { __unknown: 4 } },
        { dst: ipBuf('10.1.2.0'), oif: 9, gateway: ipBuf('10.1.2.0') },
      ),
    );
    same(
      routeMessage(RTM_NEWROUTE, CREATE_REPLACE, 8, { family: 2, dstLen: 24, table: 254, protocol: RTPROT, scope: 0, type: 1, flags: 0, dst: ip('10.1.3.0'), oif: 2, gateway: ip('198.19.0.3') }),
      RTM_NEWROUTE,
      CREATE_REPLACE,
      8,
      pkgRoute({ family: 2, dstLen: 24, table: 254, protocol: pkgProto, scope: 0, type: 1, flags: {} }, { dst: ipBuf('10.1.3.0'), oif: 2, gateway: ipBuf('198.19.0.3') }),
    );
    same(
      routeMessage(RTM_NEWROUTE, CREATE_REPLACE, 0xfffffffe, { family: 2, dstLen: 8, table: 0, protocol: RTPROT, scope: 253, type: 1, flags: 0, dst: ip('10.0.0.0'), oif: 5, priority: 100, tableAttr: 1000 }),
      RTM_NEWROUTE,
      CREATE_REPLACE,
      0xfffffffe,
      pkgRoute({ family: 2, dstLen: 8, table: 0, protocol: pkgProto, scope: 253, type: 1, flags: {} }, { dst: ipBuf('10.0.0.0'), oif: 5, priority: 100, table: 1000 }),
    );
  });

  it('route delete (scope NOWHERE, protocol and type unset)', () => {
    same(
      routeMessage(RTM_DELROUTE, 0, 3, { family: 2, dstLen: 24, table: 254, protocol: 0, scope: 255, type: 0, flags: 0, dst: ip('10.1.2.0'), oif: 9, gateway: ip('10.1.2.0') }),
      RTM_DELROUTE,
      0,
      3,
      pkgRoute({ family: 2, dstLen: 24, table: 254, scope: 255 }, { dst: ipBuf('10.1.2.0'), oif: 9, gateway: ipBuf('10.1.2.0') }),
    );
    same(
      routeMessage(RTM_DELROUTE, 0, 4, { family: 2, dstLen: 24, table: 254, protocol: 0, scope: 255, type: 0, flags: 0, dst: ip('10.1.2.0') }),
      RTM_DELROUTE,
      0,
      4,
      pkgRoute({ family: 2, dstLen: 24, table: 254, scope: 255 }, { dst: ipBuf('10.1.2.0') }),
    );
  });

  it('IPv6 routes: 16-byte destination and gateway, an unreachable route, a delete', () => {
    const v6 = (s: string): bigint => parseIp6(s) as bigint;
    same(
      routeMessage(RTM_NEWROUTE, CREATE_REPLACE, 21, { family: 10, dstLen: 64, table: 254, protocol: RTPROT, scope: 0, type: 1, flags: 0, dst: v6('fd42:42:0:5::'), oif: 3, gateway: v6('2001:2::2'), priority: 1024 }),
      RTM_NEWROUTE,
      CREATE_REPLACE,
      21,
      pkgRoute({ family: 10, dstLen: 64, table: 254, protocol: pkgProto, scope: 0, type: 1, flags: {} }, { dst: ip6ToBuf(v6('fd42:42:0:5::')), oif: 3, gateway: ip6ToBuf(v6('2001:2::2')), priority: 1024 }),
    );
    same(
      routeMessage(RTM_NEWROUTE, CREATE_REPLACE, 22, { family: 10, dstLen: 48, table: 254, protocol: RTPROT, scope: 0, type: 7, flags: 0, dst: v6('fd42:42::'), priority: 4294967295 }),
      RTM_NEWROUTE,
      CREATE_REPLACE,
      22,
      pkgRoute({ family: 10, dstLen: 48, table: 254, protocol: pkgProto, scope: 0, type: 7, flags: {} }, { dst: ip6ToBuf(v6('fd42:42::')), priority: 4294967295 }),
    );
    same(
      routeMessage(RTM_DELROUTE, 0, 23, { family: 10, dstLen: 64, table: 254, protocol: 0, scope: 255, type: 0, flags: 0, dst: v6('fd42:42:0:5::'), oif: 3, gateway: v6('2001:2::2') }),
      RTM_DELROUTE,
      0,
      23,
      pkgRoute({ family: 10, dstLen: 64, table: 254, scope: 255 }, { dst: ip6ToBuf(v6('fd42:42:0:5::')), oif: 3, gateway: ip6ToBuf(v6('2001:2::2')) }),
    );
    for (const a of ['::', '::1', 'fd42:42:0:5::', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', '2001:2::8000:0:1']) {
      const buf = ip6ToBuf(v6(a));
      assert.equal(buf.length, 16);
      assert.equal(bufToIp6(buf), v6(a));
    }
    assert.equal(ip6ToBuf(v6('2001:2::1')).toString('hex'), '20010002000000000000000000000001');
    assert.equal(bufToIp6(Buffer.alloc(4)), undefined);
  });

  it('neighbor and FDB replace and delete', () => {
    const mac = '0e:0a:ff:00:10:01';
    same(
      neighMessage(RTM_NEWNEIGH, CREATE_REPLACE, 11, { family: 2, ifindex: 9, state: NUD_PERMANENT, flags: 0, dst: ip('10.1.2.0'), lladdr: mac }),
      RTM_NEWNEIGH,
      CREATE_REPLACE,
      11,
      pkgNeigh({ family: 2, ifindex: 9, state: { permanent: true } }, { dst: ipBuf('10.1.2.0'), lladdr: macBuf(mac) }),
    );
    same(
      neighMessage(RTM_DELNEIGH, 0, 12, { family: 2, ifindex: 9, state: 0, flags: 0, dst: ip('10.1.2.0') }),
      RTM_DELNEIGH,
      0,
      12,
      pkgNeigh({ family: 2, ifindex: 9 }, { dst: ipBuf('10.1.2.0') }),
    );
    same(
      neighMessage(RTM_NEWNEIGH, CREATE_REPLACE, 13, { family: 7, ifindex: 9, state: NUD_PERMANENT, flags: NTF_SELF, dst: ip('198.19.0.3'), lladdr: mac }),
      RTM_NEWNEIGH,
      CREATE_REPLACE,
      13,
      pkgNeigh({ family: 7, ifindex: 9, state: { permanent: true }, flags: { self: true } }, { dst: ipBuf('198.19.0.3'), lladdr: macBuf(mac) }),
    );
    same(
      neighMessage(RTM_DELNEIGH, 0, 14, { family: 7, ifindex: 9, state: 0, flags: NTF_SELF, dst: ip('198.19.0.3'), lladdr: mac }),
      RTM_DELNEIGH,
      0,
      14,
      pkgNeigh({ family: 7, ifindex: 9, flags: { self: true } }, { dst: ipBuf('198.19.0.3'), lladdr: macBuf(mac) }),
    );
  });

  it('acks: errno 0, a negative errno, and messages that are not acks', () => {
    const err = (n: number): Buffer => {
      const b = Buffer.alloc(20);
      b.writeInt32LE(n, 0);
      return b;
    };
    assert.equal(ackErrno(2, err(0)), 0);
    assert.equal(ackErrno(2, err(-17)), -17);
    assert.equal(ackErrno(24, err(-17)), undefined);
    assert.equal(ackErrno(2, Buffer.alloc(2)), undefined);
  });
});
