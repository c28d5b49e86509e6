/**
 * The anchors (upstream flanneld, kube-apiserver) for the tests: finding and
 * unpacking them lives in src/topology/anchors.ts; this adds the node:test
 * skip reason, one line that says what to set.
 */
import { anchorsUnavailable } from '../../src/topology/anchors';

export { anchorBinary, have } from '../../src/topology/anchors';

/** node:test `skip` reason when the anchors cannot be had (false = they can). */
export function skipUnlessAnchor(program: string): string | false {
  const why = anchorsUnavailable();
  return why === false ? false : `needs upstream ${program}: ${why}`;
}
