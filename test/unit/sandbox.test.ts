/**
 * `rudder sandbox`, the pure parts: its flags (--ipv6, --ipv6-only and
 * --ipv6-network parsed, checked and turned into the config it publishes)
 * and what it shows (the hosts table and the reachability matrix, a column
 * per family with IPv6; unchanged without).
 */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { parseConfig } from '../../src/config';
import { isRudderError } from '../../src/errors';
import { formatCidr6 } from '../../src/ip/ipv6';
import { DEFAULT_SANDBOX_IPV6_NETWORK, sandboxConfig, sandboxFamilies, sandboxFlags, sandboxUsage } from '../../src/sandbox/flags';
import { failingPairs, hostsTable, matrixTable, pairCount, renderSnapshot, type HostStatus, type Snapshot } from '../../src/sandbox/table';

function flagError(argv: string[], re: RegExp): void {
  assert.throws(() => sandboxFlags(argv), (e: unknown) => isRudderError(e, 'E_FLAG') && re.test(e.message), argv.join(' '));
}

describe('sandbox flags: --ipv6 and --ipv6-only', () => {
  it('IPv4 only by default: the config is what it always was', () => {
    const f = sandboxFlags([]);
    assert.equal(f.ipv6, false);
    assert.equal(f.ipv6Only, false);
    assert.deepEqual(sandboxConfig(f), { Network: '10.0.0.0/16', Backend: { Type: 'udp' } });
    assert.deepEqual(sandboxFamilies(f), ['ipv4']);
  });

  it('--ipv6 is dual-stack: EnableIPv6 with the IPv6 network beside Network', () => {
    for (const argv of [['--ipv6'], ['-ipv6'], ['--ipv6=true', '--backend', 'host-gw']]) {
      const f = sandboxFlags(argv);
      assert.equal(f.ipv6, true, argv.join(' '));
      assert.deepEqual(sandboxFamilies(f), ['ipv4', 'ipv6']);
      const c = sandboxConfig(f);
      assert.equal(c.Network, '10.0.0.0/16');
      assert.equal(c.EnableIPv6, true);
      assert.equal(c.IPv6Network, DEFAULT_SANDBOX_IPV6_NETWORK);
      const parsed = parseConfig(JSON.stringify(c));
      assert.equal(parsed.ipv6 && formatCidr6(parsed.ipv6.network), 'fd10::/48');
    }
    const g = sandboxFlags(['--ipv6', '--ipv6-network', 'fd42:1::/56', '--network', '10.9.0.0/16']);
    assert.deepEqual(sandboxConfig(g), { Network: '10.9.0.0/16', EnableIPv6: true, IPv6Network: 'fd42:1::/56', Backend: { Type: 'udp' } });
  });

  it('--ipv6-only: EnableIPv4 false, no Network', () => {
    const f = sandboxFlags(['--ipv6-only', '--backend=vxlan', '--ipv6-network=fd00:7::/48']);
    assert.deepEqual(sandboxFamilies(f), ['ipv6']);
    const c = sandboxConfig(f);
    assert.deepEqual(c, { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00:7::/48', Backend: { Type: 'vxlan' } });
    const parsed = parseConfig(JSON.stringify(c));
    assert.equal(parsed.enableIPv4, false);
  });

  it('bad combinations and values name the flag', () => {
    flagError(['--ipv6', '--ipv6-only'], /^--ipv6 and --ipv6-only: expected one of them/);
    flagError(['--ipv6-only', '--network', '10.1.0.0/16'], /^--network="10\.1\.0\.0\/16" with --ipv6-only: an IPv6-only network has no IPv4 overlay; expected --ipv6-network instead/);
    flagError(['--ipv6-network', 'fd00::/48'], /^--ipv6-network="fd00::\/48": expected --ipv6 \(dual-stack\) or --ipv6-only with it/);
    flagError(['--ipv6', '--ipv6-network', '10.0.0.0/16'], /^--ipv6-network="10\.0\.0\.0\/16": .*IPv6Network/);
    flagError(['--ipv6', '--ipv6-network', 'fd00::1/48'], /^--ipv6-network="fd00::1\/48": .*no host bits set/);
    flagError(['--ipv6-only', '--ipv6-network', '2001:2::/48'], /outside 2001:2::\/64, which the sandbox's IPv6 underlay uses/);
    flagError(['--ipv6', '--hosts', '5', '--ipv6-network', 'fd00::/62'], /^--ipv6-network="fd00::\/62": has room for 4 \/64 subnet\(s\), not 5 hosts/);
    // The IPv4 rules still apply in dual-stack.
    flagError(['--ipv6', '--network', '198.18.0.0/16'], /^--network="198\.18\.0\.0\/16": expected a network outside 198\.18\.0\.0\/15/);
  });

  it('the usage names the flags', () => {
    const u = sandboxUsage();
    assert.match(u, /\[--ipv6 \| --ipv6-only\]/);
    assert.match(u, /--ipv6-only\b/);
    assert.match(u, /-ipv6-network STRING\n.*fd10::\/48/);
  });
});

const daemon = { running: true, pid: 100, exit: null };
function host(i: number, v6: boolean, v4 = true): HostStatus {
  return {
    name: `h${i}`,
    underlayIp: `198.18.0.${i}`,
    publicIp: `198.18.0.${i}`,
    subnet: v4 ? `10.0.${i}.0/24` : null,
    backend: 'host-gw',
    daemon: { ...daemon, pid: 100 + i },
    podNs: `rsbx-p${i}`,
    podIp: v4 ? `10.0.${i}.2` : null,
    ...(v6 ? { publicIpv6: `2001:2::${i}`, ipv6Subnet: `fd10:0:0:${i}::/64`, podIpv6: `fd10:0:0:${i}::2` } : {}),
  };
}

describe('sandbox table', () => {
  it('IPv4 only: the columns and matrix as always', () => {
    const s: Snapshot = { hosts: [host(1, false), host(2, false)], matrix: [[null, 0.5], [0.25, null]], etcdError: null };
    assert.match(hostsTable(s)[0] ?? '', /^HOST\s+PUBLIC IP\s+SUBNET\s+BACKEND\s+DAEMON\s+POD\s+POD IP$/);
    assert.deepEqual(matrixTable(s).map((l) => l.split(/\s{2,}/)), [['from \\ to', 'h1', 'h2'], ['h1', '-', '0.50'], ['h2', '0.25', '-']]);
    assert.equal(pairCount(s), 2);
    assert.ok(renderSnapshot(s).includes('reachable: 2/2 pod pairs'));
  });

  it('dual-stack: a column per family in the hosts table and per destination and family in the matrix', () => {
    const s: Snapshot = {
      hosts: [host(1, true), host(2, true)],
      families: ['ipv4', 'ipv6'],
      matrix: [[null, 0.5], [0.25, null]],
      matrix6: [[null, 0.75], [null, null]],
      etcdError: null,
    };
    const t = hostsTable(s);
    assert.deepEqual(t[0]?.split(/\s{2,}/), ['HOST', 'PUBLIC IP', 'PUBLIC IPV6', 'SUBNET', 'IPV6 SUBNET', 'BACKEND', 'DAEMON', 'POD', 'POD IP', 'POD IPV6']);
    assert.deepEqual(t[2]?.split(/\s{2,}/), ['h2', '198.18.0.2', '2001:2::2', '10.0.2.0/24', 'fd10:0:0:2::/64', 'host-gw', 'running (pid 102)', 'rsbx-p2', '10.0.2.2', 'fd10:0:0:2::2']);
    assert.deepEqual(matrixTable(s).map((l) => l.split(/\s{2,}/)), [
      ['from \\ to', 'h1 v4', 'h1 v6', 'h2 v4', 'h2 v6'],
      ['h1', '-', '-', '0.50', '0.75'],
      ['h2', '0.25', '✗', '-', '-'],
    ]);
    assert.equal(pairCount(s), 4);
    assert.deepEqual(failingPairs(s).map((p) => `${p.from.name}→${p.to.name} ${p.family}`), ['h2→h1 ipv6']);
    const r = renderSnapshot(s);
    assert.ok(r.includes('reachable: 3/4 pod pairs and families (IPv4 2/2, IPv6 1/2)'), r.join('\n'));
    assert.ok(r.some((l) => l.includes('a column per destination and family')));
  });

  it('IPv6-only: only the IPv6 columns; the matrix is the IPv6 one', () => {
    const s: Snapshot = { hosts: [host(1, true, false), host(2, true, false)], families: ['ipv6'], matrix: [], matrix6: [[null, 1.5], [2, null]], etcdError: null };
    assert.deepEqual(hostsTable(s)[0]?.split(/\s{2,}/), ['HOST', 'PUBLIC IP', 'PUBLIC IPV6', 'IPV6 SUBNET', 'BACKEND', 'DAEMON', 'POD', 'POD IPV6']);
    assert.deepEqual(matrixTable(s)[0]?.split(/\s{2,}/), ['from \\ to', 'h1', 'h2']);
    assert.deepEqual(matrixTable(s)[1]?.split(/\s{2,}/), ['h1', '-', '1.50']);
    assert.equal(failingPairs(s).length, 0);
    const r = renderSnapshot(s);
    assert.ok(r.includes('reachable: 2/2 pod pairs'));
    assert.ok(r.some((l) => l.includes('over IPv6')));
  });
});
