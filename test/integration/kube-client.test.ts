/**
 * The Kubernetes client against a scripted API server (plain HTTP on
 * 127.0.0.1): every request counted by verb and status (none: no answer),
 * watch restarts counted by reason, and an exec credential plugin (a shell
 * script) run once, again when its token expires or is refused (401), and
 * only once for concurrent requests.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { KubeClient, type KubeConnection } from '../../src/subnet/kube/client';
import { ExecCredentials, EXPIRY_MARGIN_MS, type ExecConfig } from '../../src/subnet/kube/exec-credential';
import { KubePeers } from '../../src/subnet/kube/source';
import { KubeStats } from '../../src/subnet/kube/stats';
import { waitUntil } from '../helpers/wait';

describe('kube client: counting and exec credentials', () => {
  let server: http.Server;
  let url: string;
  let dir: string;
  /** The token the server takes now. */
  let good = 'tok-1';
  const auths: string[] = [];

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rudder-kclient-'));
    server = http.createServer((req, res) => {
      const u = new URL(req.url ?? '/', 'http://x');
      auths.push(req.headers.authorization ?? '');
      const json = (status: number, body: unknown): void => {
        res.writeHead(status, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (req.headers.authorization !== `Bearer ${good}`) return json(401, { kind: 'Status', code: 401, reason: 'Unauthorized', message: 'Unauthorized' });
      if (u.searchParams.get('watch') === 'true') {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version' } }) + '\n');
        return;
      }
      if (u.pathname === '/api/v1/nodes') return json(200, { kind: 'NodeList', metadata: { resourceVersion: '7' }, items: [] });
      if (u.pathname === '/api/v1/nodes/h1' && req.method === 'PATCH') return json(403, { kind: 'Status', code: 403, reason: 'Forbidden', message: 'no' });
      return json(404, { kind: 'Status', code: 404, reason: 'NotFound', message: 'not found' });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await new Promise((r) => server.close(r));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('counts every request by verb and status, and one without an answer as none', async () => {
    good = 'tok-1';
    const stats = new KubeStats();
    const c = new KubeClient({ server: url, token: 'tok-1', insecureSkipTlsVerify: false, origin: 'test' }, { stats });
    await c.request('GET', '/api/v1/nodes');
    await assert.rejects(c.request('GET', '/api/v1/nodes/h9'), /404/);
    await assert.rejects(c.request('PATCH', '/api/v1/nodes/h1', {}), /403 .*RBAC/);
    c.close();
    const down = new KubeClient({ server: 'http://127.0.0.1:1', insecureSkipTlsVerify: false, origin: 'test' }, { stats });
    await assert.rejects(down.request('GET', '/api/v1/nodes'), /unreachable/);
    const w = down.watch('/api/v1/nodes?watch=true&resourceVersion=1', () => undefined);
    await w.ended;
    down.close();
    assert.deepEqual(Object.fromEntries(stats.requests), { 'list 200': 1, 'get 404': 1, 'patch 403': 1, 'list none': 1, 'watch none': 1 });
  });

  it('counts a watch answered 410 as a restart for `gone`', async () => {
    good = 'tok-1';
    const stats = new KubeStats();
    const c = new KubeClient({ server: url, token: 'tok-1', insecureSkipTlsVerify: false, origin: 'test' }, { stats });
    const peers = new KubePeers(c, 'rudder.io', '/nonexistent', 'h1', 60, stats);
    let broken: unknown = null;
    const stop = await peers.watchLeases('8', { onEvents: () => undefined, onBroken: (r) => (broken = r) });
    await waitUntil(async () => broken !== null || undefined, { giveUpMs: 10_000, what: 'the watch broken' });
    stop();
    peers.close();
    assert.match(String(broken), /410 Gone/);
    assert.deepEqual(stats.watchRestarts, { timeout: 0, gone: 1, broken: 0 });
    assert.equal(stats.requests.get('watch 200'), 1);
  });

  describe('exec credential plugin', () => {
    let plugin: string;
    let runs: string;
    const count = (): number => Number(fs.readFileSync(runs, 'utf8').trim() || '0');
    const cfg = (env: Record<string, string>): ExecConfig => ({ apiVersion: 'client.authentication.k8s.io/v1beta1', command: plugin, args: ['--flag'], env: { RUNS: runs, ...env } });

    before(() => {
      plugin = path.join(dir, 'plugin.sh');
      runs = path.join(dir, 'runs');
      // Prints the token in $TOKEN_FILE (read at each run), expiring $TTL s from now when TTL is set; counts its runs; checks its arg and exec info.
      fs.writeFileSync(
        plugin,
        `#!/bin/sh
[ "$1" = --flag ] || { echo "no --flag" >&2; exit 3; }
case "$KUBERNETES_EXEC_INFO" in *'"kind":"ExecCredential"'*) ;; *) echo "no exec info" >&2; exit 4;; esac
n=$(( $(cat "$RUNS" 2>/dev/null || echo 0) + 1 )); echo $n > "$RUNS"
sleep "\${DELAY:-0}"
exp=""
[ -n "$TTL" ] && exp=",\\"expirationTimestamp\\":\\"$(date -u -d "+$TTL sec" +%Y-%m-%dT%H:%M:%SZ)\\""
printf '{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"token":"%s"%s}}\\n' "$(cat "$TOKEN_FILE")" "$exp"
`,
        { mode: 0o755 },
      );
    });

    const reset = (token: string): string => {
      fs.writeFileSync(runs, '0');
      const f = path.join(dir, 'token');
      fs.writeFileSync(f, token);
      return f;
    };

    it('runs once, keeps the token until it expires, then runs again', async () => {
      const tokenFile = reset('tok-a');
      const e = new ExecCredentials(cfg({ TOKEN_FILE: tokenFile, TTL: '60' }));
      const now = Date.now();
      assert.equal(await e.token(now), 'tok-a');
      assert.equal(await e.token(now + 10_000), 'tok-a');
      assert.equal(count(), 1);
      fs.writeFileSync(tokenFile, 'tok-b');
      assert.equal(await e.token(now + 60_000 - EXPIRY_MARGIN_MS + 1_000), 'tok-b', 'expired (less than the margin left): run again');
      assert.equal(count(), 2);
    });

    it('runs once for concurrent requests; a 401 drops the token and the request is sent again with a new one', async () => {
      const tokenFile = reset('tok-old');
      good = 'tok-old';
      const stats = new KubeStats();
      const conn: KubeConnection = { server: url, exec: cfg({ TOKEN_FILE: tokenFile, DELAY: '0.3' }), insecureSkipTlsVerify: false, origin: 'test' };
      const c = new KubeClient(conn, { stats });
      await Promise.all([c.request('GET', '/api/v1/nodes'), c.request('GET', '/api/v1/nodes'), c.request('GET', '/api/v1/nodes')]);
      assert.equal(count(), 1, 'one run for three requests');
      // The server rotates: the held token is refused; the plugin now prints the new one.
      good = 'tok-new';
      fs.writeFileSync(tokenFile, 'tok-new');
      auths.length = 0;
      await c.request('GET', '/api/v1/nodes');
      assert.deepEqual(auths, ['Bearer tok-old', 'Bearer tok-new']);
      assert.equal(count(), 2);
      assert.equal(stats.requests.get('list 401'), 1);
      assert.equal(stats.requests.get('list 200'), 4);
      c.close();
    });

    it('says what failed: a missing command (with its install hint), a failing one (with its stderr)', async () => {
      const missing = new ExecCredentials({ apiVersion: 'client.authentication.k8s.io/v1', command: path.join(dir, 'nope'), args: [], env: {}, installHint: 'install nope from example' });
      await assert.rejects(missing.token(), (e: Error & { code?: string }) => e.code === 'E_KUBE' && /exec plugin .*nope: not found \(install nope from example\)/.test(e.message));
      const failing = new ExecCredentials({ ...cfg({}), args: [] });
      await assert.rejects(failing.token(), /failed: exit status 3: no --flag/);
      // A token beside the plugin wins (as in kubectl): the plugin is not run.
      good = 'tok-1';
      const c = new KubeClient({ server: url, token: 'tok-1', exec: missing.cfg, insecureSkipTlsVerify: false, origin: 'test' });
      await c.request('GET', '/api/v1/nodes');
      c.close();
    });
  });
});
