/**
 * decodeChange: rtnetlink notifications → the changes a backend judges.
 * Messages are built byte by byte, as the kernel sends them; the socket
 * side is covered by the e2e tests.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decodeChange, NUD_FAILED, route6InfoOf, routeInfoOf, splitMessages } from '../../src/netlink/monitor';
import { toRoute6Info, toRouteInfo } from '../../src/netlink/routes';
import { parseRouteMessage } from '../../src/netlink/rtmsg';
import { ip6ToBuf } from '../../src/netlink/wire';
import { parseIp } from '../../src/ip/ipv4';
import { parseIp6 } from '../../src/ip/ipv6';
import { RTPROT_RUDDER } from '../../src/netlink';

const ip = (s: string): number => parseIp(s) as number;
const NUD_PERMANENT = 0x80;
const AF_INET = 2;
const AF_BRIDGE = 7;

function attr(type: number, value: Buffer): Buffer {
  const len = 4 + value.length;
  const b = Buffer.alloc((len + 3) & ~3);
  b.writeUInt16LE(len, 0);
  b.writeUInt16LE(type, 2);
  value.copy(b, 4);
  return b;
}

const ipBuf = (s: string): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(ip(s) >>> 0);
  return b;
};
const macBuf = (m: string): Buffer => Buffer.from(m.split(':').map((h) => parseInt(h, 16)));

/** struct ndmsg + NDA_DST (1) + NDA_LLADDR (2). */
function ndmsg(family: number, index: number, state: number, dst?: Buffer, lladdr?: Buffer): Buffer {
  const h = Buffer.alloc(12);
  h[0] = family;
  h.writeInt32LE(index, 4);
  h.writeUInt16LE(state, 8);
  return Buffer.concat([h, ...(dst ? [attr(1, dst)] : []), ...(lladdr ? [attr(2, lladdr)] : [])]);
}

const NEW = 28; // RTM_NEWNEIGH
const DEL = 29; // RTM_DELNEIGH
const RTM_NEWROUTE = 24;
const RTM_DELROUTE = 25;
const only7 = (i: number): boolean => i === 7;

