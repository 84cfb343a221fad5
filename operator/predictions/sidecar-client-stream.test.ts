/** SidecarClient.stream against a local server that sends server-sent events as a sidecar does. */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { StreamEvent } from '../../lib/prediction.ts';
import { SidecarClient } from './sidecar-client.ts';

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

/** A sidecar stand-in whose stream sends `frames`, then stays open. */
async function streaming(frames: string[]): Promise<string> {
  const srv = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    for (const f of frames) res.write(f);
  });
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
}

describe('SidecarClient.stream', () => {
  it('resolves done after the done event, with every event before it', async () => {
    const base = await streaming(['id: 1\nevent: output\ndata: x\n\n', 'id: 2\nevent: done\ndata: {}\n\n']);
    const seen: StreamEvent[] = [];
    await expect(new SidecarClient().stream(base, 'p1', 0, (e) => seen.push(e))).resolves.toBe('done');
    expect(seen.map((e) => e.event)).toEqual(['output', 'done']);
  });

  it('throws when the stream stays silent past the idle limit', async () => {
    const base = await streaming([]);
    await expect(new SidecarClient({ streamIdleMs: 100 }).stream(base, 'p1', 0, () => {})).rejects.toThrow(
      /silent/,
    );
  });
});
