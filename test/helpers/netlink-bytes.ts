/**
 * Checks of netlink requests against known bytes, shared by the wire tests
 * (IPv4 and IPv6): the header field by field, the body against the bytes the
 * `netlink` npm package wrote for the same request (kept as hex since the
 * package left the project).
 */
import assert from 'node:assert/strict';
import { NLM_F_ACK, NLM_F_REQUEST } from '../../src/netlink/wire';

/** A message body as hex. */
export const pkg = (hex: string): Buffer => Buffer.from(hex, 'hex');

/**
 * The body must equal the package's, which left the last attribute unpadded
 * (a MAC: 10 bytes): wire.ts pads every attribute to 4 bytes as netlink(7)
 * and libmnl do, so nlmsg_len stays aligned.
 */
export function same(msg: Buffer, type: number, flags: number, seq: number, pkgBody: Buffer): void {
  const body = Buffer.concat([pkgBody, Buffer.alloc((4 - (pkgBody.length % 4)) % 4)]);
  assert.equal(msg.readUInt32LE(0), msg.length, 'nlmsg_len');
  assert.equal(msg.readUInt16LE(4), type, 'nlmsg_type');
  assert.equal(msg.readUInt16LE(6), flags | NLM_F_REQUEST | NLM_F_ACK, 'nlmsg_flags');
  assert.equal(msg.readUInt32LE(8), seq, 'nlmsg_seq');
  assert.equal(msg.subarray(16).toString('hex'), body.toString('hex'));
}
