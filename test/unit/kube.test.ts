import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { formatCidr, formatIp, parseIp } from '../../src/ip/ipv4';
import { inClusterConnection, readKubeconfig } from '../../src/subnet/kube/client';
import { annotationsToPatch, networkAvailablePatch, nodeLease, nodeSubnets, ownAnnotations, ownPublicIP, readNode } from '../../src/subnet/kube/node';
import { parseYaml, parseYamlDocuments } from '../../src/subnet/kube/yaml';

describe('yaml subset', () => {
  it('reads what kubectl writes in a kubeconfig (sequences at the key column, quoted and plain scalars)', () => {
    const v = parseYaml(`apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: QUJD
    server: https://198.18.0.250:6443
  name: test
contexts:
- context:
    cluster: test
    user: "admin"
  name: ctx # a comment
current-context: ctx
kind: Config
preferences: {}
users:
- name: admin
  user:
    token: 'abc''d'
`);
    assert.deepEqual(v, {
      apiVersion: 'v1',
      clusters: [{ cluster: { 'certificate-authority-data': 'QUJD', server: 'https://198.18.0.250:6443' }, name: 'test' }],
      contexts: [{ context: { cluster: 'test', user: 'admin' }, name: 'ctx' }],
      'current-context': 'ctx',
      kind: 'Config',
      preferences: {},
      users: [{ name: 'admin', user: { token: "abc'd" } }],
    });
  });

  it('reads manifests: documents, literal blocks, flow lists, nested sequences, numbers and booleans', () => {
    const docs = parseYamlDocuments(`---
kind: ConfigMap
data:
  net-conf.json: |
    {
      "Network": "10.244.0.0/16"
    }
---
# only a comment
---
kind: DaemonSet
spec:
  template:
    spec:
      hostNetwork: true
      containers:
        - name: rudder
          args: ["-kube-subnet-mgr", -ip-masq]
          securityContext:
            capabilities:
              add: [NET_ADMIN, NET_RAW]
          ports:
            - containerPort: 9100
      tolerations:
        - operator: Exists
          effect: NoSchedule
`);
    assert.equal(docs.length, 2);
    assert.deepEqual(docs[0], { kind: 'ConfigMap', data: { 'net-conf.json': '{\n  "Network": "10.244.0.0/16"\n}\n' } });
    assert.deepEqual(docs[1], {
      kind: 'DaemonSet',
      spec: {
        template: {
          spec: {
            hostNetwork: true,
            containers: [{ name: 'rudder', args: ['-kube-subnet-mgr', '-ip-masq'], securityContext: { capabilities: { add: ['NET_ADMIN', 'NET_RAW'] } }, ports: [{ containerPort: 9100 }] }],
            tolerations: [{ operator: 'Exists', effect: 'NoSchedule' }],
          },
        },
      },
    });
  });

  it('reads JSON and names the line of an error', () => {
    assert.deepEqual(parseYaml('{"a": [1, {"b": null}]}'), { a: [1, { b: null }] });
    assert.throws(() => parseYaml('a: 1\n  b: 2\n'), /YAML line 2/);
  });
});

