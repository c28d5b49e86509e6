/**
 * SubnetManager: takes this host's lease, keeps it alive and keeps it ours.
 *
 * Acquisition order (docs/architecture.md, "Subnet acquisition and renewal";
 * `planAcquire`, pure): another host's live lease naming our PublicIP is an
 * E_PUBLIC_IP_CONFLICT (nothing written); else a key that is ours (our host
 * identity, or none and our PublicIP); else the remembered subnet, only if
 * free; else a random free subnet. Every write is one etcd transaction (create-if-absent, or
 * compare-and-swap on mod_revision), so two hosts can never both succeed on
 * one key: a lost race costs a re-list and another pick, bounded by
 * MAX_ATTEMPTS. A full range is reported as such, not retried.
 *
 * Keeping: renew `renewMarginMs` before expiry; reservations (keys with no
 * etcd lease) are never renewed. etcd errors are retried with jittered
 * backoff for as long as it takes — the data path does not depend on etcd.
 * If our key disappears (deleted, or expired while etcd was away) it is
 * re-created with the same subnet, create-if-absent. New BackendData
 * (setBackendData: a rotated wireguard key) is written by the same loop,
 * compare-and-swap on the key's current revision, retried the same way.
 */
import type { NetworkConfig } from '../config';
import { RudderError, describeError, isRudderError } from '../errors';
import { Cidr, cidrEquals, formatCidr, formatIp } from '../ip/ipv4';
import type { Logger } from '../log';
import { noStats, type EtcdStats } from '../metrics/telemetry';
import { describeRange, pickFreeSubnet, subnetAllowed } from './allocator';
import type { Lease } from './lease';
import { LeaseRecord, LeaseValue, Registry, leaseValue, subnetKey } from './registry';
import { backoffMs } from '../util/backoff';
import { Wakeable } from '../util/sleep';

export const MAX_ATTEMPTS = 10;

/** Who this host is, to tell its leases from the others'. */
export interface HostSelf {
  readonly publicIP: number;
  /** Undefined: no identity (leases are told apart by PublicIP alone, as flannel does). */
  readonly hostId?: string | undefined;
}

/**
 * Whose a listed lease is (pure): `mine` (same identity; or no identity on
 * either side and our PublicIP — a flannel lease or an older Rudder's),
 * `twin` (another identity claiming our PublicIP), or `other`.
 */
export function leaseOwner(l: Lease, me: HostSelf): 'mine' | 'twin' | 'other' {
  if (me.hostId !== undefined && l.hostId !== undefined) {
    if (l.hostId === me.hostId) return 'mine';
    return l.publicIP === me.publicIP ? 'twin' : 'other';
  }
  return l.publicIP === me.publicIP ? 'mine' : 'other';
}

export type AcquirePlan =
  | { readonly kind: 'conflict'; readonly twin: LeaseRecord }
  | { readonly kind: 'reuse'; readonly record: LeaseRecord }
  | { readonly kind: 'remembered'; readonly subnet: Cidr }
  | { readonly kind: 'pick'; readonly rememberedHeld: boolean };

/**
 * The next acquisition step for one listing (pure). `remembered` is
 * preferred among our own keys; it is created only with `tryRemembered`
 * (false once its one try is spent, or when it lies outside the range).
 */
export function planAcquire(
  records: readonly LeaseRecord[],
  me: HostSelf,
  config: NetworkConfig,
  remembered: Cidr | null,
  tryRemembered = remembered !== null,
): AcquirePlan {
  const twin = records.find((r) => leaseOwner(r.lease, me) === 'twin');
  if (twin) return { kind: 'conflict', twin };
  const mine = records.filter((r) => leaseOwner(r.lease, me) === 'mine' && (r.etcdLeaseId === '0' || subnetAllowed(config, r.lease.subnet)));
  const pref = mine.find((r) => remembered && cidrEquals(r.lease.subnet, remembered)) ?? mine[0];
  if (pref) return { kind: 'reuse', record: pref };
  if (remembered && tryRemembered) {
    if (!records.some((r) => cidrEquals(r.lease.subnet, remembered))) return { kind: 'remembered', subnet: remembered };
    return { kind: 'pick', rememberedHeld: true };
  }
  return { kind: 'pick', rememberedHeld: false };
}

export interface ManagerOptions {
  registry: Registry;
  config: NetworkConfig;
  publicIP: number;
  backendType: string;
  backendData: Readonly<Record<string, unknown>>;
  /** This host's identity (src/subnet/host-id.ts), written as RudderHostID; undefined: none. */
  hostId?: string | undefined;
  /** Names lease keys in errors (default: the key's suffix only). */
  etcdPrefix?: string;
  ttlMs: number;
  renewMarginMs: number;
  log: Logger;
  random?: () => number;
  /** Counts etcd failures and recoveries of the lease keeping (metrics). */
  stats?: EtcdStats;
}

export class SubnetManager {
  private record: LeaseRecord | null = null;
  private expiresAt: number | null = null;
  private readonly alarm = new Wakeable();
  private value: LeaseValue;
  /** BackendData changed since the lease was written (setBackendData). */
  private republishDue = false;

