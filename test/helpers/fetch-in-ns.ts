/**
 * An HTTP GET made from inside a network namespace (node's http in a child
 * run by `ip netns exec`): the tests reach a daemon's -metrics-addr the way a
 * scraper on that host would.
 */
import type { Netns } from '../../src/topology';

const FETCH = `
const http = require('node:http');
http.get(process.argv[1], (r) => {
  let b = '';
  r.setEncoding('utf8').on('data', (d) => (b += d));
  r.on('end', () => process.stdout.write(JSON.stringify({ status: r.statusCode, body: b })));
}).on('error', (e) => process.stdout.write(JSON.stringify({ error: e.message })));
`;

export interface Fetched {
  status?: number;
  body?: string;
  error?: string;
}

/** GET `url` from inside `ns`: {status, body}, or {error} when it got no answer. */
export async function fetchIn(ns: Netns, url: string): Promise<Fetched & { raw: string }> {
  const r = await ns.exec([process.execPath, '-e', FETCH, url]);
  return { ...(JSON.parse(r.stdout) as Fetched), raw: r.stdout };
}
