/** The core kinds the gateway reads and writes beside modelplane's own (operator/controllers/resources.ts). */
import { type KubeObject, resourceType } from '../runtime/index.ts';

export interface Secret extends KubeObject {
  type?: string;
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}

export const Secrets = resourceType<Secret>({
  apiVersion: 'v1',
  kind: 'Secret',
  plural: 'secrets',
  namespaced: true,
});

export {
  Deployments,
  HardwareClasses,
  type Meta,
  Models,
  ModelVersions,
  type Stored,
} from '../controllers/resources.ts';
