/**
 * The modelplane API (group modelplane.dev, version v1alpha1): zod schemas, the TypeScript
 * types inferred from them, and the names every component shares. The CRDs in
 * crds/generated/ are generated from these schemas (`make crds`).
 */
export * from './constants.ts';
export { type CustomResourceDefinition, crdFor, crds, crdYaml } from './crd.ts';
export * from './deployment.ts';
export * from './hardware-class.ts';
export { type InstallOptions, installCrds } from './install.ts';
export { KINDS, type KindDefinition, kindDefinition } from './kinds.ts';
export * from './model.ts';
export * from './model-version.ts';
export * from './prediction.ts';
export {
  type CelRule,
  type Condition,
  ConditionSchema,
  type ObjectMeta,
  ObjectMetaSchema,
  PATTERN,
} from './schema.ts';
