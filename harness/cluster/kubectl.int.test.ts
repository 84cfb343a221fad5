import { describe, expect, it } from 'vitest';
import { useCluster } from './testing.ts';

const cluster = useCluster();

describe('the built kubectl', () => {
  it('lists the node pools with their GPU product', async () => {
    const out = await cluster.kubectl('get', 'nodes', '-L', 'nvidia.com/gpu.product', '--no-headers=false');
    const [header, ...rows] = out.trim().split('\n');
    expect(header).toMatch(/^NAME\s+STATUS\s+ROLES\s+AGE\s+VERSION\s+GPU\.PRODUCT$/);
    const product = new Map(
      rows.map((r) => r.trim().split(/\s+/)).map((c) => [c[0], c.length > 5 ? c[5] : '']),
    );
    expect(product.get('gpu-t4-0')).toBe('Tesla-T4');
    expect(product.get('gpu-t4-1')).toBe('Tesla-T4');
    expect(product.get('gpu-a100-80gb-0')).toBe('NVIDIA-A100-SXM4-80GB');
    expect(product.get('gpu-h100-1')).toBe('NVIDIA-H100-80GB-HBM3');
    expect(product.get('cpu-0')).toBe('');
    for (const r of rows) expect(r).toMatch(/\sReady\s/);
  });

  it('reports the pinned Kubernetes version from the server', async () => {
    const out = JSON.parse(await cluster.kubectl('version', '-o', 'json')) as {
      clientVersion: { gitVersion: string };
      serverVersion: { gitVersion: string };
    };
    expect(out.serverVersion.gitVersion).toMatch(/^v1\.3\d+\.\d+$/);
    expect(out.clientVersion.gitVersion).toBe(out.serverVersion.gitVersion);
  });
});
