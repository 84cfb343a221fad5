/** HTTP building blocks shared by the sidecar and the gateway: JSON bodies, problem+json errors, Prefer. */
import type { IncomingMessage, ServerResponse } from 'node:http';

export class HttpError extends Error {
  readonly status: number;
  readonly title: string;
  readonly extra: Record<string, unknown>;
  readonly headers: Record<string, string>;
  constructor(
    status: number,
    title: string,
    detail: string,
    extra: Record<string, unknown> = {},
    headers: Record<string, string> = {},
  ) {
    super(detail);
    this.status = status;
    this.title = title;
    this.extra = extra;
    this.headers = headers;
  }
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
  contentType = 'application/json',
): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': contentType,
    'content-length': String(Buffer.byteLength(payload)),
    ...headers,
  });
  res.end(payload);
}

/** An `application/problem+json` error: `{title, detail, status, ...extra}`. */
export function sendProblem(res: ServerResponse, err: HttpError): void {
  sendJson(
    res,
    err.status,
    { title: err.title, detail: err.message, status: err.status, ...err.extra },
    err.headers,
    'application/problem+json',
  );
}

/** Reads a JSON body of at most `limit` bytes; an empty body reads as `{}`. */
export async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new HttpError(413, 'Request body too large', `the body is over ${limit} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (!text) return {};
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, 'Malformed JSON', `the body is not JSON: ${(err as Error).message}`);
  }
}

/**
 * Seconds to hold a request from its `Prefer` header: `wait` alone is `max`, `wait=N` is N
 * clamped to [0, max]; no wait preference is undefined.
 */
export function preferWait(header: string | string[] | undefined, max: number): number | undefined {
  const raw = Array.isArray(header) ? header.join(',') : header;
  if (!raw) return undefined;
  for (const part of raw.split(/[,;]/)) {
    const m = /^\s*wait(?:\s*=\s*"?(\d+(?:\.\d+)?)"?)?\s*$/i.exec(part);
    if (!m) continue;
    if (m[1] === undefined) return max;
    return Math.min(max, Math.max(0, Number(m[1])));
  }
  return undefined;
}

/** One server-sent event: an `id:` line, the event name, and one `data:` line per line of text. */
export function sseFrame(e: { id: number; event: string; data: string }): string {
  const data = e.data
    .split('\n')
    .map((line) => `data: ${line}`)
    .join('\n');
  return `id: ${e.id}\nevent: ${e.event}\n${data}\n\n`;
}
