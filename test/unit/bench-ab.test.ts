/**
 * The bench's A/B mode without running a benchmark: the command line
 * (bench/options.ts), the choice of variants with their "(A)" twins, and the
 * A/B table (bench/report.ts) from hand-made samples.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { baselineFiles, checkBaseline, checkHostCpus, cpuListCpus, parseBenchArgs, selectVariants, type Selectable } from '../../bench/options';
import { abCell, abRows, abTable, abVerdict, consoleTable, forwardsInUserspace, markdownReport, summarize, type RunInfo, type Sample, type VariantResult } from '../../bench/report';
import type { Group } from '../../bench/variants';

const OUT = '/tmp/bench-out';

describe('bench options', () => {
  it('defaults: 3 rounds of 10 s, everything, no A/B', () => {
    const o = parseBenchArgs([], OUT);
    assert.equal(o.rounds, 3);
    assert.equal(o.params.timeS, 10);
    assert.equal(o.params.omitS, 1);
    assert.equal(o.only, null);
    assert.equal(o.abBaseline, null);
    assert.equal(o.outDir, OUT);
    assert.equal(o.write, true);
    assert.equal(o.help, false);
  });

  it('--ab-baseline takes a directory, as "--ab-baseline DIR" or "--ab-baseline=DIR", made absolute', () => {
    assert.equal(parseBenchArgs(['--ab-baseline', '/work/ab-base'], OUT).abBaseline, '/work/ab-base');
    assert.equal(parseBenchArgs(['--ab-baseline=/work/ab-base/'], OUT).abBaseline, '/work/ab-base');
    assert.equal(parseBenchArgs(['-ab-baseline', 'rel/dir'], OUT).abBaseline, path.resolve('rel/dir'));
    assert.throws(() => parseBenchArgs(['--ab-baseline'], OUT), /--ab-baseline needs a value/);
    assert.throws(() => parseBenchArgs(['--ab-baseline='], OUT), /--ab-baseline needs a value/);
  });

  it('--only, --quick, numbers, --no-write, --help; unknown options and bad numbers are errors', () => {
    const o = parseBenchArgs(['--only', 'rudder, socat', '--rounds=2', '--time', '1', '--omit', '0', '--pings', '1', '--no-write'], OUT);
    assert.deepEqual(o.only, ['rudder', 'socat']);
    assert.deepEqual([o.rounds, o.params.timeS, o.params.omitS, o.params.pings, o.write], [2, 1, 0, 1, false]);
    const q = parseBenchArgs(['--quick'], OUT);
    assert.deepEqual([q.rounds, q.params.timeS, q.params.pings], [1, 2, 20]);
    assert.equal(parseBenchArgs(['-h'], OUT).help, true);
    assert.throws(() => parseBenchArgs(['--rounds', '0'], OUT), /--rounds: expected a number ≥ 1/);
    assert.throws(() => parseBenchArgs(['--time', 'x'], OUT), /--time: expected a number ≥ 1/);
    assert.throws(() => parseBenchArgs(['--baseline', 'x'], OUT), /unknown option --baseline/);
  });

  it('--host-cpus takes two CPU lists, host 1\'s / host 2\'s; malformed ones and CPUs this machine lacks are named', () => {
    assert.equal(parseBenchArgs([], OUT).hostCpus, null);
    assert.deepEqual(parseBenchArgs(['--host-cpus', '0/1'], OUT).hostCpus, ['0', '1']);
    assert.deepEqual(parseBenchArgs(['--host-cpus=0-3/4,6-7'], OUT).hostCpus, ['0-3', '4,6-7']);
    assert.deepEqual(cpuListCpus('4,6-7,5'), [4, 5, 6, 7]);
    assert.deepEqual(cpuListCpus('2-2'), [2]);
    for (const bad of ['0', '0/1/2', '/1', 'a/1', '0-/1', '1-0/2', '0,,1/2'])
      assert.throws(() => parseBenchArgs(['--host-cpus', bad], OUT), (e: Error) => e.message.startsWith(`--host-cpus ${JSON.stringify(bad)}: `) && e.message.includes('"0/1"'), bad);
    assert.throws(() => parseBenchArgs(['--host-cpus', '1-0/2'], OUT), /range 1-0 runs backwards/);
    checkHostCpus(['0', '1'], 2);
    assert.throws(() => checkHostCpus(['0', '1-3'], 2), /--host-cpus 0\/1-3: CPU 2, 3 does not exist here \(CPUs 0-1\)/);
  });

  it('a baseline must be built: bin/rudder, dist and the native addon, each missing one named', () => {
    const dir = '/work/ab-base';
    const { bin, required } = baselineFiles(dir);
    assert.equal(bin, '/work/ab-base/bin/rudder');
    assert.equal(checkBaseline(dir, (f) => required.includes(f)), bin);
    assert.throws(
      () => checkBaseline(dir, (f) => f === bin),
      (e: Error) => e.message.includes('dist/src/cli/main.js') && e.message.includes('rudder_native.node') && e.message.includes('run ./build there'),
    );
  });
});

describe('bench variant selection', () => {
  const all: Selectable[] = [
    { id: 'underlay', group: 'limit' },
    { id: 'kvxlan', group: 'baseline' },
    { id: 'socat', group: 'baseline' },
    { id: 'rudder-udp', group: 'rudder' },
    { id: 'rudder-udp-a', group: 'rudder', abTwinOf: 'rudder-udp' },
    { id: 'rudder-vxlan', group: 'rudder' },
    { id: 'rudder-vxlan-a', group: 'rudder', abTwinOf: 'rudder-vxlan' },
  ];
  const ids = (only: string[] | null): string[] => selectVariants(all, only).map((v) => v.id);

  it('no --only: everything, in order', () => {
    assert.deepEqual(ids(null), all.map((v) => v.id));
  });

  it('by group: "rudder" keeps every rudder variant and twin', () => {
    assert.deepEqual(ids(['rudder']), ['rudder-udp', 'rudder-udp-a', 'rudder-vxlan', 'rudder-vxlan-a']);
    assert.deepEqual(ids(['baseline']), ['kvxlan', 'socat']);
  });

  it('by id: a twin comes with the variant it mirrors, or alone by its own id; table order kept', () => {
    assert.deepEqual(ids(['rudder-udp', 'socat']), ['socat', 'rudder-udp', 'rudder-udp-a']);
    assert.deepEqual(ids(['rudder-vxlan-a']), ['rudder-vxlan-a']);
  });

  it('a group named in alsoIn selects too; a group brings its companions (the variants its ratios need)', () => {
    const more: Selectable[] = [
      ...all,
      { id: 'rudder-wireguard', group: 'rudder', alsoIn: ['wireguard'] },
      { id: 'rudder-wireguard-a', group: 'rudder', abTwinOf: 'rudder-wireguard', alsoIn: ['wireguard'] },
      { id: 'wireguard-go', group: 'wireguard' },
    ];
    const pick = (only: string[], companions = {}): string[] => selectVariants(more, only, companions).map((v) => v.id);
    assert.deepEqual(pick(['wireguard']), ['rudder-wireguard', 'rudder-wireguard-a', 'wireguard-go']);
    assert.deepEqual(pick(['wireguard'], { wireguard: ['kvxlan', 'rudder-udp'] }), ['kvxlan', 'rudder-udp', 'rudder-udp-a', 'rudder-wireguard', 'rudder-wireguard-a', 'wireguard-go']);
    assert.deepEqual(pick(['rudder-wireguard'], { wireguard: ['kvxlan'] }), ['rudder-wireguard', 'rudder-wireguard-a'], 'companions come with the group only');
    assert.ok(pick(['rudder']).includes('rudder-wireguard'));
    assert.ok(!pick(['rudder']).includes('wireguard-go'));
  });

  it('a name that matches nothing is an error listing ids and groups', () => {
    assert.throws(() => ids(['rudder-wg']), /unknown variant\(s\) rudder-wg; have underlay, .*rudder-vxlan-a and groups limit, baseline, rudder/);
  });
});

const params = { timeS: 10, omitS: 1, pings: 50, pingIntervalS: 0.05, udpLen: 64 };
const RUN_S = params.timeS + params.omitS;

/** [TCP Mbit/s, TCP CPU s, UDP rx pkt/s, RTT median ms] per round; null: that round's TCP failed. */
type Round = [number, number | null, number, number] | null;

