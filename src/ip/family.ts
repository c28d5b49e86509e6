/**
 * The address family as a value: what code written once for both IPv4 and
 * IPv6 needs to know about an address (pure). IPv4 addresses are uint32
 * numbers (ipv4.ts), IPv6 ones 128-bit bigints (ipv6.ts); `A` is the one or
 * the other.
 */
import { cidrToKey, formatCidr, formatIp } from './ipv4';
import { cidr6ToKey, formatCidr6, formatIp6 } from './ipv6';

/** An address and prefix length of either family (Cidr is PrefixOf<number>, Cidr6 PrefixOf<bigint>). */
export interface PrefixOf<A extends number | bigint> {
  readonly ip: A;
  readonly prefix: number;
}

export interface IpFamily<A extends number | bigint> {
  /** Whether this is IPv6 (bigint addresses). */
  readonly v6: boolean;
  /** The all-zeros address (0.0.0.0, ::). */
  readonly zero: A;
  /** An address as a Map or Set key and for `===`: an IPv4 number made unsigned. */
  key(ip: A): A;
  formatIp(ip: A): string;
  formatCidr(c: PrefixOf<A>): string;
  /** The lease-key form of a prefix (`10.0.5.0-24`, `fd00:0:0:5::-64`). */
  cidrKey(c: PrefixOf<A>): string;
}

export const IPV4: IpFamily<number> = {
  v6: false,
  zero: 0,
  key: (ip) => ip >>> 0,
  formatIp,
  formatCidr,
  cidrKey: cidrToKey,
};

export const IPV6: IpFamily<bigint> = {
  v6: true,
  zero: 0n,
  key: (ip) => ip,
  formatIp: formatIp6,
  formatCidr: formatCidr6,
  cidrKey: cidr6ToKey,
};
