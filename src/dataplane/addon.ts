/**
 * Loads the native addon (rudder_native.node): the data plane (./native.ts),
 * the rtnetlink socket (src/netlink/socket.ts) and sd_notify
 * (src/systemd/notify.ts) share it. A module of its own so that a daemon
 * without the udp or wireguard data plane never loads ./native.ts.
 */
import * as path from 'node:path';
import { type ErrorCode, RudderError } from '../errors';

/** Where ./build puts the addon, relative to dist/src/dataplane/addon.js. */
export const ADDON_PATH = path.resolve(__dirname, '..', '..', '..', 'native', 'build', 'Release', 'rudder_native.node');

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Loads rudder_native.node; a missing or unloadable addon is a RudderError
 * of `code` that says to run ./build.
 */
export function requireAddon(code: ErrorCode): unknown {
  try {
    // An addon is loaded by require from a path known only at run time.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(ADDON_PATH) as unknown;
  } catch (e) {
    const errno = (e as { code?: unknown }).code;
    const why =
      errno === 'MODULE_NOT_FOUND'
        ? `native addon not found at ${ADDON_PATH}`
        : `native addon at ${ADDON_PATH} cannot be loaded (${errorMessage(e)})`;
    throw new RudderError(code, `${why}: run ./build to compile it`, { cause: e });
  }
}