describe('kernel notifications', () => {
  it('a permanent neighbor appearing is "new", with its MAC', () => {
    const ch = decodeChange({ type: NEW, data: ndmsg(AF_INET, 7, NUD_PERMANENT, ipBuf('10.9.1.0'), macBuf('0e:00:00:00:00:01')) }, only7);
    assert.deepEqual(ch, { kind: 'neigh', op: 'new', index: 7, ip: ip('10.9.1.0'), mac: '0e:00:00:00:00:01' });
  });

  it('a NEWNEIGH in state FAILED (sent just before the kernel deletes a neighbor) is a deletion', () => {
    const ch = decodeChange({ type: NEW, data: ndmsg(AF_INET, 7, NUD_FAILED, ipBuf('10.9.1.0')) }, only7);
    assert.deepEqual(ch, { kind: 'neigh', op: 'del', index: 7, ip: ip('10.9.1.0'), mac: undefined });
    const del = decodeChange({ type: DEL, data: ndmsg(AF_INET, 7, NUD_FAILED, ipBuf('10.9.1.0')) }, only7);
    assert.equal(del?.kind === 'neigh' ? del.op : null, 'del');
  });

  it('FDB entries (AF_BRIDGE) come with MAC and remote', () => {
    const ch = decodeChange({ type: NEW, data: ndmsg(AF_BRIDGE, 7, NUD_PERMANENT, ipBuf('198.19.0.1'), macBuf('0e:00:00:00:00:01')) }, only7);
    assert.deepEqual(ch, { kind: 'fdb', op: 'new', index: 7, mac: '0e:00:00:00:00:01', dst: ip('198.19.0.1') });
  });

  it('other devices, other routing protocols and short messages are nobody’s business', () => {
    assert.equal(decodeChange({ type: NEW, data: ndmsg(AF_INET, 3, NUD_PERMANENT, ipBuf('10.9.1.0'), macBuf('0e:00:00:00:00:01')) }, only7), null);
    const rtmsg = Buffer.alloc(12);
    rtmsg[0] = AF_INET;
    rtmsg[5] = 4; // RTPROT_STATIC
    assert.equal(decodeChange({ type: RTM_NEWROUTE, data: rtmsg }, only7), null);
    rtmsg[5] = RTPROT_RUDDER;
    rtmsg[1] = 24;
    const ours = decodeChange({ type: RTM_DELROUTE, data: Buffer.concat([rtmsg, attr(1, ipBuf('10.9.1.0'))]) }, only7);
    assert.equal(ours?.kind, 'route');
    assert.equal(ours?.kind === 'route' ? `${ours.op} ${ours.route.dst.ip} ${ours.route.dst.prefix}` : '', `del ${ip('10.9.1.0')} 24`);
    assert.equal(decodeChange({ type: NEW, data: Buffer.alloc(4) }, only7), null);
  });

  it('route fields read from the bytes match what listRoutes reports (the dump parser + toRouteInfo)', () => {
    const u32le = (v: number): Buffer => {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(v);
      return b;
    };
    const rtmsg = (dstLen: number, table: number, protocol: number, scope: number, type: number, flags: number): Buffer => {
      const h = Buffer.alloc(12);
      h[0] = AF_INET;
      h[1] = dstLen;
      h[4] = table;
      h[5] = protocol;
      h[6] = scope;
      h[7] = type;
      h.writeUInt32LE(flags, 8);
      return h;
    };
    const cases: Buffer[] = [
      // vxlan: onlink via the VTEP address
      Buffer.concat([rtmsg(24, 254, RTPROT_RUDDER, 0, 1, 4), attr(15, u32le(254)), attr(1, ipBuf('10.1.2.0')), attr(5, ipBuf('10.1.2.0')), attr(4, u32le(9))]),
      // host-gw, with a metric and a preferred source
      Buffer.concat([rtmsg(24, 254, RTPROT_RUDDER, 0, 1, 0), attr(1, ipBuf('10.1.3.0')), attr(6, u32le(100)), attr(7, ipBuf('198.18.0.1')), attr(5, ipBuf('198.19.0.3')), attr(4, u32le(2))]),
      // a device route in a table above 255 (rtm_table 252 = RT_TABLE_COMPAT)
      Buffer.concat([rtmsg(8, 252, RTPROT_RUDDER, 253, 1, 0), attr(15, u32le(1000)), attr(1, ipBuf('10.0.0.0')), attr(4, u32le(5))]),
      // the default route: no RTA_DST; an attribute the facade ignores (RTA_MARK)
      Buffer.concat([rtmsg(0, 254, RTPROT_RUDDER, 0, 1, 0), attr(16, u32le(7)), attr(5, ipBuf('198.18.0.254')), attr(4, u32le(2))]),
    ];
    for (const d of cases) assert.deepEqual(routeInfoOf(d), toRouteInfo(parseRouteMessage(d)));
  });

  it('IPv6 routes of Rudder are "route6" changes with the fields listRoutes6 reports; IPv6 addresses are "addr"', () => {
    const u32le = (v: number): Buffer => {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(v);
      return b;
    };
    const v6 = (s: string): Buffer => ip6ToBuf(parseIp6(s) as bigint);
    const rtmsg = (dstLen: number, protocol: number, type: number, flags: number): Buffer => {
      const h = Buffer.alloc(12);
      h[0] = 10; // AF_INET6
      h[1] = dstLen;
      h[4] = 254;
      h[5] = protocol;
      h[7] = type;
      h.writeUInt32LE(flags, 8);
      return h;
    };
    const cases: Buffer[] = [
      // host-gw: via the peer's PublicIPv6, metric 1024
      Buffer.concat([rtmsg(64, RTPROT_RUDDER, 1, 0), attr(15, u32le(254)), attr(1, v6('fd42:42:0:5::')), attr(4, u32le(3)), attr(5, v6('2001:2::2')), attr(6, u32le(1024))]),
      // onlink, with a preferred source
      Buffer.concat([rtmsg(64, RTPROT_RUDDER, 1, 4), attr(1, v6('fd42:42:0:6::')), attr(5, v6('fd42:42:0:6::')), attr(7, v6('2001:2::1')), attr(4, u32le(9)), attr(6, u32le(1024))]),
      // unreachable, on loopback; the default route has no RTA_DST
      Buffer.concat([rtmsg(48, RTPROT_RUDDER, 7, 0), attr(1, v6('fd42:42::')), attr(4, u32le(1)), attr(6, u32le(4294967295))]),
      Buffer.concat([rtmsg(0, RTPROT_RUDDER, 1, 0), attr(5, v6('2001:2::fe')), attr(4, u32le(2)), attr(6, u32le(1024))]),
    ];
    for (const d of cases) {
      assert.deepEqual(route6InfoOf(d), toRoute6Info(parseRouteMessage(d)));
      const ch = decodeChange({ type: 24, data: d }, only7);
      assert.equal(ch?.kind, 'route6');
    }
    const first = decodeChange({ type: 25, data: cases[0] as Buffer }, only7);
    assert.deepEqual(first?.kind === 'route6' ? [first.op, first.route.dst.ip, first.route.gateway, first.route.metric, first.route.oif] : null, [
      'del',
      parseIp6('fd42:42:0:5::'),
      parseIp6('2001:2::2'),
      1024,
      3,
    ]);
    const foreign = rtmsg(64, 4, 1, 0); // RTPROT_STATIC
    assert.equal(decodeChange({ type: 24, data: Buffer.concat([foreign, attr(1, v6('fd42::'))]) }, only7), null);
    // struct ifaddrmsg of an IPv6 address on device 7 (and on another device)
    const ifa = (family: number, index: number): Buffer => {
      const b = Buffer.alloc(8);
      b[0] = family;
      b[1] = 64;
      b.writeUInt32LE(index, 4);
      return b;
    };
    assert.deepEqual(decodeChange({ type: 20, data: ifa(10, 7) }, only7), { kind: 'addr', op: 'new', index: 7 });
    assert.equal(decodeChange({ type: 20, data: ifa(10, 3) }, only7), null);
  });

  it('a datagram is split into its messages; a bad length is an error, not a guess', () => {
    const msg = (type: number, body: Buffer): Buffer => {
      const h = Buffer.alloc(16);
      h.writeUInt32LE(16 + body.length, 0);
      h.writeUInt16LE(type, 4);
      return Buffer.concat([h, body, Buffer.alloc((4 - (body.length % 4)) % 4)]);
    };
    const a = ndmsg(AF_INET, 7, NUD_PERMANENT, ipBuf('10.9.1.0'), macBuf('0e:00:00:00:00:01'));
    const b = ndmsg(AF_INET, 7, NUD_FAILED, ipBuf('10.9.2.0'));
    const parts = splitMessages(Buffer.concat([msg(NEW, a), msg(DEL, b)]));
    assert.deepEqual(parts.map((p) => [p.type, p.data.toString('hex')]), [[NEW, a.toString('hex')], [DEL, b.toString('hex')]]);
    const bad = msg(NEW, a);
    bad.writeUInt32LE(bad.length + 4, 0);
    assert.throws(() => splitMessages(bad), RangeError);
    // A truncated attribute inside a message is an error too (reported as lost notifications).
    const cut = Buffer.concat([ndmsg(AF_INET, 7, NUD_PERMANENT), Buffer.from([0x20, 0x00, 0x01, 0x00, 0, 0, 0, 0])]);
    assert.throws(() => decodeChange({ type: NEW, data: cut }, only7), RangeError);
  });
});
