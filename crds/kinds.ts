/** The five kinds of the API with their names for kubectl, in one table. */
import type { z } from 'zod';
import { KIND, type Kind, PLURAL } from './constants.ts';
import { DeploymentSchema } from './deployment.ts';
import { HardwareClassSchema } from './hardware-class.ts';
import { ModelSchema } from './model.ts';
import { ModelVersionSchema } from './model-version.ts';
import { PredictionSchema } from './prediction.ts';
import type { PrinterColumn } from './structural.ts';

export interface KindDefinition {
  kind: Kind;
  plural: string;
  singular: string;
  listKind: string;
  shortNames: string[];
  scope: 'Cluster' | 'Namespaced';
  /** The zod schema of the whole object: the source of the CRD's openAPIV3Schema. */
  schema: z.ZodObject;
  /** Columns that are not a single field (e.g. a condition), shown after the field columns. */
  extraColumns?: PrinterColumn[];
}

const readyColumn: PrinterColumn = {
  name: 'Ready',
  type: 'string',
  jsonPath: '.status.conditions[?(@.type=="Ready")].status',
  description: 'Status of the Ready condition.',
};

export const KINDS: readonly KindDefinition[] = [
  {
    kind: KIND.HardwareClass,
    plural: PLURAL.HardwareClass,
    singular: 'hardwareclass',
    listKind: 'HardwareClassList',
    shortNames: ['hwc'],
    scope: 'Cluster',
    schema: HardwareClassSchema,
  },
  {
    kind: KIND.Model,
    plural: PLURAL.Model,
    singular: 'model',
    listKind: 'ModelList',
    shortNames: ['mdl'],
    scope: 'Namespaced',
    schema: ModelSchema,
    extraColumns: [readyColumn],
  },
  {
    kind: KIND.ModelVersion,
    plural: PLURAL.ModelVersion,
    singular: 'modelversion',
    listKind: 'ModelVersionList',
    shortNames: ['mv'],
    scope: 'Namespaced',
    schema: ModelVersionSchema,
    extraColumns: [readyColumn],
  },
  {
    kind: KIND.Deployment,
    plural: PLURAL.Deployment,
    singular: 'deployment',
    listKind: 'DeploymentList',
    shortNames: ['mpdeploy', 'mpd'],
    scope: 'Namespaced',
    schema: DeploymentSchema,
  },
  {
    kind: KIND.Prediction,
    plural: PLURAL.Prediction,
    singular: 'prediction',
    listKind: 'PredictionList',
    shortNames: ['pred'],
    scope: 'Namespaced',
    schema: PredictionSchema,
  },
];

export function kindDefinition(kind: Kind): KindDefinition {
  const def = KINDS.find((k) => k.kind === kind);
  if (!def) throw new Error(`unknown kind ${kind}`);
  return def;
}
