/**
 * Fuzzing of an HTTP API's routes with fast-check: malformed, deeply nested, huge, wrongly
 * typed and unicode-edge bodies, odd headers and path parameters, sent over a real socket
 * (node:http, so that headers and bytes go out as generated). Every answer must be a 4xx
 * `application/problem+json` whose `status` matches, or a 2xx the route documents; never a
 * 5xx, a hang or a dropped connection. fast-check shrinks a failure to the smallest request.
 */
import { request } from 'node:http';
import fc from 'fast-check';

export interface FuzzRoute {
  method: string;
  /** An express path template: `:name` segments are filled from `params` or fuzzed. */
  path: string;
}

export interface FuzzTarget {
  /** `http://host:port` */
  base: string;
  routes: FuzzRoute[];
  /** Headers that let a request in (a credential); sent on most requests, not all. */
  credential?: Record<string, string>;
  /** Real values for path parameters (`{ id: ['abc'] }`), mixed with fuzzed ones. */
  params?: Record<string, string[]>;
  /** Bodies that are valid, or nearly (mutated by the generators). */
  validBodies?: unknown[];
  /** The server's body limit: huge bodies are generated around it. */
  maxBodyBytes: number;
  /** An answer that is allowed although not a 4xx problem (a 2xx with JSON, say). */
  allowed?: (route: FuzzRoute, answer: Answer) => boolean;
  /** Called after every request: throws when the server is down. */
  alive: () => Promise<void>;
}

export interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer | undefined;
  /** The route it was made for (its method may differ). */
  route: FuzzRoute;
}

export interface Answer {
  status: number;
  contentType: string;
  body: string;
}

const text = (max = 64) => fc.string({ unit: 'binary', maxLength: max });

/** A path segment: a real value, a fuzzed string (encoded), or malformed percent-encoding. */
function segment(real: string[]): fc.Arbitrary<string> {
  return fc.oneof(
    { arbitrary: fc.constantFrom(...(real.length ? real : ['x'])), weight: 3 },
    { arbitrary: text().map(encodeURIComponent), weight: 2 },
    fc.constantFrom('%', '%E0%A4%A', '%FF', '%00', '..', '.', '%2F..%2F', 'a'.repeat(4096), '%F0%9F%98'),
  );
}

function fill(path: string, values: Record<string, string>): string {
  return path.replace(/:(\w+)/g, (_m, name: string) => values[name] ?? 'x');
}

