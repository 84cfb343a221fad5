/**
 * The Files API, as the hosted API defines it: `POST /files` (multipart: `content`, and
 * `filename`, `type`, `metadata`), `GET /files`, `GET /files/{id}`, `DELETE /files/{id}`, and
 * downloads — `GET /files/{id}/download` with the API token, or the signed URL in a file's
 * `urls.get` without it. A model pod's sidecar uploads the prediction's output files to
 * `PUT /files/outputs/{prediction}/{token}/{filename}`, with a URL signed for that prediction;
 * the answer's Location is the signed URL the prediction's output then holds.
 *
 * Files belong to a namespace; a caller may create, read and delete them where it may create,
 * read and delete predictions. Bodies stream to the files backend, never held whole; past the
 * size limit the answer is a 413.
 */
import type { IncomingMessage } from 'node:http';
import { pipeline } from 'node:stream/promises';
import busboy from 'busboy';
import type { Request, Response } from 'express';
import { methodNotAllowed } from '../../lib/express.ts';
import { HttpError, invalid, sendJson } from '../../lib/http.ts';
import { type FileService, FileTooLargeError, type NewFile } from '../files/index.ts';
import type { FileRecord } from '../predictions/record.ts';
import { decodeCursor } from '../predictions/store.ts';
import { requireCallerNamespace } from './common.ts';
import { storePage, storePosition } from './pagination.ts';
import { context } from './server.ts';
import type { RequestContext, Routes } from './types.ts';

const PAGE_SIZE = 100;
/** What a multipart body may hold beside the file: a few short fields. */
const FIELD_LIMITS = { files: 4, fields: 10, fieldSize: 64 * 1024, parts: 12 } as const;
/** The fields of an upload beside `content`. */
const FIELDS = ['filename', 'type', 'metadata'];
/** A file name: 1-255 characters, none a control character, "/" or "\\". */
function validName(name: string): boolean {
  return name.length >= 1 && name.length <= 255 && ![...name].some((c) => c < ' ' || c === '/' || c === '\\');
}

export interface FileRoutesDeps {
  files: FileService;
  /** The namespace, API base URL and status of a prediction, undefined when unknown. */
  prediction: (id: string) => Promise<{ namespace: string; baseUrl: string; status: string } | undefined>;
}

function tooLarge(max: number): HttpError {
  return new HttpError(413, 'File too large', `the file is over the limit of ${max} bytes`, {
    max_bytes: max,
  });
}

function notFound(id: string): HttpError {
  return new HttpError(404, 'File not found', `no file "${id}"`);
}

/** Reads a file the caller may `verb` (as predictions of its namespace); 404 for one it may not see. */
async function readable(files: FileService, ctx: RequestContext, id: string, verb: 'get' | 'delete') {
  const rec = await files.get(id);
  if (!rec) throw notFound(id);
  try {
    await ctx.authorize(verb === 'get' ? 'get' : 'delete', 'predictions', rec.namespace);
  } catch (err) {
    if (err instanceof HttpError && err.status === 403 && verb === 'get') throw notFound(id);
    throw err;
  }
  return rec;
}

/** Streams a file's bytes as the answer. */
async function sendFile(files: FileService, rec: FileRecord, res: Response): Promise<void> {
  const opened = await files.open(rec);
  if (!opened) throw notFound(rec.id);
  res.status(200);
  res.setHeader('content-type', rec.contentType);
  res.setHeader('content-length', String(opened.size));
  res.setHeader('etag', `"${rec.md5}"`);
  res.setHeader('content-disposition', `inline; filename="${rec.name.replace(/["\\\r\n]/g, '_')}"`);
  // What callers uploaded is served from the API's origin: never as a page that runs there.
  res.setHeader('x-content-type-options', 'nosniff');
  res.setHeader('content-security-policy', "sandbox; default-src 'none'");
  res.setHeader('cache-control', 'private, max-age=3600');
  await pipeline(opened.body, res);
}

