/**
 * The -metrics-addr HTTP endpoint:
 *   /metrics  Prometheus exposition (prom-client)
 *   /healthz  200 while the daemon runs
 *   /readyz   200 in state 'ready' (lease held, backend programmed, subnet
 *             file written); 503 with the state otherwise
 * Started before anything else in the daemon (so /healthz answers while it
 * waits for a config), closed last on shutdown.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { RudderError, describeError } from '../errors';
import type { Logger } from '../log';
import type { RudderMetrics } from './prometheus';

export interface MetricsServer {
  /** The address actually bound, IP:PORT (the port is the real one if 0 was asked for). */
  readonly address: string;
  close(): Promise<void>;
}

export interface MetricsServerOptions {
  /** IP:PORT (validated by the flag parser). */
  addr: string;
  metrics: RudderMetrics;
  /** The daemon's state now. */
  state(): string;
  log: Logger;
}

export function splitHostPort(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(':');
  const host = addr.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  const port = Number(addr.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RudderError('E_METRICS', `-metrics-addr=${addr}: expected IP:PORT such as 127.0.0.1:9100`);
  }
  return { host, port };
}

export async function startMetricsServer(o: MetricsServerOptions): Promise<MetricsServer> {
  const { host, port } = splitHostPort(o.addr);
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (status: number, body: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return send(405, 'method not allowed\n');
    }
    switch (path) {
      case '/metrics':
        o.metrics.scrape().then(
          (text) => send(200, text, o.metrics.registry.contentType),
          (e: unknown) => {
            o.log.warn('metrics scrape failed', { error: describeError(e) });
            send(500, `scrape failed: ${describeError(e)}\n`);
          },
        );
        return;
      case '/healthz':
        return send(200, `ok ${o.state()}\n`);
      case '/readyz': {
        const st = o.state();
        return st === 'ready' ? send(200, 'ready\n') : send(503, `not ready: ${st}\n`);
      }
      default:
        return send(404, 'not found: try /metrics, /healthz or /readyz\n');
    }
  });
  server.on('clientError', (_e, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    const onError = (e: Error): void => {
      reject(new RudderError('E_METRICS', `cannot serve metrics on ${o.addr}: ${describeError(e)}`, { cause: e }));
    };
    server.once('error', onError);
    server.listen({ host, port }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (e) => o.log.error('metrics server error', { addr: o.addr, error: describeError(e) }));
  const a = server.address() as AddressInfo;
  const address = `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  o.log.info('serving metrics', { addr: address, paths: '/metrics,/healthz,/readyz' });
  let closing: Promise<void> | undefined;
  return {
    address,
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
