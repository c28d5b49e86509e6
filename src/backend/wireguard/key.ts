/**
 * The wireguard backend's files: this host's X25519 private key (created on
 * first start, kept across restarts) and, beside it, the TAI64N floor (the
 * last handshake timestamp sent, so a restarted host's initiations are never
 * older than its previous run's and its peers accept them).
 *
 * Key file format: the base64 of the 32-byte key and a newline, as
 * `wg genkey` writes it (so `wg pubkey < file` works). Mode 0600; a
 * directory it has to create is 0700. Writes are atomic (a temporary file
 * in the same directory, fsync, then link/rename), so a crash leaves the old
 * file or the new one, never half of one.
 *
 * Synchronous file I/O on the event loop: a few bytes once per start, per
 * key rotation, and once per statistics interval for the floor.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RudderError } from '../../errors';
import { isBase64Of } from '../../config';

export const KEY_LEN = 32;
export const TAI64N_LEN = 12;

/** PKCS#8 DER prefix of an X25519 private key (RFC 8410): the raw 32 bytes follow. */
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

export interface LoadedKey {
  /** 32 bytes; the caller wipes it once the data plane has its copy. */
  readonly privateKey: Buffer;
  /** base64, as published in the lease's BackendData.PublicKey. */
  readonly publicKey: string;
  /** Whether this start created the file. */
  readonly created: boolean;
  /** Problems worth a warning (a key file readable by others). */
  readonly warnings: readonly string[];
}

/** SPKI DER prefix of an X25519 public key (RFC 8410): the raw 32 bytes follow. */
const X25519_SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

/*
 * Neither function below goes through node:crypto's key generation or its JWK export: Node 20
 * can deadlock in ExportJWK when a garbage collection inside it destroys the key generation job
 * of the same key (the job's destructor takes the key's mutex, which the export holds). Seen as a
 * hung test process; a daemon creating or rotating its key could hang the same way.
 */

/** The public key of a raw X25519 private key, base64. */
export function publicKeyOf(privateKey: Buffer): string {
  return rawPublicKeyOf(privateKey).toString('base64');
}

/** The public key of a raw X25519 private key, 32 raw bytes (libcrypto's X25519 through node:crypto). */
export function rawPublicKeyOf(privateKey: Buffer): Buffer {
  const der = Buffer.concat([X25519_PKCS8_PREFIX, privateKey]);
  try {
    const priv = crypto.createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    const spki = crypto.createPublicKey(priv).export({ format: 'der', type: 'spki' });
    if (spki.length !== X25519_SPKI_PREFIX.length + KEY_LEN || !spki.subarray(0, X25519_SPKI_PREFIX.length).equals(X25519_SPKI_PREFIX)) {
      throw new RudderError('E_BACKEND', `wireguard: node:crypto returned an X25519 public key of ${spki.length} bytes, expected the ${X25519_SPKI_PREFIX.length + KEY_LEN}-byte SubjectPublicKeyInfo`);
    }
    return Buffer.from(spki.subarray(X25519_SPKI_PREFIX.length));
  } finally {
    der.fill(0);
  }
}

/**
 * A new X25519 private key, 32 raw bytes: 32 bytes of the CSPRNG, clamped as RFC 7748
 * section 5 decodes a scalar (what `wg genkey` and libcrypto's X25519 key generation do).
 */
export function generatePrivateKey(): Buffer {
  const key = crypto.randomBytes(KEY_LEN);
  key[0] = (key[0] ?? 0) & 248;
  key[31] = ((key[31] ?? 0) & 127) | 64;
  return key;
}

function fail(file: string, what: string, cause?: unknown): RudderError {
  return new RudderError('E_BACKEND', `wireguard: key file ${file}: ${what}`, cause === undefined ? undefined : { cause });
}

/** Parses the key file's bytes; never echoes them (they are a secret). */
export function parseKeyFile(file: string, data: Buffer): Buffer {
  let end = data.length;
  if (end > 0 && data[end - 1] === 0x0a) end--;
  const text = data.subarray(0, end).toString('latin1');
  if (!isBase64Of(text, KEY_LEN)) {
    throw fail(file, `${data.length} bytes that are not a WireGuard private key: expected the base64 of ${KEY_LEN} bytes (44 characters) and an optional newline, as \`wg genkey\` writes; move the file away to have a new key created`);
  }
  return Buffer.from(text, 'base64');
}

