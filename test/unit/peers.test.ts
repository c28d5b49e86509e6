/**
 * The generic peer table every backend builds on: own subnet, other
 * backends' and unusable leases reported once, the net change of a batch,
 * and the index hooks kept in step with the table.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseCidr, parseIp } from '../../src/ip/ipv4';
import type { Lease, LeaseEvent } from '../../src/subnet/lease';
import { PeerTable, type PeerRules } from '../../src/backend/peers';

const cidr = (s: string) => parseCidr(s, true) as { ip: number; prefix: number };
const lease = (subnet: string, publicIP: string, backendType = 'test', backendData: Record<string, unknown> = {}): Lease => ({
  subnet: cidr(subnet),
  publicIP: parseIp(publicIP) as number,
  backendType,
  backendData,
  expiresAt: null,
});
const add = (l: Lease): LeaseEvent => ({ type: 'added', lease: l });
const del = (l: Lease): LeaseEvent => ({ type: 'removed', lease: l });

interface Peer {
  key: string;
  publicIP: number;
}
const rules: PeerRules<Peer> = {
  backendType: 'test',
  peer: (l, key) => (l.backendData['bad'] !== undefined ? `bad ${JSON.stringify(l.backendData['bad'])}` : { key, publicIP: l.publicIP }),
  same: (a, b) => a.publicIP === b.publicIP,
};

/** Keeps a count per key through the hooks, to prove they follow the table. */
class Counted extends PeerTable<Peer> {
  readonly live = new Map<string, Peer>();
  protected override placed(p: Peer, old: Peer | undefined): void {
    assert.equal(this.live.get(p.key), old);
    this.live.set(p.key, p);
  }
  protected override dropped(p: Peer): void {
    assert.equal(this.live.get(p.key), p);
    this.live.delete(p.key);
  }
}

describe('PeerTable', () => {
  it('never our own subnet; a lease of another type is reported once, and again after it changed type', () => {
    const t = new PeerTable(cidr('10.0.1.0/24'), rules);
    const own = t.apply([add(lease('10.0.1.0/24', '198.18.0.1'))]);
    assert.deepEqual([own.added, t.size], [[], 0]);
    const other = lease('10.0.2.0/24', '198.18.0.2', 'udp');
    assert.deepEqual(t.apply([add(other)]).ignored, [other]);
    assert.deepEqual(t.apply([add(other)]).ignored, []);
    const other2 = lease('10.0.2.0/24', '198.18.0.2', 'vxlan');
    assert.deepEqual(t.apply([add(other2)]).ignored, [other2]);
    // Removed, then back: reported again.
    t.apply([del(other2)]);
    assert.deepEqual(t.apply([add(other2)]).ignored, [other2]);
  });

  it('an unusable lease of our type is reported once per reason and gets no peer', () => {
    const t = new PeerTable(cidr('10.0.1.0/24'), rules);
    const good = lease('10.0.3.0/24', '198.18.0.3');
    t.apply([add(good)]);
    const bad = lease('10.0.3.0/24', '198.18.0.3', 'test', { bad: 1 });
    const ch = t.apply([add(bad)]);
    assert.deepEqual([ch.invalid, ch.removed.map((p) => p.key), t.size], [[bad], ['10.0.3.0-24'], 0]);
    assert.deepEqual(t.apply([add(bad)]).invalid, []);
    assert.equal(t.apply([add(lease('10.0.3.0/24', '198.18.0.3', 'test', { bad: 2 }))]).invalid.length, 1);
  });

  it('reports the net change of a batch: nothing for add+remove or for the same lease; old and new for a changed one', () => {
    const t = new Counted(cidr('10.0.1.0/24'), rules);
    const a = lease('10.0.4.0/24', '198.18.0.4');
    const none = t.apply([add(a), del(a)]);
    assert.deepEqual([none.added, none.removed], [[], []]);
    const first = t.apply([add(a)]);
    const p = first.added[0];
    assert.ok(p);
    const same = t.apply([add(a)]);
    assert.deepEqual([same.added, same.removed], [[], []]);
    assert.equal(t.get('10.0.4.0-24'), p, 'an unchanged peer keeps its object');
    const moved = t.apply([add(lease('10.0.4.0/24', '198.18.0.9')), add(lease('10.0.4.0/24', '198.18.0.8'))]);
    assert.deepEqual([moved.removed, moved.added.map((x) => x.publicIP)], [[p], [parseIp('198.18.0.8')]]);
    assert.deepEqual([...t.live.values()], [...t.values()]);
    t.apply([del(a)]);
    assert.deepEqual([t.size, t.live.size], [0, 0]);
  });
});
