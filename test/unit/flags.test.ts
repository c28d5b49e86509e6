import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DAEMON_FLAGS, daemonFlags } from '../../src/cli/flags';
import { COMMANDS, CommandFlagError, commandFlags, daemonUsage, splitCommandLine, type CommandSpec } from '../../src/cli/commandline';
import { FlagSpec, formatUsage, lexFlags, parseDuration, parseFlags } from '../../src/util/flags';
import { RudderError } from '../../src/errors';

const NOENV: Readonly<Record<string, string | undefined>> = {};

/** Asserts an E_FLAG error whose message contains every fragment. */
function throwsFlag(fn: () => unknown, ...fragments: string[]): string {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof RudderError, `expected a RudderError, got ${String(caught)}`);
  assert.equal(caught.code, 'E_FLAG');
  assert.ok(!caught.message.includes('\n'), `message must be one line: ${caught.message}`);
  for (const f of fragments) {
    assert.ok(caught.message.includes(f), `message ${JSON.stringify(caught.message)} lacks ${JSON.stringify(f)}`);
  }
  return caught.message;
}

const d = (argv: string[], env: Record<string, string | undefined> = {}) => daemonFlags(argv, env);

describe('parseDuration', () => {
  it('reads Go-style durations in milliseconds', () => {
    assert.equal(parseDuration('24h'), 86_400_000);
    assert.equal(parseDuration('1h30m'), 5_400_000);
    assert.equal(parseDuration('90s'), 90_000);
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('2m'), 120_000);
    assert.equal(parseDuration('1.5s'), 1500);
    assert.equal(parseDuration('1.1s'), 1100);
    assert.equal(parseDuration('.5h'), 1_800_000);
    assert.equal(parseDuration('1h1m1s1ms'), 3_661_001);
    assert.equal(parseDuration('1500us'), 1.5);
    assert.equal(parseDuration('1000000ns'), 1);
    assert.equal(parseDuration('0s'), 0);
    assert.equal(parseDuration('-2m'), -120_000);
    assert.equal(parseDuration('+3s'), 3000);
  });
  it('rejects bare numbers and malformed text', () => {
    for (const s of ['', '0', '60', '1.5', 'h', 's1', '1x', '1h30', '1 h', ' 1h', '1h ', '-', '.s', '1e3s', '1hh', '24H']) {
      assert.equal(parseDuration(s), null, s);
    }
  });
});

