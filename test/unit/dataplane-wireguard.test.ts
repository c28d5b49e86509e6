/**
 * The WireGuard face of src/dataplane/native.ts checks its values once, in
 * TypeScript, before the addon is touched: each bad value is an E_DATAPLANE
 * that names the value and what was expected.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { openWireGuardDataPlane, type WireGuardOptions } from '../../src/dataplane/native';
import type { DataPlaneOptions } from '../../src/dataplane/types';
import { isRudderError } from '../../src/errors';

const OPTS: DataPlaneOptions = {
  tunName: 'rudder-wg',
  bindAddress: 0,
  port: 51820,
  localSubnet: { ip: 0x0a2a0100, prefix: 24 },
  icmpSource: 0x0a2a0100,
  mtu: 1420,
};

function refused(wg: WireGuardOptions, expected: RegExp): void {
  assert.throws(
    () => openWireGuardDataPlane(OPTS, wg),
    (e: unknown) => isRudderError(e) && e.code === 'E_DATAPLANE' && expected.test(e.message),
  );
}

describe('openWireGuardDataPlane checks its WireGuard values before the addon', () => {
  it('wants a 32-byte private key', () => {
    refused({ privateKey: Buffer.alloc(31) }, /privateKey must be a Buffer of 32 bytes, got 31 bytes/);
  });

  it('wants a 32-byte PSK when one is given', () => {
    refused({ privateKey: Buffer.alloc(32, 1), psk: Buffer.alloc(16) }, /psk must be a Buffer of 32 bytes, got 16 bytes/);
  });

  it('wants a 12-byte TAI64N floor and a keepalive of 0..65535 s', () => {
    refused({ privateKey: Buffer.alloc(32, 1), tai64nFloor: Buffer.alloc(8) }, /tai64nFloor must be a Buffer of 12 bytes, got 8 bytes/);
    refused({ privateKey: Buffer.alloc(32, 1), persistentKeepalive: 70000 }, /persistentKeepalive must be an integer 0\.\.65535, got 70000/);
  });

  it("leaves the caller's key as it was (the addon wipes its own copy)", () => {
    const key = Buffer.alloc(32, 7);
    refused({ privateKey: key, persistentKeepalive: -1 }, /persistentKeepalive/);
    assert.deepEqual(key, Buffer.alloc(32, 7));
  });
});
