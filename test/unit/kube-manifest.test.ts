/**
 * packaging/kubernetes/rudder.yaml, read with the YAML reader the daemon
 * uses for kubeconfigs: the objects a user applies, the RBAC Rudder needs
 * (and no more), the DaemonSet fields Kubernetes mode relies on, and every
 * flag it passes known to the daemon (or to `rudder cni-config`). The e2e
 * kube test also applies it to the real kube-apiserver.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { DAEMON_FLAGS } from '../../src/cli/flags';
import { CNI_FLAGS } from '../../src/cni/runner';
import { parseYamlDocuments } from '../../src/subnet/kube/yaml';
import { parseConfig } from '../../src/config';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const MANIFEST = path.join(ROOT, 'packaging', 'kubernetes', 'rudder.yaml');

type J = Record<string, unknown>;
const docs = (): J[] => parseYamlDocuments(fs.readFileSync(MANIFEST, 'utf8')) as J[];
const byKind = (kind: string): J => {
  const d = docs().find((x) => x.kind === kind);
  assert.ok(d, `rudder.yaml has a ${kind}`);
  return d;
};
const at = (o: unknown, ...keys: (string | number)[]): unknown => keys.reduce<unknown>((v, k) => (v as Record<string | number, unknown> | undefined)?.[k], o);

/** The flag names of an args list: "-name=value" and "-name" (a bool, or followed by its value). */
function flagNames(args: readonly string[]): string[] {
  return args.filter((a) => a.startsWith('-')).map((a) => a.replace(/^--?/, '').split('=')[0] as string);
}

describe('packaging/kubernetes/rudder.yaml', () => {
  it('holds the namespace, service account, RBAC, config map and DaemonSet', () => {
    assert.deepEqual(docs().map((d) => d.kind), ['Namespace', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'ConfigMap', 'DaemonSet']);
    const ns = at(byKind('Namespace'), 'metadata', 'name');
    for (const k of ['ServiceAccount', 'ConfigMap', 'DaemonSet']) assert.equal(at(byKind(k), 'metadata', 'namespace'), ns, `${k} in ${String(ns)}`);
  });

  it('RBAC: nodes get/list/watch/patch and nodes/status patch, bound to the service account', () => {
    const rules = at(byKind('ClusterRole'), 'rules') as J[];
    const verbs = (res: string): string[] => rules.filter((r) => (r.resources as string[]).includes(res) && (r.apiGroups as string[]).includes('')).flatMap((r) => r.verbs as string[]).sort();
    assert.deepEqual(verbs('nodes'), ['get', 'list', 'patch', 'watch']);
    assert.deepEqual(verbs('nodes/status'), ['patch']);
    assert.equal(rules.length, 2, 'nothing more than Rudder needs');
    const b = byKind('ClusterRoleBinding');
    assert.equal(at(b, 'roleRef', 'name'), at(byKind('ClusterRole'), 'metadata', 'name'));
    assert.equal(at(b, 'subjects', 0, 'name'), at(byKind('ServiceAccount'), 'metadata', 'name'));
    assert.equal(at(b, 'subjects', 0, 'namespace'), at(byKind('ServiceAccount'), 'metadata', 'namespace'));
  });

  it('the ConfigMap holds a valid net-conf.json', () => {
    const text = at(byKind('ConfigMap'), 'data', 'net-conf.json');
    assert.equal(typeof text, 'string');
    parseConfig(text as string);
  });

  it('DaemonSet: host network, capabilities, mounts, NODE_NAME, tolerations, a cni-config -watch container', () => {
    const ds = byKind('DaemonSet');
    const spec = at(ds, 'spec', 'template', 'spec') as J;
    assert.equal(spec.hostNetwork, true);
    assert.equal(spec.serviceAccountName, at(byKind('ServiceAccount'), 'metadata', 'name'));
    const tol = spec.tolerations as J[];
    assert.ok(tol.some((t) => t.operator === 'Exists' && t.effect === 'NoSchedule' && t.key === undefined), 'tolerates not-ready/uninitialized taints');
    const containers = spec.containers as J[];
    const volumes = new Map((spec.volumes as J[]).map((v) => [v.name as string, v]));
    const hostPathOf = (c: J, mountPath: string): string | undefined => {
      const m = (c.volumeMounts as J[]).find((x) => x.mountPath === mountPath);
      return m ? (at(volumes.get(m.name as string), 'hostPath', 'path') as string | undefined) ?? `configMap:${String(at(volumes.get(m.name as string), 'configMap', 'name'))}` : undefined;
    };

    const d = containers.find((c) => !(c.args as string[]).includes('cni-config'));
    assert.ok(d, 'a daemon container');
    const args = d.args as string[];
    assert.ok(args.includes('-kube-subnet-mgr'));
    const known = new Set(DAEMON_FLAGS.flatMap((s) => [s.name, ...(s.aliases ?? [])]));
    for (const f of flagNames(args)) assert.ok(known.has(f), `daemon flag -${f} is in the daemon's flag table`);
    assert.deepEqual(at(d, 'securityContext', 'capabilities', 'add'), ['NET_ADMIN', 'NET_RAW']);
    const env = d.env as J[];
    assert.deepEqual(env.find((e) => e.name === 'NODE_NAME')?.valueFrom, { fieldRef: { fieldPath: 'spec.nodeName' } });
    assert.equal(hostPathOf(d, '/run/rudder'), '/run/rudder');
    assert.equal(hostPathOf(d, '/dev/net/tun'), '/dev/net/tun');
    const cfgPath = args.find((a) => a.startsWith('-net-config-path='))?.split('=')[1] ?? '/etc/rudder/net-conf.json';
    assert.equal(hostPathOf(d, path.dirname(cfgPath)), `configMap:${String(at(byKind('ConfigMap'), 'metadata', 'name'))}`);

    const cni = containers.find((c) => (c.args as string[]).includes('cni-config'));
    assert.ok(cni, 'a cni-config container');
    const cargs = cni.args as string[];
    assert.ok(cargs.includes('-watch'));
    const cniKnown = new Set(CNI_FLAGS.flatMap((s) => [s.name, ...(s.aliases ?? [])]));
    for (const f of flagNames(cargs)) assert.ok(cniKnown.has(f), `cni-config flag -${f} is in its flag table`);
    const out = cargs.find((a) => a.startsWith('-out='))?.split('=')[1] ?? '/etc/cni/net.d';
    assert.equal(hostPathOf(cni, out), '/etc/cni/net.d');
    const sf = (a: string[]): string | undefined => a.find((x) => x.startsWith('-subnet-file='))?.split('=')[1];
    assert.equal(sf(cargs), sf(args), 'both containers use one subnet file');
  });
});