describe('parseFlags (generic)', () => {
  const specs: FlagSpec[] = [
    { name: 'name', kind: 'string', default: 'dflt', help: 'a string' },
    { name: 'count', aliases: ['n'], kind: 'int', min: 0, max: 9, help: 'an int' },
    { name: 'on', kind: 'bool', help: 'a bool' },
    { name: 'wait', kind: 'duration', default: '1s', help: 'a duration' },
    { name: 'items', kind: 'list', help: 'a list' },
    { name: 'local', kind: 'string', env: false, help: 'no env' },
    { name: 'token', kind: 'int', secret: true, help: 'secret' },
  ];

  it('accepts -x=v, --x=v, -x v and --x v alike', () => {
    for (const argv of [['-count=3'], ['--count=3'], ['-count', '3'], ['--count', '3'], ['-n', '3'], ['--n=3']]) {
      const p = parseFlags(specs, argv, NOENV);
      assert.equal(p.values.get('count'), 3, argv.join(' '));
      assert.ok(p.given.has('count'));
      assert.deepEqual(p.rest, []);
    }
  });
  it('fills defaults and leaves unset flags undefined (bool: false)', () => {
    const p = parseFlags(specs, [], NOENV);
    assert.equal(p.values.get('name'), 'dflt');
    assert.equal(p.values.get('wait'), 1000);
    assert.equal(p.values.get('count'), undefined);
    assert.equal(p.values.get('items'), undefined);
    assert.equal(p.values.get('on'), false);
    assert.equal(p.given.size, 0);
    assert.deepEqual([...p.values.keys()].sort(), specs.map((s) => s.name).sort());
  });
  it('reads booleans bare or with an explicit value', () => {
    assert.equal(parseFlags(specs, ['-on'], NOENV).values.get('on'), true);
    assert.equal(parseFlags(specs, ['--on'], NOENV).values.get('on'), true);
    for (const [v, want] of [['true', true], ['1', true], ['false', false], ['0', false], ['T', true], ['F', false]] as const) {
      assert.equal(parseFlags(specs, [`-on=${v}`], NOENV).values.get('on'), want, v);
    }
    // Go semantics: a bare bool does not eat the next argument.
    const p = parseFlags(specs, ['-on', 'false'], NOENV);
    assert.equal(p.values.get('on'), true);
    assert.deepEqual(p.rest, ['false']);
  });
  it('parses lists, trimming items, and accumulates repeats on the command line', () => {
    assert.deepEqual(parseFlags(specs, ['-items=a, b,,c'], NOENV).values.get('items'), ['a', 'b', 'c']);
    assert.deepEqual(parseFlags(specs, ['-items=a', '--items', 'b,c'], NOENV).values.get('items'), ['a', 'b', 'c']);
    // The command line replaces (not extends) the environment's list.
    assert.deepEqual(parseFlags(specs, ['-items=x'], { RUDDER_ITEMS: 'a,b' }).values.get('items'), ['x']);
  });
  it('lets the last of repeated scalar flags win', () => {
    assert.equal(parseFlags(specs, ['-count=1', '-n', '2'], NOENV).values.get('count'), 2);
  });
  it('keeps "=" inside values and allows an explicitly empty string', () => {
    assert.equal(parseFlags(specs, ['-name=a=b'], NOENV).values.get('name'), 'a=b');
    assert.equal(parseFlags(specs, ['-name='], NOENV).values.get('name'), '');
    assert.equal(parseFlags(specs, ['-name=-x'], NOENV).values.get('name'), '-x');
    // A value that looks like a flag but is not a known one is taken as a value.
    assert.equal(parseFlags(specs, ['-name', '-x'], NOENV).values.get('name'), '-x');
  });
  it('stops at the first non-flag argument, at "--", and at a lone "-"', () => {
    let p = parseFlags(specs, ['-on', 'config', 'set', '--if-absent', '-count=3'], NOENV);
    assert.deepEqual(p.rest, ['config', 'set', '--if-absent', '-count=3']);
    assert.equal(p.values.get('count'), undefined);
    p = parseFlags(specs, ['-count=3', '--', '-on', 'x'], NOENV);
    assert.deepEqual(p.rest, ['-on', 'x']);
    assert.equal(p.values.get('on'), false);
    p = parseFlags(specs, ['-', '-on'], NOENV);
    assert.deepEqual(p.rest, ['-', '-on']);
    p = parseFlags(specs, ['--'], NOENV);
    assert.deepEqual(p.rest, []);
  });
  it('falls back to RUDDER_<NAME>, the command line winning', () => {
    const env = { RUDDER_COUNT: '4', RUDDER_NAME: 'fromenv', RUDDER_ON: 'true', RUDDER_WAIT: '2m', RUDDER_LOCAL: 'ignored' };
    let p = parseFlags(specs, [], env);
    assert.equal(p.values.get('count'), 4);
    assert.equal(p.values.get('name'), 'fromenv');
    assert.equal(p.values.get('on'), true);
    assert.equal(p.values.get('wait'), 120_000);
    assert.equal(p.values.get('local'), undefined, 'env: false must ignore the environment');
    assert.ok(p.given.has('count') && p.given.has('name') && !p.given.has('local'));
    p = parseFlags(specs, ['-count=5', '-on=false'], env);
    assert.equal(p.values.get('count'), 5);
    assert.equal(p.values.get('on'), false);
    // Empty means unset (a blank line in an env file must not override the default).
    p = parseFlags(specs, [], { RUDDER_NAME: '' });
    assert.equal(p.values.get('name'), 'dflt');
    assert.ok(!p.given.has('name'));
  });
  it('reads an alias\'s variable too, the canonical one first', () => {
    assert.equal(parseFlags(specs, [], { RUDDER_N: '7' }).values.get('count'), 7);
    assert.equal(parseFlags(specs, [], { RUDDER_N: '7', RUDDER_COUNT: '8' }).values.get('count'), 8);
  });

  it('rejects an unknown flag, suggesting the closest known one', () => {
    throwsFlag(() => parseFlags(specs, ['-cuont=1'], NOENV), 'unknown flag -cuont', 'did you mean -count?');
    throwsFlag(() => parseFlags(specs, ['--iten', 'x'], NOENV), 'unknown flag --iten', 'did you mean -items?');
  });
  it('rejects values of the wrong kind, naming flag, value and expected form', () => {
    throwsFlag(() => parseFlags(specs, ['-count=abc'], NOENV), '-count="abc"', 'expected an integer between 0 and 9');
    throwsFlag(() => parseFlags(specs, ['--n', '10'], NOENV), '--n="10"', 'between 0 and 9');
    throwsFlag(() => parseFlags(specs, ['-count=-1'], NOENV), '"-1"', 'between 0 and 9');
    throwsFlag(() => parseFlags(specs, ['-count=1.5'], NOENV), '"1.5"', 'an integer');
    throwsFlag(() => parseFlags(specs, ['-count=0x5'], NOENV), '"0x5"', 'an integer');
    throwsFlag(() => parseFlags(specs, ['-on=yes'], NOENV), '-on="yes"', 'expected true or false');
    throwsFlag(() => parseFlags(specs, ['-wait=10'], NOENV), '-wait="10"', 'expected a duration', '"90s"');
    throwsFlag(() => parseFlags(specs, ['-items=,'], NOENV), '-items=","', 'comma-separated list');
  });
  it('names the environment variable when its value is bad', () => {
    throwsFlag(() => parseFlags(specs, [], { RUDDER_COUNT: 'many' }), 'RUDDER_COUNT="many"', 'expected an integer');
    throwsFlag(() => parseFlags(specs, [], { RUDDER_ON: 'maybe' }), 'RUDDER_ON="maybe"', 'true or false');
  });
  it('does not echo secret values', () => {
    const msg = throwsFlag(() => parseFlags(specs, ['-token=hunter2'], NOENV), '-token=', 'expected an integer');
    assert.ok(!msg.includes('hunter2'), msg);
  });
  it('rejects a missing value', () => {
    throwsFlag(() => parseFlags(specs, ['-count'], NOENV), '-count', 'missing value', 'expected an integer');
    throwsFlag(() => parseFlags(specs, ['--name'], NOENV), '--name', 'missing value');
    // A known flag where the value should be: a forgotten value.
    throwsFlag(() => parseFlags(specs, ['-name', '-on'], NOENV), '-name', 'missing value', '"-on"', '-name=VALUE');
  });
  it('rejects malformed flag syntax', () => {
    throwsFlag(() => parseFlags(specs, ['---count=1'], NOENV), 'bad flag syntax', '---count=1');
    throwsFlag(() => parseFlags(specs, ['-=1'], NOENV), 'bad flag syntax');
  });
  it('rejects a table that defines a name twice', () => {
    assert.throws(
      () => parseFlags([{ name: 'a', kind: 'int', help: '' }, { name: 'b', aliases: ['a'], kind: 'int', help: '' }], [], NOENV),
      (e: unknown) => e instanceof RudderError && e.code === 'E_INTERNAL' && e.message.includes('-a'),
    );
  });

  it('formats usage with names, aliases, defaults and variables', () => {
    const u = formatUsage('Usage: t', specs);
    assert.ok(u.startsWith('Usage: t\n'));
    assert.match(u, /-count, -n INT\n\s+an int \(env RUDDER_COUNT\)/);
    assert.match(u, /-name STRING\n\s+a string \(default "dflt"; env RUDDER_NAME\)/);
    assert.match(u, /-local STRING\n\s+no env\n/);
    assert.match(u, /-on\n/);
  });
});