/** Deep nesting of arrays or objects, `depth` levels. */
function deep(depth: number, kind: 'array' | 'object'): string {
  return kind === 'array'
    ? `${'['.repeat(depth)}${']'.repeat(depth)}`
    : `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
}

/** Strings at the edges of Unicode and JSON: lone surrogates, NUL, BOM, overlong UTF-8. */
const unicodeEdge = fc.constantFrom(
  Buffer.from('{"input":{"text":"\\ud800"}}'),
  Buffer.from('{"input":{"text":"\\udfff\\ud800"}}'),
  Buffer.from('\ufeff{"input":{}}'),
  Buffer.from('{"input":{"text":"\u0000\u202e\u2028\u2029"}}'),
  Buffer.from([0x7b, 0x22, 0xc0, 0x80, 0x22, 0x3a, 0x31, 0x7d]), // overlong NUL in a key
  Buffer.from([0xff, 0xfe, 0x7b, 0x00, 0x7d, 0x00]), // UTF-16 with a BOM
  Buffer.from('{"__proto__":{"polluted":1},"constructor":{"prototype":{"x":1}}}'),
  Buffer.from('{"input":{"n":1e400,"m":-0,"big":123456789012345678901234567890}}'),
  Buffer.from('{"a":1,"a":2}'),
);

function bodies(t: FuzzTarget): fc.Arbitrary<Buffer | undefined> {
  const json = (v: unknown) => Buffer.from(JSON.stringify(v) ?? 'null');
  const valid = t.validBodies?.length ? t.validBodies : [{}];
  const mutated = fc
    .tuple(fc.constantFrom(...valid), fc.string({ maxLength: 16 }), fc.anything({ maxDepth: 3 }))
    .map(([b, key, value]) =>
      json(typeof b === 'object' && b !== null && !Array.isArray(b) ? { ...b, [key]: value } : value),
    );
  const typed = fc
    .record(
      {
        version: fc.anything({ maxDepth: 2 }),
        input: fc.anything({ maxDepth: 3 }),
        webhook: fc.oneof(
          fc.anything({ maxDepth: 1 }),
          fc.constantFrom(
            'http://127.0.0.1:1/',
            'http://169.254.169.254/latest/meta-data',
            'http://[::1]/',
            'ftp://example.com/',
            'http://',
            `http://${'a'.repeat(3000)}.com/`,
          ),
        ),
        webhook_events_filter: fc.anything({ maxDepth: 2 }),
        stream: fc.anything({ maxDepth: 1 }),
        id: fc.anything({ maxDepth: 1 }),
      },
      { requiredKeys: [] },
    )
    .map(json);
  const huge = fc.constantFrom(t.maxBodyBytes - 64, t.maxBodyBytes + 1, 2 * t.maxBodyBytes + 1).chain((n) =>
    fc.constantFrom(
      Buffer.from(`{"input":{"s":"${'x'.repeat(Math.max(0, n - 20))}"}}`),
      Buffer.alloc(Math.max(0, n), 0x5b), // "[[[[..." never closed
    ),
  );
  return fc.oneof(
    { arbitrary: fc.constant(undefined), weight: 1 },
    { arbitrary: fc.jsonValue({ maxDepth: 4 }).map(json), weight: 3 },
    { arbitrary: mutated, weight: 4 },
    { arbitrary: typed, weight: 4 },
    { arbitrary: fc.constantFrom(...valid).map(json), weight: 5 },
    {
      arbitrary: fc
        .tuple(fc.integer({ min: 60, max: 100_000 }), fc.constantFrom('array' as const, 'object' as const))
        .map(([d, k]) => Buffer.from(k === 'object' ? `{"input":${deep(d, k)}}` : deep(d, k))),
      weight: 2,
    },
    { arbitrary: fc.uint8Array({ maxLength: 256 }).map((a) => Buffer.from(a)), weight: 2 },
    { arbitrary: text(256).map((s) => Buffer.from(s, 'latin1')), weight: 1 },
    { arbitrary: unicodeEdge, weight: 2 },
    { arbitrary: huge, weight: 1 },
  );
}

function headers(t: FuzzTarget): fc.Arbitrary<Record<string, string>> {
  const headerValue = fc.string({
    unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
    maxLength: 200,
  });
  return fc
    .record(
      {
        credential: fc.oneof(
          { arbitrary: fc.constant(t.credential ?? {}), weight: 8 },
          fc.constant({}),
          headerValue.map((v) => ({ authorization: `Bearer ${v}` })),
          fc.constantFrom(
            { authorization: 'Basic Og==' },
            { authorization: 'Bearer' },
            { authorization: `Bearer ${'x'.repeat(8000)}` },
            { authorization: 'Token mp_' },
          ),
        ),
        'content-type': fc.oneof(
          fc.constantFrom(
            'application/json',
            'application/json; charset=utf-16',
            'application/json; charset=bogus',
            'text/plain',
            'application/x-www-form-urlencoded',
            'multipart/form-data; boundary=x',
            'application/problem+json',
          ),
          headerValue,
        ),
        prefer: fc.constantFrom(
          'wait',
          'wait=0',
          'wait=1',
          'wait=-1',
          'wait=1e309',
          'wait=abc',
          'respond-async',
          'wait=1, wait=2',
        ),
        'content-encoding': fc.constantFrom('gzip', 'deflate', 'br', 'identity', 'bogus'),
        accept: fc.oneof(fc.constantFrom('text/event-stream', 'application/json', '*/*'), headerValue),
        'x-forwarded-host': headerValue,
        'x-fuzz': headerValue,
      },
      { requiredKeys: ['credential'] },
    )
    .map(({ credential, ...rest }) => ({ ...credential, ...rest }));
}

