/**
 * The sidecar's API takes calls from the operator only: a token signed with the operator's
 * key for this pod's address (lib/sidecar-token.ts), checked on every route but the kubelet's
 * probes, which answer their status code and nothing more. Against a real Cog server (the
 * echo example; needs the venv of `make python`) and the operator's own SidecarClient.
 */
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, waitFor } from '../harness/processes.ts';
import { publicKeyText } from '../lib/sidecar-token.ts';
import { SidecarClient } from '../operator/predictions/sidecar-client.ts';
import { SidecarKey } from '../operator/sidecar-key.ts';
import { call } from './testing/client.ts';
import { type ModelServer, startModelServer } from './testing/model-server.ts';
import { type RunningSidecar, startSidecar } from './testing/sidecar.ts';

const operator = generateKeyPairSync('ed25519');
const key = new SidecarKey(async () => ({
  privateKey: operator.privateKey,
  publicKey: publicKeyText(operator.publicKey),
}));
// Another party's key: a token it signs is no good here.
const stranger = generateKeyPairSync('ed25519');
const strangerKey = new SidecarKey(async () => ({
  privateKey: stranger.privateKey,
  publicKey: publicKeyText(stranger.publicKey),
}));

let model: ModelServer;
let sc: RunningSidecar;

beforeAll(async () => {
  model = await startModelServer('echo', { throttleSeconds: 0 });
  const port = await freePort();
  sc = await startSidecar(model.url, {
    port,
    podIp: '127.0.0.1',
    operatorKey: publicKeyText(operator.publicKey),
  });
  await waitFor('the sidecar to be ready', async () => (await fetch(`${sc.api}/ready`)).status === 200, {
    timeoutMs: 60_000,
  });
}, 120_000);

afterAll(async () => {
  await sc?.stop();
  await model?.stop();
});

describe('the sidecar API with an operator key', () => {
  it('refuses every route without a token, with 401 problem+json', async () => {
    for (const [method, path] of [
      ['POST', '/predictions'],
      ['GET', '/predictions/x'],
      ['POST', '/predictions/x/cancel'],
      ['GET', '/predictions/x/stream'],
      ['GET', '/status'],
      ['GET', '/load'],
      ['GET', '/openapi.json'],
    ] as const) {
      const r = await call(method, `${sc.api}${path}`, method === 'POST' ? { input: {} } : undefined);
      expect([path, r.status]).toEqual([path, 401]);
      expect(r.headers.get('content-type')).toContain('application/problem+json');
      expect(String(r.body.detail)).toContain('modelplane operator only');
    }
  });

  it('answers the probes without a token, with nothing but their state', async () => {
    const ready = await call('GET', `${sc.api}/ready`);
    expect(ready.status).toBe(200);
    expect(ready.body).toEqual({ ready: true });
    const live = await call('GET', `${sc.api}/live`);
    expect(live.status).toBe(200);
  });

  it("refuses another key's token, a token for another pod, and a malformed header", async () => {
    const foreign = await strangerKey.authorization(sc.api);
    expect((await call('GET', `${sc.api}/status`, undefined, { authorization: foreign })).status).toBe(401);
    const otherPod = await key.authorization('http://10.0.0.9:8080');
    const r = await call('GET', `${sc.api}/status`, undefined, { authorization: otherPod });
    expect(r.status).toBe(401);
    expect(String(r.body.detail)).toContain('another pod');
    const expired = await new SidecarKey(() => key.pair()).authorization(sc.api, Date.now() - 3_600_000);
    const old = await call('GET', `${sc.api}/status`, undefined, { authorization: expired });
    expect(String(old.body.detail)).toContain('expired');
    expect((await call('GET', `${sc.api}/status`, undefined, { authorization: 'Basic abc' })).status).toBe(
      401,
    );
  });

  it("serves the operator's client: a prediction created, read and streamed with its token", async () => {
    const client = new SidecarClient({ authorization: (base) => key.authorization(base) });
    const created = await client.create(sc.api, 'auth-1', { text: 'hello' });
    expect(created.kind).toBe('accepted');
    const events: string[] = [];
    await expect(client.stream(sc.api, 'auth-1', 0, (e) => events.push(e.event))).resolves.toBe('done');
    expect(events).toContain('done');
    const got = await client.get(sc.api, 'auth-1');
    expect(got).toMatchObject({ kind: 'ok', body: { id: 'auth-1', status: 'succeeded' } });
    const status = await call('GET', `${sc.api}/status`, undefined, {
      authorization: await key.authorization(sc.api),
    });
    expect(status.status).toBe(200);
    // Without the token the operator's client is refused like anyone else.
    const bare = await new SidecarClient().create(sc.api, 'auth-2', { text: 'hello' });
    expect(bare).toMatchObject({ kind: 'error', status: 401 });
  });
});