describe('daemonFlags', () => {
  it('has the documented defaults', () => {
    const { flags, rest } = d([]);
    assert.deepEqual(flags, {
      etcdEndpoints: ['http://127.0.0.1:4001', 'http://127.0.0.1:2379'],
      etcdPrefix: '/coreos.com/network',
      etcdCafile: undefined,
      etcdCertfile: undefined,
      etcdKeyfile: undefined,
      etcdUsername: undefined,
      etcdPassword: undefined,
      iface: undefined,
      publicIp: undefined,
      port: undefined,
      subnetFile: '/run/rudder/subnet.env',
      wireguardKeyFile: '/var/lib/rudder/wireguard.key',
      flannelSubnetFile: '/run/flannel/subnet.env',
      subnetLeaseRenewMarginMs: 60 * 60_000,
      subnetLeaseTtlMs: 24 * 3_600_000,
      ipMasq: false,
      metricsAddr: undefined,
      kubeSubnetMgr: false,
      kubeconfigFile: undefined,
      kubeApiUrl: undefined,
      kubeAnnotationPrefix: 'rudder.io',
      netConfigPath: '/etc/rudder/net-conf.json',
      v: 0,
      logJson: false,
      version: false,
      help: false,
    });
    assert.deepEqual(rest, []);
  });
  it('takes the Kubernetes mode flags, from the environment too, and checks them', () => {
    const { flags } = d(['--kube-subnet-mgr', '-kubeconfig-file', '/k', '-kube-annotation-prefix=flannel.alpha.coreos.com'], { RUDDER_NET_CONFIG_PATH: '/n.json', RUDDER_KUBE_API_URL: 'https://10.0.0.1:6443' });
    assert.equal(flags.kubeSubnetMgr, true);
    assert.equal(flags.kubeconfigFile, '/k');
    assert.equal(flags.kubeAnnotationPrefix, 'flannel.alpha.coreos.com');
    assert.equal(flags.netConfigPath, '/n.json');
    assert.equal(flags.kubeApiUrl, 'https://10.0.0.1:6443');
    assert.throws(() => d(['-kube-api-url=10.0.0.1']), /-kube-api-url="10.0.0.1": expected http\(s\):\/\/HOST:PORT/);
    assert.throws(() => d(['-kube-annotation-prefix=Bad/Prefix']), /expected a DNS subdomain/);
  });
  it('shows the documented defaults in DAEMON_FLAGS', () => {
    const dflt = (n: string) => DAEMON_FLAGS.find((s) => s.name === n)?.default;
    assert.equal(dflt('etcd-endpoint'), 'http://127.0.0.1:4001,http://127.0.0.1:2379');
    assert.equal(dflt('etcd-prefix'), '/coreos.com/network');
    assert.equal(dflt('port'), '8285');
    assert.equal(dflt('subnet-file'), '/run/rudder/subnet.env');
    assert.equal(dflt('subnet-lease-renew-margin'), '60');
    assert.equal(dflt('subnet-lease-ttl'), '24h');
    assert.equal(dflt('ip-masq'), 'false');
    assert.equal(dflt('metrics-addr'), undefined);
    assert.equal(dflt('v'), '0');
  });
  it('reads every flag in every spelling', () => {
    const { flags } = d([
      '--etcd-endpoints', 'https://etcd1:2379,http://10.0.0.1:4001',
      '-etcd-prefix=/my/net/',
      '--etcd-cafile=/ca.pem', '-etcd-certfile', '/c.pem', '-etcd-keyfile=/k.pem',
      '-etcd-username=u', '--etcd-password', 'p w',
      '-iface', 'eth0', '--public-ip=198.18.0.1',
      '-port', '9000', '--subnet-file=/tmp/s.env',
      '-subnet-lease-renew-margin=5', '--subnet-lease-ttl', '1h30m',
      '-ip-masq', '-metrics-addr=127.0.0.1:9100', '-v', '1', '--log-format=json',
    ]);
    assert.deepEqual(flags.etcdEndpoints, ['https://etcd1:2379', 'http://10.0.0.1:4001']);
    assert.equal(flags.etcdPrefix, '/my/net', 'trailing "/" is dropped so "<prefix>/config" has one slash');
    assert.equal(flags.etcdCafile, '/ca.pem');
    assert.equal(flags.etcdCertfile, '/c.pem');
    assert.equal(flags.etcdKeyfile, '/k.pem');
    assert.equal(flags.etcdUsername, 'u');
    assert.equal(flags.etcdPassword, 'p w');
    assert.equal(flags.iface, 'eth0');
    assert.equal(flags.publicIp, '198.18.0.1');
    assert.equal(flags.port, 9000);
    assert.equal(flags.subnetFile, '/tmp/s.env');
    assert.equal(flags.subnetLeaseRenewMarginMs, 5 * 60_000);
    assert.equal(flags.subnetLeaseTtlMs, 90 * 60_000);
    assert.equal(flags.ipMasq, true);
    assert.equal(flags.metricsAddr, '127.0.0.1:9100');
    assert.equal(flags.v, 1);
    assert.equal(flags.logJson, true);
  });
  it('treats -port the same in all four spellings, and leaves it undefined unless given', () => {
    for (const argv of [['-port=8286'], ['--port=8286'], ['-port', '8286'], ['--port', '8286']]) {
      assert.equal(d(argv).flags.port, 8286, argv.join(' '));
    }
    assert.equal(d([]).flags.port, undefined);
    assert.equal(d(['-port=8285']).flags.port, 8285, 'given explicitly, even with the default value');
    assert.equal(d([], { RUDDER_PORT: '7000' }).flags.port, 7000);
  });
  it('reads -v and booleans in every form', () => {
    assert.equal(d(['-v=1']).flags.v, 1);
    assert.equal(d(['-v', '2']).flags.v, 2);
    assert.equal(d(['--v=0']).flags.v, 0);
    assert.equal(d(['-ip-masq=true']).flags.ipMasq, true);
    assert.equal(d(['-ip-masq=1']).flags.ipMasq, true);
    assert.equal(d(['-ip-masq=false']).flags.ipMasq, false);
    assert.equal(d(['--ip-masq=0']).flags.ipMasq, false);
  });
  it('takes every flag from RUDDER_* and lets the command line win', () => {
    const env = {
      RUDDER_ETCD_ENDPOINT: 'http://e:1',
      RUDDER_ETCD_PREFIX: '/from/env',
      RUDDER_ETCD_PASSWORD: 's3cret',
      RUDDER_PUBLIC_IP: '198.18.0.7',
      RUDDER_IP_MASQ: 'true',
      RUDDER_SUBNET_LEASE_TTL: '2h',
      RUDDER_SUBNET_LEASE_RENEW_MARGIN: '30',
      RUDDER_V: '1',
      RUDDER_LOG_FORMAT: 'json',
      RUDDER_METRICS_ADDR: '0.0.0.0:9100',
    };
    let f = d([], env).flags;
    assert.deepEqual(f.etcdEndpoints, ['http://e:1']);
    assert.equal(f.etcdPrefix, '/from/env');
    assert.equal(f.etcdPassword, 's3cret');
    assert.equal(f.publicIp, '198.18.0.7');
    assert.equal(f.ipMasq, true);
    assert.equal(f.subnetLeaseTtlMs, 2 * 3_600_000);
    assert.equal(f.subnetLeaseRenewMarginMs, 30 * 60_000);
    assert.equal(f.v, 1);
    assert.equal(f.logJson, true);
    assert.equal(f.metricsAddr, '0.0.0.0:9100');
    f = d(['-etcd-prefix=/cli', '-etcd-password=cli', '-ip-masq=false', '-log-format=text', '-etcd-endpoints=http://c:2'], env).flags;
    assert.equal(f.etcdPrefix, '/cli');
    assert.equal(f.etcdPassword, 'cli');
    assert.equal(f.ipMasq, false);
    assert.equal(f.logJson, false);
    assert.deepEqual(f.etcdEndpoints, ['http://c:2']);
    assert.deepEqual(d([], { RUDDER_ETCD_ENDPOINTS: 'http://alias:3' }).flags.etcdEndpoints, ['http://alias:3']);
  });
  it('does not take -help or -version from the environment', () => {
    const f = d([], { RUDDER_HELP: 'true', RUDDER_VERSION: 'true', RUDDER_H: '1' }).flags;
    assert.equal(f.help, false);
    assert.equal(f.version, false);
  });
  it('recognises -h, -help, --help, -version and --version', () => {
    for (const a of ['-h', '-help', '--help', '--h']) assert.equal(d([a]).flags.help, true, a);
    for (const a of ['-version', '--version']) assert.equal(d([a]).flags.version, true, a);
    // Asking for help is not an error, even next to an invalid value.
    assert.equal(d(['-help', '-public-ip=nope']).flags.help, true);
  });
  it('returns subcommands and their own flags in rest', () => {
    const { flags, rest } = d(['-etcd-endpoint=http://x:2379', 'config', 'set', '--if-absent', '{"Network":"10.0.0.0/8"}']);
    assert.deepEqual(flags.etcdEndpoints, ['http://x:2379']);
    assert.deepEqual(rest, ['config', 'set', '--if-absent', '{"Network":"10.0.0.0/8"}']);
    assert.deepEqual(d(['-ip-masq', 'leases']).rest, ['leases']);
    assert.deepEqual(d(['--', '-v']).rest, ['-v']);
    assert.deepEqual(d(['version']).rest, ['version']);
  });
  it('shortens the default renew margin for short TTLs, but rejects an explicit one too long', () => {
    assert.equal(d(['-subnet-lease-ttl=30s']).flags.subnetLeaseRenewMarginMs, 15_000);
    assert.equal(d(['-subnet-lease-ttl=60m']).flags.subnetLeaseRenewMarginMs, 30 * 60_000);
    assert.equal(d(['-subnet-lease-ttl=61m']).flags.subnetLeaseRenewMarginMs, 60 * 60_000);
    assert.equal(d(['-subnet-lease-ttl=30s', '-subnet-lease-renew-margin=10s']).flags.subnetLeaseRenewMarginMs, 10_000);
    throwsFlag(
      () => d(['-subnet-lease-ttl=30m', '-subnet-lease-renew-margin=30']),
      '-subnet-lease-renew-margin="30"', 'expected less than -subnet-lease-ttl (30m)',
    );
    throwsFlag(() => d(['-subnet-lease-ttl=30s'], { RUDDER_SUBNET_LEASE_RENEW_MARGIN: '1' }), 'RUDDER_SUBNET_LEASE_RENEW_MARGIN="1"', 'less than -subnet-lease-ttl (30s)');
  });

  it('rejects bad values, naming the flag, the value and the expected form', () => {
    const cases: Array<[string[], string[]]> = [
      [['-port=abc'], ['-port="abc"', 'expected an integer between 1 and 65535']],
      [['-port=0'], ['-port="0"', 'between 1 and 65535']],
      [['--port', '65536'], ['--port="65536"', 'between 1 and 65535']],
      [['-v=-1'], ['-v="-1"', 'expected an integer']],
      [['-v=high'], ['-v="high"', 'expected an integer']],
      [['-ip-masq=yes'], ['-ip-masq="yes"', 'true or false']],
      [['-public-ip=1.2.3'], ['-public-ip="1.2.3"', 'IPv4 address']],
      [['-public-ip=fe80::1'], ['-public-ip="fe80::1"', 'IPv4 address']],
      [['-public-ip=0.0.0.0'], ['-public-ip="0.0.0.0"', 'unicast IPv4']],
      [['-public-ip=239.1.1.1'], ['-public-ip="239.1.1.1"', 'unicast IPv4']],
      [['-public-ip=010.0.0.1'], ['-public-ip="010.0.0.1"', 'IPv4']],
      [['-metrics-addr=127.0.0.1'], ['-metrics-addr="127.0.0.1"', 'IP:PORT']],
      [['-metrics-addr=localhost:9100'], ['-metrics-addr="localhost:9100"', 'IP:PORT']],
      [['-metrics-addr=127.0.0.1:0'], ['-metrics-addr="127.0.0.1:0"', 'IP:PORT']],
      [['-metrics-addr=1.2.3.4:99999'], ['"1.2.3.4:99999"', 'IP:PORT']],
      [['-etcd-endpoint=127.0.0.1:2379'], ['-etcd-endpoint="127.0.0.1:2379"', 'http://HOST:PORT']],
      [['-etcd-endpoints=http://x:2379,ftp://y:1'], ['-etcd-endpoints="ftp://y:1"', 'http://HOST:PORT']],
      [['-etcd-endpoint=http://x'], ['"http://x"', 'http://HOST:PORT']],
      [['-etcd-endpoint=http://x:2379/v3/path'], ['"http://x:2379/v3/path"', 'http://HOST:PORT']],
      [['-etcd-endpoint=http://user:pw@x:2379'], ['"http://user:pw@x:2379"', 'http://HOST:PORT']],
      [['-etcd-endpoint=http://300.1.1.1:2379'], ['"http://300.1.1.1:2379"', 'http://HOST:PORT']],
      [['-etcd-endpoint=https://x:70000'], ['"https://x:70000"', 'http://HOST:PORT']],
      [['-etcd-endpoint=,'], ['-etcd-endpoint=","', 'comma-separated list']],
      [['-etcd-prefix=coreos.com/network'], ['-etcd-prefix="coreos.com/network"', 'starting with "/"']],
      [['-etcd-prefix=/'], ['-etcd-prefix="/"', 'starting with "/"']],
      [['-etcd-certfile=/c.pem'], ['-etcd-certfile="/c.pem"', '-etcd-keyfile']],
      [['-etcd-keyfile=/k.pem'], ['-etcd-keyfile="/k.pem"', '-etcd-certfile']],
      [['-iface=eth0/1'], ['-iface="eth0/1"', 'interface name']],
      [['-iface=averyveryverylongname'], ['"averyveryverylongname"', 'at most 15 characters']],
      [['-iface=10.0.0.300'], ['-iface="10.0.0.300"', 'IPv4 address']],
      [['-subnet-file='], ['-subnet-file=""', 'file path']],
      [['-subnet-lease-ttl=24'], ['-subnet-lease-ttl="24"', 'a duration', '"24h"']],
      [['-subnet-lease-ttl=500ms'], ['-subnet-lease-ttl="500ms"', 'at least 1s']],
      [['-subnet-lease-ttl=1500ms'], ['-subnet-lease-ttl="1500ms"', 'whole number of seconds']],
      [['-subnet-lease-renew-margin=soon'], ['-subnet-lease-renew-margin="soon"', 'number of minutes']],
      [['-subnet-lease-renew-margin=0'], ['-subnet-lease-renew-margin="0"', 'positive number of minutes']],
      [['-log-format=xml'], ['-log-format="xml"', '"text" or "json"']],
    ];
    for (const [argv, frags] of cases) throwsFlag(() => d(argv), ...frags);
  });
  it('names the environment variable that held a bad value', () => {
    throwsFlag(() => d([], { RUDDER_PUBLIC_IP: 'nope' }), 'RUDDER_PUBLIC_IP="nope"', 'IPv4');
    throwsFlag(() => d([], { RUDDER_PORT: 'abc' }), 'RUDDER_PORT="abc"', 'between 1 and 65535');
    throwsFlag(() => d([], { RUDDER_ETCD_ENDPOINT: 'x:1' }), 'RUDDER_ETCD_ENDPOINT="x:1"', 'http://HOST:PORT');
    throwsFlag(() => d([], { RUDDER_ETCD_ENDPOINTS: 'x:1' }), 'RUDDER_ETCD_ENDPOINTS="x:1"', 'http://HOST:PORT');
    throwsFlag(() => d([], { RUDDER_SUBNET_LEASE_TTL: '2500ms' }), 'RUDDER_SUBNET_LEASE_TTL="2500ms"', 'whole number of seconds');
  });
  it('rejects unknown flags with a suggestion', () => {
    throwsFlag(() => d(['-etcd-endpont=http://x:1']), 'unknown flag -etcd-endpont', 'did you mean -etcd-endpoint?');
    throwsFlag(() => d(['--ipmasq']), 'unknown flag --ipmasq', 'did you mean -ip-masq?');
    throwsFlag(() => d(['-public_ip=1.2.3.4']), 'unknown flag -public_ip', 'did you mean -public-ip?');
    throwsFlag(() => d(['-subnet-lease']), 'unknown flag -subnet-lease', 'did you mean -subnet-lease-ttl?');
  });
  it('rejects a missing value at the end or before another flag', () => {
    throwsFlag(() => d(['-port']), '-port', 'missing value', 'between 1 and 65535');
    throwsFlag(() => d(['--etcd-prefix']), '--etcd-prefix', 'missing value');
    throwsFlag(() => d(['-public-ip', '-ip-masq']), '-public-ip', 'missing value', '"-ip-masq"');
  });

  it('prints usage with every flag, its default and the subcommands', () => {
    const u = daemonUsage();
    assert.ok(u.startsWith('Usage: rudder [flags] [command]'));
    for (const s of DAEMON_FLAGS) {
      assert.ok(u.includes(`-${s.name}`), s.name);
      assert.ok(u.includes(s.help), `help of ${s.name}`);
      if (s.default !== undefined) assert.ok(u.includes(`default ${JSON.stringify(s.default)}`), `default of ${s.name}`);
    }
    for (const c of ['config check FILE', 'config get', 'config set JSON|FILE [--if-absent]', 'leases', 'version']) {
      assert.ok(u.includes(c), c);
    }
  });
});

