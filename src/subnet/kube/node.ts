/**
 * Node objects in Rudder's terms (pure): a Node's subnet from
 * spec.podCIDRs / spec.podCIDR, its lease from the annotations under the
 * annotation prefix (flannel's names, so flannel nodes and Rudder nodes read
 * each other under `flannel.alpha.coreos.com`), and the annotations and
 * condition Rudder writes on its own Node.
 */
import { Cidr, formatIp, parseCidr, parseIp } from '../../ip/ipv4';
import type { Lease } from '../lease';

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

/** The Node's IPv4 subnet and (kept for dual-stack) its IPv6 pod CIDR text. */
export function nodeSubnets(n: KubeNode): { v4: Cidr | null; v6: string | null; bad: string | null } {
  let v4: Cidr | null = null;
  let v6: string | null = null;
  let bad: string | null = null;
  for (const c of n.podCIDRs) {
    if (c.includes(':')) v6 ??= c;
    else {
      const p = parseCidr(c, true);
      if (p) v4 ??= p;
      else bad ??= c;
    }
  }
  return { v4, v6, bad };
}

/** The annotation keys under one prefix (flannel's names). */
export function annotationKeys(prefix: string): {
  publicIP: string;
  publicIPOverwrite: string;
  publicIPv6: string;
  backendType: string;
  backendData: string;
  backendV6Data: string;
  kubeSubnetManager: string;
} {
  return {
    publicIP: `${prefix}/public-ip`,
    publicIPOverwrite: `${prefix}/public-ip-overwrite`,
    publicIPv6: `${prefix}/public-ipv6`,
    backendType: `${prefix}/backend-type`,
    backendData: `${prefix}/backend-data`,
    backendV6Data: `${prefix}/backend-v6-data`,
    kubeSubnetManager: `${prefix}/kube-subnet-manager`,
  };
}

export type NodeLease = { lease: Lease } | { error: string };

/**
 * A peer's lease from its Node. No podCIDR, or no public-ip annotation yet
 * (its daemon has not started), is an error string: not a lease to route to.
 */
export function nodeLease(n: KubeNode, prefix: string): NodeLease {
  const k = annotationKeys(prefix);
  const { v4, bad } = nodeSubnets(n);
  if (!v4) return { error: bad !== null ? `spec.podCIDR ${JSON.stringify(bad)} is not an IPv4 CIDR` : 'no IPv4 spec.podCIDR yet' };
  const ipText = n.annotations[k.publicIP];
  if (ipText === undefined) return { error: `no ${k.publicIP} annotation yet` };
  const publicIP = parseIp(ipText);
  if (publicIP === null) return { error: `${k.publicIP}=${JSON.stringify(ipText)}: expected an IPv4 address` };
  const bt = n.annotations[k.backendType] ?? 'udp';
  let backendData: Record<string, unknown> = {};
  const bd = n.annotations[k.backendData];
  if (bd !== undefined && bd !== '') {
    try {
      const v: unknown = JSON.parse(bd);
      if (typeof v === 'object' && v !== null && !Array.isArray(v)) backendData = v as Record<string, unknown>;
    } catch {
      return { error: `${k.backendData} is not JSON: ${JSON.stringify(bd.slice(0, 80))}` };
    }
  }
  return { lease: { subnet: v4, publicIP, backendType: bt === '' ? 'udp' : bt, backendData, expiresAt: null } };
}

/** The public IP this node publishes: the overwrite annotation when set (as flannel), else ours. */
export function ownPublicIP(n: KubeNode, prefix: string, detected: number): { ip: number; overwritten: boolean } {
  const o = n.annotations[annotationKeys(prefix).publicIPOverwrite];
  const ip = o === undefined || o === '' ? null : parseIp(o.trim());
  return ip === null ? { ip: detected, overwritten: false } : { ip, overwritten: true };
}

/** The annotations Rudder keeps on its own Node; only those that differ need a patch. */
export function ownAnnotations(prefix: string, publicIP: number, backendType: string, backendData: Readonly<Record<string, unknown>>): Record<string, string> {
  const k = annotationKeys(prefix);
  return {
    [k.publicIP]: formatIp(publicIP),
    [k.backendType]: backendType,
    [k.backendData]: JSON.stringify(backendData),
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
