/**
 * The CNI network configuration list for this host's Rudder subnet (pure).
 *
 * From the subnet file (RUDDER_NETWORK, RUDDER_SUBNET, RUDDER_MTU,
 * RUDDER_IPMASQ; parsed by subnet/file.ts) it builds a conflist for the standard plugins
 * (containernetworking-plugins): `bridge` with `host-local` IPAM over the
 * host's lease, then `portmap` for hostPort mappings. The runner
 * (./runner.ts) writes it where the container runtime reads it.
 *
 * Choices (see docs/cni.md):
 * - cniVersion 1.0.0: what Debian's plugins (1.1.x) speak.
 * - The bridge is the gateway (isGateway): it gets the lease's .1 address,
 *   the same address RUDDER_SUBNET names (Docker's --bip).
 * - ipMasq is false in every case: the bridge plugin's own masquerade only
 *   exempts the host's subnet, so it would rewrite pod-to-pod traffic to
 *   other hosts and break the "every pod sees every pod's own address"
 *   model. Masquerading to outside the overlay is the daemon's `-ip-masq`
 *   (which exempts the whole Network). RUDDER_IPMASQ is still validated.
 * - forceAddress: after a lease change the bridge's old .1 address is
 *   replaced by the new one on the next ADD, instead of every ADD failing.
 * - Routes: a default route via the bridge (pods reach services and the
 *   outside through the host), or only RUDDER_NETWORK with defaultRoute off.
 */
import { RudderError } from '../errors';
import { firstHost, formatCidr, formatIp } from '../ip/ipv4';
import { firstHost6, formatCidr6, formatIp6, parseCidr6 } from '../ip/ipv6';
import { parseSubnetFile, type SubnetFileContents } from '../subnet/file';

export const CNI_VERSION = '1.0.0';
export const DEFAULT_CNI_NAME = 'rudder';
export const DEFAULT_CNI_BRIDGE = 'cni0';
export const DEFAULT_CNI_DIR = '/etc/cni/net.d';

/** What the conflist is built from: the subnet file's values. */
/** The subnet file's facts; with `ipv6Subnet` (RUDDER_IPV6_SUBNET) the conflist is dual-stack, and an IPv4 network of length 0 is IPv6-only. */
export type SubnetFacts = Pick<SubnetFileContents, 'network' | 'subnet' | 'mtu'> & Partial<Pick<SubnetFileContents, 'ipv6Network' | 'ipv6Subnet'>>;

export interface CniOptions {
  /** Network name (`name` of the conflist). Default "rudder". */
  name?: string;
  /** Bridge device the pods are attached to. Default "cni0". */
  bridge?: string;
  /** host-local's store of allocated addresses; default (unset) is the plugin's /var/lib/cni/networks. */
  ipamDataDir?: string;
  /** Route 0.0.0.0/0 via the bridge in each pod (default true); false routes only RUDDER_NETWORK. */
  defaultRoute?: boolean;
}

/** `10-rudder.conflist` for the name "rudder": sorted early, so runtimes that take the first file take it. */
export function conflistFileName(name = DEFAULT_CNI_NAME): string {
  return `10-${name}.conflist`;
}

/** Linux interface names: 1..15 bytes, no '/', no whitespace, not "." or "..". */
export function validIfname(s: string): boolean {
  return s.length > 0 && Buffer.byteLength(s) <= 15 && !/[\s/:]/.test(s) && s !== '.' && s !== '..';
}

/** CNI network names: the spec's [a-zA-Z0-9_.-], starting with an alphanumeric character. */
export function validNetworkName(s: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(s);
}

export interface CniConfList {
  cniVersion: string;
  name: string;
  plugins: Array<Record<string, unknown>>;
}

/** The conflist object (pure). */
export function buildConfList(f: SubnetFacts, opts: CniOptions = {}): CniConfList {
  const name = opts.name ?? DEFAULT_CNI_NAME;
  const bridge = opts.bridge ?? DEFAULT_CNI_BRIDGE;
  if (!validNetworkName(name)) throw new RudderError('E_FLAG', `network name ${JSON.stringify(name)}: expected letters, digits, "_", "." or "-", starting with a letter or digit`);
  if (!validIfname(bridge)) throw new RudderError('E_FLAG', `bridge ${JSON.stringify(bridge)}: expected an interface name of 1 to 15 characters without "/", ":" or spaces`);
  const ranges: Array<Array<Record<string, unknown>>> = [];
  const routes: Array<Record<string, unknown>> = [];
  if (f.network.prefix !== 0 || f.ipv6Subnet === undefined) {
    ranges.push([{ subnet: formatCidr(f.subnet), gateway: formatIp(firstHost(f.subnet)) }]);
    routes.push({ dst: opts.defaultRoute === false ? formatCidr(f.network) : '0.0.0.0/0' });
  }
  // Dual-stack: a second range set gives each pod one address of each family, with its own route.
  const lease6 = f.ipv6Subnet === undefined ? null : parseCidr6(f.ipv6Subnet);
  if (f.ipv6Subnet !== undefined && lease6 === null) throw new RudderError('E_SUBNET_FILE', `RUDDER_IPV6_SUBNET=${f.ipv6Subnet}: expected an IPv6 address/length such as fd00:0:0:5::1/64`);
  if (lease6) {
    ranges.push([{ subnet: formatCidr6(lease6), gateway: formatIp6(firstHost6(lease6)) }]);
    routes.push({ dst: opts.defaultRoute === false && f.ipv6Network !== undefined ? f.ipv6Network : '::/0' });
  }
  const ipam: Record<string, unknown> = { type: 'host-local', ranges, routes };
  if (opts.ipamDataDir !== undefined) ipam.dataDir = opts.ipamDataDir;
  return {
    cniVersion: CNI_VERSION,
    name,
    plugins: [
      {
        type: 'bridge',
        bridge,
        isGateway: true,
        ipMasq: false,
        forceAddress: true,
        hairpinMode: true,
        mtu: f.mtu,
        ipam,
      },
      {
        type: 'portmap',
        capabilities: { portMappings: true },
        snat: true,
      },
    ],
  };
}

/** The file's text: pretty JSON and a final newline, stable for equal inputs (so unchanged means byte-equal). */
export function formatConfList(c: CniConfList): string {
  return JSON.stringify(c, null, 2) + '\n';
}

/** Subnet file text → conflist text (pure). */
export function cniConfigText(subnetFileText: string, source: string, opts: CniOptions = {}): string {
  return formatConfList(buildConfList(parseSubnetFile(subnetFileText, source), opts));
}
