/**
 * The shipped files: packaging/rudder.service passes `systemd-analyze
 * verify`, and packaging/docker-opts.sh (which calls `rudder docker-opts`)
 * turns subnet files into the dockerd options they call for. Expected
 * options are derived here from each sample file, independently of the code
 * under test. Nothing here needs root or touches the network.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const BIN = path.join(ROOT, 'bin', 'rudder');
const SCRIPT = path.join(ROOT, 'packaging', 'docker-opts.sh');
const UNIT = path.join(ROOT, 'packaging', 'rudder.service');

let dir: string;
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rudder-packaging-'));
});
after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('RUDDER_')) env[k] = v;
  return { ...env, ...extra };
}

function runCmd(argv: string[], env: NodeJS.ProcessEnv = cleanEnv()): { code: number | null; out: string; err: string } {
  const [file, ...args] = argv;
  const r = spawnSync(file as string, args, { env, encoding: 'utf8' });
  return { code: r.status, out: r.stdout ?? '', err: (r.stderr ?? '') + (r.error ? r.error.message : '') };
}

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', 'command -v "$1"', 'sh', cmd], { stdio: 'ignore' }).status === 0;
}

describe('packaging/rudder.service', () => {
  const text = fs.readFileSync(UNIT, 'utf8');

  test('is a Type=notify unit running the daemon, ordered before docker and after the network and etcd', () => {
    assert.match(text, /^\[Service\]$/m);
    assert.match(text, /^Type=notify$/m);
    const exec = /^ExecStart=(\S+)/m.exec(text);
    assert.ok(exec, 'has ExecStart=');
    assert.equal(path.basename(exec[1] as string), 'rudder');
    assert.match(text, /^After=.*\bnetwork-online\.target\b/m);
    assert.match(text, /^After=.*\betcd\.service\b/m);
    assert.match(text, /^Before=.*\bdocker\.service\b/m);
    assert.match(text, /^WantedBy=multi-user\.target$/m);
  });

  const why = have('systemd-analyze') ? false : 'systemd-analyze is not installed (Debian package systemd); the unit was not verified';
  test('passes systemd-analyze verify', { skip: why }, () => {
    // verify insists that ExecStart= names an executable that exists: check the
    // unit as it would be installed with this checkout at the unit's install path.
    const installed = /^ExecStart=(\S+)\/bin\/rudder/m.exec(text)?.[1];
    assert.ok(installed, 'ExecStart= names <install dir>/bin/rudder');
    const unit = path.join(dir, 'rudder.service');
    fs.writeFileSync(unit, text.split(`${installed}/`).join(`${ROOT}/`));
    const r = runCmd(['systemd-analyze', 'verify', unit]);
    assert.equal(r.code, 0, `systemd-analyze verify: ${r.out}${r.err}`);
    assert.equal(r.err.trim(), '', `no warnings: ${r.err}`);
  });
});

interface Sample {
  name: string;
  text: string;
}

const SAMPLES: Sample[] = [
  { name: 'udp', text: 'RUDDER_NETWORK=10.0.0.0/16\nRUDDER_SUBNET=10.0.5.1/24\nRUDDER_MTU=1472\nRUDDER_IPMASQ=false\n' },
  { name: 'vxlan-masq', text: 'RUDDER_NETWORK=10.244.0.0/16\nRUDDER_SUBNET=10.244.77.1/24\nRUDDER_MTU=1450\nRUDDER_IPMASQ=true\n' },
  { name: 'hostgw-small', text: 'RUDDER_NETWORK=172.16.0.0/24\nRUDDER_SUBNET=172.16.0.129/25\nRUDDER_MTU=1500\nRUDDER_IPMASQ=false\n' },
  { name: 'first-subnet-jumbo', text: '# written by hand\nRUDDER_NETWORK=10.0.0.0/8\n\nRUDDER_SUBNET=10.0.0.1/20\nRUDDER_MTU=8972\nRUDDER_IPMASQ=true\n' },
];

/** What Docker should get, read from the file the way `sh` would source it. */
function expectedOptions(file: string): string {
  const r = runCmd(['sh', '-c', '. "$1" && printf "%s|%s|%s" "$RUDDER_SUBNET" "$RUDDER_MTU" "$RUDDER_IPMASQ"', 'sh', file]);
  assert.equal(r.code, 0, r.err);
  const [subnet, mtu, masq] = r.out.split('|');
  assert.ok(subnet && mtu && masq, `sourced ${file}: ${r.out}`);
  return [`--bip=${subnet}`, `--mtu=${mtu}`, ...(masq === 'true' ? ['--ip-masq=false'] : [])].join(' ');
}

