/**
 * A throwaway PKI for etcd TLS tests, made with the openssl command line:
 * a CA, a server certificate for 127.0.0.1 (and localhost) signed by it, a
 * client certificate signed by it, and an unrelated second CA (the "wrong"
 * one). EC P-256 keys: quick to make.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface Pki {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  otherCa: string;
  /** A client certificate signed by the other CA. */
  otherClientCert: string;
  otherClientKey: string;
}

export const hasOpenssl = spawnSync('openssl', ['version']).status === 0;

function openssl(dir: string, args: string[]): void {
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed:\n${r.stderr}`);
}

function makeCa(dir: string, name: string): void {
  openssl(dir, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`]);
  openssl(dir, ['req', '-x509', '-new', '-key', `${name}.key`, '-sha256', '-days', '2', '-subj', `/CN=rudder test ${name}`, '-out', `${name}.pem`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
}

function makeLeaf(dir: string, ca: string, name: string, cn: string, ext: string): void {
  openssl(dir, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`]);
  openssl(dir, ['req', '-new', '-key', `${name}.key`, '-subj', `/CN=${cn}`, '-out', `${name}.csr`]);
  fs.writeFileSync(path.join(dir, `${name}.ext`), ext);
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-days', '2', '-sha256',
    '-extfile', `${name}.ext`, '-out', `${name}.pem`]);
}

/** Makes the PKI in `dir` (which must exist). */
export function makePki(dir: string): Pki {
  makeCa(dir, 'ca');
  makeCa(dir, 'other-ca');
  // clientAuth too: etcd's JSON gateway (what Rudder talks to) connects to etcd's own gRPC port with
  // the server certificate, which --client-cert-auth then checks as a client certificate.
  makeLeaf(dir, 'ca', 'server', '127.0.0.1', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\n');
  // CN = the etcd user the certificate stands for (etcd maps it when auth is on).
  makeLeaf(dir, 'ca', 'client', 'rudder', 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n');
  makeLeaf(dir, 'other-ca', 'other-client', 'rudder', 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n');
  const p = (f: string): string => path.join(dir, f);
  return {
    ca: p('ca.pem'),
    serverCert: p('server.pem'),
    serverKey: p('server.key'),
    clientCert: p('client.pem'),
    clientKey: p('client.key'),
    otherCa: p('other-ca.pem'),
    otherClientCert: p('other-client.pem'),
    otherClientKey: p('other-client.key'),
  };
}
