/**
 * The real upstream flanneld for the e2e tests. Finding it lives in
 * src/topology/anchors.ts and running it on a topology host in
 * src/topology/flanneld.ts (the benchmark uses both too); this adds the
 * node:test skip reason. Without the anchors, tests that need flanneld skip
 * with one line that says what to set.
 */
import { flanneldUnavailable } from '../../src/topology/anchors';

export { flanneldBinary } from '../../src/topology/anchors';
export { Flanneld, parseFlannelSubnetEnv } from '../../src/topology/flanneld';

/** node:test `skip` reason for suites that run flanneld (false = runnable). */
export const skipUnlessFlanneld: string | false = (() => {
  const why = flanneldUnavailable();
  return why === false ? false : `needs upstream flanneld: ${why}`;
})();
