/** A small server-sent events reader, for tests of the sidecar's stream. */
import { readSse } from '../../lib/http.ts';

export interface SseEvent {
  id: string | undefined;
  event: string;
  data: string;
  /** performance.now() when the event was read. */
  at: number;
}

export interface SseStream {
  /** Comment lines (keep-alives) seen so far. */
  comments: string[];
  /** Every event until the stream ends. */
  events: Promise<SseEvent[]>;
  /** Called for each event as it arrives. */
  onEvent(fn: (e: SseEvent) => void): void;
  close(): void;
}

export async function openSse(url: string, headers: Record<string, string> = {}): Promise<SseStream> {
  const controller = new AbortController();
  const res = await fetch(url, {
    headers: { accept: 'text/event-stream', ...headers },
    signal: controller.signal,
  });
  if (res.status !== 200 || !res.body)
    throw new Error(`GET ${url} answered ${res.status}: ${await res.text()}`);
  const contentType = res.headers.get('content-type') ?? '';
  if (!contentType.startsWith('text/event-stream'))
    throw new Error(`GET ${url} is ${contentType}, not an event stream`);
  const listeners: Array<(e: SseEvent) => void> = [];
  const comments: string[] = [];
  const body = res.body;
  const events = (async () => {
    const out: SseEvent[] = [];
    try {
      for await (const block of readSse(body)) {
        comments.push(...block.comments);
        if (block.data === undefined && block.id === undefined) continue;
        const e = { id: block.id, event: block.event, data: block.data ?? '', at: performance.now() };
        out.push(e);
        for (const l of listeners) l(e);
      }
    } catch (err) {
      if ((err as Error).name !== 'AbortError') throw err;
    }
    return out;
  })();
  return {
    comments,
    events,
    onEvent: (fn) => listeners.push(fn),
    close: () => controller.abort(),
  };
}
