/** Free TCP ports on loopback (racy by nature: bind them soon, retry on EADDRINUSE). */
export { freePort } from '../../src/topology/util';
