import { describe, expect, it } from 'vitest';
import { appliedBy, ownsField } from './apply.ts';
import type { KubeObject } from './client.ts';
import { trimManagedFields } from './informer.ts';

function workload(): KubeObject {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name: 'w',
      managedFields: [
        {
          manager: 'modelplane-deployment',
          operation: 'Apply',
          fieldsV1: {
            'f:spec': { 'f:template': { 'f:spec': { 'f:containers': { 'k:{"name":"model"}': {} } } } },
          },
        },
        {
          manager: 'modelplane-autoscaler',
          operation: 'Apply',
          fieldsV1: { 'f:spec': { 'f:replicas': {} } },
        },
      ],
    },
  };
}

describe('trimManagedFields', () => {
  it('drops managedFields by default', () => {
    const obj = workload();
    trimManagedFields(obj, undefined);
    expect(obj.metadata).toEqual({ name: 'w' });
  });

  it('keeps what ownership questions need at depth 2, and nothing deeper', () => {
    const obj = workload();
    trimManagedFields(obj, 2);
    expect(obj.metadata?.managedFields?.[0]?.fieldsV1).toEqual({ 'f:spec': { 'f:template': {} } });
    expect(ownsField(obj, 'modelplane-autoscaler', ['spec', 'replicas'])).toBe(true);
    expect(ownsField(obj, 'modelplane-deployment', ['spec', 'replicas'])).toBe(false);
    expect(appliedBy(obj, 'modelplane-deployment')).toBe(true);
  });
});