/** Parses a multipart upload, streaming its `content` part into the files backend. */
function upload(files: FileService, req: IncomingMessage, namespace: string): Promise<FileRecord> {
  const length = Number(req.headers['content-length'] ?? 0);
  if (length > files.maxBytes + FIELD_LIMITS.fields * FIELD_LIMITS.fieldSize)
    return Promise.reject(tooLarge(files.maxBytes));
  let bb: busboy.Busboy;
  try {
    bb = busboy({ headers: req.headers, limits: FIELD_LIMITS });
  } catch {
    return Promise.reject(
      new HttpError(400, 'Bad request', 'the body must be multipart/form-data with the file in "content"'),
    );
  }
  const fields: Record<string, string> = {};
  return new Promise<FileRecord>((resolve, reject) => {
    let stored: Promise<FileRecord> | undefined;
    let failed = false;
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      req.unpipe(bb);
      req.resume();
      reject(err);
    };
    const closed = new Promise<void>((r) => bb.once('close', r));
    bb.on('field', (name, value, info) => {
      if (info.valueTruncated) fail(new HttpError(413, 'Field too large', `the field "${name}" is too long`));
      else fields[name] = value;
    });
    bb.on('file', (name, stream, info) => {
      if (name !== 'content' && FIELDS.includes(name)) {
        // The npm client sends `metadata` as a part with a file name: a field all the same.
        const chunks: Buffer[] = [];
        let size = 0;
        stream.on('data', (c: Buffer) => {
          size += c.length;
          if (size <= FIELD_LIMITS.fieldSize) chunks.push(c);
        });
        stream.on('end', () => {
          if (size > FIELD_LIMITS.fieldSize)
            fail(new HttpError(413, 'Field too large', `the field "${name}" is too long`));
          else fields[name] = Buffer.concat(chunks).toString('utf8');
        });
        return;
      }
      if (name !== 'content' || stored) {
        stream.resume();
        return;
      }
      const partType = info.mimeType || 'application/octet-stream';
      stored = files.create(
        stream,
        async () => {
          await closed;
          return describe(namespace, fields, info.filename, partType);
        },
        partType,
        namespace,
      );
      stored.catch(fail);
    });
    bb.on('error', (err: Error) =>
      fail(new HttpError(400, 'Bad request', `the multipart body could not be read: ${err.message}`)),
    );
    bb.on('filesLimit', () => fail(new HttpError(400, 'Bad request', 'send one file, in "content"')));
    bb.on('partsLimit', () =>
      fail(
        new HttpError(
          400,
          'Bad request',
          'too many parts: send "content", "filename", "type" and "metadata"',
        ),
      ),
    );
    bb.on('close', () => {
      if (!stored)
        fail(invalid([{ type: 'required', field: 'content', description: 'the file goes in "content"' }]));
      else stored.then(resolve, fail);
    });
    req.on('error', fail);
    req.pipe(bb);
  }).catch((err: unknown) => {
    if (err instanceof FileTooLargeError) throw tooLarge(err.maxBytes);
    throw err;
  });
}

/** The file's fields from the multipart fields (which may follow the file part). */
function describe(
  namespace: string,
  fields: Record<string, string>,
  partName: string | undefined,
  partType: string,
): NewFile {
  const name = fields.filename || partName || 'file';
  if (!validName(name))
    throw invalid([
      { type: 'format', field: 'filename', description: 'filename must be 1-255 characters, without "/"' },
    ]);
  const type = fields.type || partType;
  if (!/^[\w.+-]+\/[\w.+-]+(\s*;.*)?$/.test(type) || type.length > 255)
    throw invalid([
      { type: 'format', field: 'type', description: 'type must be a media type such as image/png' },
    ]);
  let metadata: Record<string, unknown> = {};
  if (fields.metadata !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(fields.metadata);
    } catch {
      parsed = undefined;
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
      throw invalid([{ type: 'type', field: 'metadata', description: 'metadata must be a JSON object' }]);
    metadata = parsed as Record<string, unknown>;
  }
  return { namespace, name, contentType: type, metadata };
}

/** Most strings of an input looked at for file references. */
const MAX_REFERENCES = 100;

/**
 * Replaces each string of a prediction's input that names a file of this API by its URL —
 * `<base>/files/<id>`, as the file object's own URL — with the file's signed download URL,
 * which the model pod fetches without the caller's token. The file must be in the
 * prediction's namespace (422 otherwise, as for one that does not exist). Signed URLs,
 * `https:` URLs and `data:` URIs pass as they are.
 */
export function fileInputResolver(files: FileService) {
  return async (input: unknown, namespace: string, ctx: RequestContext): Promise<unknown> => {
    const prefix = `${ctx.baseUrl}/files/`;
    let seen = 0;
    const walk = async (v: unknown, field: string): Promise<unknown> => {
      if (typeof v === 'string') {
        if (!v.startsWith(prefix)) return v;
        const id = v.slice(prefix.length);
        if (!/^[a-z0-9]{1,64}$/.test(id)) return v;
        if (++seen > MAX_REFERENCES)
          throw invalid([
            { type: 'invalid', field, description: `at most ${MAX_REFERENCES} files per input` },
          ]);
        const rec = await files.get(id);
        if (!rec || rec.namespace !== namespace)
          throw invalid([
            { type: 'invalid', field, description: `no file "${id}" in namespace "${namespace}"` },
          ]);
        return files.view(rec, ctx.baseUrl).urls.get;
      }
      if (Array.isArray(v)) {
        const out: unknown[] = [];
        for (const [i, x] of v.entries()) out.push(await walk(x, `${field}.${i}`));
        return out;
      }
      if (v !== null && typeof v === 'object') {
        const out: Record<string, unknown> = {};
        for (const [k, x] of Object.entries(v)) out[k] = await walk(x, field ? `${field}.${k}` : k);
        return out;
      }
      return v;
    };
    // Most inputs name no file: looked through once, synchronously, and passed on as they are.
    return refersTo(input, prefix) ? walk(input, '') : input;
  };
}

