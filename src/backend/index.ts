/**
 * The backends: the one map from Backend.Type to implementation. Adding a
 * backend means one line here; nothing else in the daemon knows backend
 * names. (A kernel backend is a folder with its peer rules, planner and
 * driver for runtime.ts; see hostgw/ for the smallest.)
 */
import { RudderError } from '../errors';
import { BACKEND_TYPES } from '../config';
import type { Backend, BackendContext, BackendFactory } from './types';
import { createUdpBackend } from './udp';
import { createVxlanBackend } from './vxlan';
import { createHostGwBackend } from './hostgw';
import { createWireGuardBackend } from './wireguard';

const FACTORIES: ReadonlyMap<string, BackendFactory> = new Map<string, BackendFactory>([
  ['udp', (ctx) => createUdpBackend(ctx)],
  ['vxlan', (ctx) => createVxlanBackend(ctx)],
  ['host-gw', (ctx) => createHostGwBackend(ctx)],
  ['wireguard', (ctx) => createWireGuardBackend(ctx)],
]);

/** Names with a factory in this build. */
export function availableBackends(): string[] {
  return [...FACTORIES.keys()];
}

export function lookupBackend(type: string): BackendFactory {
  const f = FACTORIES.get(type);
  if (f !== undefined) return f;
  const known = (BACKEND_TYPES as readonly string[]).includes(type);
  throw new RudderError(
    'E_BACKEND',
    known
      ? `backend ${type} is not available in this build (available: ${availableBackends().join(', ')})`
      : `unknown backend ${JSON.stringify(type)}: expected one of ${BACKEND_TYPES.join(', ')}`,
  );
}

export function createBackend(ctx: BackendContext): Backend {
  return lookupBackend(ctx.config.backend.Type)(ctx);
}
