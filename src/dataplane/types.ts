/**
 * The typed face of the native data plane (native/, N-API addon). JavaScript
 * only configures it: packets are moved by the addon's own threads.
 */

export interface DataPlaneOptions {
  /** TUN device name, e.g. `rudder0` (created if absent, IFF_TUN|IFF_NO_PI). */
  readonly tunName: string;
  /** Local underlay address to bind the UDP socket to (uint32), 0 = any; IPv4 underlay only. */
  readonly bindAddress: number;
  /**
   * The underlay's family (default `ipv4`): `ipv6` opens IPv6 sockets
   * ([::]:port, IPv6 only) and reaches every peer at its `publicIPv6`. Both
   * inner families ride on it either way.
   */
  readonly underlay?: UnderlayFamily;
  /** UDP port (default 8285). */
  readonly port: number;
  /** This host's subnet: datagrams whose inner destination is outside it are dropped. */
  readonly localSubnet: { readonly ip: number; readonly prefix: number };
  /** Address used as the source of ICMP errors the data plane generates (the TUN address). */
  readonly icmpSource: number;
  /** This host's IPv6 subnet, when it has one: received IPv6 packets must be for it. Absent: every received IPv6 packet is dropped. */
  readonly localSubnet6?: { readonly ip: bigint; readonly prefix: number };
  /** Source of the ICMPv6 errors the data plane generates (the TUN's IPv6 address); absent: none are sent. */
  readonly icmpSource6?: bigint;
  /** MTU of the TUN device: a larger IPv6 packet is answered with ICMPv6 packet-too-big. */
  readonly mtu: number;
  /**
   * Use the kernel's offloads (default true): TUN with a virtio header and
   * TSO (TCP super-packets segmented in the data plane), UDP GSO to send and
   * UDP GRO to receive, received TCP segments coalesced into super-packets.
   * Each falls back on its own when the kernel refuses it; `false` forces
   * the plain one-packet-per-syscall path.
   */
  readonly offloads?: boolean;
  /**
   * Low-rate busy polling (default true): when packets come at under ~20k/s,
   * a thread that just moved a packet lets the other direction's thread spin
   * (adaptively, at most 1 ms) for the reply instead of sleeping in poll().
   * No effect on an idle daemon or under load.
   */
  readonly busyPoll?: boolean;
  /**
   * TUN queues, each with its own tx/rx thread pair and socket of a
   * SO_REUSEPORT group (IFF_MULTI_QUEUE). Default 0: one per CPU the process
   * may run on (at most 16). A flow stays on one queue.
   */
  readonly queues?: number;
}

/** What the data plane got from the kernel at open (fixed for its lifetime). */
export interface DataPlaneOffloads {
  /** `DataPlaneOptions.offloads` as given (default true). */
  readonly requested: boolean;
  /** The TUN carries a virtio_net_hdr: received TCP segments are coalesced into super-packets. */
  readonly tunVnetHdr: boolean;
  /** TUNSETOFFLOAD granted TSO4/TSO6/CSUM: the TUN hands over TCP super-packets, segmented in C. */
  readonly tso: boolean;
  /** TUNSETOFFLOAD granted USO4/USO6 too (Linux ≥ 6.2): received UDP datagrams of a flow are written as one GSO_UDP_L4 super-packet, UDP super-packets read are segmented in C. */
  readonly uso: boolean;
  /** UDP_SEGMENT: one sendmsg carries many datagrams to a peer. */
  readonly udpGso: boolean;
  /** UDP_GRO: one recvmsg returns many datagrams of a peer. */
  readonly udpGro: boolean;
  /** Low-rate busy polling in use (`DataPlaneOptions.busyPoll` and its eventfds created). */
  readonly busyPoll: boolean;
  /** TUN queues (worker pairs) running; fewer than asked when the kernel refused some (see `note`). */
  readonly queues: number;
  /** Why something requested is off (kernel errors), empty if nothing is. */
  readonly note: string;
}

/** Which family the data plane's sockets (the underlay between hosts) are: one per host. */
export type UnderlayFamily = 'ipv4' | 'ipv6';

export interface DataPlaneRoute {
  readonly ip: number; // subnet network address
  readonly prefix: number;
  /** The peer's PublicIP: its endpoint on an IPv4 underlay (0 on an IPv6 one). */
  readonly publicIP: number;
  readonly port: number;
  /** The peer's PublicIPv6: its endpoint on an IPv6 underlay (required there, unused on IPv4). */
  readonly publicIPv6?: bigint;
}

/** An IPv6 route: the subnet (128-bit address as a bigint) to a peer's endpoint, as DataPlaneRoute's. */
export interface DataPlaneRoute6 {
  readonly ip: bigint;
  readonly prefix: number;
  readonly publicIP: number;
  readonly port: number;
  readonly publicIPv6?: bigint;
}

export interface DataPlaneCounters {
  txPackets: number; // TUN → UDP
  txBytes: number;
  rxPackets: number; // UDP → TUN
  rxBytes: number;
  dropNoRoute: number;
  dropUnknownSender: number;
  dropMalformed: number;
  dropTtl: number;
  dropNotLocal: number;
  tunErrors: number;
  socketErrors: number;
  icmpSent: number;
}

export interface DataPlane {
  /** Replaces the whole route table (both families) atomically; traffic keeps flowing. */
  setRoutes(routes: readonly DataPlaneRoute[], routes6?: readonly DataPlaneRoute6[]): void;
  /** Offloads in use (absent from data planes that have none, e.g. test fakes). */
  readonly offloads?: DataPlaneOffloads;
  /** Reads counters from shared memory (no syscall). */
  counters(): DataPlaneCounters;
  /** Stops the threads and closes the TUN and socket. Idempotent. */
  stop(): void;
}
