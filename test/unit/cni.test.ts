/**
 * `rudder cni-config`: the conflist built from the subnet file (pure), the
 * write-only-on-change file update, the -watch loop on temp files, and the
 * command's flag handling. The real plugins run in test/e2e/cni.test.ts.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import {
  buildConfList,
  cniConfigText,
  conflistFileName,
  formatConfList,
  type CniConfList,
} from '../../src/cni/config';
import { cniConfigCommand, conflistPath, refreshOnce, watchSubnetFile, writeIfChanged, type CniRunOptions } from '../../src/cni/runner';
import { RudderError } from '../../src/errors';
import { parseCidr } from '../../src/ip/ipv4';
import { memoryLogger } from '../../src/log';
import { formatSubnetFile, parseSubnetFile as parseSubnetFacts, SubnetFileUnreadable } from '../../src/subnet/file';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';

/** A subnet file as the daemon writes it (formatSubnetFile, the daemon's own formatter). */
function subnetFile(network: string, lease: string, mtu = 1472, ipMasq = false): string {
  const n = parseCidr(network, true);
  const s = parseCidr(lease, true);
  assert.ok(n && s);
  return formatSubnetFile({ network: n, subnet: s, mtu, ipMasq });
}

type Bridge = { type: string; bridge: string; isGateway: boolean; ipMasq: boolean; mtu: number; hairpinMode: boolean; forceAddress: boolean; ipam: Ipam };
type Ipam = { type: string; ranges: Array<Array<{ subnet: string; gateway: string }>>; routes: Array<{ dst: string }>; dataDir?: string };

function parts(c: CniConfList): { bridge: Bridge; portmap: Record<string, unknown> } {
  assert.equal(c.plugins.length, 2);
  return { bridge: c.plugins[0] as unknown as Bridge, portmap: c.plugins[1] as Record<string, unknown> };
}

function throwsSubnetFile(fn: () => unknown, ...fragments: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof RudderError, String(e));
    assert.equal(e.code, 'E_SUBNET_FILE');
    for (const f of fragments) assert.ok(e.message.includes(f), `${JSON.stringify(e.message)} lacks ${JSON.stringify(f)}`);
    return true;
  });
}

