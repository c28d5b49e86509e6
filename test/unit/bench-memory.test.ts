/**
 * The pure parts of bench/memory.ts: the launcher's node flags, and which
 * package or part of Rudder a loaded module belongs to.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { groupModules, launcherFlags, moduleGroup } from '../../bench/memory';

describe('bench memory breakdown', () => {
  it("reads bin/rudder's node flags from its env -S shebang", () => {
    assert.deepEqual(launcherFlags("#!/usr/bin/env -S node --max-semi-space-size=1 --optimize-for-size --expose-gc\n'use strict';"), [
      '--max-semi-space-size=1',
      '--optimize-for-size',
      '--expose-gc',
    ]);
    assert.deepEqual(launcherFlags('#!/usr/bin/env node\n'), []);
  });

  it('groups modules by package (scoped too) and by part of Rudder', () => {
    const root = '/r';
    assert.equal(moduleGroup('/r/node_modules/etcd3/lib/index.js', root), 'etcd3');
    assert.equal(moduleGroup('/r/node_modules/@grpc/grpc-js/build/src/index.js', root), '@grpc/grpc-js');
    assert.equal(moduleGroup('/r/node_modules/etcd3/node_modules/cockatiel/dist/x.js', root), 'cockatiel');
    assert.equal(moduleGroup('/r/dist/src/backend/hostgw.js', root), 'rudder src/backend');
    assert.equal(moduleGroup('/r/dist/src/daemon.js', root), 'rudder src');
    assert.equal(moduleGroup('/r/native/build/Release/rudder_native.node', root), 'rudder native addon');
    assert.equal(moduleGroup('/r/bin/rudder', root), 'rudder bin');
    assert.equal(moduleGroup('/elsewhere/x.js', root), '/elsewhere/x.js');
    const g = groupModules(['/r/node_modules/a/x.js', '/r/node_modules/a/y.js', '/r/dist/src/log.js'], root, (f) => (f.endsWith('y.js') ? 300 : 100));
    assert.deepEqual(g, [
      { name: 'a', files: 2, bytes: 400 },
      { name: 'rudder src', files: 1, bytes: 100 },
    ]);
  });
});
