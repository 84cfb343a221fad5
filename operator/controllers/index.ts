/** The controllers of modelplane's kinds, registered on a manager. */
import type { Manager } from '../runtime/index.ts';
import type { SidecarKey } from '../sidecar-key.ts';
import { caches } from './caches.ts';
import { addDeploymentController } from './deployment.ts';
import { addHardwareClassController } from './hardware-class.ts';
import { addModelController, addModelVersionController } from './model.ts';

export interface ControllersOptions {
  /** Image of the sidecar container in every model pod. */
  sidecarImage: string;
  /** The key whose public half model pods check the operator's calls with; none: their API is open. */
  sidecarKey?: SidecarKey;
  /** Address ranges the sidecars' webhooks may reach besides public ones. */
  webhookAllowCidrs?: readonly string[];
  /** The most bytes of output a prediction may have: the sidecars get it too. */
  maxOutputBytes?: number;
  /** Concurrent reconciles per controller (default 4). */
  workers?: number;
  /** Reconcile every object this often even without a change (default 10 min; 0 = never). */
  resyncPeriodMs?: number;
  now?: () => Date;
}

export const DEFAULT_RESYNC_MS = 10 * 60_000;

export function addControllers(manager: Manager, opts: ControllersOptions): void {
  const c = caches(manager);
  const sidecarKey = opts.sidecarKey;
  const common = {
    workers: opts.workers ?? 4,
    resyncPeriodMs: opts.resyncPeriodMs ?? DEFAULT_RESYNC_MS,
    now: opts.now,
  };
  addHardwareClassController(manager, c, common);
  addModelVersionController(manager, c, {
    ...common,
    sidecarAuthorization: sidecarKey ? (base) => sidecarKey.authorization(base) : undefined,
  });
  addModelController(manager, c, common);
  addDeploymentController(manager, c, {
    ...common,
    sidecarImage: opts.sidecarImage,
    sidecarKey: opts.sidecarKey,
    webhookAllowCidrs: opts.webhookAllowCidrs,
    maxOutputBytes: opts.maxOutputBytes,
  });
}

export { fieldManager } from './names.ts';
