/**
 * bench/report.ts without running a benchmark: the samples below are those of
 * bench/results/latest.json (2026-11-22T21:39Z, rounded), so the expected
 * figures can be checked by hand against a real run's shape.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  type RunInfo,
  type Sample,
  type VariantResult,
  consoleTable,
  figuresTable,
  forwardsInUserspace,
  markdownReport,
  summarize,
  svgChart,
  targetLines,
  targetText,
  wireguardTargetLines,
} from '../../bench/report';
import { selectVariants } from '../../bench/options';
import { GROUP_COMPANIONS, defaultVariants } from '../../bench/variants';
import { udpDropsByInode } from '../../bench/measure';
import { svgToPng } from '../../bench/png';
import type { Group } from '../../bench/variants';

const params = { timeS: 10, omitS: 1, pings: 50, pingIntervalS: 0.05, udpLen: 64 };
const RUN_S = params.timeS + params.omitS;

/** [TCP Mbit/s, TCP CPU s, UDP rx pkt/s, UDP CPU s, RTT median ms, pkt/s dropped at the receiving socket] per round. */
type Round = [number, number | null, number, number | null, number, (number | null)?];

function sample([mbps, tcpCpuS, rxPps, udpCpuS, rttMs, sockDropPps = 0]: Round): Sample {
  return {
    tcp: { mbps, retransmits: 0 },
    tcpCpuS,
    udp: { rxPps, txPps: rxPps * 2, sockDropPps, lossPct: 50 },
    udpCpuS,
    rtt: { medianMs: rttMs, avgMs: rttMs, lossPct: 0 },
    errors: [],
  };
}

function variant(id: string, label: string, group: Group, rounds: Round[], mtu = 1500): VariantResult {
  const samples = rounds.map(sample);
  return { id, label, group, status: 'ok', mtu, samples, summary: summarize(samples, { runS: RUN_S, userspace: forwardsInUserspace(id) }) };
}

function fixture(): VariantResult[] {
  return [
    variant('underlay', 'underlay veth', 'limit', [[15225, null, 441229, null, 0.0515], [16113, null, 467773, null, 0.032], [16788, null, 452954, null, 0.0585]]),
    variant('kvxlan', 'kernel VXLAN (by hand)', 'baseline', [[13731, null, 307758, null, 0.053], [13716, null, 301802, null, 0.061], [14498, null, 318699, null, 0.0355]], 1450),
    variant('socat', 'socat TUN/UDP', 'baseline', [[1366, 16.97, 70703, 10.73, 0.2805], [1309, 16.47, 73573, 10.42, 0.2585], [1453, 17.03, 73420, 10.78, 0.3025]], 1472),
    variant('rudder-udp', 'rudder udp', 'rudder', [[7316, 15.68, 151285, 10.75, 0.277, 400_000], [8046, 15.41, 165836, 10.99, 0.2845, 300_000], [7667, 15.37, 155533, 10.8, 0.2495, null]], 1472),
    variant('rudder-vxlan', 'rudder vxlan', 'rudder', [[13977, 0, 305154, 0.01, 0.0495], [14749, 0, 313745, 0.01, 0.081], [14509, 0, 318216, 0, 0.056]], 1450),
    { id: 'rudder-host-gw', label: 'rudder host-gw', group: 'rudder', status: 'n/a', reason: 'daemon did not start', samples: [] },
  ];
}

const info: RunInfo = {
  date: '2026-11-22T21:39:19Z',
  kernel: '6.18.44',
  cpus: 2,
  cpuModel: 'test CPU',
  loadBefore: '0 0 0',
  loadAfter: '0 0 0',
  durationS: 452,
  params,
  rounds: 3,
  node: 'v20',
  iperf3: 'iperf 3.12',
  socat: 'socat version 1.7.4.4',
};

const byLabel = (rs: VariantResult[], label: string): VariantResult => rs.find((r) => r.label === label) as VariantResult;
const close = (got: number | null | undefined, want: number, what: string): void => {
  assert.ok(typeof got === 'number' && Math.abs(got - want) < 1e-9, `${what}: got ${got}, want ${want}`);
};