function sample(r: Round): Sample {
  if (r === null) return { errors: ['TCP: failed'] };
  const [mbps, tcpCpuS, rxPps, rttMs] = r;
  return {
    tcp: { mbps, retransmits: 0 },
    tcpCpuS,
    udp: { rxPps, txPps: rxPps, sockDropPps: 0, lossPct: 0 },
    udpCpuS: tcpCpuS === null ? null : tcpCpuS / 2,
    rtt: { medianMs: rttMs, avgMs: rttMs, lossPct: 0 },
    errors: [],
  };
}

function variant(id: string, label: string, group: Group, rounds: Round[], abTwinOf?: string): VariantResult {
  const samples = rounds.map(sample);
  return {
    id,
    label,
    group,
    ...(abTwinOf ? { abTwinOf } : {}),
    status: 'ok',
    mtu: 1472,
    samples,
    summary: summarize(samples, { runS: RUN_S, userspace: forwardsInUserspace(id) }),
  };
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
  rounds: 3,
  node: 'v20',
  iperf3: 'iperf 3.12',
  socat: 'socat 1.7.4.4',
  ab: { dir: '/work/new', commit: 'abc1234', baselineDir: '/work/ab-base', baselineCommit: '1b90a19' },
};

function fixture(): VariantResult[] {
  return [
    variant('socat', 'socat TUN/UDP', 'baseline', [[1400, 16, 73000, 0.25], [1380, 16, 72000, 0.26], [1420, 16, 74000, 0.25]]),
    // New udp: TCP within the baseline's range, RTT clearly worse than every baseline round.
    variant('rudder-udp', 'rudder udp', 'rudder', [[9500, 12, 200000, 0.30], [9600, 12, 205000, 0.31], [9300, 12, 190000, 0.32]]),
    variant('rudder-udp-a', 'rudder udp (A)', 'rudder', [[9400, 12, 198000, 0.22], [9700, 12, 202000, 0.23], [9200, 12, 195000, 0.22]], 'rudder-udp'),
    variant('rudder-vxlan', 'rudder vxlan', 'rudder', [[14600, 0, 312000, 0.07], [14700, 0, 315000, 0.06], [14500, 0, 310000, 0.07]]),
    variant('rudder-vxlan-a', 'rudder vxlan (A)', 'rudder', [[14650, 0, 311000, 0.07], [14550, 0, 316000, 0.07], null], 'rudder-vxlan'),
  ];
}

