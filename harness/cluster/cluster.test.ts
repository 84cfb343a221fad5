import { describe, expect, it } from 'vitest';
import { providerFromEnv, startCluster } from './cluster.ts';

describe('cluster provider selection', () => {
  it('defaults to the local control plane', () => {
    expect(providerFromEnv({})).toBe('local');
    expect(providerFromEnv({ MODELPLANE_CLUSTER: 'kubeconfig' })).toBe('kubeconfig');
  });

  it('rejects an unknown provider by name', () => {
    expect(() => providerFromEnv({ MODELPLANE_CLUSTER: 'kind' })).toThrow(
      /MODELPLANE_CLUSTER=kind is not a cluster provider; use one of: local, kubeconfig, k3s/,
    );
  });

  it('fails, rather than skips, when the kubeconfig provider has no kubeconfig', async () => {
    const saved = process.env.KUBECONFIG;
    process.env.KUBECONFIG = '/nonexistent/kubeconfig';
    try {
      await expect(startCluster({ provider: 'kubeconfig' })).rejects.toThrow(
        /no kubeconfig at \/nonexistent\/kubeconfig/,
      );
    } finally {
      if (saved === undefined) delete process.env.KUBECONFIG;
      else process.env.KUBECONFIG = saved;
    }
  });

  it('fails with what to install when the k3s provider is missing its package', async () => {
    await expect(startCluster({ provider: 'k3s' })).rejects.toThrow(/@testcontainers\/k3s.*Docker engine/);
  });
});
