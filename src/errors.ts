/**
 * Typed errors. Every error Rudder raises on purpose carries a stable `code`
 * (for scripts, tests and metrics) and, where there was one, the `cause`.
 */
export type ErrorCode =
  | 'E_CONFIG' // network config invalid (key, value, expected form in the message)
  | 'E_CONFIG_MISSING' // no config key in etcd yet
  | 'E_FLAG' // bad command-line flag
  | 'E_ETCD' // etcd unreachable or refused a request
  | 'E_KUBE' // Kubernetes API server unreachable, refused a request, or this Node is not usable yet
  | 'E_SUBNET_FULL' // no free subnet left in [SubnetMin, SubnetMax]
  | 'E_ACQUIRE' // could not take a lease after bounded retries
  | 'E_LEASE_LOST' // own lease key gone or taken
  | 'E_PUBLIC_IP_CONFLICT' // another host's live lease names this host's PublicIP
  | 'E_HOST_ID' // the host identity file cannot be read or written
  | 'E_IFACE' // interface or public IP cannot be determined
  | 'E_NETLINK' // a kernel request failed
  | 'E_BACKEND' // backend could not be set up
  | 'E_DATAPLANE' // the native data plane failed
  | 'E_NOTIFY' // sd_notify to NOTIFY_SOCKET failed
  | 'E_SUBNET_FILE' // subnet file could not be read or written
  | 'E_METRICS' // the -metrics-addr endpoint could not be served
  | 'E_IPMASQ' // the -ip-masq nftables rules could not be applied
  | 'E_UAPI' // the WireGuard status socket could not be served, reached or read
  | 'E_INTERNAL';

export class RudderError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RudderError';
    this.code = code;
  }
}

export function isRudderError(e: unknown, code?: ErrorCode): e is RudderError {
  return e instanceof RudderError && (code === undefined || e.code === code);
}

/** A one-line description of any thrown value, including its cause chain. */
export function describeError(e: unknown): string {
  const parts: string[] = [];
  let cur: unknown = e;
  for (let depth = 0; cur !== undefined && cur !== null && depth < 5; depth++) {
    if (cur instanceof Error) {
      const code = (cur as { code?: unknown }).code;
      parts.push(typeof code === 'string' && !cur.message.includes(code) ? `${cur.message} [${code}]` : cur.message);
      cur = (cur as { cause?: unknown }).cause;
    } else {
      parts.push(typeof cur === 'string' ? cur : typeof cur === 'bigint' ? cur.toString() : (JSON.stringify(cur) ?? typeof cur));
      break;
    }
  }
  return parts.join(': ');
}
