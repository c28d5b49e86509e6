/**
 * Every kind of bad flag and bad network config, table-driven.
 *
 * Flags: each entry runs `bin/rudder` with the bad flag (command line, or the
 * RUDDER_* environment variable) and checks exit status 2, a one-line message
 * naming the flag as spelled, the value as given (a secret never) and the
 * expected form, followed by the usage. These never get as far as etcd or the
 * network: they are rejected before anything starts.
 *
 * Configs: one `bin/rudder` daemon inside a namespaced host (real etcd in the
 * topology's etcd namespace) is fed every bad config in turn through etcd. For
 * each one it must log, in one line, the key, the value and the expected form,
 * and keep running and waiting; at the end a fixed config is published and it
 * must pick it up: lease, subnet file, ready.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createCluster, type Cluster, type Host } from '../../src/topology';
import { skipUnlessEtcd, skipUnlessRoot } from '../helpers/env';
import { waitUntil } from '../helpers/wait';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const RUDDER = path.join(ROOT, 'bin', 'rudder');
const GIVE_UP_MS = 90_000;

interface FlagCase {
  args: string[];
  env?: Record<string, string>;
  /** Every fragment must appear in the first line of stderr. */
  says: string[];
  /** Must not appear anywhere (secrets). */
  never?: string;
}

