/**
 * Wire compatibility of Rudder's WireGuard core (native/wireguard) with the
 * real thing: Debian's `wireguard-go`, configured with `wg`, in one network
 * namespace; in another, wg_probe (native/wireguard/test/wg_probe.c, a
 * minimal peer built from the core, one UDP socket, speaking ICMP echo
 * itself). The two namespaces share a veth underlay in 198.18.99.0/24;
 * wireguard-go's TUN has the overlay address 10.99.0.2/24 and its peer (the
 * probe) the allowed IP 10.99.0.1/32.
 *
 * Proved, each without and with a preshared key:
 *   - the probe initiates: wireguard-go accepts the initiation (our mac1,
 *     Noise_IKpsk2 and TAI64N), answers, and the kernel behind its TUN
 *     answers our encrypted echo requests with echo replies the probe
 *     decrypts and checks byte for byte (transport both ways, key
 *     confirmation on wireguard-go's side);
 *   - wireguard-go initiates (a ping from its namespace to 10.99.0.1): the
 *     probe answers as responder, takes the first transport message as key
 *     confirmation and answers every echo request; ping sees every reply.
 * Also: a PSK on one side only fails (the PSK really enters the handshake);
 * after a "restart" whose wall clock went back an hour, wireguard-go ignores
 * the initiations unless the probe starts from its persisted TAI64N floor;
 * and under a flood of initiations wireguard-go sends cookie replies that the
 * probe decrypts (XChaCha20-Poly1305), after which its initiations carry a
 * mac2 that wireguard-go accepts while still under load.
 *
 * And after wireguard-go restarts (same key, config applied again with
 * `wg`), handshakes initiated from either side work again.
 *
 * Every peer change starts from a removed-and-added peer on wireguard-go's
 * side, so no session of an earlier test carries over. Namespaces, the
 * wireguard-go process and the key files are removed however the run ends.
 */
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Cleanup, Netns, RunTag, addVethPair, makeTempDir, tailFile, type ManagedProcess } from '../../src/topology';
import { skipUnlessRoot } from '../helpers/env';
import { waitUntil } from '../helpers/wait';
import { SANITIZE, compileWg, hasGcc, hasLibcrypto } from '../helpers/wireguard-c';
import { spawnSync } from 'node:child_process';

const PROBE_UNDERLAY = '198.18.99.1';
const WG_UNDERLAY = '198.18.99.2';
const PROBE_PORT = 51000;
const WG_PORT = 51820;
const PROBE_OVERLAY = '10.99.0.1';
const WG_OVERLAY = '10.99.0.2';
/** Generous: only keeps a broken run from hanging (2 shared cores). */
const GIVE_UP_MS = 30_000;

const haveWg = spawnSync('sh', ['-c', 'command -v wireguard-go && command -v wg'], { stdio: 'ignore' }).status === 0;
const skip =
  skipUnlessRoot ||
  (!hasGcc ? 'gcc not installed' : !hasLibcrypto ? 'libssl-dev not installed' : !haveWg ? 'needs wireguard-go and wg (Debian wireguard-go, wireguard-tools)' : false);

interface Keys {
  priv: Buffer;
  pub: Buffer;
}

function x25519(): Keys {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('x25519');
  const d = privateKey.export({ format: 'jwk' }).d;
  const x = publicKey.export({ format: 'jwk' }).x;
  assert.ok(d && x);
  return { priv: Buffer.from(d, 'base64url'), pub: Buffer.from(x, 'base64url') };
}

