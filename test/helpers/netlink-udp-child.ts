/**
 * Runs the udp backend inside a test namespace (started with `ip netns exec`):
 * argv = own subnet, peer subnet, peer PublicIP; prints "started" once rudder0
 * is configured and the peer applied, stops the backend when stdin closes,
 * then prints "stopped" (or "error ..." on any failure) and exits.
 */
import { createUdpBackend } from '../../src/backend/udp';
import { validateConfig } from '../../src/config';
import { describeError } from '../../src/errors';
import { parseCidr, parseIp } from '../../src/ip/ipv4';
import { createLogger } from '../../src/log';
import type { Lease } from '../../src/subnet/lease';

async function main(): Promise<void> {
  const [network, own, peer, peerIp, underlay, underlayIp] = process.argv.slice(2);
  const l = (subnet: string, pub: string): Lease => ({
    subnet: parseCidr(subnet, true) as { ip: number; prefix: number },
    publicIP: parseIp(pub) as number,
    backendType: 'udp',
    backendData: {},
    expiresAt: null,
  });
  const address = parseIp(underlayIp as string) as number;
  const b = createUdpBackend({
    config: validateConfig({ Network: network }),
    extIface: { name: underlay as string, index: 0, address, publicIP: address, mtu: 1500 },
    log: createLogger({ verbosity: 0 }),
    portFlag: undefined,
  });
  const net = await b.start(l(own as string, underlayIp as string), new AbortController().signal);
  await net.apply([{ type: 'added', lease: l(peer as string, peerIp as string) }]);
  process.stdout.write('started\n');
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.on('end', resolve));
  await net.stop();
  process.stdout.write('stopped\n');
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stdout.write(`error ${describeError(e)}\n`);
    process.exit(1);
  },
);