const FLAG_CASES: FlagCase[] = [
  { args: ['-port=0'], says: ['-port=', '"0"', 'expected an integer between 1 and 65535'] },
  { args: ['--port', 'abc'], says: ['--port=', '"abc"', 'expected an integer between 1 and 65535'] },
  { args: ['-port=70000'], says: ['-port=', '"70000"', 'between 1 and 65535'] },
  { args: ['-port=8285.5'], says: ['-port=', '"8285.5"', 'an integer'] },
  { args: ['-port'], says: ['-port', 'missing value', 'expected an integer'] },
  { args: ['-port', '-v=1'], says: ['-port', 'missing value', '"-v=1" is a flag', 'expected an integer'] },
  { args: [], env: { RUDDER_PORT: 'abc' }, says: ['RUDDER_PORT=', '"abc"', 'expected an integer between 1 and 65535'] },
  { args: ['-subnet-lease-ttl=10'], says: ['-subnet-lease-ttl=', '"10"', 'a duration with a unit'] },
  { args: ['-subnet-lease-ttl=500ms'], says: ['-subnet-lease-ttl=', '"500ms"', 'of at least 1s'] },
  { args: ['-subnet-lease-ttl=1.5s'], says: ['-subnet-lease-ttl=', '"1.5s"', 'a whole number of seconds'] },
  { args: ['-subnet-lease-ttl=-1h'], says: ['-subnet-lease-ttl=', '"-1h"', 'of at least 1s'] },
  { args: [], env: { RUDDER_SUBNET_LEASE_TTL: '1d' }, says: ['RUDDER_SUBNET_LEASE_TTL=', '"1d"', 'a duration with a unit'] },
  { args: ['-subnet-lease-renew-margin=-5'], says: ['-subnet-lease-renew-margin=', '"-5"', 'a positive number of minutes'] },
  { args: ['-subnet-lease-renew-margin=soon'], says: ['-subnet-lease-renew-margin=', '"soon"', 'a positive number of minutes'] },
  { args: ['-subnet-lease-renew-margin=30', '-subnet-lease-ttl=10m'], says: ['-subnet-lease-renew-margin=', '"30"', 'less than -subnet-lease-ttl (10m)'] },
  { args: ['-etcd-endpoint=localhost:2379'], says: ['-etcd-endpoint=', '"localhost:2379"', 'http://HOST:PORT or https://HOST:PORT'] },
  { args: ['-etcd-endpoints=http://127.0.0.1:2379,ftp://a:1'], says: ['-etcd-endpoints=', '"ftp://a:1"', 'http://HOST:PORT'] },
  { args: ['-etcd-endpoint=http://10.0.0.300:2379'], says: ['-etcd-endpoint=', '"http://10.0.0.300:2379"', 'http://HOST:PORT'] },
  { args: ['-etcd-endpoint=http://127.0.0.1:99999'], says: ['-etcd-endpoint=', '"http://127.0.0.1:99999"', 'http://HOST:PORT'] },
  { args: ['-etcd-endpoint='], says: ['-etcd-endpoint=', '""', 'a comma-separated list'] },
  { args: ['-etcd-prefix=coreos.com/network'], says: ['-etcd-prefix=', '"coreos.com/network"', 'starting with "/"'] },
  { args: ['-etcd-prefix=/'], says: ['-etcd-prefix=', '"/"', 'other than "/" alone'] },
  { args: ['-etcd-certfile=/tmp/c.pem'], says: ['-etcd-certfile=', '"/tmp/c.pem"', 'together with -etcd-keyfile'] },
  { args: ['-etcd-keyfile=/tmp/k.pem'], says: ['-etcd-keyfile=', '"/tmp/k.pem"', 'together with -etcd-certfile'] },
  { args: ['-etcd-cafile=/nonexistent/ca.pem', '-etcd-endpoint=https://127.0.0.1:1'], says: ['-etcd-cafile=', '/nonexistent/ca.pem', 'expected a readable PEM file'] },
  { args: ['-etcd-certfile=/nonexistent/c.pem', '-etcd-keyfile=/nonexistent/k.pem'], says: ['-etcd-keyfile=', '/nonexistent/k.pem', 'expected a readable PEM file'] },
  { args: ['-public-ip=300.1.1.1'], says: ['-public-ip=', '"300.1.1.1"', 'a unicast IPv4 address'] },
  { args: ['-public-ip=224.0.0.5'], says: ['-public-ip=', '"224.0.0.5"', 'a unicast IPv4 address'] },
  { args: ['-public-ip=0.0.0.0'], says: ['-public-ip=', '"0.0.0.0"', 'a unicast IPv4 address'] },
  { args: ['-public-ip=fe80::1'], says: ['-public-ip=', '"fe80::1"', 'a unicast IPv4 address'] },
  { args: ['-iface=an-interface-name-too-long'], says: ['-iface=', '"an-interface-name-too-long"', 'at most 15 characters'] },
  { args: ['-iface=10.0.0'], says: ['-iface=', '"10.0.0"', 'an IPv4 address or an interface name'] },
  { args: ['-iface=eth/0'], says: ['-iface=', '"eth/0"', 'an IPv4 address or an interface name'] },
  { args: ['-ip-masq=maybe'], says: ['-ip-masq=', '"maybe"', 'true or false'] },
  { args: [], env: { RUDDER_IP_MASQ: 'yes' }, says: ['RUDDER_IP_MASQ=', '"yes"', 'true or false'] },
  { args: ['-metrics-addr=9100'], says: ['-metrics-addr=', '"9100"', 'IP:PORT'] },
  { args: ['-metrics-addr=127.0.0.1:0'], says: ['-metrics-addr=', '"127.0.0.1:0"', 'PORT between 1 and 65535'] },
  { args: ['-metrics-addr=localhost:9100'], says: ['-metrics-addr=', '"localhost:9100"', 'IP:PORT'] },
  { args: ['-v=11'], says: ['-v=', '"11"', 'an integer between 0 and 10'] },
  { args: ['-v=-1'], says: ['-v=', '"-1"', 'an integer between 0 and 10'] },
  { args: ['-log-format=xml'], says: ['-log-format=', '"xml"', '"text" or "json"'] },
  { args: ['-subnet-file='], says: ['-subnet-file=', '""', 'a file path'] },
  { args: ['-no-such-flag'], says: ['unknown flag -no-such-flag'] },
  { args: ['--etcd-end=http://127.0.0.1:2379'], says: ['unknown flag --etcd-end', 'did you mean -etcd-endpoint?'] },
  { args: ['---port=1'], says: ['bad flag syntax', '"---port=1"', 'expected -name, -name=value or -name value'] },
  { args: ['-=1'], says: ['bad flag syntax', '"-=1"'] },
  // A secret is named but never echoed, not even when it is the bad part.
  { args: ['-etcd-password=hunter2-secret', '-port=0'], says: ['-port=', '"0"'], never: 'hunter2-secret' },
];

function runRudder(args: string[], env: Record<string, string> = {}): { status: number | null; stderr: string; stdout: string } {
  const clean: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('RUDDER_')) clean[k] = v;
  const r = spawnSync(RUDDER, args, { env: { ...clean, ...env }, encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr, stdout: r.stdout };
}