describe('CNI conflist from the subnet file (pure)', () => {
  it('bridge plugin with host-local IPAM over the lease, gateway .1 on the bridge, MTU from RUDDER_MTU, then portmap', () => {
    const text = subnetFile('10.0.0.0/16', '10.0.5.0/24', 1472);
    assert.match(text, /RUDDER_SUBNET=10\.0\.5\.1\/24/); // what the daemon writes: the first host address
    const c = JSON.parse(cniConfigText(text, 'f')) as CniConfList;
    assert.equal(c.cniVersion, '1.0.0');
    assert.equal(c.name, 'rudder');
    const { bridge, portmap } = parts(c);
    assert.equal(bridge.type, 'bridge');
    assert.equal(bridge.bridge, 'cni0');
    assert.equal(bridge.isGateway, true);
    assert.equal(bridge.hairpinMode, true);
    assert.equal(bridge.forceAddress, true);
    assert.equal(bridge.mtu, 1472);
    assert.equal(bridge.ipam.type, 'host-local');
    assert.deepEqual(bridge.ipam.ranges, [[{ subnet: '10.0.5.0/24', gateway: '10.0.5.1' }]]);
    assert.deepEqual(bridge.ipam.routes, [{ dst: '0.0.0.0/0' }]);
    assert.equal(bridge.ipam.dataDir, undefined, 'the plugin default unless asked');
    assert.equal(portmap.type, 'portmap');
    assert.deepEqual(portmap.capabilities, { portMappings: true });
  });

  it('follows the values: another lease, length and MTU give another range, gateway and MTU', () => {
    const c = buildConfList(parseSubnetFacts(subnetFile('172.20.0.0/14', '172.22.7.192/27', 1450), 'f'));
    const { bridge } = parts(c);
    assert.deepEqual(bridge.ipam.ranges, [[{ subnet: '172.22.7.192/27', gateway: '172.22.7.193' }]]);
    assert.equal(bridge.mtu, 1450);
  });

  it('the first subnet of the Network (network address = the Network\'s) works like any other', () => {
    const { bridge } = parts(buildConfList(parseSubnetFacts(subnetFile('10.0.0.0/16', '10.0.0.0/24'), 'f')));
    assert.deepEqual(bridge.ipam.ranges, [[{ subnet: '10.0.0.0/24', gateway: '10.0.0.1' }]]);
  });

  it('ipMasq of the bridge plugin is off whether or not Rudder masquerades (its rule would also rewrite pod-to-pod traffic to other hosts)', () => {
    for (const masq of [false, true]) {
      const { bridge } = parts(JSON.parse(cniConfigText(subnetFile('10.0.0.0/16', '10.0.5.0/24', 1472, masq), 'f')) as CniConfList);
      assert.equal(bridge.ipMasq, false, `RUDDER_IPMASQ=${masq}`);
    }
  });

  it('options: name, bridge, host-local dataDir, routes only to the Network', () => {
    const c = buildConfList(parseSubnetFacts(subnetFile('10.0.0.0/16', '10.0.5.0/24'), 'f'), {
      name: 'k8s-pods',
      bridge: 'rudder-br0',
      ipamDataDir: '/tmp/x',
      defaultRoute: false,
    });
    const { bridge } = parts(c);
    assert.equal(c.name, 'k8s-pods');
    assert.equal(bridge.bridge, 'rudder-br0');
    assert.equal(bridge.ipam.dataDir, '/tmp/x');
    assert.deepEqual(bridge.ipam.routes, [{ dst: '10.0.0.0/16' }]);
    assert.equal(conflistFileName('k8s-pods'), '10-k8s-pods.conflist');
    assert.equal(conflistFileName(), '10-rudder.conflist');
    assert.throws(() => buildConfList(parseSubnetFacts(subnetFile('10.0.0.0/16', '10.0.5.0/24'), 'f'), { bridge: 'a-very-long-bridge' }), /bridge/);
    assert.throws(() => buildConfList(parseSubnetFacts(subnetFile('10.0.0.0/16', '10.0.5.0/24'), 'f'), { name: '../x' }), /network name/);
  });

  it('the text is stable for equal input and differs when the lease does', () => {
    const a = cniConfigText(subnetFile('10.0.0.0/16', '10.0.5.0/24'), 'f');
    assert.equal(cniConfigText(subnetFile('10.0.0.0/16', '10.0.5.0/24'), 'g'), a);
    assert.notEqual(cniConfigText(subnetFile('10.0.0.0/16', '10.0.6.0/24'), 'f'), a);
    assert.ok(a.endsWith('}\n'));
    assert.equal(formatConfList(JSON.parse(a) as CniConfList), a);
  });

  it('reads a hand-written file with quotes and comments', () => {
    const f = parseSubnetFacts('# rudder\nRUDDER_NETWORK="10.1.0.0/16"\nRUDDER_SUBNET=10.1.3.1/24\nRUDDER_MTU=1400\n', 'f');
    assert.equal(f.subnet.prefix, 24);
    assert.equal(f.mtu, 1400);
    assert.equal(f.ipMasq, false, 'RUDDER_IPMASQ absent means false');
  });

  it('rejects a missing or wrong value, naming the file, key, value and the expected form', () => {
    const ok = { RUDDER_NETWORK: '10.0.0.0/16', RUDDER_SUBNET: '10.0.5.1/24', RUDDER_MTU: '1472', RUDDER_IPMASQ: 'false' };
    const text = (over: Record<string, string | null>): string =>
      Object.entries({ ...ok, ...over })
        .filter(([, v]) => v !== null)
        .map(([k, v]) => `${k}=${v}`)
        .join('\n');
    throwsSubnetFile(() => parseSubnetFacts(text({ RUDDER_SUBNET: null }), '/run/x.env'), '/run/x.env', 'RUDDER_SUBNET missing');
    throwsSubnetFile(() => parseSubnetFacts(text({ RUDDER_NETWORK: null }), 'f'), 'RUDDER_NETWORK missing');
    throwsSubnetFile(() => parseSubnetFacts(text({ RUDDER_MTU: null }), 'f'), 'RUDDER_MTU missing');
    throwsSubnetFile(() => parseSubnetFacts(text({ RUDDER_NETWORK: '10.0.0.1/16' }), 'f'), 'RUDDER_NETWORK=10.0.0.1/16', 'expected');
    throwsSubnetFile(() => parseSubnetFacts(text({ RUDDER_SUBNET: '10.9.5.1/24' }), 'f'), 'RUDDER_SUBNET=10.9.5.1/24', 'inside RUDDER_NETWORK');
    throwsSubnetFile(() => parseSubnetFacts(text({ RUDDER_SUBNET: '10.0.5.1/16' }), 'f'), 'RUDDER_SUBNET=10.0.5.1/16', 'longer than');
    throwsSubnetFile(() => parseSubnetFacts(text({ RUDDER_SUBNET: '10.0.5.1/31' }), 'f'), 'RUDDER_SUBNET=10.0.5.1/31');
    throwsSubnetFile(() => parseSubnetFacts(text({ RUDDER_SUBNET: 'x' }), 'f'), 'RUDDER_SUBNET=x');
    throwsSubnetFile(() => parseSubnetFacts(text({ RUDDER_MTU: '67' }), 'f'), 'RUDDER_MTU=67', 'between 68 and 65535');
    throwsSubnetFile(() => parseSubnetFacts(text({ RUDDER_MTU: '1e3' }), 'f'), 'RUDDER_MTU=1e3');
    throwsSubnetFile(() => parseSubnetFacts(text({ RUDDER_IPMASQ: 'yes' }), 'f'), 'RUDDER_IPMASQ=yes', 'true or false');
    throwsSubnetFile(() => parseSubnetFacts('', 'f'), 'missing');
  });
});

