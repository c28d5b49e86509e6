/**
 * The bench's IPv6 rows (issue 15) without running a benchmark: the line-up
 * and `--only ipv6`, the IPv6 / IPv4 pairs and table, issue 15's targets, and
 * an IPv6 path's "/ underlay" ratio taken against the IPv6 underlay.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  type Sample,
  type VariantResult,
  forwardsInUserspace,
  ipv6Pairs,
  ipv6Table,
  ipv6TargetLines,
  ratiosTable,
  roundsNote,
  summarize,
} from '../../bench/report';
import { selectVariants } from '../../bench/options';
import { GROUP_COMPANIONS, defaultVariants, type Group } from '../../bench/variants';

const RUN_S = 11;

function sample(mbps: number, rttMs: number): Sample {
  return {
    tcp: { mbps, retransmits: 0 },
    tcpCpuS: null,
    udp: { rxPps: 100_000, txPps: 100_000, sockDropPps: 0, lossPct: 0 },
    udpCpuS: null,
    rtt: { medianMs: rttMs, avgMs: rttMs, lossPct: 0 },
    errors: [],
  };
}

function variant(id: string, group: Group, mbps: number | number[], rttMs: number, family?: 6): VariantResult {
  const samples = (Array.isArray(mbps) ? mbps : [mbps]).map((m) => sample(m, rttMs));
  return {
    id,
    label: id,
    group,
    ...(family ? { family } : {}),
    status: 'ok',
    samples,
    summary: summarize(samples, { runS: RUN_S, userspace: forwardsInUserspace(id) }),
  };
}

function fixture(): VariantResult[] {
  return [
    variant('underlay', 'limit', 16000, 0.04),
    variant('underlay6', 'limit', 15000, 0.05, 6),
    variant('kvxlan', 'baseline', 14000, 0.06),
    variant('kvxlan6', 'baseline', 12000, 0.07, 6),
    variant('rudder-udp', 'rudder', 9000, 0.2),
    variant('rudder-udp6', 'rudder', 8550, 0.22, 6),
    variant('rudder-vxlan6', 'rudder', 11000, 0.07, 6),
    variant('rudder-host-gw6', 'rudder', 14700, 0.06, 6),
    { id: 'rudder-wireguard6', label: 'rudder-wireguard6', group: 'rudder', family: 6, status: 'n/a', reason: 'daemon did not start: no IPv6', samples: [] },
  ];
}

describe('bench: IPv6 beside IPv4 (issue 15)', () => {
  it('the line-up has each IPv6 variant after its IPv4 one; --only ipv6 picks them with rudder-udp; IPv4 ids unchanged', () => {
    const all = defaultVariants();
    const ids = all.map((v) => v.id);
    for (const id of ['underlay', 'kvxlan', 'rudder-udp', 'rudder-vxlan', 'rudder-host-gw', 'rudder-wireguard']) {
      assert.equal(ids[ids.indexOf(id) + 1], `${id}6`, ids.join(' '));
    }
    assert.deepEqual(
      selectVariants(all, ['ipv6'], GROUP_COMPANIONS).map((v) => v.id),
      ['underlay6', 'kvxlan6', 'rudder-udp', 'rudder-udp6', 'rudder-vxlan6', 'rudder-host-gw6', 'rudder-wireguard6'],
    );
    assert.ok(all.filter((v) => v.id.endsWith('6')).every((v) => v.family === 6));
    assert.ok(forwardsInUserspace('rudder-udp6') && forwardsInUserspace('rudder-wireguard6') && !forwardsInUserspace('rudder-vxlan6'));
  });

  it('pairs and table: IPv6 / IPv4 TCP and RTT; an IPv6 variant that did not run is n/a', () => {
    const pairs = ipv6Pairs(fixture());
    assert.deepEqual(pairs.map((p) => `${p.v6.id}:${p.v4?.id ?? '-'}`), [
      'underlay6:underlay', 'kvxlan6:kvxlan', 'rudder-udp6:rudder-udp', 'rudder-vxlan6:-', 'rudder-host-gw6:-', 'rudder-wireguard6:-',
    ]);
    assert.ok(Math.abs((pairs[2]!.tcp ?? 0) - 0.95) < 1e-9);
    assert.ok(Math.abs((pairs[2]!.rtt ?? 0) - 1.1) < 1e-9);
    const t = ipv6Table(fixture());
    assert.ok(t);
    assert.deepEqual(t.rows[5], ['rudder-wireguard6', 'n/a', 'n/a', 'n/a', 'n/a', 'n/a', 'n/a']);
    assert.equal(ipv6Table(fixture().filter((r) => r.family !== 6)), null);
  });

  it('targets: udp IPv6 ≥ 0.9× udp IPv4, vxlan IPv6 ≥ 0.95× kernel VXLAN IPv6, host-gw IPv6 ≥ 0.95× IPv6 underlay', () => {
    const lines = ipv6TargetLines(fixture());
    assert.deepEqual(lines.map((l) => [l.issue, l.target, l.ratio === null ? null : Number(l.ratio.toFixed(3))]), [
      ['15', '≥ 0.9×', 0.95],
      ['15', '≥ 0.95×', 0.917],
      ['15', '≥ 0.95×', 0.98],
    ]);
    assert.match(lines[1]!.verdict, /^below/);
    assert.match(lines[2]!.verdict, /^meets/);
  });

  it('an IPv6 path is a share of the IPv6 underlay', () => {
    const t = ratiosTable(fixture());
    const row = t.rows.find((r) => r[0] === 'rudder-host-gw6');
    assert.equal(row?.[1], '98%');
  });

  it('targets over rounds: the per-round ratios, and a miss inside the rounds\' spread said to be one', () => {
    // The last full run's rounds (2026-12-06): kvxlan6 14337 15124 15449, rudder vxlan6 13552 15061 14010.
    const k6 = variant('kvxlan6', 'baseline', [14337, 15124, 15449], 0.07, 6);
    const v6 = variant('rudder-vxlan6', 'rudder', [13552, 15061, 14010], 0.07, 6);
    const [line] = ipv6TargetLines([k6, v6]);
    assert.equal(Number(line!.ratio!.toFixed(3)), 0.926);
    assert.equal(line!.verdict, "below: 0.93× of 0.95× needed, 2% short; per round 0.91–1.00×, within the rounds' spread: not a measured gap");
    // Every round short and the ranges apart: a measured gap, with its rounds.
    const slow = variant('rudder-vxlan6', 'rudder', [12000, 12500, 12800], 0.07, 6);
    assert.equal(roundsNote(slow, k6, 12500 / 15124, 0.95), '; per round 0.83–0.84×');
    // Met: the rounds are shown; one round only: nothing added.
    assert.equal(roundsNote(k6, v6, 15124 / 14010, 0.95), '; per round 1.00–1.10×');
    assert.equal(roundsNote(variant('a', 'rudder', 1, 0.1), variant('b', 'limit', 1, 0.1), 1, 0.95), '');
  });
});
