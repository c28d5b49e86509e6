import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { formatCidr, formatIp, parseIp } from '../../src/ip/ipv4';
import { formatCidr6, formatIp6, parseIp6 } from '../../src/ip/ipv6';
import { formatLeaseKey } from '../../src/subnet/lease';
import { inClusterConnection, readKubeconfig } from '../../src/subnet/kube/client';
import { PRESENT_FAMILIES, annotationsToPatch, networkAvailablePatch, nodeLease, nodeSubnets, ownAnnotations, ownPublicIP, ownPublicIPv6, readNode } from '../../src/subnet/kube/node';
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

  it('dual-stack: both podCIDRs read; an invalid entry of either family is named', () => {
    const s = nodeSubnets(node({ podCIDR: '10.244.5.0/24', podCIDRs: ['10.244.5.0/24', 'fd00:0:0:5::/64'] }, {}));
    assert.equal(s.v6Cidr && formatCidr6(s.v6Cidr), 'fd00:0:0:5::/64');
    const only6 = nodeSubnets(node({ podCIDR: 'fd00:0:0:7::/64', podCIDRs: ['fd00:0:0:7::/64'] }, {}));
    assert.equal(only6.v4, null);
    assert.equal(only6.v6Cidr && formatCidr6(only6.v6Cidr), 'fd00:0:0:7::/64');
    assert.equal(nodeSubnets(node({ podCIDRs: ['fd00::5/64'] }, {})).bad6, 'fd00::5/64', 'host bits set');
  });

  it('a dual-stack peer lease: both subnets, public-ipv6 and backend-v6-data (flannel names)', () => {
    const DS = { v4: true, v6: true };
    const ann = {
      'rudder.io/public-ip': '198.18.0.2',
      'rudder.io/public-ipv6': '2001:2::2',
      'rudder.io/backend-type': 'vxlan',
      'rudder.io/backend-data': '{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}',
      'rudder.io/backend-v6-data': '{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:01"}',
    };
    const r = nodeLease(node({ podCIDRs: ['10.244.1.0/24', 'fd00:0:0:1::/64'] }, ann), P, DS);
    assert.ok('lease' in r, 'error' in r ? r.error : '');
    assert.equal(formatLeaseKey(r.lease), '10.244.1.0-24&fd00:0:0:1::-64');
    assert.equal(r.lease.publicIPv6 !== undefined && formatIp6(r.lease.publicIPv6), '2001:2::2');
    assert.deepEqual(r.lease.backendV6Data, { VNI: 1, VtepMAC: 'aa:bb:cc:dd:ee:01' });
    // The same Node in an IPv4-only network: the IPv6 half is not read.
    const v4 = nodeLease(node({ podCIDRs: ['10.244.1.0/24', 'fd00:0:0:1::/64'] }, ann), P);
    assert.ok('lease' in v4);
    assert.equal(formatLeaseKey(v4.lease), '10.244.1.0-24');
    assert.equal(v4.lease.publicIPv6, undefined);
    assert.equal(v4.lease.backendV6Data, undefined);
    // An IPv4-only Node in a dual-stack network is reached over IPv4 only.
    const old = nodeLease(node({ podCIDR: '10.244.2.0/24' }, { 'rudder.io/public-ip': '198.18.0.3' }), P, DS);
    assert.ok('lease' in old);
    assert.equal(formatLeaseKey(old.lease), '10.244.2.0-24');
    // A dual-stack overlay on an IPv6 underlay: public-ipv6 alone will do.
    const u6 = nodeLease(node({ podCIDRs: ['10.244.3.0/24', 'fd00:0:0:3::/64'] }, { 'rudder.io/public-ipv6': '2001:2::3' }), P, DS);
    assert.ok('lease' in u6);
    assert.equal(u6.lease.publicIP, 0);
    assert.deepEqual(nodeLease(node({ podCIDRs: ['10.244.3.0/24'] }, {}), P, DS), { error: 'no rudder.io/public-ip or rudder.io/public-ipv6 annotation yet' });
    assert.deepEqual(nodeLease(node({ podCIDRs: ['10.244.3.0/24'] }, { 'rudder.io/public-ipv6': '10.0.0.1' }), P, DS), { error: 'rudder.io/public-ipv6="10.0.0.1": expected an IPv6 address' });
    assert.deepEqual(nodeLease(node({ podCIDRs: ['10.244.3.0/24', 'fd00:0:0:3::/64'] }, { ...ann, 'rudder.io/backend-v6-data': '{' }), P, DS), { error: 'rudder.io/backend-v6-data is not JSON: "{"' });
  });

  it('an IPv6-only peer lease: the IPv6 podCIDR, 0.0.0.0/0 for IPv4; what is missing is said', () => {
    const V6 = { v4: false, v6: true };
    const r = nodeLease(node({ podCIDR: 'fd00:0:0:9::/64', podCIDRs: ['fd00:0:0:9::/64'] }, { 'rudder.io/public-ipv6': '2001:2::9', 'rudder.io/backend-type': 'host-gw' }), P, V6);
    assert.ok('lease' in r, 'error' in r ? r.error : '');
    assert.equal(formatLeaseKey(r.lease), '0.0.0.0-0&fd00:0:0:9::-64');
    assert.equal(r.lease.publicIP, 0);
    assert.deepEqual(nodeLease(node({ podCIDR: '10.244.1.0/24' }, { 'rudder.io/public-ipv6': '2001:2::9' }), P, V6), { error: 'no IPv6 entry in spec.podCIDRs yet' });
    assert.deepEqual(nodeLease(node({ podCIDRs: ['fd00::1/64'] }, {}), P, V6), { error: 'spec.podCIDRs entry "fd00::1/64" is not an IPv6 CIDR' });
  });

  it('a listing without a config (rudder leases) reads each Node for the families it has', () => {
    const ds = nodeLease(node({ podCIDRs: ['10.244.1.0/24', 'fd00:0:0:1::/64'] }, { 'rudder.io/public-ip': '198.18.0.2' }), P, PRESENT_FAMILIES);
    assert.ok('lease' in ds);
    assert.equal(formatLeaseKey(ds.lease), '10.244.1.0-24&fd00:0:0:1::-64');
    const only6 = nodeLease(node({ podCIDRs: ['fd00:0:0:2::/64'] }, { 'rudder.io/public-ipv6': '2001:2::2' }), P, PRESENT_FAMILIES);
    assert.ok('lease' in only6);
    assert.equal(formatLeaseKey(only6.lease), '0.0.0.0-0&fd00:0:0:2::-64');
    const v4 = nodeLease(node({ podCIDR: '10.244.3.0/24' }, { 'rudder.io/public-ip': '198.18.0.3' }), P, PRESENT_FAMILIES);
    assert.ok('lease' in v4);
    assert.equal(formatLeaseKey(v4.lease), '10.244.3.0-24');
    assert.deepEqual(nodeLease(node({}, {}), P, PRESENT_FAMILIES), { error: 'no IPv4 spec.podCIDR yet' });
  });

  it('own annotations with IPv6: public-ipv6 and backend-v6-data; no public-ip without an IPv4 underlay', () => {
    const ip6 = parseIp6('2001:2::1') as bigint;
    const a = ownAnnotations(P, parseIp('198.18.0.1') as number, 'vxlan', { VNI: 1 }, { publicIPv6: ip6, backendV6Data: { VNI: 1, VtepMAC: '02:00:00:00:00:01' } });
    assert.equal(a['rudder.io/public-ip'], '198.18.0.1');
    assert.equal(a['rudder.io/public-ipv6'], '2001:2::1');
    assert.equal(a['rudder.io/backend-v6-data'], '{"VNI":1,"VtepMAC":"02:00:00:00:00:01"}');
    const b = ownAnnotations(P, 0, 'host-gw', {}, { publicIPv6: ip6, backendV6Data: {} });
    assert.equal(b['rudder.io/public-ip'], undefined);
    assert.equal(b['rudder.io/public-ipv6'], '2001:2::1');
    const c = ownAnnotations(P, parseIp('198.18.0.1') as number, 'udp', {}, { publicIPv6: null, backendV6Data: {} });
    assert.equal(c['rudder.io/public-ipv6'], undefined, 'no IPv6 underlay: no public-ipv6');
    assert.equal(c['rudder.io/backend-v6-data'], '{}');
    assert.equal(ownAnnotations(P, 0, 'udp', {})['rudder.io/public-ip'], '0.0.0.0', 'IPv4-only as before');
  });

  it('own IPv6 annotations: public-ipv6-overwrite wins as in flannel; an invalid one is ignored', () => {
    const ours = parseIp6('2001:2::1');
    const n = node({ podCIDRs: ['10.244.1.0/24', 'fd44:0:0:1::/64'] }, { 'rudder.io/public-ipv6-overwrite': ' 2001:db8::9 ', 'rudder.io/public-ip-overwrite': '203.0.113.9' });
    const six = ownPublicIPv6(n, P, ours);
    assert.ok(six.overwritten);
    assert.equal(six.ip !== null && formatIp6(six.ip), '2001:db8::9');
    const want = ownAnnotations(P, ownPublicIP(n, P, parseIp('198.18.0.1') as number).ip, 'vxlan', {}, { publicIPv6: six.ip, backendV6Data: {} });
    assert.equal(want['rudder.io/public-ipv6'], '2001:db8::9');
    assert.equal(want['rudder.io/public-ip'], '203.0.113.9');
    assert.deepEqual(ownPublicIPv6(node({}, { 'rudder.io/public-ipv6-overwrite': '203.0.113.9' }), P, ours), { ip: ours, overwritten: false }, 'not an IPv6 address');
    assert.deepEqual(ownPublicIPv6(node({}, { 'other.io/public-ipv6-overwrite': '2001:db8::9' }), P, ours), { ip: ours, overwritten: false }, 'another prefix');
    assert.deepEqual(ownPublicIPv6(node({}, {}), P, null), { ip: null, overwritten: false });
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
