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
import { type NetworkConfig, ipv4Enabled } from '../config';
import { RudderError, describeError, isRudderError } from '../errors';
import { Cidr, cidrEquals, formatCidr, formatIp, overlaps } from '../ip/ipv4';
import { Cidr6, formatCidr6, formatIp6, overlaps6 } from '../ip/ipv6';
import type { Logger } from '../log';
import { noStats, type EtcdStats } from '../metrics/telemetry';
import { describeRange, describeRange6, pickFreeSubnet, pickFreeSubnet6, subnetAllowed, subnetAllowed6 } from './allocator';
import { type Lease, type LeaseSubnets, NO_IPV4, hasIpv4, leaseName, sameKey } from './lease';
import { LeaseRecord, LeaseValue, Registry, leaseKeyOf, leaseValue } from './registry';
import { backoffMs } from '../util/backoff';
import { Wakeable } from '../util/sleep';

export const MAX_ATTEMPTS = 10;

/** Who this host is, to tell its leases from the others'. */
export interface HostSelf {
  readonly publicIP: number;
  /** IPv6 on: this host's PublicIPv6 (a lease naming it is this host's too). */
  readonly publicIPv6?: bigint | null | undefined;
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
    return samePublicIP(l, me) ? 'twin' : 'other';
  }
  return samePublicIP(l, me) ? 'mine' : 'other';
}

/** The lease names one of our public addresses (PublicIP; or PublicIPv6 when we have one; 0.0.0.0 is nobody's). */
function samePublicIP(l: Lease, me: HostSelf): boolean {
  if (me.publicIPv6 === undefined || me.publicIPv6 === null) return l.publicIP === me.publicIP;
  return (me.publicIP !== 0 && l.publicIP === me.publicIP) || l.publicIPv6 === me.publicIPv6;
}

