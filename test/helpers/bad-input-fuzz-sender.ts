/**
 * A hostile UDP sender for test/e2e/fuzz-udp.test.ts, as a python3 program
 * (python3 is in ./build's packages) run with `ip netns exec` in the
 * namespace it sends from. It sends COUNT datagrams to HOST:PORT from
 * BIND_IP:BIND_PORT, paced (a short pause every 32 datagrams) so the
 * receiver's socket buffer is not what drops them, and prints one JSON line:
 * how many it sent, and how many of them the data plane must count under
 * each reason, computed from its own model of the documented checks
 * (docs/architecture.md, "udp": datagrams only from PublicIPs of current leases; every
 * header validated):
 *   unknown_sender  every datagram when MODE is "nonpeer"
 *   malformed       shorter than 20 bytes, version not 4, IHL < 5 or past the
 *                   end, total length != datagram length, bad header checksum,
 *                   reserved flag, fragment offset past 64 KB, martian source
 *   ttl             TTL 0
 *   not_local       destination outside the receiving host's lease
 *   deliver         a well-formed packet for the receiving host's lease
 * Kinds sent: random bytes (0..1400, some up to 65507 so they are fragmented
 * on the underlay), truncated headers, bad versions and IHLs, lies in the
 * total length, bad checksums, martian sources, TTL 0, wrong destinations
 * (another host's lease, outside the Network), odd fragment fields, and
 * well-formed packets for a pod (UDP to port 9).
 *
 *   python3 -c SENDER HOST PORT BIND_IP BIND_PORT MODE COUNT SEED LOCAL_CIDR SRC_IP DST_IP OTHER_IP
 */
