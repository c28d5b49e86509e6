/**
 * sd_notify: one datagram to systemd's NOTIFY_SOCKET. Node has no unix
 * datagram sockets, so the native addon sends it (native/notify/); a failure
 * is E_NOTIFY, never a data-plane error.
 */
import { RudderError } from '../errors';
import { requireAddon } from '../dataplane/addon';

type Notify = (socketPath: string, message: string) => void;

function nativeNotify(): Notify {
  const mod = requireAddon('E_NOTIFY');
  const fn = typeof mod === 'object' && mod !== null ? (mod as { notify?: unknown }).notify : undefined;
  if (typeof fn !== 'function') throw new RudderError('E_NOTIFY', 'native addon has no notify(): run ./build to rebuild it');
  return fn as Notify;
}

/**
 * Sends `message` as one datagram to the unix datagram socket `socketPath`
 * (a leading '@' means an abstract socket), as systemd's NOTIFY_SOCKET wants.
 */
export function sdNotify(socketPath: string, message: string): void {
  if (typeof socketPath !== 'string' || socketPath.length === 0) {
    throw new RudderError('E_NOTIFY', 'sd_notify: socket path is empty');
  }
  const send = nativeNotify();
  try {
    send(socketPath, message);
  } catch (e) {
    throw new RudderError('E_NOTIFY', `sd_notify to ${socketPath}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}
