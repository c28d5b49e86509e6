/**
 * Waiting in tests. The give-up is generous and only keeps a broken run from
 * hanging; a test never asserts how fast something happened.
 */
export { waitUntil, giveUp, sleep, type WaitOptions } from '../../src/topology/util';