describe('bench report: CPU cost and issue 8 targets', () => {
  it('costs are % of a core per Gbit/s and per 100k pkt/s, the median of the per-round values', () => {
    const rs = fixture();
    const ru = byLabel(rs, 'rudder udp').summary!;
    // Rounds give 19.48, 17.41 and 18.22 %/Gbit/s: the median is round 3's.
    close(ru.tcpCpuPctPerGbps, (100 * 15.37) / RUN_S / (7667 / 1000), 'rudder udp TCP cost');
    // 64.60, 60.25, 63.13 %/100k pkt/s: round 3 again.
    close(ru.udpCpuPctPer100kPps, (100 * 10.8) / RUN_S / (155533 / 100_000), 'rudder udp UDP cost');
    const so = byLabel(rs, 'socat TUN/UDP').summary!;
    // 112.94, 114.39, 106.55: round 1.
    close(so.tcpCpuPctPerGbps, (100 * 16.97) / RUN_S / (1366 / 1000), 'socat TCP cost');
    // 137.97, 128.75, 133.48: round 3.
    close(so.udpCpuPctPer100kPps, (100 * 10.78) / RUN_S / (73420 / 100_000), 'socat UDP cost');
    // Kernel forwarding: the daemon's near-zero CPU is not the path's cost.
    assert.equal(byLabel(rs, 'rudder vxlan').summary!.tcpCpuPctPerGbps, null);
    assert.equal(byLabel(rs, 'kernel VXLAN (by hand)').summary!.udpCpuPctPer100kPps, null);
  });

  it('a round without a TCP figure or CPU reading is left out of the cost median', () => {
    const s = [sample([1000, 11, 100_000, 11, 0.3]), { ...sample([2000, 11, 100_000, 11, 0.3]), tcpCpuS: null }, { errors: ['TCP: failed'], udpCpuS: 5.5 } as Sample];
    const sum = summarize(s, { runS: 11, userspace: true });
    close(sum.tcpCpuPctPerGbps, 100, 'only round 1 counts: 100% of a core for 1 Gbit/s');
    close(sum.udpCpuPctPer100kPps, 100, 'round 3 has CPU but no packet rate');
    assert.equal(summarize(s).tcpCpuPctPerGbps, null, 'no cost basis, no cost');
  });

  it('figures table: a cost column beside each tunnel CPU column, "—" for kernel paths, n/a for a variant that did not run', () => {
    const t = figuresTable(fixture(), info);
    const col = (h: string): number => {
      const i = t.header.indexOf(h);
      assert.ok(i > 0, `column ${h} in ${t.header.join(' | ')}`);
      return i;
    };
    const tcpCpu = col('tunnel CPU, TCP run');
    const tcpCost = col('TCP CPU, % core per Gbit/s');
    const udpCpu = col('tunnel CPU, UDP run');
    const udpCost = col('UDP CPU, % core per 100k pkt/s');
    assert.deepEqual([tcpCost, udpCpu, udpCost], [tcpCpu + 1, tcpCpu + 2, tcpCpu + 3]);
    const row = (label: string): string[] => t.rows.find((r) => r[0] === label) as string[];
    assert.equal(row('rudder udp')[tcpCost], '18.2%');
    assert.equal(row('rudder udp')[udpCost], '63.1%');
    assert.equal(row('socat TUN/UDP')[tcpCost], '113%');
    assert.equal(row('socat TUN/UDP')[udpCost], '133%');
    for (const label of ['underlay veth', 'kernel VXLAN (by hand)', 'rudder vxlan']) {
      assert.equal(row(label)[tcpCost], '—', label);
      assert.equal(row(label)[udpCost], '—', label);
    }
    assert.equal(row('rudder vxlan')[tcpCpu], '0.00 s (0%)', 'the daemon CPU column itself stays');
    const na = row('rudder host-gw');
    assert.equal(na.length, t.header.length);
    assert.ok(na.slice(1).every((c) => c === 'n/a'));
    for (const r of t.rows) assert.equal(r.length, t.header.length);
    // The console shows the same table.
    const text = consoleTable(t);
    assert.match(text, /TCP CPU, % core per Gbit\/s/);
    assert.match(text.split('\n').find((l) => l.startsWith('rudder udp')) ?? '', /18\.2%.*63\.1%/);
  });

  it('targets: issue 8 first, each labelled with its issue; issue 3 kept', () => {
    const lines = targetLines(fixture());
    const find = (issue: string, what: string) => {
      const l = lines.find((x) => x.issue === issue && x.what === what);
      assert.ok(l, `${issue} ${what} in ${lines.map(targetText).join('\n')}`);
      return l;
    };
    assert.equal(lines[0]?.issue, '8');
    const kv = find('8', 'rudder udp / kernel VXLAN TCP throughput');
    close(kv.ratio, 7667 / 13731, 'vs kernel VXLAN');
    assert.equal(kv.target, '≥ 0.5×');
    assert.equal(kv.verdict, 'meets (0.56× ≥ 0.5×)');
    const tcp8 = find('8', 'rudder udp / socat TCP throughput');
    close(tcp8.ratio, 7667 / 1366, 'TCP vs socat');
    assert.equal(tcp8.verdict, 'below: 5.61× of 8× needed, 30% short');
    const pps8 = find('8', 'rudder udp / socat small-packet rate');
    close(pps8.ratio, 155533 / 73420, 'pps vs socat');
    assert.equal(pps8.verdict, 'below: 2.12× of 3× needed, 29% short');
    // Delivered = read + dropped at the receiving socket, per round; a round without a drop reading is left out.
    const ru = byLabel(fixture(), 'rudder udp').summary!;
    assert.deepEqual(ru.udpDeliveredPps, { median: (551285 + 465836) / 2, min: 465836, max: 551285, n: 2 });
    const delivered = find('8', 'rudder udp / socat small-packet rate delivered to the receiving socket (read + dropped there)');
    close(delivered.ratio, (551285 + 465836) / 2 / 73420, 'delivered vs socat (socat dropped nothing at its receiver)');
    assert.equal(delivered.verdict, 'meets (6.93× ≥ 3×)');
    assert.equal(find('3, 8', 'rudder udp / socat RTT (median)').verdict, 'meets (0.99× ≤ 1×)');
    const cost = find('8', 'rudder udp / socat CPU per Gbit/s (TCP)');
    assert.equal(cost.target, 'reported');
    assert.match(cost.verdict, /rudder udp 18\.2% of a core per Gbit\/s; socat TUN\/UDP 113% of a core per Gbit\/s/);
    find('8', 'rudder udp / socat CPU per 100k pkt/s (UDP)');
    assert.equal(find('3', 'rudder udp / socat TCP throughput').verdict, 'meets (5.61× ≥ 2×)');
    assert.equal(find('3', 'rudder udp / socat small-packet rate').verdict, 'meets (2.12× ≥ 2×)');
    assert.equal(targetText(tcp8), 'issue 8: rudder udp / socat TCP throughput: 5.61× (target ≥ 8×) — below: 5.61× of 8× needed, 30% short');
  });

  it('targets: a line whose reference did not run is left out; no rudder udp, no targets', () => {
    const noKv = fixture().filter((r) => r.id !== 'kvxlan');
    assert.ok(!targetLines(noKv).some((l) => l.what.includes('kernel VXLAN')));
    assert.ok(targetLines(noKv).some((l) => l.what.includes('socat')));
    assert.deepEqual(targetLines(fixture().filter((r) => r.id !== 'rudder-udp')), []);
  });

  it('markdown report and latest.json carry the costs and the labelled targets', () => {
    const md = markdownReport(fixture(), info, []);
    assert.match(md, /\| variant \| MTU \|.*\| tunnel CPU, TCP run \| TCP CPU, % core per Gbit\/s \| tunnel CPU, UDP run \| UDP CPU, % core per 100k pkt\/s \|/);
    assert.match(md, /## Targets for rudder udp \(issues 8 and 3/);
    assert.match(md, /\| 8 \| rudder udp \/ kernel VXLAN TCP throughput \| 0\.56× \| ≥ 0\.5× \| meets/);
    assert.match(md, /\| 3 \| rudder udp \/ socat TCP throughput \| 5\.61× \| ≥ 2× \|/);
    // run.ts writes { info, results } as is: the summary is where the costs travel.
    const json = JSON.parse(JSON.stringify({ info, results: fixture() })) as { results: VariantResult[] };
    const ru = json.results.find((r) => r.id === 'rudder-udp')!.summary!;
    close(ru.tcpCpuPctPerGbps, (100 * 15.37) / RUN_S / 7.667, 'JSON TCP cost');
    assert.equal(json.results.find((r) => r.id === 'rudder-vxlan')!.summary!.udpCpuPctPer100kPps, null);
  });
});

describe('bench: drops at the receiving socket', () => {
  it('reads the drop column of the UDP sockets on one local port, by inode', () => {
    const listing = [
      '   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            ',
      ' 1023: 020012C6:1451 010012C6:9C4E 01 00000000:00034000 00:00000000 00000000     0        0 40112 2 00000000a1b2c3d4 48213     ',
      ' 1024: 00000000:205D 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 39977 2 00000000e5f6a7b8 7         ',
      ' 1025: 020012C6:1451 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 40200 2 0000000011223344 0         ',
      ' 1026: 020012C6:14510 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 40300 2 0000000011223344 9         ',
    ].join('\n');
    // 0x1451 = 5201 (iperf3); 0x205D = 8285 (the tunnel's own socket) is not counted.
    assert.deepEqual([...udpDropsByInode(listing, 5201)], [['40112', 48213], ['40200', 0]]);
    assert.deepEqual([...udpDropsByInode(listing, 8285)], [['39977', 7]]);
    assert.equal(udpDropsByInode(listing, 9).size, 0);
    assert.equal(udpDropsByInode('', 5201).size, 0);
  });
});

describe('bench: the PNG beside the SVG chart', () => {
  it('renders the chart to a PNG of the SVG\'s size (rsvg-convert); a broken SVG is a reason, not a crash', (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rudder-png-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const svg = path.join(dir, 'latest.svg');
    const text = svgChart(fixture(), info);
    fs.writeFileSync(svg, text);
    const r = svgToPng(svg);
    assert.ok('png' in r, JSON.stringify(r));
    assert.equal(r.png, path.join(dir, 'latest.png'));
    const png = fs.readFileSync(r.png);
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
    const m = /width="(\d+)" height="(\d+)"/.exec(text);
    assert.ok(m);
    assert.deepEqual([png.readUInt32BE(16), png.readUInt32BE(20)], [Number(m[1]), Number(m[2])], 'IHDR width and height');
    assert.deepEqual(fs.readdirSync(dir).sort(), ['latest.png', 'latest.svg'], 'no temporary file left');

    const bad = path.join(dir, 'bad.svg');
    fs.writeFileSync(bad, '<svg');
    const e = svgToPng(bad);
    assert.ok('error' in e && e.error.includes(bad), JSON.stringify(e));
  });
});

describe('bench: the wireguard backend beside wireguard-go (issue 14)', () => {
  const wgFixture = (): VariantResult[] => [
    ...fixture(),
    variant('rudder-wireguard', 'rudder wireguard', 'rudder', [[4000, 14, 100_000, 10, 0.3], [4400, 15, 110_000, 10, 0.32], [4200, 14.5, 105_000, 10, 0.31]], 1420),
    variant('wireguard-go', 'wireguard-go', 'wireguard', [[500, 20, 40_000, 10, 0.4], [520, 21, 42_000, 10, 0.45], [510, 20.5, 41_000, 10, 0.42]], 1420),
  ];

  it('--only wireguard: wireguard-go and rudder wireguard, with kernel VXLAN and rudder udp for the ratios; both forward in user space', () => {
    const picked = selectVariants(defaultVariants(), ['wireguard'], GROUP_COMPANIONS).map((v) => v.id);
    assert.deepEqual(picked, ['kvxlan', 'rudder-udp', 'rudder-wireguard', 'wireguard-go']);
    assert.ok(selectVariants(defaultVariants(), ['rudder']).some((v) => v.id === 'rudder-wireguard'), 'rudder wireguard is a rudder variant too');
    assert.ok(forwardsInUserspace('rudder-wireguard') && forwardsInUserspace('rudder-wireguard-a') && forwardsInUserspace('wireguard-go'));
  });

  it('targets: TCP ≥ 8× wireguard-go, ≥ 0.4× kernel VXLAN, ≥ 0.6× rudder udp, RTT ≤ wireguard-go, CPU per Gbit/s reported', () => {
    const lines = wireguardTargetLines(wgFixture());
    const by = (what: string) => {
      const l = lines.find((x) => x.what === what);
      assert.ok(l, `${what} in ${lines.map(targetText).join('\n')}`);
      return l;
    };
    assert.ok(lines.every((l) => l.issue === '14'));
    close(by('rudder wireguard / wireguard-go TCP throughput').ratio, 4200 / 510, 'vs wireguard-go');
    // Each TCP line names the spread of its per-round ratios (4000/500 … 4400/520).
    assert.equal(by('rudder wireguard / wireguard-go TCP throughput').verdict, 'meets (8.24× ≥ 8×); per round 8.00–8.46×');
    close(by('rudder wireguard / kernel VXLAN (plaintext) TCP throughput').ratio, 4200 / 13731, 'vs kernel VXLAN');
    assert.match(by('rudder wireguard / kernel VXLAN (plaintext) TCP throughput').verdict, /^below: 0\.31× of 0\.4× needed.*; per round 0\.29–0\.32×$/);
    close(by('rudder wireguard / rudder udp TCP throughput').ratio, 4200 / 7667, 'vs rudder udp');
    assert.match(by('rudder wireguard / rudder udp TCP throughput').verdict, /; per round 0\.55–0\.55×$/);
    assert.equal(by('rudder wireguard / wireguard-go RTT (median)').verdict, 'meets (0.74× ≤ 1×)');
    const cpu = by('rudder wireguard / wireguard-go CPU per Gbit/s (TCP)');
    assert.equal(cpu.target, 'reported');
    assert.match(cpu.verdict, /^rudder wireguard [\d.]+% of a core per Gbit\/s; wireguard-go [\d,.]+% of a core per Gbit\/s/);
    // References that did not run: their lines are left out; no rudder wireguard, no lines.
    const alone = wireguardTargetLines(wgFixture().filter((r) => r.id !== 'wireguard-go' && r.id !== 'kvxlan'));
    assert.deepEqual(alone.map((l) => l.what), ['rudder wireguard / rudder udp TCP throughput', 'rudder wireguard CPU per Gbit/s (TCP)']);
    assert.deepEqual(wireguardTargetLines(fixture()), []);
    assert.match(markdownReport(wgFixture(), info, []), /## Targets of the wireguard backend \(issue 14/);
  });
});