export const FUZZ_SENDER = String.raw`
import json, random, socket, struct, sys, time
host, port, bind_ip, bind_port, mode, count, seed, local, src_ip, dst_ip, other_ip = sys.argv[1:12]
port, bind_port, count, seed = int(port), int(bind_port), int(count), int(seed)
net, plen = local.split('/'); plen = int(plen)
mask = (0xffffffff << (32 - plen)) & 0xffffffff
a2i = lambda s: struct.unpack('!I', socket.inet_aton(s))[0]
i2a = lambda v: socket.inet_ntoa(struct.pack('!I', v & 0xffffffff))
local_net = a2i(net) & mask
rng = random.Random(seed)

def csum(b):
    if len(b) % 2: b = b + b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff

def rbytes(n): return rng.getrandbits(8 * n).to_bytes(n, 'big') if n else b''

def packet(src, dst, ttl=64, payload_len=None, ihl=5, frag=0x4000, proto=17, dport=9):
    opts = rbytes(4 * (ihl - 5))
    if payload_len is None: payload_len = rng.randrange(0, 600)
    body = struct.pack('!HHHH', 40000, dport, 8 + payload_len, 0) + rbytes(payload_len) if proto == 17 else rbytes(payload_len + 8)
    tot = 4 * ihl + len(body)
    h = struct.pack('!BBHHHBBH4s4s', 0x40 | ihl, 0, tot, rng.getrandbits(16), frag, ttl, proto, 0, socket.inet_aton(src), socket.inet_aton(dst)) + opts
    h = h[:10] + struct.pack('!H', csum(h)) + h[12:]
    return bytearray(h + body)

def refix(p):
    ihl = (p[0] & 0xf) * 4
    if ihl >= 20 and ihl <= len(p):
        p[10:12] = b'\0\0'; p[10:12] = struct.pack('!H', csum(bytes(p[:ihl])))
    return p

def martian(a): return a == 0 or a == 0xffffffff or (a >> 28) == 0xe or (a >> 24) == 127

def verdict(p):
    if mode == 'nonpeer': return 'unknown_sender'
    n = len(p)
    if n < 20: return 'malformed'
    ihl = (p[0] & 0xf) * 4
    frag = struct.unpack('!H', bytes(p[6:8]))[0]
    if (p[0] >> 4) != 4 or ihl < 20 or ihl > n or struct.unpack('!H', bytes(p[2:4]))[0] != n: return 'malformed'
    if csum(bytes(p[:ihl])) != 0 or (frag & 0x8000) or (frag & 0x1fff) * 8 + n > 65535: return 'malformed'
    if martian(struct.unpack('!I', bytes(p[12:16]))[0]): return 'malformed'
    if p[8] == 0: return 'ttl'
    if (struct.unpack('!I', bytes(p[16:20]))[0] & mask) != local_net: return 'not_local'
    return 'deliver'

def make():
    k = rng.randrange(16)
    if k == 0: return bytearray(rbytes(rng.randrange(0, 1400)))                       # random bytes
    if k == 1: return bytearray(rbytes(rng.randrange(1400, 65508) if rng.random() < 0.05 else rng.randrange(20, 1400)))
    if k == 2: return packet(src_ip, dst_ip)[:rng.randrange(0, 20)]                   # truncated header
    if k == 3:                                                                          # truncated body (length lies)
        p = packet(src_ip, dst_ip, payload_len=rng.randrange(8, 600)); return p[:rng.randrange(20, len(p))]
    if k == 4:                                                                          # oversized: length says less
        p = packet(src_ip, dst_ip); return p + bytearray(rbytes(rng.randrange(1, 2000)))
    if k == 5:                                                                          # total length lies
        p = packet(src_ip, dst_ip); p[2:4] = struct.pack('!H', rng.getrandbits(16)); return refix(p)
    if k == 6:                                                                          # bad version
        p = packet(src_ip, dst_ip); p[0] = (rng.choice([0, 1, 5, 6, 15]) << 4) | (p[0] & 0xf); return refix(p)
    if k == 7:                                                                          # IHL < 5 or past the end
        p = packet(src_ip, dst_ip, payload_len=rng.randrange(0, 30)); p[0] = 0x40 | rng.choice([0, 1, 4, 15]); return refix(p)
    if k == 8:                                                                          # bad checksum
        p = packet(src_ip, dst_ip); p[10] ^= 1 + rng.randrange(255); return p
    if k == 9:                                                                          # martian source
        return packet(rng.choice(['0.0.0.0', '255.255.255.255', '224.0.0.1', '127.0.0.1']), dst_ip)
    if k == 10: return packet(src_ip, dst_ip, ttl=0)                                    # TTL 0
    if k == 11: return packet(src_ip, other_ip)                                         # another host's lease
    if k == 12: return packet(src_ip, i2a(rng.getrandbits(32)))                          # anywhere
    if k == 13:                                                                          # fragment fields
        return packet(src_ip, dst_ip, frag=rng.getrandbits(16))
    if k == 14:                                                                          # IP options, random protocol
        return packet(src_ip, dst_ip, ihl=rng.randrange(5, 16), proto=rng.choice([6, 17, 47, 253]))
    return packet(src_ip, dst_ip, payload_len=rng.randrange(0, 1400))                   # well-formed, for a pod

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((bind_ip, bind_port))
want = {'unknown_sender': 0, 'malformed': 0, 'ttl': 0, 'not_local': 0, 'deliver': 0}
kinds = {}
sent = 0; nbytes = 0; errors = 0
t0 = time.monotonic()
for i in range(count):
    p = make()
    try:
        s.sendto(bytes(p), (host, port))
    except OSError as e:
        errors += 1; continue
    sent += 1; nbytes += len(p)
    want[verdict(p)] += 1
    if i % 32 == 31: time.sleep(0.001)
print(json.dumps({'sent': sent, 'bytes': nbytes, 'sendErrors': errors, 'want': want, 'seconds': round(time.monotonic() - t0, 2)}))
`;

/** What the sender prints. */
export interface FuzzSendResult {
  sent: number;
  bytes: number;
  sendErrors: number;
  want: { unknown_sender: number; malformed: number; ttl: number; not_local: number; deliver: number };
  seconds: number;
}
