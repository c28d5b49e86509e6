/**
 * A TCP proxy on loopback in front of etcd, for fault tests: a client that
 * talks to etcd through it can be partitioned from etcd while etcd itself
 * stays up and keeps changing.
 *
 *  - cut():   every open connection is reset and new ones are refused
 *             (accepted, then destroyed at once) until heal(): a partition
 *             the client notices.
 *  - pause(): connections stay open but no byte moves in either direction
 *             until resume(): a black hole; whatever etcd sends piles up in
 *             socket buffers and, once they are full, etcd's own watch
 *             buffers (a "slow watcher").
 */
import * as net from 'node:net';

export class FaultProxy {
  private readonly server: net.Server;
  private readonly pairs = new Set<{ a: net.Socket; b: net.Socket }>();
  private cutNow = false;
  private pausedNow = false;
  /** Connections accepted so far (reconnects show up here). */
  accepted = 0;
  port = 0;

  private constructor(private readonly targetHost: string, private readonly targetPort: number) {
    this.server = net.createServer((a) => this.onConnection(a));
  }

  static async start(target: string): Promise<FaultProxy> {
    const u = new URL(target);
    const p = new FaultProxy(u.hostname, Number(u.port));
    await new Promise<void>((resolve, reject) => {
      p.server.once('error', reject);
      p.server.listen({ host: '127.0.0.1', port: 0 }, () => resolve());
    });
    const addr = p.server.address();
    p.port = typeof addr === 'object' && addr ? addr.port : 0;
    return p;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  private onConnection(a: net.Socket): void {
    this.accepted++;
    if (this.cutNow) {
      a.resetAndDestroy();
      return;
    }
    const b = net.connect({ host: this.targetHost, port: this.targetPort });
    const pair = { a, b };
    this.pairs.add(pair);
    a.pipe(b);
    b.pipe(a);
    if (this.pausedNow) this.pausePair(pair);
    const end = (): void => {
      this.pairs.delete(pair);
      a.destroy();
      b.destroy();
    };
    a.on('error', end).on('close', end);
    b.on('error', end).on('close', end);
  }

  private pausePair(p: { a: net.Socket; b: net.Socket }): void {
    p.a.unpipe(p.b);
    p.b.unpipe(p.a);
    p.a.pause();
    p.b.pause();
  }

  /** Resets every connection and refuses new ones until heal(). */
  cut(): void {
    this.cutNow = true;
    for (const p of this.pairs) {
      p.a.resetAndDestroy();
      p.b.destroy();
    }
    this.pairs.clear();
  }

  heal(): void {
    this.cutNow = false;
  }

  /** Stops moving bytes on every connection (new ones too) until resume(). */
  pause(): void {
    this.pausedNow = true;
    for (const p of this.pairs) this.pausePair(p);
  }

  resume(): void {
    this.pausedNow = false;
    for (const p of this.pairs) {
      p.a.pipe(p.b);
      p.b.pipe(p.a);
      p.a.resume();
      p.b.resume();
    }
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
