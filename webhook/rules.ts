/**
 * The cross-object rules: what the CRDs' schemas and CEL rules cannot see, because it is a
 * relation between objects. Each rule answers a refusal only where the object is wrong
 * whatever order things are applied in (a ModelVersion of another Model, an alias another
 * class has); a reference that is simply missing now (a Deployment applied after the
 * Prediction that names it) is accepted with a warning. Every message starts with the field.
 *
 * On UPDATE a rule runs only when a field it reads changed, so an object stored before a rule
 * existed can still be scaled, labelled or deleted; an object being deleted is never checked.
 * Status is a subresource the webhook is not registered for, so the operator's own status
 * writes never reach it.
 */

import {
  type DeploymentSpec,
  GPU,
  type HardwareClassSpec,
  KIND,
  type ModelSpec,
  type ModelVersionSpec,
  type PredictionSpec,
} from '../crds/index.ts';
import { EgressPolicy } from '../lib/egress.ts';
import { validateInput } from '../lib/openapi-input.ts';

/** An object as the API server sends it in an AdmissionReview (defaults applied). */
export interface Obj<S = Record<string, unknown>, St = Record<string, unknown>> {
  metadata?: { name?: string; namespace?: string; deletionTimestamp?: string };
  spec?: Partial<S>;
  status?: St;
}

export type HardwareClassObj = Obj<HardwareClassSpec>;
export type ModelObj = Obj<ModelSpec>;
export type ModelVersionObj = Obj<ModelVersionSpec, { openapiSchema?: Record<string, unknown> }>;
export type DeploymentObj = Obj<DeploymentSpec>;
export type PredictionObj = Obj<PredictionSpec>;

/** A Node, as much as the GPU rule reads. */
export interface NodeInfo {
  metadata?: { name?: string; labels?: Record<string, string> };
  spec?: {
    unschedulable?: boolean;
    taints?: { key: string; value?: string; effect: string }[];
  };
  status?: { allocatable?: Record<string, unknown> };
}

/** What the rules read of other objects: caches, with the API server behind them. */
export interface Lookup {
  /** Every HardwareClass: from a cache, or (`fresh`) as the API server has them now. */
  hardwareClasses(opts?: { fresh?: boolean }): Promise<HardwareClassObj[]>;
  /** An object by name: from a cache, or from the API server when the cache has none. */
  model(namespace: string, name: string): Promise<ModelObj | undefined>;
  modelVersion(namespace: string, name: string): Promise<ModelVersionObj | undefined>;
  deployment(namespace: string, name: string): Promise<DeploymentObj | undefined>;
  /** The nodes whose `nvidia.com/gpu.product` label is one of `products`. */
  gpuNodes(products: readonly string[]): Promise<NodeInfo[]>;
}

export interface Verdict {
  /** Why the object is refused; empty when it is accepted. */
  refusals: string[];
  warnings: string[];
}

export interface AdmissionInput {
  kind: string;
  operation: 'CREATE' | 'UPDATE' | string;
  namespace?: string;
  object: Obj | undefined;
  oldObject?: Obj | undefined;
}

const q = (s: string | undefined): string => JSON.stringify(s ?? '');

/** Whether `field` of the spec differs between the old and new object (always on CREATE). */
function changed(input: AdmissionInput, ...fields: string[]): boolean {
  if (input.operation !== 'UPDATE' || !input.oldObject) return true;
  const a = (input.object?.spec ?? {}) as Record<string, unknown>;
  const b = (input.oldObject.spec ?? {}) as Record<string, unknown>;
  return fields.some((f) => JSON.stringify(a[f]) !== JSON.stringify(b[f]));
}