/** The request generator for `t`. */
export function requests(t: FuzzTarget): fc.Arbitrary<FuzzRequest> {
  const methods = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];
  return fc
    .record({
      route: fc.constantFrom(...t.routes),
      // Mostly the route's own method; now and then another (a 405).
      otherMethod: fc.oneof({ arbitrary: fc.constant(null), weight: 8 }, fc.constantFrom(...methods)),
      query: fc.oneof(
        { arbitrary: fc.constant(null), weight: 2 },
        text(40).map((q) => `?${encodeURIComponent(q)}&prefer=%ZZ&after=${encodeURIComponent(q)}`),
      ),
      headers: headers(t),
      body: bodies(t),
    })
    .chain((r) => {
      const names = paramNames([r.route]);
      const values = names.length
        ? fc
            .tuple(...names.map((n) => segment(t.params?.[n] ?? [])))
            .map((vs) => Object.fromEntries(names.map((n, i) => [n, vs[i]!])))
        : fc.constant({} as Record<string, string>);
      return values.map((v) => {
        const method = r.otherMethod ?? r.route.method;
        return {
          method,
          path: `${fill(r.route.path, v)}${r.query ?? ''}`,
          headers: r.headers,
          body: method === 'GET' || method === 'OPTIONS' ? undefined : r.body,
          route: r.route,
        };
      });
    });
}

function paramNames(routes: FuzzRoute[]): string[] {
  const names = new Set<string>(['id']);
  for (const r of routes) for (const m of r.path.matchAll(/:(\w+)/g)) names.add(m[1]!);
  return [...names];
}

/**
 * Sends `r`; resolves with the answer (an event stream: its head only). A body over
 * `declaredLimit` is held back after its first bytes until the server answered (or 5 s).
 */