describe('parseFlags: interspersed (GNU) mode and sources', () => {
  const specs: FlagSpec[] = [
    { name: 'prefix', kind: 'string', default: '/d', help: '' },
    { name: 'on', kind: 'bool', env: false, help: '' },
    { name: 'items', aliases: ['item'], kind: 'list', help: '' },
  ];
  it('takes flags after operands, until "--"', () => {
    const p = parseFlags(specs, ['a', '-prefix=/x', 'b', '--on', '--', '-items=z'], NOENV, { interspersed: true });
    assert.equal(p.values.get('prefix'), '/x');
    assert.equal(p.values.get('on'), true);
    assert.deepEqual(p.rest, ['a', 'b', '-items=z']);
    assert.deepEqual(parseFlags(specs, ['-', '-on'], NOENV, { interspersed: true }).rest, ['-']);
  });
  it('records where each given value came from', () => {
    const p = parseFlags(specs, ['--item', 'a', '-prefix', '/y'], { RUDDER_ITEMS: 'b', RUDDER_ON: 'true' });
    assert.deepEqual(p.sources.get('items'), { where: '--item', raw: 'a' });
    assert.deepEqual(p.sources.get('prefix'), { where: '-prefix', raw: '/y' });
    assert.equal(p.sources.get('on'), undefined, 'env: false');
    const e = parseFlags(specs, [], { RUDDER_PREFIX: '/env' });
    assert.deepEqual(e.sources.get('prefix'), { where: 'RUDDER_PREFIX', raw: '/env' });
  });
  it('lexes flags with the arguments each took, and lets the caller word an unknown flag', () => {
    const l = lexFlags(specs, ['-prefix', '/z', '-on', 'op'], {});
    assert.deepEqual(l.flags.map((t) => t.argv), [['-prefix', '/z'], ['-on']]);
    assert.deepEqual(l.operands, ['op']);
    throwsFlag(() => lexFlags(specs, ['-nope'], { unknown: (_n, where) => new RudderError('E_FLAG', `custom ${where}`) }), 'custom -nope');
  });
  it('suggests only a near name', () => {
    const m = throwsFlag(() => parseFlags(specs, ['-v'], NOENV), 'unknown flag -v');
    assert.ok(!m.includes('did you mean'), m);
    throwsFlag(() => parseFlags(specs, ['-prefx=1'], NOENV), 'did you mean -prefix?');
  });
});