/** The verdict on one admission request; `egress` judges a Prediction's webhook (default: public addresses only). */
export async function review(
  input: AdmissionInput,
  lookup: Lookup,
  opts: { egress?: EgressPolicy } = {},
): Promise<Verdict> {
  const verdict: Verdict = { refusals: [], warnings: [] };
  const obj = input.object;
  if (!obj || obj.metadata?.deletionTimestamp) return verdict;
  if (input.operation !== 'CREATE' && input.operation !== 'UPDATE') return verdict;
  const ns = input.namespace ?? obj.metadata?.namespace ?? '';
  switch (input.kind) {
    case KIND.HardwareClass:
      if (changed(input, 'aliases') || input.operation === 'CREATE')
        await hardwareClassRules(obj as HardwareClassObj, lookup, verdict);
      break;
    case KIND.Model:
      await modelRules(input, obj as ModelObj, ns, lookup, verdict);
      break;
    case KIND.ModelVersion:
      if (changed(input, 'model')) await modelVersionRules(obj as ModelVersionObj, ns, lookup, verdict);
      break;
    case KIND.Deployment:
      await deploymentRules(input, obj as DeploymentObj, ns, lookup, verdict);
      break;
    case KIND.Prediction:
      // Only spec.cancel may change after creation: a cancel is never refused.
      if (input.operation === 'CREATE') {
        webhookRule(obj as PredictionObj, opts.egress ?? new EgressPolicy(), verdict);
        await predictionRules(obj as PredictionObj, ns, lookup, verdict);
      }
      break;
  }
  return verdict;
}

// ── HardwareClass ─────────────────────────────────────────────────────────────────────────

async function hardwareClassRules(obj: HardwareClassObj, lookup: Lookup, v: Verdict): Promise<void> {
  const cached: Verdict = { refusals: [], warnings: [] };
  aliasRules(obj, await lookup.hardwareClasses(), cached);
  // A refusal stands on what the API server has now, not on a cache a moment behind.
  if (cached.refusals.length) aliasRules(obj, await lookup.hardwareClasses({ fresh: true }), v);
}

function aliasRules(obj: HardwareClassObj, classes: HardwareClassObj[], v: Verdict): void {
  const name = obj.metadata?.name ?? '';
  const others = classes.filter((h) => h.metadata?.name !== name);
  const aliases = obj.spec?.aliases ?? [];
  aliases.forEach((alias, i) => {
    if (alias === name) return;
    const named = others.find((h) => h.metadata?.name === alias);
    if (named) {
      v.refusals.push(
        `spec.aliases[${i}]: ${q(alias)} is the name of HardwareClass ${q(alias)}; a hardware name must resolve to one class`,
      );
      return;
    }
    const aliased = others.find((h) => h.spec?.aliases?.includes(alias));
    if (aliased)
      v.refusals.push(
        `spec.aliases[${i}]: ${q(alias)} is already an alias of HardwareClass ${q(aliased.metadata?.name)}; a hardware name must resolve to one class`,
      );
  });
  const claimed = others.find((h) => h.spec?.aliases?.includes(name));
  if (claimed)
    v.refusals.push(
      `metadata.name: ${q(name)} is an alias of HardwareClass ${q(claimed.metadata?.name)}; a hardware name must resolve to one class`,
    );
}

// ── Model and ModelVersion ────────────────────────────────────────────────────────────────

async function modelRules(
  input: AdmissionInput,
  obj: ModelObj,
  ns: string,
  lookup: Lookup,
  v: Verdict,
): Promise<void> {
  const name = obj.metadata?.name ?? '';
  const deployment = obj.spec?.deployment;
  if (deployment && changed(input, 'deployment')) {
    const d = await lookup.deployment(ns, deployment);
    if (!d)
      v.warnings.push(
        `spec.deployment: Deployment ${q(deployment)} does not exist in namespace ${q(ns)} yet; the model serves no predictions until it does`,
      );
    else if (d.spec?.model !== name)
      v.warnings.push(
        `spec.deployment: Deployment ${q(deployment)} deploys Model ${q(d.spec?.model)}, not ${q(name)}; predictions of this model run on it`,
      );
  }
  const hardware = obj.spec?.defaultHardware;
  if (hardware && changed(input, 'defaultHardware')) {
    const classes = await lookup.hardwareClasses();
    const known = classes.some((h) => h.metadata?.name === hardware || h.spec?.aliases?.includes(hardware));
    if (!known)
      v.warnings.push(
        `spec.defaultHardware: no HardwareClass is named ${q(hardware)} (nor has it as an alias)`,
      );
  }
}

