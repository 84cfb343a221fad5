/**
 * A ModelVersion applied without spec.openapiSchema gets the OpenAPI document its running
 * container serves in status.openapiSchema, once a pod of it is Ready; one with its own
 * spec.openapiSchema keeps it. On the local cluster whose T4 node is the pod runner's, with
 * the `echo` model (a real Cog server beside a real sidecar) and, for reference, a second
 * real Cog server of `echo` started here.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Dev, kubectl, startDev } from '../../dev/dev.ts';
import { repoRoot } from '../../harness/cluster/paths.ts';
import { waitFor } from '../../harness/processes.ts';
import { type ModelServer, startModelServer } from '../../sidecar/testing/model-server.ts';

const NS = `openapi-${process.pid}`;

let dev: Dev;
let reference: ModelServer;

function version(name: string): { spec: Record<string, unknown>; status?: Record<string, unknown> } {
  return JSON.parse(kubectl(dev.kubeconfig, ['get', 'modelversions', name, '-n', NS, '-o', 'json']));
}

describe('a version without a schema', () => {
  beforeAll(async () => {
    [dev, reference] = await Promise.all([
      startDev({
        gatewayPort: 0,
        namespace: NS,
        examples: [join(repoRoot, 'e2e', 'tests', 'openapi-status.yaml')],
        logDir: join(repoRoot, '.modelplane', 'e2e', NS),
        log: (l) => process.stderr.write(`dev: ${l}\n`),
      }),
      startModelServer('echo'),
    ]);
    await reference.waitFor(['READY'], 120_000);
  }, 600_000);
  afterAll(async () => {
    await Promise.all([dev?.stop(), reference?.stop()]);
  });

  it("gets the model server's own /openapi.json in status, once its deployment is Ready", async () => {
    const served = await (await fetch(`${reference.url}/openapi.json`)).json();
    expect(version('echo-v1').spec.openapiSchema).toBeUndefined();
    const read = await waitFor(
      'status.openapiSchema of echo-v1',
      () => version('echo-v1').status?.openapiSchema,
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    expect(read).toEqual(served);
    const events = kubectl(dev.kubeconfig, [
      'get',
      'events',
      '-n',
      NS,
      '--field-selector',
      'involvedObject.name=echo-v1,reason=SchemaRead',
      '-o',
      'name',
    ]);
    expect(events.trim()).not.toBe('');
  }, 120_000);

  it("admission checks a Prediction's input against it", async () => {
    await waitFor('status.openapiSchema of echo-v1', () => version('echo-v1').status?.openapiSchema);
    // Without a schema the webhook admits this with a warning ("has no OpenAPI schema yet").
    const file = join(mkdtempSync(join(tmpdir(), 'openapi-status-')), 'prediction.json');
    writeFileSync(
      file,
      JSON.stringify({
        apiVersion: 'modelplane.dev/v1alpha1',
        kind: 'Prediction',
        metadata: { name: 'bad-input', namespace: NS },
        spec: { deployment: 'echo', input: { repeat: 0 } },
      }),
    );
    let refusal = '';
    try {
      kubectl(dev.kubeconfig, ['create', '--dry-run=server', '-f', file]);
    } catch (err) {
      refusal = (err as Error).message;
    }
    expect(refusal).toMatch(/spec\.input\.text is required by ModelVersion "echo-v1"/);
    expect(refusal).toMatch(/spec\.input\.repeat/);
  });

  it('a version with spec.openapiSchema keeps it, though its container serves another', async () => {
    const v = version('echo-spec');
    const spec = v.spec.openapiSchema as { info: { title: string } };
    expect(spec.info.title).toBe('from the spec');
    // Its deployment is Ready (startDev waited on it) and the controller has seen it.
    await waitFor('echo-spec status', () => version('echo-spec').status?.openapiSchema, {
      timeoutMs: 30_000,
    });
    expect(version('echo-spec').status?.openapiSchema).toEqual(spec);
  }, 60_000);
});
