/** The local pod runner: what `make dev` and the end-to-end tests import. */
export { COG_DEFAULT_ARGS } from './commands.ts';
export { type ImagePlan, type ImageRules, LOCAL_REGISTRY, mappingRule, resolveImage } from './images.ts';
export { IpAllocator } from './ips.ts';
export {
  DEFAULT_MODELPLANE_IMAGES,
  DEFAULT_POD_CIDR,
  EXAMPLE_MODELS_DIR,
  FIELD_MANAGER,
  HOST_IP,
  PodRunner,
  type PodRunnerOptions,
  RUNNER_LABEL,
  runnerOwner,
  runnerPools,
} from './runner.ts';