describe('bad flags: exit 2, the flag, the value and the expected form', () => {
  for (const c of FLAG_CASES) {
    const label = [...Object.entries(c.env ?? {}).map(([k, v]) => `${k}=${v}`), ...c.args].join(' ') || '(none)';
    it(label, () => {
      const r = runRudder(c.args, c.env);
      assert.equal(r.status, 2, `exit status for ${label}: stderr:\n${r.stderr}`);
      const lines = r.stderr.split('\n');
      const first = lines.find((l) => l.startsWith('rudder: ')) ?? '';
      for (const s of c.says) assert.ok(first.includes(s), `message names ${JSON.stringify(s)}: ${first}`);
      assert.match(r.stderr, /Usage: rudder/, 'usage follows the message');
      assert.doesNotMatch(r.stderr + r.stdout, /rudder starting/, 'refused before the daemon starts');
      if (c.never) assert.ok(!(r.stderr + r.stdout).includes(c.never), `secret echoed: ${r.stderr}`);
    });
  }
});

interface ConfigCase {
  config: string;
  /** `key=value` as the message must show it. */
  names: string;
  expected: string;
}

const CONFIG_CASES: ConfigCase[] = [
  { config: '{"Network":"10.7.0.0/16"', names: 'not valid JSON', expected: '"{\\"Network\\":\\"10.7.0.0/16\\"": expected an object like' },
  { config: '', names: 'not valid JSON', expected: '"": expected an object like' },
  { config: '[]', names: 'config=[]', expected: 'a JSON object' },
  { config: '"10.7.0.0/16"', names: 'config="10.7.0.0/16"', expected: 'a JSON object' },
  { config: '{}', names: 'Network=', expected: 'Network is mandatory' },
  { config: '{"network":"10.7.0.0/16"}', names: 'network="10.7.0.0/16"', expected: 'key names are case-sensitive' },
  { config: '{"Network":16}', names: 'Network=16', expected: 'an IPv4 CIDR string' },
  { config: '{"Network":"10.7.0.0"}', names: 'Network="10.7.0.0"', expected: 'an IPv4 CIDR such as' },
  { config: '{"Network":"10.7.0.0/33"}', names: 'Network="10.7.0.0/33"', expected: 'an IPv4 CIDR such as' },
  { config: '{"Network":"10.7.300.0/24"}', names: 'Network="10.7.300.0/24"', expected: 'an IPv4 CIDR such as' },
  { config: '{"Network":"10.7.0.1/16"}', names: 'Network="10.7.0.1/16"', expected: 'no host bits set (10.7.0.0/16)' },
  { config: '{"Network":"10.7.0.0/30"}', names: 'Network="10.7.0.0/30"', expected: 'at most /29' },
  { config: '{"Network":"10.7.0.0/16","SubnetLen":16}', names: 'SubnetLen=16', expected: 'larger than the Network prefix (16) and at most 30' },
  { config: '{"Network":"10.7.0.0/16","SubnetLen":31}', names: 'SubnetLen=31', expected: 'at most 30' },
  { config: '{"Network":"10.7.0.0/16","SubnetLen":"24"}', names: 'SubnetLen="24"', expected: 'an integer prefix length' },
  { config: '{"Network":"10.7.0.0/16","SubnetLen":24.5}', names: 'SubnetLen=24.5', expected: 'an integer prefix length' },
  { config: '{"Network":"10.7.0.0/16","SubnetMin":"10.7.5.3"}', names: 'SubnetMin="10.7.5.3"', expected: 'the network address of a /24 subnet' },
  { config: '{"Network":"10.7.0.0/16","SubnetMin":"10.8.0.0"}', names: 'SubnetMin="10.8.0.0"', expected: 'inside Network 10.7.0.0/16' },
  { config: '{"Network":"10.7.0.0/16","SubnetMax":"banana"}', names: 'SubnetMax="banana"', expected: 'an IPv4 address such as' },
  { config: '{"Network":"10.7.0.0/16","SubnetMax":42}', names: 'SubnetMax=42', expected: 'an IPv4 address string' },
  { config: '{"Network":"10.7.0.0/16","SubnetMin":"10.7.9.0","SubnetMax":"10.7.3.0"}', names: 'SubnetMin="10.7.9.0"', expected: 'not above SubnetMax (10.7.3.0)' },
  { config: '{"Network":"10.7.0.0/16","Backend":"udp"}', names: 'Backend="udp"', expected: 'an object such as {"Type":"udp"}' },
  { config: '{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan2"}}', names: 'Backend.Type="vxlan2"', expected: 'one of "udp", "vxlan", "host-gw"' },
  { config: '{"Network":"10.7.0.0/16","Backend":{"Type":"udp","Port":70000}}', names: 'Backend.Port=70000', expected: 'between 1 and 65535' },
  { config: '{"Network":"10.7.0.0/16","Backend":{"Type":"udp","Port":"8285"}}', names: 'Backend.Port="8285"', expected: 'an integer UDP port' },
  { config: '{"Network":"10.7.0.0/16","Backend":{"Type":"udp","VNI":5}}', names: 'Backend.VNI=5', expected: 'unless Backend.Type is "vxlan"' },
  { config: '{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan","VNI":-1}}', names: 'Backend.VNI=-1', expected: 'between 0 and 16777215' },
];