describe('docker options from the subnet file', () => {
  for (const s of SAMPLES) {
    test(`${s.name}: the script, rudder docker-opts and the file agree`, () => {
      const file = path.join(dir, `${s.name}.env`);
      fs.writeFileSync(file, s.text);
      const want = expectedOptions(file);

      const viaCli = runCmd([BIN, 'docker-opts', `-subnet-file=${file}`]);
      assert.equal(viaCli.code, 0, viaCli.err);
      assert.equal(viaCli.out, `${want}\n`);

      const viaFlagBefore = runCmd([BIN, `--subnet-file=${file}`, 'docker-opts']);
      assert.equal(viaFlagBefore.code, 0, viaFlagBefore.err);
      assert.equal(viaFlagBefore.out, `${want}\n`);

      const viaScript = runCmd([SCRIPT, '-f', file]);
      assert.equal(viaScript.code, 0, viaScript.err);
      assert.equal(viaScript.out, `${want}\n`);

      // -d writes an EnvironmentFile= for Docker's unit; sourcing it gives the same options.
      const dest = path.join(dir, `${s.name}.docker`);
      const viaDest = runCmd([SCRIPT, '-f', file, '-d', dest, '-k', 'DOCKER_NETWORK_OPTIONS']);
      assert.equal(viaDest.code, 0, viaDest.err);
      const sourced = runCmd(['sh', '-c', '. "$1" && printf "%s" "$DOCKER_NETWORK_OPTIONS"', 'sh', dest]);
      assert.equal(sourced.out, want);

      const envFormat = runCmd([BIN, 'docker-opts', `-subnet-file=${file}`, '-format=env']);
      assert.equal(envFormat.out, `DOCKER_OPTS="${want}"\n`);
    });
  }

  test('the script finds the binary through RUDDER_BIN', () => {
    const file = path.join(dir, 'bin.env');
    fs.writeFileSync(file, SAMPLES[0]?.text ?? '');
    const r = runCmd([SCRIPT, '-f', file], cleanEnv({ RUDDER_BIN: BIN }));
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, `${expectedOptions(file)}\n`);
  });

  test('a missing or broken subnet file is an error naming the file or the key, and -d leaves no file', () => {
    const missing = path.join(dir, 'missing.env');
    for (const argv of [[BIN, 'docker-opts', `-subnet-file=${missing}`], [SCRIPT, '-f', missing]]) {
      const r = runCmd(argv);
      assert.equal(r.code, 1, `${argv.join(' ')}: ${r.out}${r.err}`);
      assert.equal(r.out, '');
      assert.match(r.err, /cannot read .*missing\.env/);
    }
    const cases: Array<[string, RegExp]> = [
      ['RUDDER_NETWORK=10.0.0.0/16\nRUDDER_MTU=1472\nRUDDER_IPMASQ=false\n', /RUDDER_SUBNET missing/],
      ['RUDDER_NETWORK=10.0.0.0/16\nRUDDER_SUBNET=10.0.5.1\nRUDDER_MTU=1472\nRUDDER_IPMASQ=false\n', /RUDDER_SUBNET=10\.0\.5\.1: expected/],
      ['RUDDER_NETWORK=10.0.0.0/16\nRUDDER_SUBNET=10.0.5.1/24\nRUDDER_MTU=big\nRUDDER_IPMASQ=false\n', /RUDDER_MTU=big: expected/],
      ['RUDDER_NETWORK=10.0.0.0/16\nRUDDER_SUBNET=10.0.5.1/24\nRUDDER_MTU=1472\nRUDDER_IPMASQ=yes\n', /RUDDER_IPMASQ=yes: expected true or false/],
    ];
    cases.forEach(([text, msg], i) => {
      const file = path.join(dir, `bad${i}.env`);
      fs.writeFileSync(file, text);
      const dest = path.join(dir, `bad${i}.docker`);
      for (const argv of [[BIN, 'docker-opts', `-subnet-file=${file}`], [SCRIPT, '-f', file, '-d', dest]]) {
        const r = runCmd(argv);
        assert.equal(r.code, 1, `${argv.join(' ')}: ${r.out}${r.err}`);
        assert.match(r.err, msg);
      }
      assert.equal(fs.existsSync(dest), false, '-d wrote nothing');
    });
  });

  test('bad arguments exit 2', () => {
    assert.equal(runCmd([BIN, 'docker-opts', '-format=yaml']).code, 2);
    assert.equal(runCmd([BIN, 'docker-opts', 'extra']).code, 2);
    assert.equal(runCmd([SCRIPT, '-x']).code, 2);
    assert.equal(runCmd([SCRIPT, '-k', '1BAD']).code, 2);
  });
});