describe('kubeconfig', () => {
  it('takes server, CA, token and client certificate of the current context; paths relative to the file', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rudder-kcfg-'));
    try {
      fs.writeFileSync(path.join(dir, 'ca.crt'), 'CA');
      fs.writeFileSync(path.join(dir, 'c.crt'), 'CERT');
      fs.writeFileSync(path.join(dir, 'c.key'), 'KEY');
      const file = path.join(dir, 'kubeconfig');
      fs.writeFileSync(
        file,
        `clusters:
- name: a
  cluster: {server: "https://a:1"}
- name: b
  cluster:
    server: https://b:6443
    certificate-authority: ca.crt
users:
- name: u
  user:
    client-certificate: c.crt
    client-key: c.key
    tokenFile: tok
contexts:
- name: x
  context: {cluster: a, user: u}
- name: y
  context: {cluster: b, user: u}
current-context: y
`,
      );
      const c = readKubeconfig(file);
      assert.equal(c.server, 'https://b:6443');
      assert.equal(c.ca?.toString(), 'CA');
      assert.equal(c.cert?.toString(), 'CERT');
      assert.equal(c.key?.toString(), 'KEY');
      assert.equal(c.tokenFile, path.join(dir, 'tok'));
      fs.writeFileSync(file, 'current-context: nope\ncontexts: []\nclusters: []\n');
      assert.throws(() => readKubeconfig(file), /current-context "nope" is not among its contexts/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('in-cluster: service-account token and CA, KUBERNETES_SERVICE_HOST/PORT; says what is missing', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rudder-sa-'));
    try {
      assert.throws(() => inClusterConnection({}, dir), /needs -kubeconfig-file, or to run in a pod .*KUBERNETES_SERVICE_HOST is not set/);
      fs.writeFileSync(path.join(dir, 'token'), 'T\n');
      fs.writeFileSync(path.join(dir, 'ca.crt'), 'CA');
      const c = inClusterConnection({ KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }, dir);
      assert.equal(c.server, 'https://10.96.0.1:443');
      assert.equal(c.tokenFile, path.join(dir, 'token'));
      assert.equal(c.ca?.toString(), 'CA');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Node objects', () => {
  const P = 'rudder.io';
  const node = (spec: Record<string, unknown>, annotations: Record<string, string>) => readNode({ metadata: { name: 'n1', resourceVersion: '42', annotations }, spec });

  it('subnet from podCIDRs (IPv4 taken, IPv6 kept) or podCIDR', () => {
    const s = nodeSubnets(node({ podCIDRs: ['fd00:0:0:5::/64', '10.244.5.0/24'] }, {}));
    assert.equal(s.v4 && formatCidr(s.v4), '10.244.5.0/24');
    assert.equal(s.v6, 'fd00:0:0:5::/64');
    const t = nodeSubnets(node({ podCIDR: '10.244.6.0/24' }, {}));
    assert.equal(t.v4 && formatCidr(t.v4), '10.244.6.0/24');
    assert.equal(nodeSubnets(node({}, {})).v4, null);
  });

  it('a peer lease from the annotations, flannel names; what is missing is said', () => {
    const ok = nodeLease(node({ podCIDR: '10.244.1.0/24' }, { 'rudder.io/public-ip': '198.18.0.2', 'rudder.io/backend-type': 'vxlan', 'rudder.io/backend-data': '{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}' }), P);
    assert.ok('lease' in ok);
    assert.equal(formatIp(ok.lease.publicIP), '198.18.0.2');
    assert.equal(ok.lease.backendType, 'vxlan');
    assert.deepEqual(ok.lease.backendData, { VNI: 1, VtepMAC: 'aa:bb:cc:dd:ee:ff' });
    const hostgw = nodeLease(node({ podCIDR: '10.244.1.0/24' }, { 'rudder.io/public-ip': '198.18.0.2', 'rudder.io/backend-type': 'host-gw', 'rudder.io/backend-data': 'null' }), P);
    assert.ok('lease' in hostgw && Object.keys(hostgw.lease.backendData).length === 0);
    assert.deepEqual(nodeLease(node({}, {}), P), { error: 'no IPv4 spec.podCIDR yet' });
    assert.deepEqual(nodeLease(node({ podCIDR: '10.244.1.0/24' }, { 'flannel.alpha.coreos.com/public-ip': '198.18.0.2' }), P), { error: 'no rudder.io/public-ip annotation yet' });
  });

  it('own annotations: overwrite wins as in flannel; only differences are patched; the condition patch', () => {
    const n = node({ podCIDR: '10.244.1.0/24' }, { 'rudder.io/public-ip-overwrite': '203.0.113.9', 'rudder.io/backend-type': 'vxlan' });
    const { ip, overwritten } = ownPublicIP(n, P, parseIp('198.18.0.1') as number);
    assert.equal(formatIp(ip), '203.0.113.9');
    assert.ok(overwritten);
    const want = ownAnnotations(P, ip, 'vxlan', { VNI: 1 });
    assert.deepEqual(annotationsToPatch(n, want), { 'rudder.io/public-ip': '203.0.113.9', 'rudder.io/backend-data': '{"VNI":1}', 'rudder.io/kube-subnet-manager': 'true' });
    const c = networkAvailablePatch(new Date('2026-01-02T03:04:05.678Z')) as { status: { conditions: Record<string, string>[] } };
    assert.deepEqual(c.status.conditions[0], {
      type: 'NetworkUnavailable',
      status: 'False',
      reason: 'RudderIsUp',
      message: 'Rudder is running on this node',
      lastTransitionTime: '2026-01-02T03:04:05Z',
      lastHeartbeatTime: '2026-01-02T03:04:05Z',
    });
  });
});
