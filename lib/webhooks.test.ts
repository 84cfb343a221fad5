import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { EgressPolicy } from './egress.ts';
import { WebhookSender } from './webhooks.ts';

const LOOPBACK = new EgressPolicy(['127.0.0.0/8']);

/** A value nested `n` levels deep: JSON.stringify overflows the stack on it. */
function deep(n: number): unknown {
  let v: unknown = 0;
  for (let i = 0; i < n; i++) v = [v];
  return v;
}

describe('webhook delivery', () => {
  let server: Server | undefined;
  afterEach(() => server?.close());

  async function receiver() {
    const got: { headers: IncomingMessage['headers']; body: string }[] = [];
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => {
        body += c;
      });
      req.on('end', () => {
        got.push({ headers: req.headers, body });
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    return { got, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook` };
  }

  it('adds the headers hook gives each delivery, and sends none it declines', async () => {
    const { got, url } = await receiver();
    const w = new WebhookSender(pino({ level: 'silent' }), { egress: LOOPBACK });
    let n = 0;
    w.register('plain', url, ['completed']);
    w.register('hooked', url, ['start', 'completed'], ({ prediction, event, body }) =>
      event === 'start' ? undefined : () => ({ 'x-hook': `${prediction} ${event} ${body} ${++n}` }),
    );
    w.notify('plain', 'completed', () => ({ p: 'plain' }));
    w.notify('hooked', 'start', () => ({ p: 'start' }));
    w.notify('hooked', 'completed', () => ({ p: 'done' }));
    await w.drain();
    const byBody = new Map(got.map((g) => [g.body, g.headers]));
    expect([...byBody.keys()].sort()).toEqual(['{"p":"done"}', '{"p":"plain"}']);
    expect(byBody.get('{"p":"plain"}')!['x-hook']).toBeUndefined();
    expect(byBody.get('{"p":"done"}')!['x-hook']).toBe('hooked completed {"p":"done"} 1');
  });

  it('drops a body that cannot be serialised, leaves no rejection behind, and sends the next', async () => {
    const { got, url } = await receiver();
    const attempts: { event: string; error?: string }[] = [];
    const w = new WebhookSender(pino({ level: 'silent' }), {
      egress: LOOPBACK,
      onAttempt: (a) => attempts.push(a),
    });
    const rejections: unknown[] = [];
    const onRejection = (r: unknown) => rejections.push(r);
    process.on('unhandledRejection', onRejection);
    try {
      w.register('deep', url, ['start', 'completed']);
      w.notify('deep', 'start', () => ({ input: deep(200_000) }));
      w.notify('deep', 'completed', () => ({ status: 'succeeded' }));
      w.register('cyclic', url, ['completed']);
      const cycle: Record<string, unknown> = {};
      cycle.self = cycle;
      w.notify('cyclic', 'completed', () => cycle);
      await w.drain();
      // A turn of the event loop, for any rejection left unhandled to be reported.
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('unhandledRejection', onRejection);
    }
    expect(rejections).toEqual([]);
    expect(got.map((g) => g.body)).toEqual(['{"status":"succeeded"}']);
    expect(attempts.filter((a) => a.error?.startsWith('body not serialisable'))).toHaveLength(2);
  });

  it('refuses private targets by default, without retrying, and reaches them when allowed', async () => {
    const { got, url } = await receiver();
    const attempts: { url: string; refused?: boolean }[] = [];
    const strict = new WebhookSender(pino({ level: 'silent' }), {
      onAttempt: (a) => attempts.push(a),
      retryBaseMs: 1,
    });
    const localhost = url.replace('127.0.0.1', 'localhost');
    for (const [id, u] of [
      ['loopback', url],
      ['localhost', localhost],
      ['metadata', 'http://169.254.169.254/latest/meta-data/'],
      ['private', 'http://10.1.2.3/hook'],
      ['v6-loopback', 'http://[::1]:9/hook'],
      ['mapped', 'http://[::ffff:127.0.0.1]:9/hook'],
    ] as const) {
      strict.register(id, u, ['completed']);
      strict.notify(id, 'completed', () => ({ id }));
    }
    await strict.drain();
    expect(got).toEqual([]);
    expect(attempts).toHaveLength(6);
    expect(attempts.every((a) => a.refused)).toBe(true);

    const allowed = new WebhookSender(pino({ level: 'silent' }), { egress: LOOPBACK });
    allowed.register('ok', localhost, ['completed']);
    allowed.notify('ok', 'completed', () => ({ ok: true }));
    await allowed.drain();
    expect(got.map((g) => g.body)).toEqual(['{"ok":true}']);
  });

  it('reads at most maxResponseBytes of an answer', async () => {
    let sent = 0;
    server = createServer((req, res) => {
      req.resume();
      res.writeHead(200);
      const chunk = Buffer.alloc(64 * 1024, 'x');
      const pump = () => {
        // An endless answer: only the cap ends the read.
        while (res.write(chunk)) sent += chunk.length;
      };
      res.on('drain', pump);
      pump();
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
    const attempts: { status: number }[] = [];
    const w = new WebhookSender(pino({ level: 'silent' }), {
      egress: LOOPBACK,
      maxResponseBytes: 1024,
      onAttempt: (a) => attempts.push(a),
    });
    w.register('big', url, ['completed']);
    w.notify('big', 'completed', () => ({}));
    await w.drain();
    server.closeAllConnections();
    expect(attempts).toEqual([expect.objectContaining({ status: 200 })]);
    expect(sent).toBeLessThan(64 * 1024 * 1024);
  });
});