async function modelVersionRules(
  obj: ModelVersionObj,
  ns: string,
  lookup: Lookup,
  v: Verdict,
): Promise<void> {
  const model = obj.spec?.model;
  if (model && !(await lookup.model(ns, model)))
    v.warnings.push(`spec.model: Model ${q(model)} does not exist in namespace ${q(ns)} yet`);
}

// ── Deployment ────────────────────────────────────────────────────────────────────────────

async function deploymentRules(
  input: AdmissionInput,
  obj: DeploymentObj,
  ns: string,
  lookup: Lookup,
  v: Verdict,
): Promise<void> {
  const spec = obj.spec ?? {};
  if (spec.model && changed(input, 'model') && !(await lookup.model(ns, spec.model)))
    v.warnings.push(`spec.model: Model ${q(spec.model)} does not exist in namespace ${q(ns)} yet`);
  if (spec.version && changed(input, 'model', 'version')) {
    const version = await lookup.modelVersion(ns, spec.version);
    if (!version)
      v.warnings.push(
        `spec.version: ModelVersion ${q(spec.version)} does not exist in namespace ${q(ns)} yet; the deployment waits for it`,
      );
    else if (version.spec?.model !== spec.model)
      v.refusals.push(
        `spec.version: ModelVersion ${q(spec.version)} belongs to Model ${q(version.spec?.model)}, not ${q(spec.model)}`,
      );
  }
  if (spec.hardware && changed(input, 'hardware')) await hardwareRules(spec.hardware, lookup, v);
}

async function hardwareRules(hardware: string, lookup: Lookup, v: Verdict): Promise<void> {
  let classes = await lookup.hardwareClasses();
  let named = classes.find((h) => h.metadata?.name === hardware);
  if (!named) {
    // Before a refusal, what the API server has now (the class may be a moment old).
    classes = await lookup.hardwareClasses({ fresh: true });
    named = classes.find((h) => h.metadata?.name === hardware);
  }
  if (!named) {
    const aliased = classes.find((h) => h.spec?.aliases?.includes(hardware));
    if (aliased) {
      v.refusals.push(
        `spec.hardware: ${q(hardware)} is an alias of HardwareClass ${q(aliased.metadata?.name)}; a Deployment names the class itself`,
      );
    } else if (classes.length === 0) {
      // No class at all: the hardware catalogue is not installed yet (it may come next).
      v.warnings.push(
        `spec.hardware: no HardwareClass exists yet; the deployment waits for one named ${q(hardware)}`,
      );
    } else {
      const names = classes.map((h) => h.metadata?.name ?? '').sort();
      const list = names.length > 8 ? `${names.slice(0, 8).join(', ')}, …` : names.join(', ');
      v.refusals.push(`spec.hardware: no HardwareClass is named ${q(hardware)}; the classes are ${list}`);
    }
    return;
  }
  const gpu = named.spec?.gpu;
  if (!gpu?.products?.length || !gpu.count) return;
  const resource = gpu.resourceName ?? GPU.resource;
  const nodes = (await lookup.gpuNodes(gpu.products)).filter((n) => placeable(named.spec ?? {}, n));
  if (nodes.length === 0) {
    v.warnings.push(
      `spec.hardware: no node matches HardwareClass ${q(hardware)} now (${GPU.productLabel} in [${gpu.products.join(', ')}]); instances stay Pending until one does`,
    );
    return;
  }
  const most = Math.max(...nodes.map((n) => allocatable(n, resource)));
  if (most < gpu.count)
    v.refusals.push(
      `spec.hardware: HardwareClass ${q(hardware)} needs ${gpu.count} ${resource} per instance, but its matching nodes have at most ${most}`,
    );
}

