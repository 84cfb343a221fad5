/**
 * What the local pod runner can run: which container images map to a Cog predictor
 * directory on this machine, and which are the modelplane image itself (the sidecar).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The registry of images the runner maps to local Cog predictor directories. */
export const LOCAL_REGISTRY = 'modelplane.local';

/** How a container's image is run. */
export type ImagePlan =
  /** A Cog predictor directory: run `python -m cog.server.http` in it. */
  | { kind: 'cog'; name: string; dir: string; predictor: string }
  /** The modelplane image: run this checkout's `modelplane` CLI. */
  | { kind: 'modelplane' }
  /** Nothing on this machine runs it: `message` says why and what would. */
  | { kind: 'unknown'; message: string };

export interface ImageRules {
  /** Directories searched, in order, for `<name>/cog.yaml` (examples/models last, usually). */
  modelsDirs: readonly string[];
  /**
   * Images run as `modelplane <args>`: exact references, or repositories (a reference without
   * tag or digest matches every tag and digest of it).
   */
  modelplaneImages: readonly string[];
}

/** Splits `registry/path[:tag][@digest]` into its repository and the rest. */
export function parseImage(image: string): { repository: string; tag?: string; digest?: string } {
  let rest = image;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  // A colon after the last slash is a tag; before it, a registry's port.
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  return {
    repository: rest,
    ...(tag !== undefined ? { tag } : {}),
    ...(digest !== undefined ? { digest } : {}),
  };
}

/** True when `image` is one of `accepted` (an exact reference, or any tag/digest of a repository). */
export function isModelplaneImage(image: string, accepted: readonly string[]): boolean {
  const { repository } = parseImage(image);
  return accepted.some((a) => {
    if (a === image) return true;
    const p = parseImage(a);
    return p.tag === undefined && p.digest === undefined && p.repository === repository;
  });
}

/** `predict.py:Runner`, read from the `predict:` line of a Cog predictor directory's cog.yaml. */
export function readPredictor(dir: string): string {
  const file = join(dir, 'cog.yaml');
  const yaml = readFileSync(file, 'utf8');
  const m = /^predict:\s*["']?([^"'\n#]+?)["']?\s*(#.*)?$/m.exec(yaml);
  if (!m?.[1]) throw new Error(`${file} has no predict: line (want e.g. predict: "predict.py:Predictor")`);
  return m[1].trim();
}

/** The rule, in words, for error messages and docs. */
export function mappingRule(rules: ImageRules): string {
  const dirs = rules.modelsDirs.map((d) => `${d}/<name>`).join(', ');
  return (
    `this runner runs ${LOCAL_REGISTRY}/<name>[:tag|@digest] images from the first Cog predictor ` +
    `directory with a cog.yaml among ${dirs || '(no models directories)'}, and the modelplane ` +
    `image${rules.modelplaneImages.length === 1 ? '' : 's'} ${rules.modelplaneImages.join(', ')}`
  );
}

/** How to run `image`, or why it cannot be run here. */
export function resolveImage(image: string | undefined, rules: ImageRules): ImagePlan {
  if (!image) return { kind: 'unknown', message: `the container has no image; ${mappingRule(rules)}` };
  if (isModelplaneImage(image, rules.modelplaneImages)) return { kind: 'modelplane' };
  const { repository } = parseImage(image);
  const prefix = `${LOCAL_REGISTRY}/`;
  if (!repository.startsWith(prefix)) {
    return {
      kind: 'unknown',
      message: `image "${image}" cannot be pulled: no registry is reachable from the local pod runner; ${mappingRule(rules)}`,
    };
  }
  const name = repository.slice(prefix.length);
  if (!/^[a-z0-9][a-z0-9._-]*$/.test(name)) {
    return {
      kind: 'unknown',
      message: `image "${image}": "${name}" is not a predictor directory name (one path segment of lowercase letters, digits, ".", "_", "-"); ${mappingRule(rules)}`,
    };
  }
  for (const root of rules.modelsDirs) {
    const dir = join(root, name);
    if (!existsSync(join(dir, 'cog.yaml'))) continue;
    try {
      return { kind: 'cog', name, dir, predictor: readPredictor(dir) };
    } catch (err) {
      return { kind: 'unknown', message: `image "${image}": ${(err as Error).message}` };
    }
  }
  return {
    kind: 'unknown',
    message: `image "${image}" cannot be pulled: no directory ${name}/ with a cog.yaml in ${rules.modelsDirs.join(', ') || '(no models directories)'}; ${mappingRule(rules)}`,
  };
}
