/**
 * The IPv6 neighbor side of the netlink facade (pure parts): NDP and FDB
 * requests with a 16-byte NDA_DST, checked against the bytes the netlink
 * package wrote, and the notifications they come back as (neigh6, fdb6). The
 * kernel side is proven by test/e2e/ipv6-vxlan.test.ts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseIp6 } from '../../src/ip/ipv6';
import { CREATE_REPLACE } from '../../src/netlink/conn';
import { decodeChange } from '../../src/netlink/monitor';
import { pkg, same } from '../helpers/netlink-bytes';
import { parseAttrs } from '../../src/netlink/links';
import { ip6ToBuf, neighMessage, NTF_SELF, NUD_PERMANENT, RTM_DELNEIGH, RTM_NEWNEIGH } from '../../src/netlink/wire';

const v6 = (s: string): bigint => parseIp6(s) as bigint;
const macBuf = (m: string): Buffer => Buffer.from(m.split(':').map((h) => parseInt(h, 16)));
const AF_INET6 = 10;
const AF_BRIDGE = 7;

/** A notification body: struct ndmsg + NDA_DST + NDA_LLADDR, as the kernel sends it. */
function ndmsg(family: number, index: number, state: number, dst?: Buffer, lladdr?: Buffer): Buffer {
  const msg = neighMessage(RTM_NEWNEIGH, 0, 1, { family, ifindex: index, state, flags: 0 });
  const attrs = [dst ? [1, dst] : null, lladdr ? [2, lladdr] : null].filter((x): x is [number, Buffer] => x !== null);
  const parts = attrs.map(([t, v]) => {
    const b = Buffer.alloc((4 + v.length + 3) & ~3);
    b.writeUInt16LE(4 + v.length, 0);
    b.writeUInt16LE(t, 2);
    v.copy(b, 4);
    return b;
  });
  return Buffer.concat([msg.subarray(16, 28), ...parts]);
}

describe('IPv6 neighbor and FDB requests', () => {
  const mac = '0e:0a:ff:00:10:01';

  it('an NDP entry (AF_INET6) replace and delete carry a 16-byte NDA_DST, as the package writes them', () => {
    same(
      neighMessage(RTM_NEWNEIGH, CREATE_REPLACE, 21, { family: AF_INET6, ifindex: 9, state: NUD_PERMANENT, flags: 0, dst: v6('fd42:42:0:5::'), lladdr: mac }),
      RTM_NEWNEIGH,
      CREATE_REPLACE,
      21,
      pkg('0a000000090000008000000014000100fd4200420000000500000000000000000a0002000e0aff0010010000'),
    );
    same(
      neighMessage(RTM_DELNEIGH, 0, 22, { family: AF_INET6, ifindex: 9, state: 0, flags: 0, dst: v6('fd42:42:0:5::') }),
      RTM_DELNEIGH,
      0,
      22,
      pkg('0a000000090000000000000014000100fd420042000000050000000000000000'),
    );
  });

  it('an FDB entry (AF_BRIDGE) with an IPv6 remote', () => {
    same(
      neighMessage(RTM_NEWNEIGH, CREATE_REPLACE, 23, { family: AF_BRIDGE, ifindex: 9, state: NUD_PERMANENT, flags: NTF_SELF, dst: v6('2001:2::3'), lladdr: mac }),
      RTM_NEWNEIGH,
      CREATE_REPLACE,
      23,
      pkg('07000000090000008000020014000100200100020000000000000000000000030a0002000e0aff0010010000'),
    );
    const del = neighMessage(RTM_DELNEIGH, 0, 24, { family: AF_BRIDGE, ifindex: 9, state: 0, flags: NTF_SELF, dst: v6('2001:2::3'), lladdr: mac });
    const attrs = parseAttrs(del.subarray(28));
    assert.equal(attrs.get(1)?.toString('hex'), '20010002000000000000000000000003');
    assert.equal(attrs.get(2)?.toString('hex'), '0e0aff001001');
  });
});

describe('IPv6 neighbor and FDB notifications', () => {
  const only7 = (i: number): boolean => i === 7;

  it('an NDP entry is neigh6, with its address and MAC; an FDB entry with a 16-byte remote is fdb6', () => {
    const n = decodeChange({ type: 28, data: ndmsg(AF_INET6, 7, NUD_PERMANENT, ip6ToBuf(v6('fd42:42:0:5::')), macBuf('0e:00:00:00:00:01')) }, only7);
    assert.deepEqual(n, { kind: 'neigh6', op: 'new', index: 7, ip: v6('fd42:42:0:5::'), mac: '0e:00:00:00:00:01' });
    const f = decodeChange({ type: 29, data: ndmsg(AF_BRIDGE, 7, NUD_PERMANENT, ip6ToBuf(v6('2001:2::3')), macBuf('0e:00:00:00:00:01')) }, only7);
    assert.deepEqual(f, { kind: 'fdb6', op: 'del', index: 7, mac: '0e:00:00:00:00:01', dst: v6('2001:2::3') });
  });

  it('an NDP entry of another device, or without an address, is nobody’s business', () => {
    assert.equal(decodeChange({ type: 28, data: ndmsg(AF_INET6, 3, NUD_PERMANENT, ip6ToBuf(v6('fd42::')), macBuf('0e:00:00:00:00:01')) }, only7), null);
    assert.equal(decodeChange({ type: 28, data: ndmsg(AF_INET6, 7, NUD_PERMANENT) }, only7), null);
  });
});