function allocatable(node: NodeInfo, resource: string): number {
  const raw = node.status?.allocatable?.[resource];
  const n = Number(raw ?? 0);
  return Number.isFinite(n) ? Math.floor(n) : 0;
}

/** A node an instance could be placed on, GPU count aside: node selector and taints. */
function placeable(spec: Partial<HardwareClassSpec>, node: NodeInfo): boolean {
  if (node.spec?.unschedulable) return false;
  const labels = node.metadata?.labels ?? {};
  for (const [k, val] of Object.entries(spec.nodeSelector ?? {})) if (labels[k] !== val) return false;
  return (node.spec?.taints ?? [])
    .filter((t) => t.effect === 'NoSchedule' || t.effect === 'NoExecute')
    .every((t) =>
      (spec.tolerations ?? []).some((tol) => {
        if (tol.effect && tol.effect !== t.effect) return false;
        if (!tol.key) return tol.operator === 'Exists';
        if (tol.key !== t.key) return false;
        return tol.operator === 'Exists' || (tol.value ?? '') === (t.value ?? '');
      }),
    );
}

// ── Prediction ────────────────────────────────────────────────────────────────────────────

/** A webhook whose literal host (an IP address, `localhost`) is one webhooks may not reach. */
function webhookRule(obj: PredictionObj, egress: EgressPolicy, v: Verdict): void {
  const url = obj.spec?.webhook;
  if (!url || !URL.canParse(url)) return;
  const why = egress.literalRefusal(new URL(url));
  if (why) v.refusals.push(`spec.webhook may not point at a private, loopback or link-local address: ${why}`);
}

async function predictionRules(obj: PredictionObj, ns: string, lookup: Lookup, v: Verdict): Promise<void> {
  const spec = obj.spec ?? {};
  const notChecked = 'its input is checked when it runs';
  let versionName: string | undefined;
  let via = '';
  if (spec.version) {
    versionName = spec.version;
    via = 'spec.version';
  } else {
    let deploymentName = spec.deployment;
    let field = 'spec.deployment';
    if (!deploymentName && spec.model) {
      const model = await lookup.model(ns, spec.model);
      if (!model) {
        v.warnings.push(
          `spec.model: Model ${q(spec.model)} does not exist in namespace ${q(ns)} yet; ${notChecked}`,
        );
        return;
      }
      deploymentName = model.spec?.deployment;
      if (!deploymentName) {
        v.warnings.push(
          `spec.model: Model ${q(spec.model)} names no deployment yet (spec.deployment); ${notChecked}`,
        );
        return;
      }
      field = 'spec.model';
    }
    if (!deploymentName) return;
    const deployment = await lookup.deployment(ns, deploymentName);
    if (!deployment) {
      v.warnings.push(
        `${field}: Deployment ${q(deploymentName)} does not exist in namespace ${q(ns)} yet; ${notChecked}`,
      );
      return;
    }
    versionName = deployment.spec?.version;
    via = field;
  }
  if (!versionName) return;
  const version = await lookup.modelVersion(ns, versionName);
  if (!version) {
    v.warnings.push(
      `${via}: ModelVersion ${q(versionName)} does not exist in namespace ${q(ns)} yet; ${notChecked}`,
    );
    return;
  }
  const openapi = version.spec?.openapiSchema ?? version.status?.openapiSchema;
  if (!openapi) {
    v.warnings.push(
      `spec.input: ModelVersion ${q(versionName)} has no OpenAPI schema yet (the operator reads it from the running model); ${notChecked}`,
    );
    return;
  }
  for (const problem of validateInput(spec.input ?? {}, openapi)) {
    const field = `spec.${problem.field}`;
    v.refusals.push(
      problem.description.startsWith(problem.field)
        ? `spec.${problem.description}`
        : problem.type === 'required'
          ? `${field} is required by ModelVersion ${q(versionName)}`
          : `${field}: ${problem.description}`,
    );
  }
}
