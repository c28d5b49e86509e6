/**
 * The WireGuard protocol core (native/wireguard) in C, each program built
 * twice — -O2 as the addon will be, and under AddressSanitizer/UBSan:
 *   - kat_test: known answers of every primitive (RFC 7748, RFC 8439, BLAKE2s,
 *     draft-irtf-cfrg-xchacha, keyed BLAKE2s / HMAC / Kdf from an
 *     independent implementation) and the Noise initial chaining key;
 *   - handshake_test: full handshakes both ways with and without PSK,
 *     tampering, replayed initiations, transport, key confirmation, cookies,
 *     TAI64N and the timers' decisions;
 *   - replay_test: the anti-replay window against a reference model on
 *     random sequences from fixed seeds.
 * Every program ends with "N checks, 0 failures". kat_test and
 * handshake_test also run inside a Node process, built against Node's
 * headers without -lcrypto, so they use the OpenSSL Node links (the one the
 * addon must use: never two in one process). The wire compatibility with
 * the real wireguard-go is the e2e test wireguard-interop.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { NODE_INCLUDE, SANITIZE, compileWg, compileWgForNode, hasGcc, hasLibcrypto, hasSanitizers } from '../helpers/wireguard-c';

function runProgram(bin: string, args: string[] = []): string {
  const r = spawnSync(bin, args, { encoding: 'utf8', maxBuffer: 1 << 20 });
  assert.equal(r.status, 0, `${path.basename(bin)} ${args.join(' ')}:\n${r.stdout}${r.stderr}`);
  assert.match(r.stdout, /[1-9]\d* checks, 0 failures/);
  return r.stdout;
}

const skip = !hasGcc ? 'gcc not installed' : !hasLibcrypto ? 'OpenSSL headers not installed (libssl-dev)' : false;

describe('native/wireguard: the protocol core', { skip }, () => {
  let dir = '';
  let sanitizers = false;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rudder-wg-'));
    sanitizers = hasSanitizers(dir);
  });
  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const [name, flags] of [
    ['-O2', ['-O2']],
    ['ASan/UBSan', SANITIZE],
  ] as const) {
    describe(`built ${name}`, () => {
      const build = (t: { skip: (m: string) => void }, program: string): string | null => {
        if (name !== '-O2' && !sanitizers) {
          t.skip('gcc has no sanitizer runtime here');
          return null;
        }
        const bin = path.join(dir, `${program}-${name === '-O2' ? 'o2' : 'san'}`);
        compileWg(bin, `${program}.c`, flags);
        return bin;
      };

      it('known-answer tests of every primitive', (t) => {
        const bin = build(t, 'kat_test');
        if (bin) runProgram(bin);
      });

      it('handshakes, transport, cookies, TAI64N and timers between two instances', (t) => {
        const bin = build(t, 'handshake_test');
        if (bin) runProgram(bin);
      });

      it('the replay window agrees with a reference model (fixed seeds)', (t) => {
        const bin = build(t, 'replay_test');
        if (!bin) return;
        const [seqs, seed] = name === '-O2' ? ['1500', '1'] : ['300', '2'];
        const out = runProgram(bin, [seqs, seed]);
        assert.match(out, new RegExp(`^${seqs} sequences, seed ${seed}, `, 'm'));
      });
    });
  }

  describe('on the OpenSSL that Node links (loaded into a node process)', () => {
    const nodeHeaders = fs.existsSync(path.join(NODE_INCLUDE, 'openssl', 'evp.h'));
    for (const program of ['kat_test', 'handshake_test']) {
      it(program, (t) => {
        if (!nodeHeaders) {
          t.skip(`no Node OpenSSL headers in ${NODE_INCLUDE}`);
          return;
        }
        const so = path.join(dir, `${program}-node.so`);
        compileWgForNode(so, `${program}.c`);
        // The object has no module registration: dlopen runs its constructor, then throws.
        const script = `try { process.dlopen({ exports: {} }, ${JSON.stringify(so)}); } catch {}
          const maps = require('fs').readFileSync('/proc/self/maps', 'utf8');
          console.log(/libcrypto\\.so/.test(maps) ? 'a libcrypto.so is mapped' : 'no libcrypto.so mapped');`;
        const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
        assert.equal(r.status, 0, r.stdout + r.stderr);
        assert.match(r.stdout, /[1-9]\d* checks, 0 failures\nexit status 0\n/);
        assert.match(r.stdout, /no libcrypto\.so mapped/, 'only the OpenSSL inside node is in the process');
      });
    }
  });
});