export function send(
  base: string,
  r: FuzzRequest,
  declaredLimit = Number.POSITIVE_INFINITY,
  timeoutMs = 15_000,
): Promise<Answer> {
  return new Promise<Answer>((resolve, reject) => {
    const url = new URL(base);
    let req: ReturnType<typeof request>;
    try {
      req = request({
        host: url.hostname,
        port: url.port,
        // A connection of its own: what one request leaves behind does not touch the next.
        agent: false,
        method: r.method,
        path: r.path,
        headers: { ...r.headers, ...(r.body ? { 'content-length': String(r.body.length) } : {}) },
      });
    } catch (err) {
      // A header Node itself refuses to send: nothing reached the server.
      return resolve({ status: 0, contentType: '', body: `not sent: ${(err as Error).message}` });
    }
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.on('response', (res) => {
      const contentType = String(res.headers['content-type'] ?? '');
      const status = res.statusCode ?? 0;
      if (contentType.startsWith('text/event-stream')) {
        res.destroy();
        return resolve({ status, contentType, body: '' });
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= 1 << 20) chunks.push(c);
      });
      res.on('end', () => resolve({ status, contentType, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    // A server may answer (413, 401) and close before reading a large body: the body goes out
    // in pieces, and stops once an answer came.
    const body = r.body;
    if (!body || body.length <= 1 << 20) return req.end(body);
    let answered = false;
    /** Resolves on the first of `events` (or after `ms`), its listeners removed. */
    const until = (events: string[], ms?: number) =>
      new Promise<void>((resolve) => {
        const timer = ms === undefined ? undefined : setTimeout(done, ms);
        function done() {
          clearTimeout(timer);
          for (const e of events) req.off(e, done);
          resolve();
        }
        for (const e of events) req.on(e, done);
      });
    req.once('response', () => {
      answered = true;
    });
    void (async () => {
      if (body.length > declaredLimit) {
        // Over the limit: the server should refuse it on the declared length alone. Give it
        // the chance to answer before the rest goes out: once it has answered and closed,
        // more bytes make its kernel reset the connection, and a reset discards the answer
        // not yet read.
        req.write(body.subarray(0, 1 << 16));
        await until(['response', 'close'], 5_000);
      }
      for (
        let at = body.length > declaredLimit ? 1 << 16 : 0;
        at < body.length && !answered && !req.destroyed;
        at += 1 << 16
      ) {
        if (!req.write(body.subarray(at, at + (1 << 16)))) await until(['drain', 'close', 'response']);
      }
      if (!req.destroyed) req.end();
    })();
  }).catch((err: Error & { code?: string }) => {
    // The server answered early and reset the connection while the body was still going out.
    if (err.code === 'EPIPE' || err.code === 'ECONNRESET') {
      if (r.body && r.body.length > 1 << 20) return { status: -1, contentType: '', body: err.code };
    }
    throw err;
  });
}

/** Why `answer` is not acceptable for `r` (undefined when it is). */
export function judge(t: FuzzTarget, r: FuzzRequest, route: FuzzRoute, a: Answer): string | undefined {
  if (a.status === 0 || a.status === -1) return undefined; // not sent, or cut off while sending a huge body
  if (t.allowed?.(route, a)) return undefined;
  if (a.status >= 200 && a.status < 300) {
    if (r.method === 'OPTIONS' || r.method === 'HEAD') return undefined;
    if (a.status === 204) return a.body ? `a 204 with a body: ${a.body.slice(0, 100)}` : undefined;
    return a.contentType.startsWith('application/json') || a.contentType.startsWith('text/event-stream')
      ? undefined
      : `a ${a.status} with content-type ${a.contentType}`;
  }
  if (a.status < 400 || a.status >= 500) return `status ${a.status}: ${a.body.slice(0, 300)}`;
  if (!a.contentType.startsWith('application/problem+json'))
    return `a ${a.status} with content-type "${a.contentType}": ${a.body.slice(0, 200)}`;
  try {
    const p = JSON.parse(a.body) as { status?: unknown; title?: unknown };
    if (p.status !== a.status) return `a ${a.status} problem whose status is ${String(p.status)}`;
    if (typeof p.title !== 'string') return `a ${a.status} problem without a title`;
  } catch {
    return `a ${a.status} problem+json that is not JSON: ${a.body.slice(0, 200)}`;
  }
  return undefined;
}

/**
 * Posts `numRuns` generated requests at `t`'s routes; fails (shrunk to the smallest request)
 * on the first unacceptable answer or when the server is no longer alive. Every route is
 * first sent one plain request with the credential, so none is left out by chance. Returns
 * how many answers of each status the generated requests got.
 */
export async function fuzz(
  t: FuzzTarget,
  opts: { numRuns: number; seed?: number },
): Promise<Map<number, number>> {
  /** How many answers of each status (0: not sent; -1: cut off while sending a huge body). */
  const tally = new Map<number, number>();
  const property = fc.asyncProperty(requests(t), async (r) => {
    const answer = await send(t.base, r, t.maxBodyBytes);
    tally.set(answer.status, (tally.get(answer.status) ?? 0) + 1);
    const why = judge(t, r, r.route, answer);
    if (why) throw new Error(`${r.method} ${r.path}: ${why}`);
    await t.alive();
  });
  // Each route at least once with the credential and a valid body, then random requests.
  for (const route of t.routes) {
    const r: FuzzRequest = {
      method: route.method,
      path: fill(
        route.path,
        Object.fromEntries(paramNames([route]).map((n) => [n, t.params?.[n]?.[0] ?? 'x'])),
      ),
      headers: { ...(t.credential ?? {}), 'content-type': 'application/json' },
      body: route.method === 'GET' ? undefined : Buffer.from(JSON.stringify(t.validBodies?.[0] ?? {})),
      route,
    };
    const why = judge(t, r, route, await send(t.base, r, t.maxBodyBytes));
    if (why) throw new Error(`${r.method} ${r.path}: ${why}`);
  }
  await fc.assert(property, { numRuns: opts.numRuns, seed: opts.seed, endOnFailure: false });
  return tally;
}
