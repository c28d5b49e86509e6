import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '../../src/log';

const at = () => new Date('2026-01-02T03:04:05.000Z');

test('text logs: one line per event with key=value fields; debug only with -v=1', () => {
  const lines: string[] = [];
  const l = createLogger({ write: (s) => lines.push(s), now: at });
  l.info('lease acquired', { subnet: '10.0.5.0/24', how: 'new lease' });
  l.debug('hidden');
  assert.deepEqual(lines, ['2026-01-02T03:04:05.000Z info  lease acquired subnet=10.0.5.0/24 how="new lease"']);
  const v1: string[] = [];
  createLogger({ verbosity: 1, write: (s) => v1.push(s), now: at }).child({ backend: 'udp' }).debug('route set', { n: 2 });
  assert.deepEqual(v1, ['2026-01-02T03:04:05.000Z debug route set backend=udp n=2']);
});

test('JSON logs on request: one object per line', () => {
  const lines: string[] = [];
  createLogger({ json: true, write: (s) => lines.push(s), now: at }).warn('etcd unreachable', { attempt: 3, error: new Error('boom') });
  assert.equal(lines.length, 1);
  assert.deepEqual(JSON.parse(lines[0] as string), { time: '2026-01-02T03:04:05.000Z', level: 'warn', msg: 'etcd unreachable', attempt: 3, error: 'boom' });
});
