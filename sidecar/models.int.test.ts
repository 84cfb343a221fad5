/** The example Cog models of examples/models/: their committed schemas and their servers. */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pythonEnv } from '../harness/python.ts';
import { MODELS, type ModelServer, modelsDir, startModelServer } from './testing/model-server.ts';

const started: ModelServer[] = [];
afterAll(async () => {
  await Promise.all(started.map((s) => s.stop()));
});

describe('the example models', () => {
  it('commit the OpenAPI schema their predictors produce (.cog/openapi_schema.json)', () => {
    const out = execFileSync(
      join(pythonEnv(), 'bin', 'python'),
      [join(modelsDir, 'openapi_schema.py'), '--check'],
      {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    expect(out).toBe('');
  });

  it('each start on a real Cog server: ready with its schema, or SETUP_FAILED for setup-fail', async () => {
    const servers = await Promise.all(MODELS.map((m) => startModelServer(m)));
    started.push(...servers);
    for (const s of servers) {
      const status = await s.waitFor(['READY', 'SETUP_FAILED'], 120_000);
      expect(status).toBe(s.model === 'setup-fail' ? 'SETUP_FAILED' : 'READY');
      if (status !== 'READY') continue;
      const schema = (await (await fetch(`${s.url}/openapi.json`)).json()) as {
        components: { schemas: { Input: { properties: Record<string, unknown> } } };
      };
      expect(Object.keys(schema.components.schemas.Input.properties).length).toBeGreaterThan(0);
    }
  });
});