/** Writes `data` to `file` atomically with mode 0600; `replace` false: fails with EEXIST if the file appeared meanwhile. */
function writeAtomic(file: string, data: Buffer, replace: boolean): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`);
  const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
  try {
    try {
      fs.fchmodSync(fd, 0o600); // whatever the umask
      fs.writeSync(fd, data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    if (replace) fs.renameSync(tmp, file);
    else fs.linkSync(tmp, file); // no-clobber: another process's key wins
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  const dfd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(dfd);
  } finally {
    fs.closeSync(dfd);
  }
}

/**
 * Reads the key file, or creates it (and its directory) on first start.
 * Throws E_BACKEND naming the file when it is unreadable or not a key.
 */
export function loadOrCreateKey(file: string): LoadedKey {
  const warnings: string[] = [];
  let created = false;
  let data: Buffer | undefined;
  try {
    data = fs.readFileSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw fail(file, `cannot be read: ${(e as Error).message}`, e);
  }
  if (data === undefined) {
    const dir = path.dirname(file);
    try {
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw fail(file, `cannot create its directory ${dir}: ${(e as Error).message}`, e);
    }
    const key = generatePrivateKey();
    const text = Buffer.from(`${key.toString('base64')}\n`, 'latin1');
    try {
      writeAtomic(file, text, false);
      created = true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw fail(file, `cannot be written: ${(e as Error).message}`, e);
    } finally {
      text.fill(0);
      key.fill(0);
    }
    try {
      data = fs.readFileSync(file);
    } catch (e) {
      throw fail(file, `cannot be read back: ${(e as Error).message}`, e);
    }
  }
  try {
    const st = fs.statSync(file);
    if (!st.isFile()) throw fail(file, 'is not a regular file');
    if ((st.mode & 0o077) !== 0) {
      warnings.push(`key file ${file} has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}: others can read this host's private key; expected 0600 (chmod 600 ${file})`);
    }
    const privateKey = parseKeyFile(file, data);
    return { privateKey, publicKey: publicKeyOf(privateKey), created, warnings };
  } finally {
    data.fill(0);
  }
}

/**
 * Replaces the key file with `privateKey` (atomically, mode 0600) and
 * returns the bytes it held before (for the caller to put back if the
 * running key cannot follow; the caller wipes them). Throws E_BACKEND
 * naming the file; the file is then unchanged.
 */
export function replaceKeyFile(file: string, privateKey: Buffer): Buffer | undefined {
  let old: Buffer | undefined;
  try {
    old = fs.readFileSync(file);
  } catch {
    old = undefined; // gone or unreadable: nothing to put back
  }
  const text = Buffer.from(`${privateKey.toString('base64')}\n`, 'latin1');
  try {
    writeAtomic(file, text, true);
  } catch (e) {
    old?.fill(0);
    throw fail(file, `cannot be written: ${(e as Error).message}`, e);
  } finally {
    text.fill(0);
  }
  return old;
}

/** Puts back what replaceKeyFile returned (best effort: the caller logs a failure). */
export function restoreKeyFile(file: string, old: Buffer): void {
  writeAtomic(file, old, true);
}

/** The TAI64N floor file beside the key file. */
export function tai64nFile(keyFile: string): string {
  return `${keyFile}.tai64n`;
}

/**
 * The floor saved by an earlier run: 12 bytes, or undefined when there is
 * none. A damaged file is reported (second element) and ignored: the wall
 * clock then gives the floor, as on a first start.
 */
export function readTai64nFloor(file: string): [Buffer | undefined, string | undefined] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'latin1').trim();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [undefined, undefined];
    return [undefined, `TAI64N file ${file} cannot be read (${(e as Error).message}): using the clock alone`];
  }
  if (!/^[0-9a-f]{24}$/.test(text)) return [undefined, `TAI64N file ${file} holds ${text.length} characters, expected ${TAI64N_LEN * 2} hex digits: using the clock alone`];
  return [Buffer.from(text, 'hex'), undefined];
}

/** Saves the floor (atomically, mode 0600). */
export function writeTai64nFloor(file: string, floor: Buffer): void {
  if (floor.length !== TAI64N_LEN) throw new RudderError('E_BACKEND', `wireguard: TAI64N of ${floor.length} bytes, expected ${TAI64N_LEN}`);
  writeAtomic(file, Buffer.from(`${floor.toString('hex')}\n`, 'latin1'), true);
}
