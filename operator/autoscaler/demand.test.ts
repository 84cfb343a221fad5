import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalDemand } from './local.ts';
import { demandHandler, pokeHandler, tokenSubject } from './peers.ts';
import { parseDemandList, sumDemand } from './sum.ts';
import { StaticDemandSource } from './testing.ts';

describe('sumDemand', () => {
  it('adds the replicas’ figures per deployment and keeps the latest activity', () => {
    const sum = sumDemand([
      [
        { namespace: 'a', name: 'x', queued: 2, inflight: 1, perPod: { p1: 1 }, lastActivityMs: 10 },
        { namespace: 'a', name: 'y', queued: 0, inflight: 0, perPod: {} },
      ],
      [{ namespace: 'a', name: 'x', queued: 3, inflight: 4, perPod: { p1: 2, p2: 2 }, lastActivityMs: 20 }],
      [{ namespace: 'a', name: 'x', queued: -5, inflight: Number.NaN, perPod: {} }],
    ]);
    expect(sum.get('a/x')).toEqual({
      namespace: 'a',
      name: 'x',
      queued: 5,
      inflight: 5,
      perPod: { p1: 3, p2: 2 },
      lastActivityMs: 20,
    });
    expect(sum.get('a/y')).toMatchObject({ queued: 0, inflight: 0 });
  });
});

describe('parseDemandList', () => {
  it('accepts a peer’s answer and refuses a malformed one', () => {
    expect(
      parseDemandList({ demand: [{ namespace: 'a', name: 'x', queued: 1, inflight: 2, perPod: { p: 1 } }] }),
    ).toEqual([{ namespace: 'a', name: 'x', queued: 1, inflight: 2, perPod: { p: 1 } }]);
    expect(() => parseDemandList({})).toThrow(/no "demand" array/);
    expect(() => parseDemandList({ demand: [{ name: 'x' }] })).toThrow(/demand\[0\]/);
  });
});

describe('LocalDemand', () => {
  it('merges its sources and passes their pokes on; a failing source counts as empty', () => {
    const local = new LocalDemand({ onError: () => {} });
    const a = new StaticDemandSource();
    const b = new StaticDemandSource();
    local.add(a);
    local.add(b);
    local.add({
      demand: () => {
        throw new Error('broken');
      },
      onPoke: () => {},
    });
    a.set({ namespace: 'n', name: 'd', queued: 1, inflight: 0, perPod: {} });
    b.set({ namespace: 'n', name: 'd', queued: 2, inflight: 1, perPod: {} });
    expect(local.demand()).toEqual([{ namespace: 'n', name: 'd', queued: 3, inflight: 1, perPod: {} }]);
    const pokes: string[] = [];
    local.onPoke((ns, name) => pokes.push(`${ns}/${name}`));
    b.poke('n', 'd');
    expect(pokes).toEqual(['n/d']);
  });
});

describe('tokenSubject', () => {
  it('reads the sub claim of a JWT', () => {
    const payload = Buffer.from(JSON.stringify({ sub: 'system:serviceaccount:mp:operator' })).toString(
      'base64url',
    );
    expect(tokenSubject(`e30.${payload}.sig`)).toBe('system:serviceaccount:mp:operator');
    expect(tokenSubject('opaque')).toBeUndefined();
  });
});

describe('the demand endpoint', () => {
  let close: (() => void) | undefined;
  afterEach(() => close?.());

  async function serve(authenticate: (t: string) => Promise<boolean>) {
    const source = new StaticDemandSource();
    source.set({ namespace: 'n', name: 'd', queued: 4, inflight: 1, perPod: { p: 1 } });
    const server = createServer(
      demandHandler({ demand: () => source.demand(), authenticate, identity: 'me' }),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    close = () => server.close();
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}/autoscaler/demand`;
  }

  it('answers only a caller whose token is accepted', async () => {
    const url = await serve(async (t) => t === 'good');
    const none = await fetch(url);
    expect(none.status).toBe(401);
    expect(none.headers.get('content-type')).toBe('application/problem+json');
    expect((await fetch(url, { headers: { authorization: 'Bearer bad' } })).status).toBe(403);
    const ok = await fetch(url, { headers: { authorization: 'Bearer good' } });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({
      identity: 'me',
      demand: [{ namespace: 'n', name: 'd', queued: 4, inflight: 1, perPod: { p: 1 } }],
    });
    expect((await fetch(url, { method: 'POST', headers: { authorization: 'Bearer good' } })).status).toBe(
      405,
    );
  });

  it('answers 503 when the token cannot be reviewed', async () => {
    const url = await serve(async () => {
      throw new Error('API server unreachable');
    });
    expect((await fetch(url, { headers: { authorization: 'Bearer x' } })).status).toBe(503);
  });

  it('takes a poke as JSON, and says when this replica does not lead', async () => {
    const got: string[] = [];
    let leading = true;
    const server = createServer(
      pokeHandler({
        poke: (ns, name) => leading && got.push(`${ns}/${name}`) > 0,
        authenticate: async (t) => t === 'good',
      }),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    close = () => server.close();
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/autoscaler/poke`;
    const post = (body: string, token = 'good') =>
      fetch(url, { method: 'POST', body, headers: { authorization: `Bearer ${token}` } });
    expect((await post('{"namespace":"n","name":"d"}', 'bad')).status).toBe(403);
    expect((await post('{"namespace":"n","name":"d"}')).status).toBe(202);
    expect(got).toEqual(['n/d']);
    expect((await post('nope')).status).toBe(400);
    expect((await post('{"namespace":"n"}')).status).toBe(422);
    leading = false;
    expect((await post('{"namespace":"n","name":"d"}')).status).toBe(409);
  });

  it('answers problem+json for a body too large, another method or path; counts by route', async () => {
    const registry = new Registry();
    const server = createServer(
      pokeHandler({ poke: () => true, authenticate: async (t) => t === 'good', registry }),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    close = () => server.close();
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const auth = { authorization: 'Bearer good' };
    const big = await fetch(`${base}/autoscaler/poke`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ namespace: 'n', name: 'x'.repeat(5000) }),
    });
    expect(big.status).toBe(413);
    expect(big.headers.get('content-type')).toBe('application/problem+json');
    expect(await big.json()).toMatchObject({ status: 413, title: 'Request body too large' });
    const get = await fetch(`${base}/autoscaler/poke`, { headers: auth });
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
    const other = await fetch(`${base}/autoscaler/other`, { headers: auth });
    expect(other.status).toBe(404);
    expect(await other.json()).toMatchObject({ status: 404, title: 'Not found' });
    await fetch(`${base}/autoscaler/poke`, {
      method: 'POST',
      headers: auth,
      body: '{"namespace":"n","name":"d"}',
    });
    await new Promise((r) => setTimeout(r, 20));
    const counted = (await registry.getSingleMetric('modelplane_autoscaler_peer_requests_total')?.get())
      ?.values;
    expect(counted?.map((v) => [v.labels.route, v.labels.code, v.value])).toEqual([
      ['POST /autoscaler/poke', '413', 1],
      ['unmatched', '405', 1],
      ['unmatched', '404', 1],
      ['POST /autoscaler/poke', '202', 1],
    ]);
  });
});
