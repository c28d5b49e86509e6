/**
 * Node objects in Rudder's terms (pure): a Node's subnets from
 * spec.podCIDRs / spec.podCIDR (one per family: dual-stack clusters list
 * both, IPv6-only ones the IPv6 one alone), its lease from the annotations under the
 * annotation prefix (flannel's names, so flannel nodes and Rudder nodes read
 * each other under `flannel.alpha.coreos.com`), and the annotations and
 * condition Rudder writes on its own Node.
 */
import { Cidr, formatIp, parseCidr, parseIp } from '../../ip/ipv4';
import { Cidr6, formatIp6, parseCidr6, parseIp6 } from '../../ip/ipv6';
import { NO_IPV4, type Lease } from '../lease';

/** The address families the network carries (from its config): what a Node's lease is read for. */
export interface NodeFamilies {
  readonly v4: boolean;
  readonly v6: boolean;
}

/** An IPv4-only network, the default. */
export const IPV4_ONLY: NodeFamilies = { v4: true, v6: false };

/** For a listing without a config (`rudder leases`): each Node read for the families its podCIDRs have. */
export const PRESENT_FAMILIES = 'present';

export interface KubeNode {
  readonly name: string;
  readonly resourceVersion: string;
  /** spec.podCIDRs, or [spec.podCIDR]; empty until kube-controller-manager allocates one. */
  readonly podCIDRs: readonly string[];
  readonly annotations: Readonly<Record<string, string>>;
}

export function readNode(o: Record<string, unknown>): KubeNode {
  const meta = (o.metadata ?? {}) as Record<string, unknown>;
  const spec = (o.spec ?? {}) as Record<string, unknown>;
  const ann: Record<string, string> = {};
  const raw = meta.annotations;
  if (raw && typeof raw === 'object') for (const [k, v] of Object.entries(raw)) if (typeof v === 'string') ann[k] = v;
  let cidrs: string[] = Array.isArray(spec.podCIDRs) ? spec.podCIDRs.filter((c): c is string => typeof c === 'string') : [];
  if (cidrs.length === 0 && typeof spec.podCIDR === 'string' && spec.podCIDR !== '') cidrs = [spec.podCIDR];
  return {
    name: typeof meta.name === 'string' ? meta.name : '',
    resourceVersion: typeof meta.resourceVersion === 'string' ? meta.resourceVersion : '',
    podCIDRs: cidrs,
    annotations: ann,
  };
}

/**
 * The Node's subnets: the first IPv4 and the first IPv6 entry of its
 * podCIDRs (`v6` is the IPv6 entry's text, `v6Cidr` the parsed one); `bad` /
 * `bad6` the first entry of each family that is not a network CIDR.
 */
export function nodeSubnets(n: KubeNode): { v4: Cidr | null; v6: string | null; v6Cidr: Cidr6 | null; bad: string | null; bad6: string | null } {
  let v4: Cidr | null = null;
  let v6: string | null = null;
  let v6Cidr: Cidr6 | null = null;
  let bad: string | null = null;
  let bad6: string | null = null;
  for (const c of n.podCIDRs) {
    if (c.includes(':')) {
      const p = parseCidr6(c, true);
      if (p) {
        v6 ??= c;
        v6Cidr ??= p;
      } else bad6 ??= c;
    } else {
      const p = parseCidr(c, true);
      if (p) v4 ??= p;
      else bad ??= c;
    }
  }
  return { v4, v6, v6Cidr, bad, bad6 };
}

/** The annotation keys under one prefix (flannel's names). */
export function annotationKeys(prefix: string): {
  publicIP: string;
  publicIPOverwrite: string;
  publicIPv6: string;
  publicIPv6Overwrite: string;
  backendType: string;
  backendData: string;
  backendV6Data: string;
  kubeSubnetManager: string;
} {
  return {
    publicIP: `${prefix}/public-ip`,
    publicIPOverwrite: `${prefix}/public-ip-overwrite`,
    publicIPv6: `${prefix}/public-ipv6`,
    publicIPv6Overwrite: `${prefix}/public-ipv6-overwrite`,
    backendType: `${prefix}/backend-type`,
    backendData: `${prefix}/backend-data`,
    backendV6Data: `${prefix}/backend-v6-data`,
    kubeSubnetManager: `${prefix}/kube-subnet-manager`,
  };
}

export type NodeLease = { lease: Lease } | { error: string };

/** An annotation holding a JSON object (flannel writes `null` for none): the object, {} or an error. */
function jsonAnnotation(n: KubeNode, key: string): Record<string, unknown> | { error: string } {
  const text = n.annotations[key];
  if (text === undefined || text === '') return {};
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  } catch {
    return { error: `${key} is not JSON: ${JSON.stringify(text.slice(0, 80))}` };
  }
}

const isError = (v: object): v is { error: string } => typeof (v as { error?: unknown }).error === 'string';

/**
 * A peer's lease from its Node, for the families the network carries. No
 * podCIDR, or no public-ip annotation yet (its daemon has not started), is
 * an error string: not a lease to route to. In a dual-stack network a Node
 * with an IPv4 podCIDR only is a lease without IPv6 (reached over IPv4, as
 * flannel does); in an IPv6-only one the IPv6 podCIDR is what counts. With
 * IPv6 on, either public address annotation will do (an IPv6 underlay has
 * no public-ip).
 */
