/**
 * Kubernetes mode's own counters and their exposition (rudder_kube_*), and
 * the kubeconfig's exec and auth-provider users (pure parts).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { registerKubeMetrics } from '../../src/metrics/kube';
import { readKubeconfig } from '../../src/subnet/kube/client';
import { parseExecCredential } from '../../src/subnet/kube/exec-credential';
import { KubeStats, kubeVerb } from '../../src/subnet/kube/stats';
import { parseMetrics } from '../helpers/prometheus';

describe('kube API counters', () => {
  it('names the verb of a request as the API server does', () => {
    assert.equal(kubeVerb('GET', '/api/v1/nodes'), 'list');
    assert.equal(kubeVerb('GET', '/api/v1/nodes?limit=500'), 'list');
    assert.equal(kubeVerb('GET', '/api/v1/nodes/h1'), 'get');
    assert.equal(kubeVerb('GET', '/api/v1/nodes?watch=true&resourceVersion=5'), 'watch');
    assert.equal(kubeVerb('GET', '/api/v1/namespaces/kube-system/configmaps'), 'list');
    assert.equal(kubeVerb('GET', '/api/v1/namespaces/kube-system/configmaps/x'), 'get');
    assert.equal(kubeVerb('GET', '/apis/apps/v1/namespaces/ns/daemonsets/rudder'), 'get');
    assert.equal(kubeVerb('PATCH', '/api/v1/nodes/h1/status'), 'patch');
    assert.equal(kubeVerb('POST', '/api/v1/nodes'), 'other');
  });

  it('counts requests by verb and status, watch restarts and component errors; the exposition names them rudder_kube_*', async () => {
    const s = new KubeStats();
    s.request('list', 200);
    s.request('list', null);
    s.request('list', null);
    s.request('watch', 410);
    s.request('patch', 403);
    s.watchRestart('gone');
    s.watchRestart('broken');
    s.watchRestart('broken');
    s.etcdError('watch');
    s.etcdError('lease');
    s.etcdReconnected('watch');
    assert.equal(s.failedRequests, 4);
    const reg = new Registry();
    registerKubeMetrics(reg, s);
    s.request('list', 200); // read at scrape time
    const m = parseMetrics(await reg.metrics());
    assert.equal(m.get('rudder_kube_api_requests_total{verb="list",code="200"}'), 2);
    assert.equal(m.get('rudder_kube_api_requests_total{verb="list",code="none"}'), 2);
    assert.equal(m.get('rudder_kube_api_requests_total{verb="watch",code="410"}'), 1);
    assert.equal(m.get('rudder_kube_api_requests_total{verb="patch",code="403"}'), 1);
    assert.equal(m.get('rudder_kube_watch_restarts_total{reason="gone"}'), 1);
    assert.equal(m.get('rudder_kube_watch_restarts_total{reason="broken"}'), 2);
    assert.equal(m.get('rudder_kube_watch_restarts_total{reason="timeout"}'), 0);
    assert.equal(m.get('rudder_kube_errors_total{component="watch"}'), 1);
    assert.equal(m.get('rudder_kube_errors_total{component="lease"}'), 1);
    assert.equal(m.get('rudder_kube_reconnects_total{component="watch"}'), 1);
    assert.ok(![...m.keys()].some((k) => k.startsWith('rudder_etcd_')), 'no etcd families from the kube registration');
  });
});

describe('kubeconfig users: exec plugins and auth-provider', () => {
  const withKubeconfig = (user: string, fn: (file: string, dir: string) => void): void => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rudder-kexec-'));
    try {
      const file = path.join(dir, 'kubeconfig');
      fs.writeFileSync(file, `clusters:\n- name: c\n  cluster:\n    server: https://k:6443\nusers:\n- name: u\n  user:\n${user}contexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n`);
      fn(file, dir);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };

  it('reads exec: command (relative with a slash: from the kubeconfig directory), args, env', () => {
    withKubeconfig(
      `    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: bin/get-token
      args: ["--cluster", "c1"]
      env:
      - name: A
        value: "1"
      installHint: install get-token
`,
      (file, dir) => {
        const c = readKubeconfig(file);
        assert.deepEqual(c.exec, { apiVersion: 'client.authentication.k8s.io/v1beta1', command: path.join(dir, 'bin/get-token'), args: ['--cluster', 'c1'], env: { A: '1' }, installHint: 'install get-token' });
      },
    );
    withKubeconfig('    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: aws\n', (file) => {
      assert.equal(readKubeconfig(file).exec?.command, 'aws', 'a bare name is looked up in PATH');
    });
    withKubeconfig('    exec:\n      apiVersion: client.authentication.k8s.io/v1alpha1\n      command: x\n', (file) => {
      assert.throws(() => readKubeconfig(file), /user "u": exec apiVersion "client.authentication.k8s.io\/v1alpha1" is not supported/);
    });
  });

  it('refuses auth-provider by name, saying what to use instead', () => {
    withKubeconfig('    auth-provider:\n      name: gcp\n      config: {}\n', (file) => {
      assert.throws(() => readKubeconfig(file), (e: Error) => /user "u" authenticates with auth-provider "gcp", which Rudder does not support/.test(e.message) && /exec plugin/.test(e.message));
    });
  });

  it('parses an ExecCredential: token and expiry; says what is wrong otherwise', () => {
    const v = 'client.authentication.k8s.io/v1beta1';
    const ok = parseExecCredential(JSON.stringify({ apiVersion: v, kind: 'ExecCredential', status: { token: 't', expirationTimestamp: '2030-01-02T03:04:05Z' } }), v);
    assert.deepEqual(ok, { token: 't', expiresAt: Date.UTC(2030, 0, 2, 3, 4, 5) });
    assert.deepEqual(parseExecCredential(JSON.stringify({ apiVersion: v, kind: 'ExecCredential', status: { token: 't' } }), v), { token: 't', expiresAt: null });
    assert.throws(() => parseExecCredential('nope', v), /not JSON/);
    assert.throws(() => parseExecCredential(JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', status: { token: 't' } }), v), /answered apiVersion/);
    assert.throws(() => parseExecCredential(JSON.stringify({ apiVersion: v, kind: 'ExecCredential', status: {} }), v), /no token/);
    assert.throws(() => parseExecCredential(JSON.stringify({ apiVersion: v, kind: 'ExecCredential', status: { clientCertificateData: 'x', clientKeyData: 'y' } }), v), /client certificate/);
    assert.throws(() => parseExecCredential(JSON.stringify({ apiVersion: v, kind: 'ExecCredential', status: { token: 't', expirationTimestamp: 'soon' } }), v), /not an RFC 3339 time/);
  });
});
