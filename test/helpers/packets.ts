/** Hand-made packets for tests that put bytes on the wire themselves. */

/**
 * An IPv4 packet carrying one UDP datagram, as a pod would send it: valid
 * header checksum, UDP checksum 0 (none, allowed for IPv4), source port 40000.
 */
export function ipv4Udp(src: string, dst: string, dport: number, payload: Buffer): Buffer {
  const ip = (s: string): Buffer => Buffer.from(s.split('.').map(Number));
  const udpLen = 8 + payload.length;
  const h = Buffer.alloc(28);
  h[0] = 0x45;
  h.writeUInt16BE(20 + udpLen, 2);
  h.writeUInt16BE(0x1234, 4);
  h[8] = 64;
  h[9] = 17;
  ip(src).copy(h, 12);
  ip(dst).copy(h, 16);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += h.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  h.writeUInt16BE(~sum & 0xffff, 10);
  h.writeUInt16BE(40000, 20);
  h.writeUInt16BE(dport, 22);
  h.writeUInt16BE(udpLen, 24);
  return Buffer.concat([h, payload]);
}