export function nodeLease(n: KubeNode, prefix: string, wanted: NodeFamilies | typeof PRESENT_FAMILIES = IPV4_ONLY): NodeLease {
  const k = annotationKeys(prefix);
  const { v4, v6Cidr, bad, bad6 } = nodeSubnets(n);
  const families = wanted === PRESENT_FAMILIES ? { v4: v4 !== null || v6Cidr === null, v6: v6Cidr !== null } : wanted;
  if (families.v4 && !v4) return { error: bad !== null ? `spec.podCIDR ${JSON.stringify(bad)} is not an IPv4 CIDR` : 'no IPv4 spec.podCIDR yet' };
  if (!families.v4 && !v6Cidr) return { error: bad6 !== null ? `spec.podCIDRs entry ${JSON.stringify(bad6)} is not an IPv6 CIDR` : 'no IPv6 entry in spec.podCIDRs yet' };
  const ipText = n.annotations[k.publicIP];
  const ip6Text = families.v6 ? n.annotations[k.publicIPv6] : undefined;
  if (ipText === undefined && ip6Text === undefined) {
    return { error: families.v6 ? `no ${k.publicIP} or ${k.publicIPv6} annotation yet` : `no ${k.publicIP} annotation yet` };
  }
  const publicIP = ipText === undefined ? 0 : parseIp(ipText);
  if (publicIP === null) return { error: `${k.publicIP}=${JSON.stringify(ipText)}: expected an IPv4 address` };
  const publicIPv6 = ip6Text === undefined ? undefined : parseIp6(ip6Text.trim());
  if (publicIPv6 === null) return { error: `${k.publicIPv6}=${JSON.stringify(ip6Text)}: expected an IPv6 address` };
  const bt = n.annotations[k.backendType] ?? 'udp';
  const backendData = jsonAnnotation(n, k.backendData);
  if (isError(backendData)) return backendData;
  const v6 = families.v6 && v6Cidr !== null;
  const backendV6Data = v6 && n.annotations[k.backendV6Data] !== undefined ? jsonAnnotation(n, k.backendV6Data) : undefined;
  if (backendV6Data !== undefined && isError(backendV6Data)) return backendV6Data;
  return {
    lease: {
      subnet: families.v4 && v4 ? v4 : NO_IPV4,
      ...(v6 ? { ipv6Subnet: v6Cidr } : {}),
      publicIP,
      ...(publicIPv6 !== undefined ? { publicIPv6 } : {}),
      backendType: bt === '' ? 'udp' : bt,
      backendData,
      ...(backendV6Data !== undefined ? { backendV6Data } : {}),
      expiresAt: null,
    },
  };
}

/** The public IP this node publishes: the overwrite annotation when set (as flannel), else ours. */
export function ownPublicIP(n: KubeNode, prefix: string, detected: number): { ip: number; overwritten: boolean } {
  const o = n.annotations[annotationKeys(prefix).publicIPOverwrite];
  const ip = o === undefined || o === '' ? null : parseIp(o.trim());
  return ip === null ? { ip: detected, overwritten: false } : { ip, overwritten: true };
}

/**
 * The PublicIPv6 this node publishes (EnableIPv6): `public-ipv6-overwrite`
 * when set to an IPv6 address (as flannel), else ours (null: none).
 */
export function ownPublicIPv6(n: KubeNode, prefix: string, detected: bigint | null): { ip: bigint | null; overwritten: boolean } {
  const o = n.annotations[annotationKeys(prefix).publicIPv6Overwrite];
  const ip = o === undefined || o === '' ? null : parseIp6(o.trim());
  return ip === null ? { ip: detected, overwritten: false } : { ip, overwritten: true };
}

/** The IPv6 half of this node's annotations (EnableIPv6). */
export interface OwnV6Annotations {
  /** PublicIPv6; null: none (an IPv4 underlay), no public-ipv6 annotation. */
  readonly publicIPv6: bigint | null;
  readonly backendV6Data: Readonly<Record<string, unknown>>;
}

/**
 * The annotations Rudder keeps on its own Node; only those that differ need
 * a patch. public-ip is left out when there is none (0: an IPv6-only host
 * without an IPv4 underlay); `v6` adds public-ipv6 and backend-v6-data.
 */
export function ownAnnotations(prefix: string, publicIP: number, backendType: string, backendData: Readonly<Record<string, unknown>>, v6?: OwnV6Annotations): Record<string, string> {
  const k = annotationKeys(prefix);
  return {
    ...(publicIP !== 0 || v6 === undefined ? { [k.publicIP]: formatIp(publicIP) } : {}),
    [k.backendType]: backendType,
    [k.backendData]: JSON.stringify(backendData),
    ...(v6 !== undefined && v6.publicIPv6 !== null ? { [k.publicIPv6]: formatIp6(v6.publicIPv6) } : {}),
    ...(v6 !== undefined ? { [k.backendV6Data]: JSON.stringify(v6.backendV6Data) } : {}),
    [k.kubeSubnetManager]: 'true',
  };
}

/** The subset of `want` that `n` does not carry yet (empty: nothing to patch). */
export function annotationsToPatch(n: KubeNode, want: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(want)) if (n.annotations[k] !== v) out[k] = v;
  return out;
}

/** The strategic-merge patch of nodes/status that says the network is up. */
export function networkAvailablePatch(now: Date): Record<string, unknown> {
  const t = now.toISOString().replace(/\.\d+Z$/, 'Z');
  return {
    status: {
      conditions: [
        { type: 'NetworkUnavailable', status: 'False', reason: 'RudderIsUp', message: 'Rudder is running on this node', lastTransitionTime: t, lastHeartbeatTime: t },
      ],
    },
  };
}