describe('cni-config file handling', () => {
  it('writeIfChanged writes a new file, leaves an equal one alone (same inode), replaces a different one by rename, leaves no temp file', async (t) => {
    const dir = tempDir(t, 'rudder-cni-unit-');
    const file = path.join(dir, 'sub', '10-rudder.conflist');
    assert.equal(await writeIfChanged(file, 'a\n'), true);
    assert.equal(fs.readFileSync(file, 'utf8'), 'a\n');
    const st1 = fs.statSync(file);
    assert.equal(await writeIfChanged(file, 'a\n'), false);
    const st2 = fs.statSync(file);
    assert.equal(st2.ino, st1.ino);
    assert.equal(st2.mtimeMs, st1.mtimeMs);
    assert.equal(await writeIfChanged(file, 'b\n'), true);
    assert.equal(fs.readFileSync(file, 'utf8'), 'b\n');
    assert.notEqual(fs.statSync(file).ino, st1.ino, 'replaced by rename, not rewritten in place');
    assert.equal((fs.statSync(file).mode & 0o777).toString(8), '644');
    assert.deepEqual(fs.readdirSync(path.dirname(file)), ['10-rudder.conflist']);
  });

  it('refreshOnce: a missing subnet file is an E_SUBNET_FILE error saying so; an existing one gives the conflist', async (t) => {
    const dir = tempDir(t, 'rudder-cni-unit-');
    const o: CniRunOptions = { subnetFile: path.join(dir, 'subnet.env'), outDir: path.join(dir, 'net.d'), checkIntervalMs: 1000 };
    await assert.rejects(refreshOnce(o), (e: unknown) => e instanceof SubnetFileUnreadable && e.errno === 'ENOENT' && /is rudder running/.test(e.message));
    assert.equal(fs.existsSync(o.outDir), false, 'nothing written');
    fs.writeFileSync(o.subnetFile, subnetFile('10.0.0.0/16', '10.0.5.0/24'));
    const r = await refreshOnce(o);
    assert.deepEqual(r, { wrote: true, file: path.join(o.outDir, '10-rudder.conflist'), subnet: '10.0.5.0/24' });
    assert.equal(fs.readFileSync(r.file, 'utf8'), cniConfigText(fs.readFileSync(o.subnetFile, 'utf8'), o.subnetFile));
    assert.equal((await refreshOnce(o)).wrote, false);
  });

  it('watch: waits for the subnet file (directory not there yet), follows each new lease, keeps the last good conflist on a bad file, stops on abort', async (t) => {
    const dir = tempDir(t, 'rudder-cni-unit-');
    const o: CniRunOptions = { subnetFile: path.join(dir, 'run', 'subnet.env'), outDir: path.join(dir, 'net.d'), checkIntervalMs: 200 };
    const out = conflistPath(o);
    const log = memoryLogger(1);
    const ac = new AbortController();
    const done = watchSubnetFile(o, ac.signal, log);
    let ended = false;
    void done.finally(() => {
      ended = true;
    });
    const subnetOf = (): string | undefined => {
      try {
        return (JSON.parse(fs.readFileSync(out, 'utf8')) as { plugins: Bridge[] }).plugins[0]?.ipam.ranges[0]?.[0]?.subnet;
      } catch {
        return undefined;
      }
    };
    /** The daemon's way: temp file + rename. */
    const publish = (text: string): void => {
      fs.mkdirSync(path.dirname(o.subnetFile), { recursive: true });
      const tmp = `${o.subnetFile}.tmp`;
      fs.writeFileSync(tmp, text);
      fs.renameSync(tmp, o.subnetFile);
    };
    try {
      await waitUntil(() => log.lines.some((l) => l.includes('waiting for the subnet file')), { giveUpMs: 30_000, what: 'the waiting message' });
      assert.equal(fs.existsSync(out), false);
      publish(subnetFile('10.0.0.0/16', '10.0.5.0/24'));
      await waitUntil(() => subnetOf() === '10.0.5.0/24', { giveUpMs: 30_000, what: 'conflist for 10.0.5.0/24' });
      publish(subnetFile('10.0.0.0/16', '10.0.77.0/24'));
      await waitUntil(() => subnetOf() === '10.0.77.0/24', { giveUpMs: 30_000, what: 'conflist for 10.0.77.0/24' });
      const good = fs.readFileSync(out, 'utf8');
      publish('RUDDER_NETWORK=10.0.0.0/16\n');
      await waitUntil(() => log.lines.some((l) => l.includes('keeping the one written before') && l.includes('RUDDER_SUBNET missing')), {
        giveUpMs: 30_000,
        what: 'the error about the bad file',
      });
      assert.equal(fs.readFileSync(out, 'utf8'), good, 'last good conflist kept');
      publish(subnetFile('10.0.0.0/16', '10.0.78.0/24'));
      await waitUntil(() => subnetOf() === '10.0.78.0/24', { giveUpMs: 30_000, what: 'conflist for 10.0.78.0/24' });
      assert.equal(ended, false, 'still watching');
    } finally {
      ac.abort();
      await done;
    }
    assert.equal(ended, true);
    const writes = log.lines.filter((l) => l.includes('wrote CNI config'));
    assert.deepEqual(
      writes.map((l) => /subnet=(\S+)/.exec(l)?.[1]),
      ['10.0.5.0/24', '10.0.77.0/24', '10.0.78.0/24'],
      'one write per change, none for the periodic checks of an unchanged file',
    );
  });

  it('the command: flag errors exit 2 with usage, -help 0, a missing subnet file is an error, a good one writes the file', async (t) => {
    const dir = tempDir(t, 'rudder-cni-unit-');
    const outs: string[] = [];
    const errs: string[] = [];
    const io = { out: (s: string) => outs.push(s), err: (s: string) => errs.push(s) };
    assert.equal(await cniConfigCommand(['--bogus'], '/nonexistent', io), 2);
    assert.match(errs.join('\n'), /unknown flag --bogus[\s\S]*Usage: rudder cni-config/);
    errs.length = 0;
    assert.equal(await cniConfigCommand(['-bridge=has space'], '/nonexistent', io), 2);
    assert.match(errs[0] ?? '', /-bridge="has space": expected an interface name/);
    assert.equal(await cniConfigCommand(['extra'], '/nonexistent', io), 2);
    assert.equal(await cniConfigCommand(['-help'], '/nonexistent', io), 0);
    assert.match(outs.join('\n'), /-watch/);
    await assert.rejects(cniConfigCommand(['-out', path.join(dir, 'o')], path.join(dir, 'none.env'), io), /cannot read/);
    const sf = path.join(dir, 's.env');
    fs.writeFileSync(sf, subnetFile('10.0.0.0/16', '10.0.9.0/24', 1400));
    errs.length = 0;
    // -subnet-file wins over the daemon's default given to the command.
    assert.equal(await cniConfigCommand(['--out', path.join(dir, 'o'), `-subnet-file=${sf}`, '-ipam-data-dir', path.join(dir, 'ipam')], '/nonexistent', io), 0);
    const c = JSON.parse(fs.readFileSync(path.join(dir, 'o', '10-rudder.conflist'), 'utf8')) as CniConfList;
    const { bridge } = parts(c);
    assert.deepEqual(bridge.ipam.ranges, [[{ subnet: '10.0.9.0/24', gateway: '10.0.9.1' }]]);
    assert.equal(bridge.ipam.dataDir, path.join(dir, 'ipam'));
    assert.equal(bridge.mtu, 1400);
    assert.match(errs.join('\n'), /wrote .*10-rudder\.conflist \(subnet 10\.0\.9\.0\/24\)/);
    errs.length = 0;
    assert.equal(await cniConfigCommand(['-out', path.join(dir, 'o'), '-ipam-data-dir', path.join(dir, 'ipam')], sf, io), 0, 'the default subnet file is used');
    assert.match(errs.join('\n'), /is up to date/);
  });
});