/** Whether a string in `v` (at any depth) starts with `prefix`. */
function refersTo(v: unknown, prefix: string): boolean {
  if (typeof v === 'string') return v.startsWith(prefix);
  if (Array.isArray(v)) {
    for (const x of v) if (refersTo(x, prefix)) return true;
    return false;
  }
  if (v !== null && typeof v === 'object') {
    for (const k in v)
      if (Object.hasOwn(v, k) && refersTo((v as Record<string, unknown>)[k], prefix)) return true;
  }
  return false;
}

export function fileRoutes(deps: FileRoutesDeps): Routes {
  const { files } = deps;
  return (api, { authenticated, authenticatedStream }) => {
    api
      .route('/files')
      .post(authenticatedStream, async (req, res) => {
        const ctx = context(res);
        const ns = await requireCallerNamespace(ctx, 'the file is for');
        await ctx.authorize('create', 'predictions', ns);
        const rec = await upload(files, req, ns);
        sendJson(res, 201, files.view(rec, ctx.baseUrl));
      })
      .get(authenticated, async (_req, res) => {
        const ctx = context(res);
        const page = await files.list({
          namespaces: await ctx.namespacesFor('list', 'predictions'),
          limit: PAGE_SIZE,
          ...storePosition(ctx.url, (p) => decodeCursor(p) !== undefined),
        });
        sendJson(
          res,
          200,
          storePage(ctx.url, page, (f) => files.view(f, ctx.baseUrl)),
        );
      })
      .all(methodNotAllowed);

    api
      .route('/files/outputs/:prediction/:token/:name')
      // The sidecar of the pod that runs the prediction; the signed URL is its credential.
      .put(async (req: Request, res) => {
        const { prediction = '', token = '', name = '' } = req.params as Record<string, string | undefined>;
        const verdict = files.urls.verify(`upload:${prediction}`, token);
        if (verdict !== 'ok')
          throw new HttpError(
            403,
            'Forbidden',
            `the upload URL is ${verdict === 'expired' ? 'expired' : 'not valid'}`,
          );
        const p = await deps.prediction(prediction);
        if (!p) throw new HttpError(404, 'Prediction not found', `no prediction "${prediction}"`);
        if (['succeeded', 'failed', 'canceled'].includes(p.status))
          throw new HttpError(
            409,
            'Conflict',
            `prediction "${prediction}" has ended: it takes no more files`,
          );
        if (!validName(name)) throw new HttpError(400, 'Bad request', 'the file name is not valid');
        const type = String(req.headers['content-type'] || 'application/octet-stream');
        const length = Number(req.headers['content-length'] ?? 0);
        if (length > files.maxBytes) throw tooLarge(files.maxBytes);
        let rec: FileRecord;
        try {
          rec = await files.create(
            req,
            async () => ({ namespace: p.namespace, name, contentType: type, prediction }),
            type,
            p.namespace,
          );
        } catch (err) {
          if (err instanceof FileTooLargeError) throw tooLarge(err.maxBytes);
          throw err;
        }
        const view = files.view(rec, p.baseUrl);
        res.setHeader('location', view.urls.get);
        sendJson(res, 201, view);
      })
      .all(methodNotAllowed);

    api
      .route('/files/:id')
      .get(authenticated, async (req, res) => {
        const ctx = context(res);
        const rec = await readable(files, ctx, String(req.params.id), 'get');
        sendJson(res, 200, files.view(rec, ctx.baseUrl));
      })
      .delete(authenticated, async (req, res) => {
        const ctx = context(res);
        const rec = await readable(files, ctx, String(req.params.id), 'delete');
        await files.delete(rec);
        res.status(204).end();
      })
      .all(methodNotAllowed);

    api
      .route('/files/:id/download')
      .get(authenticated, async (req, res) => {
        const ctx = context(res);
        const rec = await readable(files, ctx, String(req.params.id), 'get');
        await sendFile(files, rec, res);
      })
      .all(methodNotAllowed);

    api
      .route('/files/:id/download/:token')
      // No API token: the signed URL is the credential.
      .get(async (req, res) => {
        const id = String(req.params.id);
        const verdict = files.urls.verify(`download:${id}`, String(req.params.token));
        if (verdict !== 'ok')
          throw new HttpError(
            403,
            'Forbidden',
            `the file URL is ${verdict === 'expired' ? 'expired' : 'not valid'}`,
          );
        const rec = await files.get(id);
        if (!rec) throw notFound(id);
        await sendFile(files, rec, res);
      })
      .all(methodNotAllowed);
  };
}
