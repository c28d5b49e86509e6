/**
 * The udp backend's switches in the daemon's environment: offloads, busy
 * polling and the number of TUN queues (pure; read once per start).
 */
import { RudderError } from '../../errors';
import { MAX_QUEUES } from '../../dataplane/limits';

/** The environment variable that turns the data plane's offloads off ("0"/"false"); on by default. */
export const OFFLOADS_ENV = 'RUDDER_UDP_OFFLOADS';

/** An on/off environment variable: unset, empty, 1/true/on → true; 0/false/off → false; anything else is an error. */
function switchFromEnv(env: NodeJS.ProcessEnv, name: string): boolean {
  const v = (env[name] ?? '').trim().toLowerCase();
  if (v === '' || v === '1' || v === 'true' || v === 'on') return true;
  if (v === '0' || v === 'false' || v === 'off') return false;
  throw new RudderError('E_BACKEND', `udp: ${name}=${env[name] ?? ''}: expected 1/true/on or 0/false/off`);
}

export const offloadsFromEnv = (env: NodeJS.ProcessEnv): boolean => switchFromEnv(env, OFFLOADS_ENV);

/** The environment variable that turns the data plane's low-rate busy polling off ("0"/"false"); on by default. */
export const BUSY_POLL_ENV = 'RUDDER_UDP_BUSY_POLL';

export const busyPollFromEnv = (env: NodeJS.ProcessEnv): boolean => switchFromEnv(env, BUSY_POLL_ENV);

/** The environment variable that sets the data plane's TUN queues (worker pairs); one per CPU by default. */
export const QUEUES_ENV = 'RUDDER_UDP_QUEUES';

/** RUDDER_UDP_QUEUES: unset, empty or "auto" → 0 (one per CPU the daemon may use); 1..MAX_QUEUES → that many. */
export function queuesFromEnv(env: NodeJS.ProcessEnv): number {
  const raw = env[QUEUES_ENV] ?? '';
  const v = raw.trim().toLowerCase();
  if (v === '' || v === 'auto') return 0;
  const n = /^\d+$/.test(v) ? Number(v) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > MAX_QUEUES) {
    throw new RudderError('E_BACKEND', `udp: ${QUEUES_ENV}=${raw}: expected auto or a whole number 1..${MAX_QUEUES}`);
  }
  return n;
}

/** The data plane's engine switches, read once per start (udp and wireguard share the engine and its variables). */
export interface Engine {
  readonly offloads: boolean;
  readonly busyPoll: boolean;
  readonly queues: number;
}

export function engineFromEnv(env: NodeJS.ProcessEnv): Engine {
  return { offloads: offloadsFromEnv(env), busyPoll: busyPollFromEnv(env), queues: queuesFromEnv(env) };
}
