/**
 * The CNI network configuration list for this host's Rudder subnet (pure).
 *
 * From the subnet file (RUDDER_NETWORK, RUDDER_SUBNET, RUDDER_MTU,
 * RUDDER_IPMASQ) it builds a conflist for the standard plugins
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
import { Cidr, firstHost, formatCidr, formatIp, maskOf, parseCidr } from '../ip/ipv4';
import { parseEnvFile } from '../subnetfile';

export const CNI_VERSION = '1.0.0';
export const DEFAULT_CNI_NAME = 'rudder';
export const DEFAULT_CNI_BRIDGE = 'cni0';
export const DEFAULT_CNI_DIR = '/etc/cni/net.d';

/** What the conflist is built from: the subnet file's values. */
export interface SubnetFacts {
  network: Cidr;
  /** The lease (network address and length), e.g. 10.0.5.0/24. */
  subnet: Cidr;
  mtu: number;
  ipMasq: boolean;
}

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

function bad(source: string, key: string, value: string, expected: string): RudderError {
  return new RudderError('E_SUBNET_FILE', `${source}: ${key}=${value}: expected ${expected}`);
}

/** Reads and checks the subnet file's text (pure). Errors name the file, key, value and expected form. */
export function parseSubnetFacts(text: string, source: string): SubnetFacts {
  const env = parseEnvFile(text);
  const need = (k: string): string => {
    const v = env.get(k);
    if (v === undefined || v === '') throw new RudderError('E_SUBNET_FILE', `${source}: ${k} missing (is this a file written by rudder?)`);
    return v;
  };
  const networkS = need('RUDDER_NETWORK');
  const subnetS = need('RUDDER_SUBNET');
  const mtuS = need('RUDDER_MTU');
  const masqS = env.get('RUDDER_IPMASQ') ?? 'false';
  const network = parseCidr(networkS, true);
  if (!network || network.prefix < 1 || network.prefix > 30) throw bad(source, 'RUDDER_NETWORK', networkS, 'a network CIDR such as 10.0.0.0/16');
  const host = parseCidr(subnetS);
  if (!host || host.prefix > 30 || host.prefix <= network.prefix) {
    throw bad(source, 'RUDDER_SUBNET', subnetS, `an address/length such as 10.0.5.1/24, longer than RUDDER_NETWORK's /${network.prefix} and at most /30`);
  }
  const subnet: Cidr = { ip: (host.ip & maskOf(host.prefix)) >>> 0, prefix: host.prefix };
  if (((subnet.ip & maskOf(network.prefix)) >>> 0) !== network.ip) {
    throw bad(source, 'RUDDER_SUBNET', subnetS, `an address inside RUDDER_NETWORK=${networkS}`);
  }
  if (!/^\d+$/.test(mtuS) || Number(mtuS) < 68 || Number(mtuS) > 65535) throw bad(source, 'RUDDER_MTU', mtuS, 'an integer between 68 and 65535');
  if (masqS !== 'true' && masqS !== 'false') throw bad(source, 'RUDDER_IPMASQ', masqS, 'true or false');
  return { network, subnet, mtu: Number(mtuS), ipMasq: masqS === 'true' };
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
  const gateway = formatIp(firstHost(f.subnet));
  const range: Record<string, unknown> = { subnet: formatCidr(f.subnet), gateway };
  const ipam: Record<string, unknown> = {
    type: 'host-local',
    ranges: [[range]],
    routes: [{ dst: opts.defaultRoute === false ? formatCidr(f.network) : '0.0.0.0/0' }],
  };
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
  return formatConfList(buildConfList(parseSubnetFacts(subnetFileText, source), opts));
}
