/**
 * bench/report.ts beside the real flanneld (issue 17), without running a
 * benchmark: the rudder X / flanneld X ratios, the daemons' RSS, the target
 * lines, and the rows of a flanneld variant that could not run (anchors
 * missing). Figures are made up, round, so they can be checked by hand.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type RunInfo,
  type Sample,
  type VariantResult,
  daemonRss,
  figuresTable,
  flannelPairs,
  flannelTable,
  flannelTargetLines,
  forwardsInUserspace,
  markdownReport,
  summarize,
  svgChart,
  targetText,
} from '../../bench/report';
import { selectVariants } from '../../bench/options';
import { ANCHORS_MISSING, anchorSource } from '../../src/topology/anchors';
import { defaultVariants } from '../../bench/variants';
import type { Group } from '../../bench/variants';

const params = { timeS: 10, omitS: 1, pings: 50, pingIntervalS: 0.05, udpLen: 64 };
const RUN_S = params.timeS + params.omitS;

function sample(mbps: number, rxPps: number, rttMs: number, cpuS: number | null = null): Sample {
  return {
    tcp: { mbps, retransmits: 0 },
    tcpCpuS: cpuS,
    udp: { rxPps, txPps: rxPps, sockDropPps: 0, lossPct: 0 },
    udpCpuS: cpuS,
    rtt: { medianMs: rttMs, avgMs: rttMs, lossPct: 0 },
    errors: [],
  };
}

function variant(id: string, label: string, group: Group, s: Sample, rss?: number[]): VariantResult {
  const samples = [s];
  return {
    id,
    label,
    group,
    status: 'ok',
    mtu: 1450,
    samples,
    summary: summarize(samples, { runS: RUN_S, userspace: forwardsInUserspace(id) }),
    ...(rss ? { daemonRssMb: rss } : {}),
  };
}

const ANCHORS = 'anchors not found: set RUDDER_TEST_ANCHORS=DIR holding flanneld and kube-apiserver (or put the anchors at ../shared/anchors)';

function fixture(): VariantResult[] {
  return [
    variant('underlay', 'underlay veth', 'limit', sample(16000, 480000, 0.04)),
    variant('rudder-udp', 'rudder udp', 'rudder', sample(6000, 200000, 0.2, 5), [66, 64]),
    variant('rudder-vxlan', 'rudder vxlan', 'rudder', sample(14000, 300000, 0.07), [60, 66]),
    variant('rudder-host-gw', 'rudder host-gw', 'rudder', sample(16000, 470000, 0.06), [66, 66]),
    variant('flanneld-udp', 'flanneld udp', 'flannel', sample(250, 20000, 0.16, 10), [40, 44]),
    variant('flanneld-vxlan', 'flanneld vxlan', 'flannel', sample(14000, 300000, 0.07), [40, 40]),
    { id: 'flanneld-host-gw', label: 'flanneld host-gw', group: 'flannel', status: 'n/a', reason: ANCHORS, samples: [] },
  ];
}

const info: RunInfo = {
  date: '2026-12-06T05:00:00Z',
  kernel: '6.18',
  cpus: 2,
  cpuModel: 'test CPU',
  loadBefore: '0 0 0',
  loadAfter: '0 0 0',
  durationS: 60,
  params,
  rounds: 1,
  node: 'v20',
  iperf3: 'iperf 3.12',
  socat: 'socat version 1.7.4.4',
};

describe('bench beside flanneld (issue 17)', () => {
  it('the line-up has flanneld udp, vxlan and host-gw in group "flannel"; --only flannel picks them', () => {
    const all = defaultVariants();
    assert.deepEqual(
      selectVariants(all, ['flannel']).map((v) => `${v.id} ${v.label}`),
      ['flanneld-udp flanneld udp', 'flanneld-vxlan flanneld vxlan', 'flanneld-host-gw flanneld host-gw'],
    );
    assert.ok(!selectVariants(all, ['rudder']).some((v) => v.group === 'flannel'));
    assert.ok(forwardsInUserspace('flanneld-udp'), "flanneld's udp backend forwards in its own process");
    assert.ok(!forwardsInUserspace('flanneld-vxlan'));
  });

  it('the anchors: RUDDER_TEST_ANCHORS wins; without it ../shared/anchors beside the checkout; else missing, with what to set', () => {
    assert.deepEqual(anchorSource({ RUDDER_TEST_ANCHORS: '/opt/anchors' }, '/nowhere/repo'), { kind: 'dir', dir: '/opt/anchors' });
    assert.deepEqual(anchorSource({}, '/nowhere/repo'), { kind: 'missing' });
    assert.equal(`anchors not found: ${ANCHORS_MISSING}`, ANCHORS);
  });

  it('daemon RSS is the larger of the hosts; none read is n/a', () => {
    const rs = fixture();
    assert.equal(daemonRss(rs.find((r) => r.id === 'rudder-udp')), 66);
    assert.equal(daemonRss(rs.find((r) => r.id === 'flanneld-udp')), 44);
    assert.equal(daemonRss({ ...rs[0]!, daemonRssMb: [] }), null);
    assert.equal(daemonRss(rs[0]), null);
  });

  it('pairs rudder X with flanneld X: TCP, packet rate, RTT and RSS ratios; none where flanneld did not run', () => {
    const pairs = flannelPairs(fixture());
    assert.deepEqual(pairs.map((p) => p.backend), ['udp', 'vxlan', 'host-gw']);
    const [udp, vxlan, hostgw] = pairs;
    assert.equal(udp!.tcp, 24);
    assert.equal(udp!.pps, 10);
    assert.ok(Math.abs(udp!.rtt! - 1.25) < 1e-9);
    assert.equal(udp!.rss, 1.5);
    assert.equal(vxlan!.tcp, 1);
    assert.equal(vxlan!.rss, 66 / 40);
    assert.deepEqual([hostgw!.tcp, hostgw!.rtt, hostgw!.rss], [null, null, null]);
  });

  it('the table: one row per backend; a flanneld that did not run says why (the anchors line)', () => {
    const t = flannelTable(fixture())!;
    assert.deepEqual(t.header, ['rudder / flanneld', 'TCP', 'UDP pps', 'RTT', 'daemon RSS', 'RSS MB rudder / flanneld']);
    assert.deepEqual(t.rows[0], ['udp', '24.00×', '10.00×', '1.25×', '1.50×', '66.0 / 44.0']);
    assert.deepEqual(t.rows[1], ['vxlan', '1.00×', '1.00×', '1.00×', '1.65×', '66.0 / 40.0']);
    assert.equal(t.rows[2]![0], 'host-gw');
    assert.equal(t.rows[2]![1], `n/a (${ANCHORS})`);
    assert.equal(t.rows[2]![5], '66.0 / n/a');
    assert.equal(flannelTable(fixture().filter((r) => r.group !== 'flannel')), null, 'no flanneld variant, no table');
    // rudder X not in the run (--only flannel): the row says so.
    const only = flannelTable(fixture().filter((r) => r.group !== 'rudder'))!;
    assert.equal(only.rows[0]![1], 'n/a (rudder udp not measured)');
  });

  it('the figures table carries each daemon RSS and the CPU of flanneld udp', () => {
    const t = figuresTable(fixture(), info);
    const col = t.header.indexOf('daemon RSS MB (after the run)');
    assert.ok(col > 0);
    const row = (label: string): string[] => t.rows.find((r) => r[0] === label)!;
    assert.equal(row('flanneld udp')[col], '44.0');
    assert.equal(row('underlay veth')[col], '—');
    assert.equal(row('flanneld host-gw')[col], 'n/a');
    // flanneld udp: 10 s of CPU over an 11 s run at 0.25 Gbit/s.
    assert.equal(row('flanneld udp')[t.header.indexOf('TCP CPU, % core per Gbit/s')], '364%');
    assert.equal(row('flanneld vxlan')[t.header.indexOf('TCP CPU, % core per Gbit/s')], '—');
  });

  it('issue 17 targets: udp ≥ 20× and RTT ≤ 1×, vxlan and host-gw ≥ 0.98×, RSS ≤ 1.5×; a pair that did not run is left out', () => {
    const lines = flannelTargetLines(fixture());
    assert.deepEqual(
      lines.map(targetText),
      [
        'issue 17: rudder udp / flanneld udp TCP throughput: 24.00× (target ≥ 20×) — meets (24.00× ≥ 20×)',
        "issue 17: rudder udp / flanneld udp RTT (median): 1.25× (target ≤ 1×) — below: RTT 25% higher than flanneld udp's",
        'issue 17: rudder vxlan / flanneld vxlan TCP throughput: 1.00× (target ≥ 0.98×) — meets (1.00× ≥ 0.98×)',
        'issue 17: rudder udp / flanneld udp daemon RSS (after the run): 1.50× (target ≤ 1.5×) — meets (1.50× ≤ 1.5×)',
        "issue 17: rudder vxlan / flanneld vxlan daemon RSS (after the run): 1.65× (target ≤ 1.5×) — below: RSS 1.65× flanneld vxlan's, 10% over 1.5×",
      ],
    );
    assert.deepEqual(flannelTargetLines(fixture().filter((r) => r.group !== 'flannel')), []);
    // Short by less than two decimals show: a third decimal says so.
    const near = fixture().map((r) => (r.id === 'flanneld-vxlan' ? variant('flanneld-vxlan', 'flanneld vxlan', 'flannel', sample(14000 / 0.978, 300000, 0.07), [40]) : r));
    assert.equal(flannelTargetLines(near)[2]!.verdict, 'below: 0.978× of 0.98× needed, 0.2% short');
  });

  it('markdown and chart show the comparison; the n/a row names what to set', () => {
    const md = markdownReport(fixture(), info, []);
    assert.match(md, /## Beside the real flanneld/);
    assert.match(md, /\| udp \| 24\.00× \| 10\.00× \| 1\.25× \| 1\.50× \| 66\.0 \/ 44\.0 \|/);
    assert.match(md, /## Targets beside flanneld \(issue 17/);
    assert.match(md, /flanneld host-gw: n\/a — anchors not found: set RUDDER_TEST_ANCHORS/);
    const svg = svgChart(fixture(), info);
    assert.match(svg, />rudder udp \/ flanneld udp: TCP 24\.00×, UDP pps 10\.00×, RTT 1\.25×, daemon RSS 1\.50×</);
    assert.match(svg, />rudder vxlan \/ flanneld vxlan: TCP 1\.00×/);
    assert.ok(!svg.includes('rudder host-gw / flanneld'), 'no line for a pair that did not run');
    assert.ok(!svgChart(fixture().filter((r) => r.group !== 'flannel'), info).includes('/ flanneld'));
  });
});
