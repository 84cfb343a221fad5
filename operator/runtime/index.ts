/** The operator runtime: what controllers import. See README.md in this directory. */

export { type Clock, FakeClock, realClock, sleep } from '../../lib/clock.ts';
export { type ApplyOptions, apply, applyStatus, covers, ownsField } from './apply.ts';
export {
  ApiError,
  isConflict,
  isGone,
  isNotFound,
  KubeClient,
  type KubeObject,
  type Listed,
  type OwnerReference,
  type ResourceType,
  resourceType,
} from './client.ts';
export {
  Controller,
  type ControllerOptions,
  controllerOwnerKeys,
  type Reconcile,
  type ReconcileContext,
  type ReconcileResult,
  type Source,
  specChanged,
  TerminalError,
  type Watch,
} from './controller.ts';
export { type Event, EventRecorder, Events } from './events.ts';
export { Fence, FencedError, isFenced, type WriteFence } from './fence.ts';
export { type EventHandler, Informer, type InformerOptions, objectKey, splitKey } from './informer.ts';
export { LeaderElector, type Lease, Leases } from './leader-election.ts';
export { createLogger, type Logger } from './log.ts';
export {
  type HttpHandler,
  type LeaderElectionOptions,
  type LeaderRunnable,
  Manager,
  type ManagerOptions,
  type Runnable,
} from './manager.ts';
export { RuntimeMetrics } from './metrics.ts';
export { WorkQueue } from './workqueue.ts';
