import { defineConfig } from 'vitest/config';

// Five projects: `unit` (pure logic, no processes; embedded PGlite in-process), `postgres`
// (`*.pg.test.ts`: each file starts its own real PostgreSQL server with harness/postgres.ts,
// no control plane), `s3` (`*.s3.test.ts`: each file starts its own real S3-compatible
// server, versitygw, with harness/s3.ts, no control plane), `browser` (`*.browser.test.ts`:
// pages opened in Debian's headless Chromium, harness/chromium.ts, no control plane) and
// `cluster` (a real control plane, started once per run by harness/cluster/global-setup.ts
// and shared through `inject`).
export default defineConfig({
  test: {
    reporters: ['default', './hack/vitest-summary.ts'],
    projects: [
      {
        test: {
          name: 'unit',
          include: ['**/*.test.ts'],
          exclude: [
            '**/*.int.test.ts',
            '**/*.pg.test.ts',
            '**/*.s3.test.ts',
            '**/*.browser.test.ts',
            'e2e/tests/**',
            'node_modules/**',
            'dist/**',
          ],
          environment: 'node',
        },
      },
      {
        test: {
          name: 'postgres',
          include: ['**/*.pg.test.ts'],
          exclude: ['node_modules/**', 'dist/**'],
          environment: 'node',
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
      {
        test: {
          name: 's3',
          include: ['**/*.s3.test.ts'],
          exclude: ['node_modules/**', 'dist/**'],
          environment: 'node',
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
      {
        test: {
          name: 'browser',
          include: ['**/*.browser.test.ts'],
          exclude: ['node_modules/**', 'dist/**'],
          environment: 'node',
          testTimeout: 60_000,
          hookTimeout: 120_000,
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
