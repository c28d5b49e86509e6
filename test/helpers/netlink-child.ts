/**
 * Runs inside a test network namespace (started with `ip netns exec`, since
 * node cannot setns): serves the netlink facade over stdin/stdout, one JSON
 * request per line `{"id":1,"op":"ensureMtu","args":[5,1400]}`, one JSON reply
 * per line `{"id":1,"ok":true,"value":...}` or `{"id":1,"ok":false,"error":{...}}`.
 * Exits when stdin closes, so it never outlives the test process.
 *
 * bigints (IPv6 addresses) travel as `{"$bigint":"<decimal>"}` both ways
 * (bigJson in netlink-ns.ts).
 *
 * Besides the facade's own methods it answers the one-object forms the test
 * asks for (ensureRoute, deleteNeighbor, ...), each a batch of one,
 * linkByAddress, from the facade's reads, and resolveExternalInterface.
 */
import { createInterface } from 'readline';
import { openNetlink, errnoOf, only, type FdbSpec, type NeighborSpec, type Route6Key, type Route6Spec, type RouteKey, type RouteSpec } from '../../src/netlink';
import { isRudderError } from '../../src/errors';
import { bigJson } from './netlink-ns';
import { resolveExternalInterface, type ResolveOptions } from '../../src/iface';

const nl = openNetlink();
const singles: Record<string, (...a: never[]) => unknown> = {
  ensureRoute: async (s: RouteSpec) => ({ changed: only(await nl.ensureRoutes([s])) }),
  deleteRoute: async (k: RouteKey) => only(await nl.deleteRoutes([k])),
  ensureRoute6: async (s: Route6Spec) => ({ changed: only(await nl.ensureRoutes6([s])) }),
  deleteRoute6: async (k: Route6Key) => only(await nl.deleteRoutes6([k])),
  ensureNeighbor: async (s: NeighborSpec) => ({ changed: only(await nl.ensureNeighbors([s])) }),
  deleteNeighbor: async (index: number, ip: number) => only(await nl.deleteNeighbors([{ index, ip }])),
  ensureFdb: async (s: FdbSpec) => ({ changed: only(await nl.ensureFdbs([s])) }),
  deleteFdb: async (s: FdbSpec) => only(await nl.deleteFdbs([s])),
  // The daemon's interface resolution, run where the facade runs (it opens its own socket).
  // (an absent argument arrives as JSON null)
  resolveExternalInterface: (iface: string | null, publicIp: string | null, opts: ResolveOptions) => resolveExternalInterface(iface ?? undefined, publicIp ?? undefined, opts),
  linkByAddress: async (ip: number) => {
    const a = (await nl.listAddresses()).find((x) => x.ip === ip >>> 0);
    return a === undefined ? null : nl.linkByIndex(a.index);
  },
};
const methods = { ...(nl as unknown as Record<string, (...a: unknown[]) => unknown>), ...(singles as Record<string, (...a: unknown[]) => unknown>) };
const rl = createInterface({ input: process.stdin });

function reply(obj: unknown): void {
  process.stdout.write(bigJson.stringify(obj) + '\n');
}

rl.on('line', (line) => {
  let req: { id: number; op: string; args: unknown[] };
  try {
    req = bigJson.parse(line) as typeof req;
  } catch {
    return;
  }
  const fn = methods[req.op];
  if (typeof fn !== 'function' || req.op === 'close') {
    reply({ id: req.id, ok: false, error: { code: 'E_TEST', message: `no such operation ${req.op}` } });
    return;
  }
  Promise.resolve()
    .then(() => fn.apply(nl, req.args))
    .then(
      (value) => reply({ id: req.id, ok: true, value: value === undefined ? null : value }),
      (e: unknown) =>
        reply({
          id: req.id,
          ok: false,
          error: {
            code: isRudderError(e) ? e.code : 'E_UNEXPECTED',
            message: e instanceof Error ? e.message : String(e),
            errno: errnoOf(e) ?? null,
          },
        }),
    );
});
rl.on('close', () => {
  nl.close();
});
