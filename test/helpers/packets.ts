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

/**
 * A python3 program that sends each hex line of stdin as a UDP datagram with
 * a forged source (raw socket, IP_HDRINCL); argv: src sport dst dport; prints
 * how many it sent.
 */
export const INJECT_PY = `
import socket, struct, sys
src, sport, dst, dport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
n = 0
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    pay = bytes.fromhex(line)
    udp = struct.pack("!HHHH", sport, dport, 8 + len(pay), 0) + pay
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, socket.inet_aton(src), socket.inet_aton(dst))
    s.sendto(ip + udp, (dst, 0))
    n += 1
print(n)
`;
