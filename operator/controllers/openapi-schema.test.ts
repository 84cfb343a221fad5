import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANNOTATION, LABEL } from '../../crds/index.ts';
import type { Pod } from '../resources.ts';
import { checkSchema, needsSchema, readSchema, SchemaRefused, schemaSource } from './openapi-schema.ts';

const DOC = { openapi: '3.0.2', components: { schemas: { Input: { type: 'object' }, Output: {} } } };

function pod(
  name: string,
  o: { version?: string; id?: string; deployment?: string; ready?: boolean; ip?: string } = {},
): Pod {
  return {
    metadata: {
      name,
      namespace: 'ns',
      labels: { [LABEL.deployment]: o.deployment ?? 'echo', [LABEL.version]: o.version ?? 'echo-v1' },
      annotations: { [ANNOTATION.versionId]: o.id ?? 'id1' },
    },
    spec: {
      containers: [
        { name: 'model', ports: [{ name: 'http', containerPort: 5000 }] },
        { name: 'sidecar', ports: [{ name: 'api', containerPort: 9000 }] },
      ],
    },
    status: {
      phase: 'Running',
      podIP: o.ip ?? '10.0.0.1',
      conditions: [{ type: 'Ready', status: o.ready === false ? 'False' : 'True' }],
    },
  } as Pod;
}

const deployments: Record<string, string> = { echo: 'echo-v1', other: 'echo-v2' };
const versionOf = (d: string) => deployments[d];

describe('needsSchema', () => {
  it('is true only without a spec and a status document', () => {
    expect(needsSchema({ metadata: {}, spec: {} })).toBe(true);
    expect(needsSchema({ metadata: {}, spec: {}, status: {} })).toBe(true);
    expect(needsSchema({ metadata: {}, spec: { openapiSchema: DOC } })).toBe(false);
    expect(needsSchema({ metadata: {}, spec: {}, status: { openapiSchema: DOC } })).toBe(false);
  });
});

describe('schemaSource', () => {
  it('takes the first Ready pod by name of the version, its sidecar API port', () => {
    const pods = [pod('b', { ip: '10.0.0.2' }), pod('a', { ready: false }), pod('c', { ip: 'fd00::3' })];
    expect(schemaSource(pods, 'echo-v1', 'id1', versionOf)).toEqual({
      pod: 'b',
      base: 'http://10.0.0.2:9000',
    });
    expect(schemaSource([pods[2] as Pod], 'echo-v1', 'id1', versionOf)?.base).toBe('http://[fd00::3]:9000');
  });

  it('takes no pod of another version, content id or Deployment, nor one not Ready', () => {
    expect(schemaSource([pod('a', { version: 'echo-v2' })], 'echo-v1', 'id1', versionOf)).toBeUndefined();
    expect(schemaSource([pod('a', { id: 'old' })], 'echo-v1', 'id1', versionOf)).toBeUndefined();
    // labelled echo-v1, but its Deployment runs echo-v2 (or does not exist)
    expect(schemaSource([pod('a', { deployment: 'other' })], 'echo-v1', 'id1', versionOf)).toBeUndefined();
    expect(schemaSource([pod('a', { deployment: 'gone' })], 'echo-v1', 'id1', versionOf)).toBeUndefined();
    expect(schemaSource([pod('a', { ready: false })], 'echo-v1', 'id1', versionOf)).toBeUndefined();
    const terminating = pod('a');
    terminating.metadata = { ...terminating.metadata, deletionTimestamp: new Date().toISOString() };
    expect(schemaSource([terminating], 'echo-v1', 'id1', versionOf)).toBeUndefined();
  });
});

describe('checkSchema', () => {
  it('wants an object with components.schemas.Input', () => {
    expect(checkSchema(DOC)).toBe(DOC);
    for (const bad of [null, [], 'x', {}, { components: {} }, { components: { schemas: { Input: [] } } }])
      expect(() => checkSchema(bad)).toThrow(SchemaRefused);
  });
});

describe('readSchema', () => {
  let server: Server;
  let base: string;
  const seen: (string | undefined)[] = [];
  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.push(req.headers.authorization);
      const send = (code: number, body: string, headers: Record<string, string> = {}) => {
        res.writeHead(code, { 'content-type': 'application/json', ...headers });
        res.end(body);
      };
      const path = req.url ?? '';
      if (path === '/ok/openapi.json') return send(200, JSON.stringify(DOC));
      if (path === '/none/openapi.json') return send(503, '{"title":"No schema"}');
      if (path === '/text/openapi.json') return send(200, 'not json');
      if (path === '/noinput/openapi.json') return send(200, '{"openapi":"3.0.2"}');
      if (path === '/big/openapi.json') return send(200, JSON.stringify({ ...DOC, pad: 'x'.repeat(5000) }));
      if (path === '/chunked/openapi.json') {
        // no content-length: the size is counted while reading
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write(`{"pad":"${'x'.repeat(3000)}`);
        res.end(`${'x'.repeat(3000)}"}`);
        return;
      }
      send(404, '{}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('reads the document with the authorization for the sidecar', async () => {
    const doc = await readSchema(`${base}/ok`, { authorization: async (b) => `Bearer for ${b}` });
    expect(doc).toEqual(DOC);
    expect(seen.at(-1)).toBe(`Bearer for ${base}/ok`);
  });

  it('refuses a document too large, not JSON or without Input; a 503 is an error to retry', async () => {
    await expect(readSchema(`${base}/big`, { maxBytes: 4096 })).rejects.toThrow(/more than the 4096/);
    await expect(readSchema(`${base}/big`, { maxBytes: 4096 })).rejects.toBeInstanceOf(SchemaRefused);
    await expect(readSchema(`${base}/chunked`, { maxBytes: 4096 })).rejects.toBeInstanceOf(SchemaRefused);
    await expect(readSchema(`${base}/text`)).rejects.toThrow(/not JSON/);
    await expect(readSchema(`${base}/noinput`)).rejects.toThrow(/components.schemas.Input/);
    const unavailable = readSchema(`${base}/none`);
    await expect(unavailable).rejects.toThrow(/503/);
    await expect(readSchema(`${base}/none`)).rejects.not.toBeInstanceOf(SchemaRefused);
  });
});