  constructor(private readonly o: ManagerOptions) {
    this.value = leaseValue(o.publicIP, o.backendType, o.backendData, o.hostId);
  }

  /** The lease currently held (after acquire). */
  get lease(): Lease {
    if (!this.record) throw new RudderError('E_INTERNAL', 'no lease acquired yet');
    return { ...this.record.lease, expiresAt: this.expiresAt };
  }

  get isReservation(): boolean {
    return this.record?.etcdLeaseId === '0';
  }

  async acquire(remembered: Cidr | null): Promise<Lease> {
    const { registry, config, publicIP, log } = this.o;
    let rememberedUsable = remembered !== null && subnetAllowed(config, remembered);
    if (remembered && !rememberedUsable) {
      log.info('remembered subnet is outside the configured range; not reusing it', { subnet: formatCidr(remembered) });
    }
    const me: HostSelf = { publicIP, hostId: this.o.hostId };
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const list = await registry.listLeases();
      const plan = planAcquire(list.records, me, config, remembered, rememberedUsable);
      if (plan.kind === 'conflict') throw this.conflict(plan.twin);
      if (plan.kind === 'reuse') {
        const pref = plan.record;
        const rec = await registry.updateLease(pref, this.value, this.o.ttlMs);
        if (rec) return this.took(rec, pref.etcdLeaseId === '0' ? 'reservation' : 'reused');
        continue;
      }
      if (plan.kind === 'remembered') {
        rememberedUsable = false; // one try: a conflict means another host has it now
        const rec = await registry.createLease(plan.subnet, this.value, this.o.ttlMs);
        if (rec) return this.took(rec, 'remembered');
        continue;
      }
      if (plan.rememberedHeld && remembered) {
        rememberedUsable = false;
        log.info('remembered subnet is held by another host; picking another', { subnet: formatCidr(remembered) });
      }
      const taken = list.records.map((r) => r.lease.subnet);
      const pick = pickFreeSubnet(config, taken, this.o.random);
      if (!pick) {
        throw new RudderError('E_SUBNET_FULL', `no free subnet: all ${describeRange(config)} are leased (${taken.length} leases); widen Network or SubnetMin/SubnetMax, or remove stale leases`);
      }
      const rec = await registry.createLease(pick, this.value, this.o.ttlMs);
      if (rec) return this.took(rec, 'new');
      log.debug('subnet taken concurrently; retrying', { subnet: formatCidr(pick), attempt });
    }
    throw new RudderError('E_ACQUIRE', `could not acquire a subnet after ${MAX_ATTEMPTS} attempts (every pick was taken concurrently by another host)`);
  }

  private keyName(subnet: Cidr): string {
    return subnetKey(this.o.etcdPrefix ?? '', subnet);
  }

  private conflict(twin: LeaseRecord): RudderError {
    const ip = formatIp(this.o.publicIP);
    return new RudderError(
      'E_PUBLIC_IP_CONFLICT',
      `PublicIP ${ip} is held by another host: lease ${this.keyName(twin.lease.subnet)} belongs to host ${twin.lease.hostId ?? '?'}, ` +
        `this host is ${this.o.hostId ?? '?'}. Two hosts cannot share one PublicIP: give this host its own with -public-ip (or -iface); ` +
        `a cloned machine also needs its own identity (-host-id, or a fresh /etc/machine-id and host-id file). Nothing was written; retrying`,
    );
  }

  /** True if a lease value seen on our key is ours (our identity, or none and our PublicIP). */
  private isOurs(l: Lease): boolean {
    return leaseOwner(l, { publicIP: this.o.publicIP, hostId: this.o.hostId }) === 'mine' && l.publicIP === this.o.publicIP;
  }

  private took(rec: LeaseRecord, how: string): Lease {
    this.record = rec;
    this.expiresAt = rec.etcdLeaseId === '0' ? null : Date.now() + this.o.ttlMs;
    this.o.log.info('lease acquired', {
      subnet: formatCidr(rec.lease.subnet),
      publicIP: formatIp(rec.lease.publicIP),
      ...(rec.lease.hostId !== undefined ? { hostId: rec.lease.hostId } : {}),
      how,
      expires: this.expiresAt === null ? 'never (reservation)' : new Date(this.expiresAt).toISOString(),
    });
    return this.lease;
  }

  setBackendData(data: Readonly<Record<string, unknown>>): void {
    this.value = leaseValue(this.o.publicIP, this.o.backendType, data, this.o.hostId);
    this.republishDue = true;
    this.alarm.wake();
  }

  /** Our key was deleted or rewritten by someone: re-assert it now. */
  ownKeyChanged(current: Lease | null): void {
    if (current && this.isOurs(current)) return; // our own write, or a harmless rewrite
    this.lostKey = current;
    this.alarm.wake();
  }
  private lostKey: Lease | null | undefined = undefined;

  /**
   * Keeps the lease until `signal` aborts. Rejects only when the lease is
   * irrecoverably lost (another host holds our subnet).
   */
  async keep(signal: AbortSignal): Promise<void> {
    const { registry, log } = this.o;
    let failures = 0;
    while (!signal.aborted) {
      const rec = this.record;
      if (!rec) throw new RudderError('E_INTERNAL', 'keep() before acquire()');
      let waitMs: number;
      if (this.lostKey !== undefined || this.republishDue) waitMs = 0;
      else if (this.expiresAt === null) waitMs = 3_600_000;
      else waitMs = Math.max(0, this.expiresAt - this.o.renewMarginMs - Date.now());
      // After a failure the operation is overdue (waitMs is 0): back off, or a renewal due during an
      // etcd outage would be retried in a tight loop (a flood of attempts and log lines).
      if (failures > 0) waitMs = backoffMs(failures, this.o.random);
      if (waitMs > 0) await this.alarm.wait(waitMs, signal);
      if (signal.aborted) return;
      const lost = this.lostKey;
      const due = this.expiresAt !== null && Date.now() >= this.expiresAt - this.o.renewMarginMs;
      const republish = this.republishDue;
      if (lost === undefined && !due && !republish && failures === 0) continue;
      try {
        if (lost !== undefined) {
          await this.reassert(lost);
        } else if (republish) {
          await this.republish();
        } else if (due) {
          const exp = await registry.renewLease(rec);
          if (exp === null) {
            log.warn('etcd lease is gone; re-creating the lease key', { subnet: formatCidr(rec.lease.subnet) });
            await this.reassert(null);
          } else {
            this.expiresAt = exp;
            log.info('lease renewed', { subnet: formatCidr(rec.lease.subnet), expires: new Date(exp).toISOString() });
          }
        }
        if (failures > 0) {
          log.info('etcd reachable again', { after: `${failures} failed attempts` });
          (this.o.stats ?? noStats).etcdReconnected('lease');
        }
        failures = 0;
      } catch (e) {
        if (isRudderError(e, 'E_LEASE_LOST')) throw e;
        failures++;
        (this.o.stats ?? noStats).etcdError('lease');
        log.warn('etcd unreachable; the data path keeps running, retrying', { error: describeError(e), attempt: failures });
      }
    }
  }

  /** Writes this.value over our key (its current revision); a vanished or foreign key goes to reassert. */
  private async republish(): Promise<void> {
    const rec = this.record as LeaseRecord;
    const list = await this.o.registry.listLeases();
    const now = list.records.find((r) => cidrEquals(r.lease.subnet, rec.lease.subnet));
    this.republishDue = false;
    if (!now || !this.isOurs(now.lease)) {
      await this.reassert(now?.lease ?? null);
      return;
    }
    let next: LeaseRecord | null;
    try {
      next = await this.o.registry.updateLease(now, this.value, this.o.ttlMs);
    } catch (e) {
      this.republishDue = true;
      throw e;
    }
    if (!next) {
      this.republishDue = true;
      throw new RudderError('E_ETCD', `lease ${formatCidr(rec.lease.subnet)} changed while republishing it; will retry`);
    }
    this.record = next;
    this.expiresAt = next.etcdLeaseId === '0' ? null : Date.now() + this.o.ttlMs;
    this.o.log.info('lease republished', { subnet: formatCidr(rec.lease.subnet), backendData: JSON.stringify(this.value.BackendData) });
  }

  private async reassert(current: Lease | null): Promise<void> {
    const rec = this.record as LeaseRecord;
    const subnet = formatCidr(rec.lease.subnet);
    if (current && !this.isOurs(current)) {
      throw new RudderError('E_LEASE_LOST', `lease ${subnet} now names PublicIP ${formatIp(current.publicIP)}${current.hostId ? ` (host ${current.hostId})` : ''}, not ours (${formatIp(this.o.publicIP)}); restart to take another subnet`);
    }
    // Re-list to get the key's current state: create if absent, else it is ours again.
    const list = await this.o.registry.listLeases();
    const now = list.records.find((r) => cidrEquals(r.lease.subnet, rec.lease.subnet));
    let next: LeaseRecord | null;
    if (!now) {
      this.o.log.warn('own lease key was deleted; re-creating it', { subnet });
      next = await this.o.registry.createLease(rec.lease.subnet, this.value, this.o.ttlMs);
    } else if (this.isOurs(now.lease)) {
      next = now.etcdLeaseId === rec.etcdLeaseId ? now : await this.o.registry.updateLease(now, this.value, this.o.ttlMs);
    } else {
      throw new RudderError('E_LEASE_LOST', `lease ${subnet} was taken by ${formatIp(now.lease.publicIP)}${now.lease.hostId ? ` (host ${now.lease.hostId})` : ''}; restart to take another subnet`);
    }
    if (!next) throw new RudderError('E_ETCD', `lease ${subnet} changed while re-creating it; will retry`);
    this.record = next;
    if (next.etcdLeaseId === '0') this.expiresAt = null;
    else if (next !== now) this.expiresAt = Date.now() + this.o.ttlMs;
    this.lostKey = undefined;
    this.o.log.info('lease key restored', { subnet });
  }

}