const near = (got: number | null, want: number, what: string): void => {
  assert.ok(got !== null && Math.abs(got - want) < 1e-9, `${what}: got ${got}, want ${want}`);
};

describe('bench A/B table', () => {
  it('a cell: ratio of the medians, min–max of the same-round ratios, overlap of the two ranges', () => {
    const c = abCell([10, 12, 11], [10, 10, 11]);
    near(c.ratio, 11 / 10, 'ratio of medians');
    near(c.min, 1, 'least per-round ratio');
    near(c.max, 1.2, 'greatest per-round ratio');
    assert.equal(c.n, 3);
    assert.equal(c.withinSpread, true);
    assert.equal(abCell([20, 21], [10, 11]).withinSpread, false, 'disjoint ranges');
    assert.equal(abCell([10, 11], [11, 12]).withinSpread, true, 'touching ranges overlap');
    assert.equal(abCell([10], [10]).withinSpread, null, 'one round: no spread to judge by');
  });

  it('a round missing on one side is left out of the per-round ratios, not paired with another round', () => {
    const c = abCell([10, 20, 30], [10, null, 15]);
    assert.equal(c.n, 2);
    near(c.min, 1, 'round 1');
    near(c.max, 2, 'round 3');
    near(c.ratio, 20 / 12.5, 'medians of what each side has');
  });

  it('rows pair each twin with its variant; CPU cost only where the daemons forward (udp)', () => {
    const rows = abRows(fixture(), RUN_S);
    assert.deepEqual(rows.map((r) => [r.variant.id, r.baseline.id]), [['rudder-udp', 'rudder-udp-a'], ['rudder-vxlan', 'rudder-vxlan-a']]);
    const [udp, vx] = rows as [(typeof rows)[0], (typeof rows)[0]];
    near(udp.cells[0]!.ratio, 9500 / 9400, 'udp TCP');
    near(udp.cells[3]!.ratio, 0.31 / 0.22, 'udp RTT');
    near(udp.cells[4]!.ratio, 1 * (9400 / 9500), 'udp CPU per Gbit/s: same CPU, more throughput');
    assert.equal(vx.cells[4], null, 'no CPU cost for a kernel path');
    assert.equal(vx.cells[0]!.n, 2, 'the baseline round whose TCP failed');
    assert.equal(abVerdict(udp), 'outside spread: RTT');
    assert.equal(abVerdict(vx), 'all within spread');
  });

  it('a twin or variant that did not run has no row; no twins, no table', () => {
    const rs = fixture();
    rs[2] = { ...rs[2]!, status: 'n/a', reason: 'daemon did not start' };
    assert.deepEqual(abRows(rs, RUN_S).map((r) => r.variant.id), ['rudder-vxlan']);
    assert.equal(abTable(fixture().filter((r) => r.abTwinOf === undefined), info), null);
  });

  it('console and markdown: one row per variant, new / A, with the spread verdict and both commits', () => {
    const t = abTable(fixture(), info)!;
    assert.equal(t.header[0], 'variant (new / A)');
    assert.equal(t.header.length, 8);
    const text = consoleTable(t);
    assert.match(text.split('\n').find((l) => l.startsWith('rudder udp')) ?? '', /1\.01× \(0\.99–1\.01\).*outside spread: RTT/);
    assert.match(text.split('\n').find((l) => l.startsWith('rudder vxlan')) ?? '', /—.*all within spread/);
    const md = markdownReport(fixture(), info, []);
    assert.match(md, /## A\/B: this build against the baseline/);
    assert.match(md, /New: \/work\/new at abc1234; baseline "\(A\)": \/work\/ab-base at 1b90a19/);
    assert.match(md, /\| rudder udp \| 1\.01× \(0\.99–1\.01\) \|/);
    assert.ok(md.indexOf('## A/B') < md.indexOf('## Targets'), 'the A/B table before the targets');
    assert.doesNotMatch(markdownReport(fixture().filter((r) => r.abTwinOf === undefined), info, []), /## A\/B/);
    // Pinned hosts are said in the header; unpinned runs say nothing of it.
    assert.doesNotMatch(md, /host CPUs/);
    assert.match(markdownReport(fixture(), { ...info, hostCpus: ['0', '1'] }, []), /^- host CPUs \(--host-cpus\): host 1's processes on CPU 0, host 2's on CPU 1 /m);
    assert.match(markdownReport(fixture(), { ...info, hostCpus: ['0-3', '4,6'] }, []), /host 1's processes on CPUs 0-3, host 2's on CPUs 4,6 /);
  });
});
