/**
 * One real etcd server for a test file (Debian etcd-server on a free
 * loopback port), started before its tests and stopped after them, with a
 * raw client beside it and fresh key prefixes for each test: what the
 * registry-level integration tests share.
 */
import { after, before } from 'node:test';
import { EtcdClient } from '../../src/etcd/client';
import { EtcdRegistry } from '../../src/subnet/etcd-registry';
import { EtcdServer, startEtcd } from '../../src/topology/etcd';

export interface EtcdFixture {
  /** The server (valid inside tests and hooks). */
  readonly etcd: EtcdServer;
  /** A client for arranging and checking keys directly. */
  readonly raw: EtcdClient;
  /** A prefix no other test uses, and registries on it (closed after the file). */
  fresh(): { prefix: string; reg: () => EtcdRegistry };
}

/** Registers the file's before/after hooks; `tag` names its prefixes (`/<tag><n>/network`). */
export function useEtcd(tag: string): EtcdFixture {
  let etcd: EtcdServer | undefined;
  let raw: EtcdClient | undefined;
  let n = 0;
  const regs: EtcdRegistry[] = [];
  before(async () => {
    etcd = await startEtcd();
    raw = new EtcdClient({ endpoints: etcd.endpoints });
  });
  after(async () => {
    for (const r of regs) r.close();
    raw?.close();
    await etcd?.dispose();
  });
  const started = <T>(v: T | undefined): T => {
    if (v === undefined) throw new Error('the etcd fixture is used outside a test (no server yet)');
    return v;
  };
  return {
    get etcd() {
      return started(etcd);
    },
    get raw() {
      return started(raw);
    },
    fresh() {
      const prefix = `/${tag}${++n}/network`;
      const endpoints = started(etcd).endpoints;
      return {
        prefix,
        reg: () => {
          const r = new EtcdRegistry({ endpoints, prefix, requestTimeoutMs: 3000 });
          regs.push(r);
          return r;
        },
      };
    },
  };
}