describe('the command line: which flags go to which command', () => {
  const cmd = (line: ReturnType<typeof splitCommandLine>): string | null => (line.command ? line.command.words.join(' ') : null);
  const byName = (n: string): CommandSpec => COMMANDS.find((c) => c.words.join(' ') === n) as CommandSpec;

  it('gives the daemon the whole line when there is no (known) command', () => {
    for (const argv of [[], ['-port=1', '-v', '2'], ['-ip-masq', 'bogus'], ['config'], ['config', 'nope']]) {
      const l = splitCommandLine(argv);
      assert.equal(cmd(l), null, argv.join(' '));
      assert.deepEqual(l.daemonArgv, argv);
    }
  });
  it('finds the name past flags that take a value, in every spelling', () => {
    for (const argv of [
      ['-etcd-prefix', '/x', 'leases'],
      ['--etcd-prefix=/x', 'leases'],
      ['--etcd-endpoint', 'http://e:1', '--etcd-prefix', '/x', 'leases'],
      ['--', 'leases'],
    ]) {
      assert.equal(cmd(splitCommandLine(argv)), 'leases', argv.join(' '));
    }
    assert.equal(cmd(splitCommandLine(['-etcd-endpoint', 'http://e:1', 'config', 'get'])), 'config get');
    assert.equal(cmd(splitCommandLine(['-watch', 'cni-config'])), 'cni-config', 'another command\'s bool flag does not take the name as its value');
  });
  it('moves the command\'s flags from before the name to the command; a daemon-only flag there is an error', () => {
    const l = splitCommandLine(['-etcd-prefix', '/x', 'leases', '-etcd-endpoint=http://e:1']);
    assert.equal(cmd(l), 'leases');
    assert.ok(l.command);
    assert.deepEqual(l.args, ['-etcd-prefix', '/x', '-etcd-endpoint=http://e:1']);
    assert.deepEqual(l.daemonArgv, []);
    for (const before of [['-iface=eth0'], ['-port', '1'], ['-v', '1']]) {
      assert.throws(
        () => splitCommandLine([...before, 'leases']),
        (e: unknown) => e instanceof CommandFlagError && /is not a flag of "rudder leases"/.test(e.message),
        before.join(' '),
      );
    }
    const d2 = splitCommandLine(['--subnet-file=/s.env', '-format=env', 'docker-opts', 'x']);
    assert.ok(d2.command);
    assert.deepEqual(d2.args, ['--subnet-file=/s.env', '-format=env', 'x']);
    assert.deepEqual(d2.daemonArgv, []);
    const c = splitCommandLine(['-v=1', '-h', 'cni-config']);
    assert.ok(c.command);
    assert.deepEqual(c.args, ['-v=1', '-h'], 'a name both tables have belongs to the command');
  });
  it('rejects a flag before the name that no table knows', () => {
    assert.throws(
      () => splitCommandLine(['-watch', 'leases']),
      (e: unknown) => e instanceof CommandFlagError && e.command.words.join(' ') === 'leases' && /-watch is not a flag of "rudder leases"/.test(e.message),
    );
  });
  it('parses a command\'s flags anywhere after its name, with the environment as fallback', () => {
    const set = byName('config set');
    let p = commandFlags(set, ['{"Network":"10.0.0.0/8"}', '--if-absent', '-etcd-prefix', '/b'], { RUDDER_ETCD_PREFIX: '/a' });
    assert.equal(p.values.get('etcd-prefix'), '/b');
    assert.equal(p.values.get('if-absent'), true);
    assert.deepEqual(p.rest, ['{"Network":"10.0.0.0/8"}']);
    p = commandFlags(byName('leases'), [], { RUDDER_ETCD_PREFIX: '/a' });
    assert.equal(p.values.get('etcd-prefix'), '/a');
    for (const [name, argv, frag] of [
      ['leases', ['-iface=eth0'], '-iface is not a flag of "rudder leases"'],
      ['config get', ['--port', '1'], '--port is not a flag of "rudder config get"'],
      ['config check', ['f', '-etcd-prefix=/x'], '-etcd-prefix is not a flag of "rudder config check"'],
      ['version', ['-v'], '-v is not a flag of "rudder version"'],
    ] as const) {
      assert.throws(() => commandFlags(byName(name), argv, NOENV), (e: unknown) => e instanceof CommandFlagError && e.message.includes(frag), `${name} ${argv.join(' ')}`);
    }
  });
  it('every command takes -help; a name means the same kind of flag in every table', () => {
    const kinds = new Map<string, string>();
    for (const s of DAEMON_FLAGS) kinds.set(s.name, s.kind);
    for (const c of COMMANDS) {
      const names = c.flags().map((s) => s.name);
      assert.ok(names.includes('help'), `${c.words.join(' ')} takes -help`);
      assert.ok(c.usage().includes(`Usage: `), c.words.join(' '));
      for (const s of c.flags()) {
        const k = kinds.get(s.name);
        if (k !== undefined) assert.equal(s.kind, k, `-${s.name} of ${c.words.join(' ')}`);
        kinds.set(s.name, s.kind);
      }
    }
  });
});