describe('WireGuard interop: native/wireguard against the real wireguard-go', { skip }, () => {
  let cleanup: Cleanup;
  let tag: RunTag;
  let dir = '';
  let nsProbe: Netns;
  let nsWg: Netns;
  let wgProc: ManagedProcess;
  let ifname = '';
  let probeBin = '';
  const probeKeys = x25519();
  const wgKeys = x25519();
  const psk = crypto.randomBytes(32);

  async function wg(args: string[]): Promise<string> {
    return (await nsWg.exec(['wg', ...args])).stdout;
  }

  /** wireguard-go's peer (the probe) removed and added again: no session survives. */
  async function resetPeer(withPsk: boolean): Promise<void> {
    const pub = probeKeys.pub.toString('base64');
    await wg(['set', ifname, 'peer', pub, 'remove']);
    const pskArgs = withPsk ? ['preshared-key', path.join(dir, 'psk')] : [];
    await wg(['set', ifname, 'peer', pub, ...pskArgs, 'allowed-ips', `${PROBE_OVERLAY}/32`, 'endpoint', `${PROBE_UNDERLAY}:${PROBE_PORT}`]);
  }

  function probeArgv(mode: 'initiate' | 'respond', count: number, probePsk: Buffer | null, flood = 0, giveUpS = 25): string[] {
    return [
      probeBin, mode, String(PROBE_PORT), WG_UNDERLAY, String(WG_PORT),
      probeKeys.priv.toString('hex'), wgKeys.pub.toString('hex'), probePsk ? probePsk.toString('hex') : '-',
      PROBE_OVERLAY, WG_OVERLAY, String(count), String(flood), String(giveUpS),
    ];
  }

  async function probeInitiate(
    count: number,
    probePsk: Buffer | null,
    flood = 0,
    giveUpS = 25,
    env: NodeJS.ProcessEnv = {},
  ): Promise<{ ok: boolean; out: string }> {
    const r = await nsProbe.exec(probeArgv('initiate', count, probePsk, flood, giveUpS), { allowFailure: true, env: { ...process.env, ...env } });
    return { ok: r.code === 0, out: r.stdout + r.stderr };
  }

  async function latestHandshake(): Promise<number> {
    const line = (await wg(['show', ifname, 'latest-handshakes'])).trim();
    return Number(line.split(/\s+/)[1] ?? '0');
  }

  before(async () => {
    tag = RunTag.create();
    cleanup = new Cleanup(`wireguard interop ${tag.name('*')}`);
    cleanup.addHook(() => tag.release(), () => tag.release());
    dir = makeTempDir(`rudder-${tag.prefix}${tag.tag}-wg-`);
    tag.recordDir(dir);
    cleanup.addDir(dir);

    probeBin = path.join(dir, 'wg_probe');
    compileWg(probeBin, 'wg_probe.c', SANITIZE);

    nsProbe = await Netns.create(tag.name('wgp'), cleanup);
    nsWg = await Netns.create(tag.name('wgg'), cleanup);
    await addVethPair({ ns: nsProbe, ifname: 'u0' }, { ns: nsWg, ifname: 'u0' });
    await nsProbe.addAddress('u0', `${PROBE_UNDERLAY}/24`);
    await nsWg.addAddress('u0', `${WG_UNDERLAY}/24`);

    fs.writeFileSync(path.join(dir, 'wg.key'), `${wgKeys.priv.toString('base64')}\n`, { mode: 0o600 });
    fs.writeFileSync(path.join(dir, 'psk'), `${psk.toString('base64')}\n`, { mode: 0o600 });
    // The UAPI socket (/var/run/wireguard/<ifname>.sock) is not per namespace: the run tag keeps it unique.
    ifname = `wg${tag.prefix}${tag.tag}`.slice(0, 15);
    await startWireguardGo();
  });

  /** Starts wireguard-go with its key, port and overlay address (no peer yet). */
  async function startWireguardGo(): Promise<void> {
    const log = path.join(dir, 'wireguard-go.log');
    wgProc = await nsWg.spawn(['wireguard-go', '-f', ifname], { logFile: log, label: 'wireguard-go' });
    await waitUntil(
      async () => {
        if (!wgProc.running) throw new Error(`wireguard-go exited: ${tailFile(log)}`);
        await nsWg.exec(['wg', 'show', ifname]);
        return true;
      },
      { giveUpMs: GIVE_UP_MS, intervalMs: 100, what: 'wireguard-go to come up' },
    );
    await wg(['set', ifname, 'private-key', path.join(dir, 'wg.key'), 'listen-port', String(WG_PORT)]);
    await nsWg.addAddress(ifname, `${WG_OVERLAY}/24`);
    await nsWg.linkUp(ifname);
  }

  after(async () => {
    await cleanup?.run();
    // wireguard-go ended by SIGKILL leaves its UAPI socket behind.
    if (ifname) fs.rmSync(`/var/run/wireguard/${ifname}.sock`, { force: true });
  });

  for (const withPsk of [false, true]) {
    const label = withPsk ? 'with a preshared key' : 'without a preshared key';

    it(`the probe initiates; wireguard-go answers; echo replies decrypt (${label})`, async () => {
      await resetPeer(withPsk);
      assert.equal(await latestHandshake(), 0, 'fresh peer: no handshake yet');
      const r = await probeInitiate(3, withPsk ? psk : null);
      assert.ok(r.ok, r.out);
      assert.match(r.out, /handshake complete \(initiator\)/);
      assert.match(r.out, /echo reply seq 3 ok/);
      assert.match(r.out, /PROBE OK initiate replies=3/);
      assert.ok((await latestHandshake()) > 0, 'wireguard-go records the handshake');
      const transfer = (await wg(['show', ifname, 'transfer'])).trim().split(/\s+/);
      assert.ok(Number(transfer[1]) > 0 && Number(transfer[2]) > 0, `bytes both ways: ${transfer.join(' ')}`);
    });

    it(`wireguard-go initiates; the probe answers as responder (${label})`, async () => {
      await resetPeer(withPsk);
      const log = path.join(dir, `probe-respond-${withPsk ? 'psk' : 'nopsk'}.log`);
      const probe = await nsProbe.spawn(probeArgv('respond', 3, withPsk ? psk : null), { logFile: log, label: 'wg_probe respond' });
      try {
        await waitUntil(async () => /probe listening/.test(fs.readFileSync(log, 'utf8')), {
          giveUpMs: GIVE_UP_MS,
          intervalMs: 50,
          what: 'the probe to listen',
        });
        const ping = await nsWg.exec(['ping', '-c', '3', '-i', '0.3', '-W', '5', PROBE_OVERLAY], { allowFailure: true });
        const exit = await probe.exited;
        const out = fs.readFileSync(log, 'utf8');
        assert.equal(exit.code, 0, out);
        assert.match(ping.stdout, /3 packets transmitted, 3 received/, ping.stdout + ping.stderr);
        assert.match(out, /handshake answered \(responder\)/);
        assert.match(out, /key confirmed: next became current/);
        assert.match(out, /PROBE OK respond answered=3/);
      } finally {
        probe.signal('SIGKILL');
        await probe.exited;
      }
    });
  }

  it('a preshared key on one side only: wireguard-go’s response is refused, no echo', async () => {
    await resetPeer(true);
    const r = await probeInitiate(1, null, 0, 7);
    assert.equal(r.ok, false, r.out);
    assert.match(r.out, /response refused/);
    assert.match(r.out, /PROBE FAIL no handshake response/);
  });

  it('a restart with a clock that went back: refused without the persisted TAI64N floor, accepted with it', async () => {
    await resetPeer(false);
    const tsFile = path.join(dir, 'last-timestamp');
    const first = await probeInitiate(1, null, 0, 25, { WG_PROBE_TS_FILE: tsFile });
    assert.ok(first.ok, first.out);
    assert.equal(fs.statSync(tsFile).size, 12, 'the last timestamp is persisted');
    // "Rebooted" an hour behind, floor lost: wireguard-go takes the initiation for a replay and stays silent.
    const lost = await probeInitiate(1, null, 0, 7, { WG_PROBE_CLOCK_OFFSET_S: '-3600' });
    assert.equal(lost.ok, false, lost.out);
    assert.match(lost.out, /PROBE FAIL no handshake response/);
    // Same clock, floor kept: the next timestamp is just above the last one sent, and accepted.
    const kept = await probeInitiate(1, null, 0, 25, { WG_PROBE_CLOCK_OFFSET_S: '-3600', WG_PROBE_TS_FILE: tsFile });
    assert.ok(kept.ok, kept.out);
    assert.match(kept.out, /PROBE OK initiate replies=1/);
  });

  it('after wireguard-go restarts (same key), handshakes work again from both sides', async () => {
    await resetPeer(false);
    const first = await probeInitiate(1, null);
    assert.ok(first.ok, first.out);
    wgProc.signal('SIGTERM');
    await wgProc.exited;
    await startWireguardGo();
    await resetPeer(false);
    const again = await probeInitiate(2, null);
    assert.ok(again.ok, again.out);
    assert.match(again.out, /PROBE OK initiate replies=2/);
    await resetPeer(false);
    const log = path.join(dir, 'probe-respond-restart.log');
    const probe = await nsProbe.spawn(probeArgv('respond', 2, null), { logFile: log, label: 'wg_probe respond' });
    try {
      await waitUntil(async () => /probe listening/.test(fs.readFileSync(log, 'utf8')), { giveUpMs: GIVE_UP_MS, intervalMs: 50, what: 'the probe to listen' });
      const ping = await nsWg.exec(['ping', '-c', '2', '-i', '0.3', '-W', '5', PROBE_OVERLAY], { allowFailure: true });
      assert.equal((await probe.exited).code, 0, fs.readFileSync(log, 'utf8'));
      assert.match(ping.stdout, /2 packets transmitted, 2 received/, ping.stdout + ping.stderr);
    } finally {
      probe.signal('SIGKILL');
      await probe.exited;
    }
  });

  it('under a flood of initiations: cookie replies decrypt, then mac2 is accepted under load', async () => {
    await resetPeer(false);
    const r = await probeInitiate(2, null, 5000, 40);
    assert.ok(r.ok, r.out);
    assert.match(r.out, /cookie reply decrypted and taken/);
    assert.match(r.out, /round 2 with mac2: 0 cookie replies, [1-9]\d* responses/);
    assert.match(r.out, /PROBE OK initiate replies=2 cookies=1/);
  });
});