describe('bad network configs: a daemon in a namespaced host names key, value and expected form, keeps waiting, picks up the fix', { skip: skipUnlessRoot || skipUnlessEtcd }, () => {
  let c: Cluster;
  let h: Host;

  before(async () => {
    c = await createCluster({ hosts: 1, giveUpMs: GIVE_UP_MS, rudderArgs: ['-log-format=json'] });
    h = c.host(1);
  });
  after(async () => {
    await c?.teardown();
  });

  /** The daemon's JSON log lines of the current run. */
  const logLines = (): Array<Record<string, unknown>> => {
    const text = fs.readFileSync(h.logFile, 'utf8');
    const i = text.lastIndexOf('--- harness: starting');
    const out: Array<Record<string, unknown>> = [];
    for (const line of text.slice(Math.max(0, i)).split('\n')) {
      try {
        const o = JSON.parse(line) as unknown;
        if (o && typeof o === 'object') out.push(o as Record<string, unknown>);
      } catch {
        // the harness's own marker lines
      }
    }
    return out;
  };
  const errors = (): string[] => logLines().filter((o) => JSON.stringify(o).includes('invalid network config')).map((o) => (typeof o.error === 'string' ? o.error : JSON.stringify(o.error ?? '')));

  it(`${CONFIG_CASES.length} bad configs in turn, then a fixed one`, async (t) => {
    // The first bad config is there before the daemon starts; the rest arrive while it waits.
    await c.putConfig((CONFIG_CASES[0] as ConfigCase).config);
    await h.startRudder();
    let seen = 0;
    for (const cc of CONFIG_CASES) {
      if (cc !== CONFIG_CASES[0]) await c.putConfig(cc.config);
      const line = await waitUntil(() => {
        if (!h.rudder?.running) throw new Error(`rudder exited on ${JSON.stringify(cc.config)}:\n${h.rudderLog(3000)}`);
        const errs = errors();
        return errs.length > seen ? errs[errs.length - 1] : undefined;
      }, { giveUpMs: GIVE_UP_MS, what: `the daemon to report config ${JSON.stringify(cc.config)}` });
      seen = errors().length;
      assert.ok(line.includes(cc.names), `names ${cc.names}: ${line}`);
      assert.ok(line.includes(`expected `), `says what is expected: ${line}`);
      assert.ok(line.includes(cc.expected), `expected form ${JSON.stringify(cc.expected)}: ${line}`);
      assert.ok(!line.includes('\n'), 'one line');
      assert.ok(h.rudder?.running, `still running after ${JSON.stringify(cc.config)}`);
      assert.equal(h.readSubnetFile(), null, 'no subnet file from a bad config');
    }
    const fixed = { Network: '10.7.0.0/16', SubnetLen: 24, Backend: { Type: 'udp' } };
    await c.putConfig(fixed);
    const env = await h.waitSubnetFile();
    assert.equal(env.network, '10.7.0.0/16');
    assert.match(env.subnet, /^10\.7\.\d+\.1\/24$/);
    assert.ok(h.rudder?.running, 'running with the fixed config');
    const leases = await c.listSubnets();
    assert.equal(leases.length, 1, JSON.stringify(leases));
    t.diagnostic(`${CONFIG_CASES.length} bad configs reported while waiting; fixed config → ${env.subnet}`);
    await h.stopRudder();
    assert.deepEqual(h.rudder?.exit, { code: 0, signal: null }, h.rudderLog(2000));
  });
});
