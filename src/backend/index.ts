/**
 * The backends: the one map from Backend.Type to implementation. Adding a
 * backend means one line here; nothing else in the daemon knows backend
 * names. (A kernel backend is a folder with its peer rules, planner and
 * driver for runtime.ts; see hostgw/ for the smallest.)
 */
import { RudderError } from '../errors';
import { BACKEND_TYPES } from '../config';
import type { Backend, BackendContext, BackendFactory } from './types';

// Each backend's modules load only when it is created: a daemon runs one, and
// the others' code (their source text and compiled functions) was ~0.4 MB of
// its RSS (issue 17; docs/architecture.md, "Memory").
/* eslint-disable @typescript-eslint/no-require-imports -- lazy: only the configured backend */
const FACTORIES: ReadonlyMap<string, BackendFactory> = new Map<string, BackendFactory>([
  ['udp', (ctx) => (require('./udp') as typeof import('./udp')).createUdpBackend(ctx)],
  ['vxlan', (ctx) => (require('./vxlan') as typeof import('./vxlan')).createVxlanBackend(ctx)],
  ['host-gw', (ctx) => (require('./hostgw') as typeof import('./hostgw')).createHostGwBackend(ctx)],
  ['wireguard', (ctx) => (require('./wireguard') as typeof import('./wireguard')).createWireGuardBackend(ctx)],
]);
/* eslint-enable @typescript-eslint/no-require-imports */

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
