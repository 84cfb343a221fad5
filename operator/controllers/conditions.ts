/** Conditions in the metav1.Condition shape, and how a new observation replaces the old one. */
import type { Condition, ConditionType } from '../../crds/index.ts';

export type ConditionStatus = Condition['status'];

/** A condition as a reconcile computes it: the time of the transition is filled in by `mergeConditions`. */
export interface Observation {
  type: ConditionType;
  status: ConditionStatus;
  reason: string;
  message: string;
}

/**
 * The conditions to write: `observed`, in that order, each keeping its old
 * `lastTransitionTime` unless its status changed. Conditions of other types are dropped.
 */
export function mergeConditions(
  previous: readonly Condition[] | undefined,
  observed: readonly Observation[],
  generation: number | undefined,
  now: Date,
): Condition[] {
  return observed.map((o) => {
    const before = previous?.find((c) => c.type === o.type);
    const lastTransitionTime =
      before && before.status === o.status
        ? before.lastTransitionTime
        : now.toISOString().replace(/\.\d+Z$/, 'Z');
    return {
      type: o.type,
      status: o.status,
      ...(generation === undefined ? {} : { observedGeneration: generation }),
      lastTransitionTime,
      reason: o.reason,
      message: o.message,
    };
  });
}

export function findCondition(
  conditions: readonly Condition[] | undefined,
  type: ConditionType,
): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

/** Conditions whose status or reason differ between `before` and `after`, as in `after`. */
export function transitions(
  before: readonly Condition[] | undefined,
  after: readonly Condition[],
): Condition[] {
  return after.filter((c) => {
    const old = findCondition(before, c.type as ConditionType);
    return !old || old.status !== c.status || old.reason !== c.reason;
  });
}
