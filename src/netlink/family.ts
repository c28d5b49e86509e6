/**
 * What the netlink modules' IPv4 and IPv6 code differs in, as one value per
 * family: the address family of the requests, how an address attribute is
 * read and written (4 or 16 bytes), how objects are named in errors, and
 * the metric of a route that names none. routes.ts, neigh.ts, addrs.ts and
 * batch.ts are written once over it.
 */
import { IPV4, IPV6, type IpFamily } from '../ip/family';
import { AF_INET, bufToIp, ipToBuf } from './conn';
import { IPV6_DEFAULT_METRIC } from './types';
import { AF_INET6, bufToIp6, ip6ToBuf } from './wire';

export interface NetFamily<A extends number | bigint> extends IpFamily<A> {
  /** AF_INET or AF_INET6. */
  readonly af: number;
  /** '' or 'IPv6 ': the prefix of a dump's name in errors ("list IPv6 routes"). */
  readonly label: string;
  /** An address attribute (4 or 16 bytes); undefined when absent or of the other family. */
  fromBuf(b: Buffer | undefined): A | undefined;
  toBuf(ip: A): Buffer;
  /** The metric of a route that names none: 0, or IPv6's IPV6_DEFAULT_METRIC (the kernel never stores 0). */
  metric(m: number | undefined): number;
}

export const INET: NetFamily<number> = {
  ...IPV4,
  af: AF_INET,
  label: '',
  fromBuf: bufToIp,
  toBuf: ipToBuf,
  metric: (m) => m ?? 0,
};

export const INET6: NetFamily<bigint> = {
  ...IPV6,
  af: AF_INET6,
  label: 'IPv6 ',
  fromBuf: bufToIp6,
  toBuf: ip6ToBuf,
  metric: (m) => m || IPV6_DEFAULT_METRIC,
};
