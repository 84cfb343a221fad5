import { defineConfig } from 'vitest/config';

// Two projects: `unit` (pure logic, no processes) and `cluster` (a real control plane,
// started once per run by harness/cluster/global-setup.ts and shared through `inject`).
export default defineConfig({
  test: {
    reporters: ['default', './hack/vitest-summary.ts'],
    projects: [
      {
        test: {
          name: 'unit',
          include: ['**/*.test.ts'],
          exclude: ['**/*.int.test.ts', 'e2e/tests/**', 'node_modules/**', 'dist/**'],
          environment: 'node',
        },
      },
      {
        test: {
          name: 'cluster',
          include: ['**/*.int.test.ts', 'e2e/tests/**/*.test.ts'],
          exclude: ['node_modules/**', 'dist/**'],
          environment: 'node',
          globalSetup: ['harness/cluster/global-setup.ts'],
          // One machine, one control plane: cluster files run one after another.
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 300_000,
        },
      },
    ],
  },
});
