/**
 * The WireGuard protocol core (native/wireguard) in C, each program built
 * twice — -O2 as the addon will be, and under AddressSanitizer/UBSan:
 *   - kat_test: known answers of every primitive (RFC 7748, RFC 8439, BLAKE2s,
 *     draft-irtf-cfrg-xchacha, keyed BLAKE2s / HMAC / Kdf from an
 *     independent implementation) and the Noise initial chaining key;
 *   - handshake_kat_test: a whole handshake, transport and cookie reply
 *     against vectors from an independent Python reference
 *     (native/wireguard/test/vectors), each side checked alone;
 *   - handshake_test: full handshakes both ways with and without PSK,
 *     tampering, replayed initiations, transport, key confirmation, cookies,
 *     TAI64N and the timers' decisions;
 *   - replay_test: the anti-replay window against a reference model on
 *     random sequences from fixed seeds.
 * Every program ends with "N checks, 0 failures". kat_test,
 * handshake_kat_test and handshake_test also run inside a Node process,
 * built against Node's headers without -lcrypto, so they use the OpenSSL
 * Node links (the one the addon must use: never two in one process). The wire compatibility with
 * the real wireguard-go is the e2e test wireguard-interop.
 *
 * The built addon (native/build/Release/rudder_native.node) carries no
 * OpenSSL of its own: it needs no libcrypto or libssl, and every OpenSSL
 * symbol it uses is bound, when loaded into node, to the OpenSSL node itself
 * carries (the executable, or the libcrypto node links), with nothing else
 * of the kind mapped into the process.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ADDON_PATH } from '../../src/dataplane/native';
import { LINK_STATIC_EXPORTED, NODE_INCLUDE, SANITIZE, compileWg, compileWgForNode, hasGcc, hasLibcrypto, hasSanitizers, hasStaticLibcrypto } from '../helpers/wireguard-c';

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

      it('known-answer tests of every primitive (EVP: a libcrypto.so exports no primitive below it)', (t) => {
        const bin = build(t, 'kat_test');
        if (bin) assert.match(runProgram(bin), /^crypto path: evp$/m);
      });

      it('a whole handshake, transport and cookie reply against known answers', (t) => {
        const bin = build(t, 'handshake_kat_test');
        if (bin) runProgram(bin);
      });

      it('handshakes, transport, cookies, TAI64N and timers between two instances', (t) => {
        const bin = build(t, 'handshake_test');
        if (bin) runProgram(bin);
      });

      it('known-answer tests of every primitive on the direct path (libcrypto linked in and exported, as in Node)', (t) => {
        if (!hasStaticLibcrypto) {
          t.skip('no libcrypto.a (libssl-dev) to link in');
          return;
        }
        if (name !== '-O2' && !sanitizers) {
          t.skip('gcc has no sanitizer runtime here');
          return;
        }
        const bin = path.join(dir, `kat_test-direct-${name === '-O2' ? 'o2' : 'san'}`);
        compileWg(bin, 'kat_test.c', flags, LINK_STATIC_EXPORTED);
        assert.match(runProgram(bin), /^crypto path: direct$/m);
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
    const runs: [program: string, env: NodeJS.ProcessEnv, path?: string][] = [
      ['kat_test', {}, 'direct'],
      ['kat_test', { RUDDER_WG_CRYPTO: 'evp' }, 'evp'],
      ['handshake_kat_test', {}],
      ['handshake_test', {}],
    ];
    for (const [program, env, cryptoPath] of runs) {
      const label = Object.keys(env).length ? `${program} (RUDDER_WG_CRYPTO=evp)` : program;
      it(cryptoPath ? `${label}: the ${cryptoPath} ChaCha20/Poly1305 path` : label, (t) => {
        if (!nodeHeaders) {
          t.skip(`no Node OpenSSL headers in ${NODE_INCLUDE}`);
          return;
        }
        const so = path.join(dir, `${program}-node.so`);
        if (!fs.existsSync(so)) compileWgForNode(so, `${program}.c`);
        // The object has no module registration: dlopen runs its constructor, then throws.
        const script = `try { process.dlopen({ exports: {} }, ${JSON.stringify(so)}); } catch {}
          const maps = require('fs').readFileSync('/proc/self/maps', 'utf8');
          console.log(/libcrypto\\.so/.test(maps) ? 'a libcrypto.so is mapped' : 'no libcrypto.so mapped');`;
        const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, ...env } });
        assert.equal(r.status, 0, r.stdout + r.stderr);
        assert.match(r.stdout, /[1-9]\d* checks, 0 failures\nexit status 0\n/);
        // Node's bundled OpenSSL exports ChaCha20_ctr32 and Poly1305_*: the data plane's fast path is tested here.
        if (cryptoPath) assert.match(r.stdout, new RegExp(`^crypto path: ${cryptoPath}$`, 'm'));
        assert.match(r.stdout, /no libcrypto\.so mapped/, 'only the OpenSSL inside node is in the process');
      });
    }
  });
});

/** OpenSSL's exported names, as the addon would import them. */
const OPENSSL_SYMBOL = /^(EVP_|CRYPTO_|OSSL_|OPENSSL_|RAND_|ERR_|BN_|HMAC|X509|SSL_)/;
const OPENSSL_LIB = /\/lib(crypto|ssl)[.-][^/\s]*$/;

