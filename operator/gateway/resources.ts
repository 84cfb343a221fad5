/** The kinds the gateway reads and writes: modelplane's own and Secrets, as the controllers define them. */
export {
  Deployments,
  HardwareClasses,
  type Meta,
  Models,
  ModelVersions,
  type Secret,
  Secrets,
  type Stored,
} from '../controllers/resources.ts';
