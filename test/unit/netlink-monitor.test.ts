/**
 * decodeChange: rtnetlink notifications → the changes a backend judges.
 * Messages are built byte by byte, as the kernel sends them; the socket
 * side is covered by the e2e tests.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rt } from 'netlink';
import { decodeChange, NUD_FAILED } from '../../src/netlink/monitor';
import { parseIp } from '../../src/ip/ipv4';
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

const NEW = rt.MessageType.NEWNEIGH;
const DEL = rt.MessageType.DELNEIGH;
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
    assert.equal(decodeChange({ type: rt.MessageType.NEWROUTE, data: rtmsg }, only7), null);
    rtmsg[5] = RTPROT_RUDDER;
    rtmsg[1] = 24;
    const ours = decodeChange({ type: rt.MessageType.DELROUTE, data: Buffer.concat([rtmsg, attr(1, ipBuf('10.9.1.0'))]) }, only7);
    assert.equal(ours?.kind, 'route');
    assert.equal(ours?.kind === 'route' ? `${ours.op} ${ours.route.dst.ip} ${ours.route.dst.prefix}` : '', `del ${ip('10.9.1.0')} 24`);
    assert.equal(decodeChange({ type: NEW, data: Buffer.alloc(4) }, only7), null);
  });
});
