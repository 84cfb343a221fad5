import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { WebhookSender } from './webhooks.ts';

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
    const w = new WebhookSender(pino({ level: 'silent' }));
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
});
