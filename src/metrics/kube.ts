/**
 * Kubernetes mode's metric families (rudder_kube_*), read from KubeStats at
 * scrape time. Registered by the Kubernetes subnet source on the endpoint's
 * registry, beside createMetrics' families; etcd mode never loads this file.
 */
import { Counter, type Registry } from 'prom-client';
import type { KubeStats } from '../subnet/kube/stats';

export function registerKubeMetrics(registry: Registry, stats: KubeStats): void {
  const r = [registry];
  new Counter({
    name: 'rudder_kube_api_requests_total',
    help: 'Requests to the Kubernetes API server, by verb (get, list, watch, patch) and code (the HTTP status, or none when the server did not answer)',
    labelNames: ['verb', 'code'],
    registers: r,
    collect() {
      this.reset();
      for (const [k, v] of stats.requests) {
        const [verb = '', code = ''] = k.split(' ');
        this.inc({ verb, code }, v);
      }
    },
  });
  new Counter({
    name: 'rudder_kube_watch_restarts_total',
    help: 'Times the Node watch was opened again, by reason: timeout (the server ended it; resumed), gone (410: listed again), broken (error or lost connection: listed again)',
    labelNames: ['reason'],
    registers: r,
    collect() {
      this.reset();
      for (const [reason, v] of Object.entries(stats.watchRestarts)) this.inc({ reason }, v);
    },
  });
  new Counter({
    name: 'rudder_kube_errors_total',
    help: 'Failed attempts, by component: lease (this Node: read, annotate, NetworkUnavailable), watch (listing and watching Nodes), config (reading net-conf.json). Kubernetes mode\'s rudder_etcd_errors_total',
    labelNames: ['component'],
    registers: r,
    collect() {
      this.reset();
      for (const [component, v] of Object.entries(stats.errors)) this.inc({ component }, v);
    },
  });
  new Counter({
    name: 'rudder_kube_reconnects_total',
    help: 'Times the Kubernetes API server answered again after failures, by component',
    labelNames: ['component'],
    registers: r,
    collect() {
      this.reset();
      for (const [component, v] of Object.entries(stats.reconnects)) this.inc({ component }, v);
    },
  });
}