/** Whether a lease's key has the families the config has (IPv4 and/or IPv6) and is in range for each. */
export function leaseFits(config: NetworkConfig, l: LeaseSubnets): boolean {
  if (!config.ipv6) return subnetAllowed(config, l.subnet);
  if (l.ipv6Subnet === undefined || !subnetAllowed6(config.ipv6, l.ipv6Subnet)) return false;
  return ipv4Enabled(config) ? hasIpv4(l) && subnetAllowed(config, l.subnet) : !hasIpv4(l);
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
  const mine = records.filter(
    (r) => leaseOwner(r.lease, me) === 'mine' && (config.ipv6 ? leaseFits(config, r.lease) : r.etcdLeaseId === '0' || subnetAllowed(config, r.lease.subnet)),
  );
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
  /** EnableIPv6: this host's PublicIPv6 (null: none, the host is reached over IPv4). */
  publicIPv6?: bigint | null;
  backendType: string;
  backendData: Readonly<Record<string, unknown>>;
  /** EnableIPv6: BackendV6Data to publish (default: none, `{}`). */
  backendV6Data?: Readonly<Record<string, unknown>>;
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

  /** The IPv6 half of the value (null with IPv6 off). */
  private v6: { publicIPv6: bigint | null; backendV6Data: Readonly<Record<string, unknown>> } | undefined;

  constructor(private readonly o: ManagerOptions) {
    this.v6 = o.config.ipv6 ? { publicIPv6: o.publicIPv6 ?? null, backendV6Data: o.backendV6Data ?? {} } : undefined;
    this.value = leaseValue(o.publicIP, o.backendType, o.backendData, o.hostId, this.v6);
  }

  private get me(): HostSelf {
    return { publicIP: this.o.publicIP, publicIPv6: this.o.config.ipv6 ? (this.o.publicIPv6 ?? null) : undefined, hostId: this.o.hostId };
  }

  /** The lease currently held (after acquire). */
  get lease(): Lease {
    if (!this.record) throw new RudderError('E_INTERNAL', 'no lease acquired yet');
    return { ...this.record.lease, expiresAt: this.expiresAt };
  }

  get isReservation(): boolean {
    return this.record?.etcdLeaseId === '0';
  }

  /**
   * Takes a lease. `remembered` and `remembered6` are the subnets of an
   * earlier run (the subnet file); with IPv6 on, each family is remembered
   * on its own, so switching IPv6 on keeps the IPv4 subnet.
   */
  async acquire(remembered: Cidr | null, remembered6: Cidr6 | null = null): Promise<Lease> {
    if (this.o.config.ipv6) return this.acquireWithIpv6(remembered, remembered6);
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
      // An IPv6-only key's 0.0.0.0/0 holds no IPv4 subnet (it would block the whole range).
      const taken = list.records.filter((r) => hasIpv4(r.lease) || r.lease.ipv6Subnet === undefined).map((r) => r.lease.subnet);
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

  /**
   * Acquisition with IPv6 on (dual-stack or IPv6-only): the same order as
   * IPv4's — our key, else the remembered subnets, else random free ones —
   * with both families in one key and one create-if-absent transaction.
   * Dual-stack also passes the listed revision: the create fails if any
   * key was created since, because the IPv6 half of a key cannot be
   * compared by prefix. Losing that race to another host's new key is the
   * other host's progress, so it costs no attempt.
   */
  private async acquireWithIpv6(remembered: Cidr | null, remembered6: Cidr6 | null): Promise<Lease> {
    const { registry, config, log } = this.o;
    const v6 = config.ipv6 as NonNullable<NetworkConfig['ipv6']>;
    const v4on = ipv4Enabled(config);
    const mem4 = v4on && remembered !== null && subnetAllowed(config, remembered) ? remembered : null;
    const mem6 = remembered6 !== null && subnetAllowed6(v6, remembered6) ? remembered6 : null;
    if (remembered && v4on && !mem4) log.info('remembered subnet is outside the configured range; not reusing it', { subnet: formatCidr(remembered) });
    if (remembered6 && !mem6) log.info('remembered IPv6 subnet is outside the configured range; not reusing it', { subnet: formatCidr6(remembered6) });
    let lastCount = -1;
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; ) {
      const list = await registry.listLeases();
      if (lastCount >= 0 && list.records.length > lastCount) attempt--; // someone else's new key: their progress
      lastCount = list.records.length;
      const plan = planAcquire(list.records, this.me, config, null, false);
      if (plan.kind === 'conflict') throw this.conflict(plan.twin);
      if (plan.kind === 'reuse') {
        const rec = await registry.updateLease(plan.record, this.value, this.o.ttlMs);
        if (rec) return this.took(rec, plan.record.etcdLeaseId === '0' ? 'reservation' : 'reused');
        attempt++;
        continue;
      }
      const taken4 = list.records.filter((r) => hasIpv4(r.lease)).map((r) => r.lease.subnet);
      const taken6 = list.records.flatMap((r) => (r.lease.ipv6Subnet ? [r.lease.ipv6Subnet] : []));
      let subnet: Cidr | null = NO_IPV4;
      let how = 'new';
      if (v4on) {
        const keep = mem4 && !taken4.some((t) => overlaps(t, mem4)) ? mem4 : null;
        if (mem4 && !keep && attempt === 1) log.info('remembered subnet is held by another host; picking another', { subnet: formatCidr(mem4) });
        subnet = keep ?? pickFreeSubnet(config, taken4, this.o.random);
        if (!subnet) throw this.full(describeRange(config), taken4.length);
        if (keep) how = 'remembered';
      }
      const keep6 = mem6 && !taken6.some((t) => overlaps6(t, mem6)) ? mem6 : null;
      if (mem6 && !keep6 && attempt === 1) log.info('remembered IPv6 subnet is held by another host; picking another', { subnet: formatCidr6(mem6) });
      const subnet6 = keep6 ?? pickFreeSubnet6(v6, taken6, this.o.random);
      if (!subnet6) throw this.full(describeRange6(v6), taken6.length);
      if (keep6) how = 'remembered';
      const rec = await registry.createLease(subnet, this.value, this.o.ttlMs, {
        ipv6Subnet: subnet6,
        noKeyCreatedAfter: v4on ? list.revision : undefined,
      });
      if (rec) return this.took(rec, how);
      log.debug('subnet taken concurrently; retrying', { subnet: leaseName({ subnet, ipv6Subnet: subnet6 }), attempt });
      attempt++;
      // Hosts that lost together should not list and collide again in lock-step.
      await new Promise((r) => setTimeout(r, Math.floor((this.o.random ?? Math.random)() * 20 * attempt)));
    }
    throw new RudderError('E_ACQUIRE', `could not acquire a subnet after ${MAX_ATTEMPTS} attempts (every pick was taken concurrently by another host)`);
  }

  private full(range: string, leases: number): RudderError {
    return new RudderError('E_SUBNET_FULL', `no free subnet: all ${range} are leased (${leases} leases); widen the network or its SubnetMin/SubnetMax, or remove stale leases`);
  }

  private keyName(subnet: LeaseSubnets): string {
    return leaseKeyOf(this.o.etcdPrefix ?? '', subnet);
  }

  private conflict(twin: LeaseRecord): RudderError {
    const ip = this.o.config.ipv6 && this.o.publicIPv6 != null && twin.lease.publicIPv6 === this.o.publicIPv6 ? formatIp6(this.o.publicIPv6) : formatIp(this.o.publicIP);
    return new RudderError(
      'E_PUBLIC_IP_CONFLICT',
      `PublicIP ${ip} is held by another host: lease ${this.keyName(twin.lease)} belongs to host ${twin.lease.hostId ?? '?'}, ` +
        `this host is ${this.o.hostId ?? '?'}. Two hosts cannot share one PublicIP: give this host its own with -public-ip (or -iface); ` +
        `a cloned machine also needs its own identity (-host-id, or a fresh /etc/machine-id and host-id file). Nothing was written; retrying`,
    );
  }

  /** True if a lease value seen on our key is ours (our identity, or none and our PublicIP). */
  private isOurs(l: Lease): boolean {
    const v6ok = !this.o.config.ipv6 || l.publicIPv6 === (this.o.publicIPv6 ?? undefined);
    return leaseOwner(l, this.me) === 'mine' && l.publicIP === this.o.publicIP && v6ok;
  }

  private took(rec: LeaseRecord, how: string): Lease {
    this.record = rec;
    this.expiresAt = rec.etcdLeaseId === '0' ? null : Date.now() + this.o.ttlMs;
    this.o.log.info('lease acquired', {
      subnet: this.o.config.ipv6 ? leaseName(rec.lease) : formatCidr(rec.lease.subnet),
      publicIP: formatIp(rec.lease.publicIP),
      ...(rec.lease.hostId !== undefined ? { hostId: rec.lease.hostId } : {}),
      how,
      expires: this.expiresAt === null ? 'never (reservation)' : new Date(this.expiresAt).toISOString(),
    });
    return this.lease;
  }

  setBackendData(data: Readonly<Record<string, unknown>>, v6Data?: Readonly<Record<string, unknown>>): void {
    if (this.v6 && v6Data) this.v6 = { ...this.v6, backendV6Data: v6Data };
    this.value = leaseValue(this.o.publicIP, this.o.backendType, data, this.o.hostId, this.v6);
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
    const now = list.records.find((r) => sameKey(r.lease, rec.lease));
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
    const subnet = this.o.config.ipv6 ? leaseName(rec.lease) : formatCidr(rec.lease.subnet);
    if (current && !this.isOurs(current)) {
      throw new RudderError('E_LEASE_LOST', `lease ${subnet} now names PublicIP ${formatIp(current.publicIP)}${current.hostId ? ` (host ${current.hostId})` : ''}, not ours (${formatIp(this.o.publicIP)}); restart to take another subnet`);
    }
    // Re-list to get the key's current state: create if absent, else it is ours again.
    const list = await this.o.registry.listLeases();
    const now = list.records.find((r) => sameKey(r.lease, rec.lease));
    let next: LeaseRecord | null;
    if (!now) {
      this.o.log.warn('own lease key was deleted; re-creating it', { subnet });
      const v6 = rec.lease.ipv6Subnet;
      if (v6 === undefined) {
        next = await this.o.registry.createLease(rec.lease.subnet, this.value, this.o.ttlMs);
      } else {
        // Our IPv6 half may have been picked by a host that saw our key gone; only the listing can tell.
        const holder = list.records.find((r) => (r.lease.ipv6Subnet && overlaps6(r.lease.ipv6Subnet, v6)) || (hasIpv4(rec.lease) && hasIpv4(r.lease) && overlaps(r.lease.subnet, rec.lease.subnet)));
        if (holder) throw new RudderError('E_LEASE_LOST', `lease ${subnet} was taken by ${this.keyName(holder.lease)} while our key was gone; restart to take another subnet`);
        next = await this.o.registry.createLease(rec.lease.subnet, this.value, this.o.ttlMs, {
          ipv6Subnet: v6,
          noKeyCreatedAfter: hasIpv4(rec.lease) ? list.revision : undefined,
        });
      }
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