describe('the built addon and the one OpenSSL in the process', () => {
  const tool = (argv: string[], env?: NodeJS.ProcessEnv): string => {
    const r = spawnSync(argv[0] as string, argv.slice(1), { encoding: 'utf8', maxBuffer: 64 << 20, env: env ?? process.env });
    assert.equal(r.status, 0, `${argv.join(' ')}:\n${r.stdout}${r.stderr}`);
    return r.stdout + r.stderr;
  };

  it('needs no libcrypto or libssl of its own', () => {
    assert.ok(fs.existsSync(ADDON_PATH), `the addon is built (./build): ${ADDON_PATH}`);
    const needed = [...tool(['readelf', '-d', '-W', ADDON_PATH]).matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1] as string);
    assert.ok(needed.length > 0, 'readelf lists what the addon needs');
    assert.deepEqual(needed.filter((n) => /lib(crypto|ssl)/.test(n)), [], `the addon's DT_NEEDED: ${needed.join(', ')}`);
    const ldd = tool(['ldd', ADDON_PATH]);
    assert.doesNotMatch(ldd, /lib(crypto|ssl)/, `ldd ${ADDON_PATH}:\n${ldd}`);
  });

  it('binds every OpenSSL symbol it uses to the OpenSSL inside node; no other is mapped', () => {
    const wanted = tool(['nm', '-D', '--undefined-only', ADDON_PATH])
      .split('\n')
      .map((l) => l.trim().split(/\s+/).pop() ?? '')
      .filter((n) => OPENSSL_SYMBOL.test(n));
    assert.ok(wanted.includes('EVP_CIPHER_fetch') && wanted.includes('CRYPTO_memcmp'), `the addon imports OpenSSL: ${wanted.join(' ')}`);
    // Where node takes OpenSSL from: its own executable, or a libcrypto it links.
    const nodeLibs = [...tool(['ldd', process.execPath]).matchAll(/=>\s+(\S+)/g)].map((m) => m[1] as string).filter((l) => OPENSSL_LIB.test(l));
    const script = `const before = require('fs').readFileSync('/proc/self/maps', 'utf8');
      require(${JSON.stringify(ADDON_PATH)});
      const after = require('fs').readFileSync('/proc/self/maps', 'utf8');
      const libs = (m) => [...new Set(m.split('\\n').map((l) => l.trim().split(/\\s+/)[5] ?? '').filter((f) => /\\/lib(crypto|ssl)[.-]/.test(f)))].sort();
      console.log('MAPS ' + JSON.stringify({ before: libs(before), after: libs(after) }));`;
    // Every symbol bound at load (LD_BIND_NOW), each binding reported by the dynamic linker.
    const out = tool([process.execPath, '-e', script], { ...process.env, LD_BIND_NOW: '1', LD_DEBUG: 'bindings' });
    const addonName = path.basename(ADDON_PATH);
    const bound = new Map<string, string>();
    for (const m of out.matchAll(/binding file (\S+) \[\d+\] to (\S+) \[\d+\]: normal symbol `([^']+)'/g)) {
      if (path.basename(m[1] as string) === addonName && OPENSSL_SYMBOL.test(m[3] as string)) bound.set(m[3] as string, m[2] as string);
    }
    assert.deepEqual([...bound.keys()].sort(), [...new Set(wanted)].sort(), 'each OpenSSL symbol the addon imports is bound at load');
    const providers = [...new Set(bound.values())];
    const nodeItself = (f: string): boolean => f === 'node' || f === process.execPath || nodeLibs.includes(f);
    assert.equal(providers.length, 1, `one provider of OpenSSL for the addon: ${providers.join(', ')}`);
    assert.ok(nodeItself(providers[0] as string), `the addon's OpenSSL comes from node (${process.execPath}${nodeLibs.length ? `, ${nodeLibs.join(', ')}` : ''}), not ${providers[0]}`);
    const maps = /^MAPS (.*)$/m.exec(out);
    assert.ok(maps, out.slice(-2000));
    const { before, after } = JSON.parse(maps[1] as string) as { before: string[]; after: string[] };
    assert.deepEqual(after, before, 'loading the addon maps no libcrypto or libssl that node had not');
    assert.ok(after.every((f) => nodeLibs.includes(f)), `only node's own OpenSSL is mapped: ${after.join(', ')}`);
  });
});
