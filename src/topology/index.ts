/**
 * The one-machine topology: real etcd, network namespaces, and the cluster of
 * docs/architecture.md ("Testing"). Shared by the integration and
 * e2e tests and by `rudder sandbox`.
 */
export * from './exec';
export * from './util';
export * from './netns';
export * from './etcd';
export * from './cluster';
