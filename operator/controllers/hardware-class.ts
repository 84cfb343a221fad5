/**
 * The HardwareClass controller: which nodes an instance of the class can run on, how many
 * GPUs they offer, and how many instances fit on the largest of them.
 */
import {
  CONDITION,
  GPU,
  type HardwareClassSpec,
  HardwareClassSpecSchema,
  type HardwareClassStatus,
  REASON,
  type Toleration,
} from '../../crds/index.ts';
import { HardwareClasses, type Node } from '../resources.ts';
import { applyStatus, type Manager, TerminalError } from '../runtime/index.ts';
import type { Caches } from './caches.ts';
import { mergeConditions } from './conditions.ts';
import { CONTROLLER, fieldManager } from './names.ts';
import { SIDECAR_REQUESTS } from './pod-spec.ts';
import { parseQuantity } from './quantity.ts';

type Taint = NonNullable<NonNullable<Node['spec']>['taints']>[number];

export function tolerates(tolerations: readonly Toleration[] | undefined, taint: Taint): boolean {
  return (tolerations ?? []).some((t) => {
    if (t.effect && t.effect !== taint.effect) return false;
    if (!t.key) return t.operator === 'Exists';
    if (t.key !== taint.key) return false;
    return t.operator === 'Exists' || (t.value ?? '') === (taint.value ?? '');
  });
}

function allocatable(node: Node, resource: string): number {
  const q = node.status?.allocatable?.[resource];
  if (q === undefined) return 0;
  try {
    return parseQuantity(String(q));
  } catch {
    return 0;
  }
}

/** Whether an instance of the class may be placed on `node` (labels, taints, GPUs). */
export function nodeMatches(spec: HardwareClassSpec, node: Node): boolean {
  if (node.spec?.unschedulable) return false;
  const labels = node.metadata?.labels ?? {};
  if (spec.gpu) {
    const product = labels[GPU.productLabel];
    if (product === undefined || !spec.gpu.products.includes(product)) return false;
    if (allocatable(node, spec.gpu.resourceName) < spec.gpu.count) return false;
  }
  for (const [k, v] of Object.entries(spec.nodeSelector ?? {})) if (labels[k] !== v) return false;
  return (node.spec?.taints ?? [])
    .filter((t) => t.effect === 'NoSchedule' || t.effect === 'NoExecute')
    .every((t) => tolerates(spec.tolerations, t));
}

/** How many instances of the class fit on an empty `node`. */
export function instancesPerNode(spec: HardwareClassSpec, node: Node): number {
  const cpu = parseQuantity(spec.resources.cpu) + parseQuantity(SIDECAR_REQUESTS.cpu);
  const memory = parseQuantity(spec.resources.memory) + parseQuantity(SIDECAR_REQUESTS.memory);
  let fit = Math.min(
    Math.floor(allocatable(node, 'cpu') / cpu + 1e-9),
    Math.floor(allocatable(node, 'memory') / memory + 1e-9),
  );
  if (spec.gpu) fit = Math.min(fit, Math.floor(allocatable(node, spec.gpu.resourceName) / spec.gpu.count));
  return Math.max(0, fit);
}

/** The status fields of a class, from the cluster's nodes. */
export function hardwareObservation(
  spec: HardwareClassSpec,
  nodes: readonly Node[],
): Pick<HardwareClassStatus, 'nodes' | 'allocatableGpus' | 'maxInstancesPerNode'> {
  const matching = nodes.filter((n) => nodeMatches(spec, n));
  return {
    nodes: matching.length,
    allocatableGpus: spec.gpu
      ? matching.reduce((sum, n) => sum + Math.floor(allocatable(n, spec.gpu!.resourceName)), 0)
      : 0,
    maxInstancesPerNode: matching.reduce((max, n) => Math.max(max, instancesPerNode(spec, n)), 0),
  };
}

function requirement(spec: HardwareClassSpec): string {
  const parts: string[] = [];
  if (spec.gpu)
    parts.push(
      `${GPU.productLabel} in [${spec.gpu.products.join(', ')}] with ${spec.gpu.count} allocatable ${spec.gpu.resourceName}`,
    );
  for (const [k, v] of Object.entries(spec.nodeSelector ?? {})) parts.push(`${k}=${v}`);
  parts.push('taints this class tolerates');
  return parts.join(', ');
}

export function addHardwareClassController(
  manager: Manager,
  c: Caches,
  opts: { workers?: number; resyncPeriodMs?: number; now?: () => Date },
) {
  const client = manager.leaderClient;
  const now = opts.now ?? (() => new Date());
  return manager.addController({
    name: 'hardwareclass',
    for: c.hardwareClasses,
    watches: [{ source: c.nodes, map: () => c.hardwareClasses.keys() }],
    workers: opts.workers,
    resyncPeriodMs: opts.resyncPeriodMs,
    reconcile: async (key) => {
      const obj = c.hardwareClasses.getByKey(key);
      if (!obj || obj.metadata.deletionTimestamp) return;
      const parsed = HardwareClassSpecSchema.safeParse(obj.spec);
      if (!parsed.success) throw new TerminalError(`invalid spec: ${parsed.error.message}`);
      const spec = parsed.data;
      const seen = hardwareObservation(spec, c.nodes.list());
      const ready = (seen.nodes ?? 0) > 0;
      const status: HardwareClassStatus = {
        observedGeneration: obj.metadata.generation,
        ...seen,
        conditions: mergeConditions(
          obj.status?.conditions,
          [
            ready
              ? {
                  type: CONDITION.Ready,
                  status: 'True',
                  reason: REASON.NodesAvailable,
                  message: `${seen.nodes} nodes match${spec.gpu ? ` with ${seen.allocatableGpus} ${spec.gpu.resourceName} allocatable` : ''}; up to ${seen.maxInstancesPerNode} instances per node`,
                }
              : {
                  type: CONDITION.Ready,
                  status: 'False',
                  reason: REASON.NoMatchingNodes,
                  message: `no node matches (${requirement(spec)}); add such nodes or fix the class`,
                },
          ],
          obj.metadata.generation,
          now(),
        ),
      };
      await applyStatus(client, HardwareClasses, obj, status, {
        fieldManager: fieldManager(CONTROLLER.hardwareClass),
      });
    },
  });
}
