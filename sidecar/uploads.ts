/**
 * The upload endpoint of the model server's output files: Cog runs with
 * `--upload-url http://127.0.0.1:8081/upload/` and PUTs each file its prediction returns to
 * `/upload/<filename>`, naming the prediction in `X-Prediction-ID`. This listener streams the
 * body on to the gateway's signed upload URL of that prediction (given with the prediction)
 * and answers with the gateway's `Location`: the signed URL of the stored file, which Cog puts
 * in the prediction's output in place of the file.
 *
 * Cog sends no credential, so the listener binds a loopback address only (the pod's own,
 * shared by its containers), apart from the prediction API. Bytes pass through with
 * backpressure: memory stays bounded whatever the file's size.
 */
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { HttpError, sendProblem } from '../lib/http.ts';

/** The path prefix Cog's `--upload-url` names. */
export const UPLOAD_PATH = '/upload/';

export interface UploadListenerOptions {
  host: string;
  port: number;
  log: Logger;
  /** The gateway's upload URL of prediction `id`, undefined when it has none (or is unknown). */
  target(id: string): string | undefined;
  /** Give up an upload that makes no progress for this long (default 60 s). */
  idleTimeoutMs?: number;
}

export class UploadListener {
  private readonly opts: UploadListenerOptions;
  private readonly server: Server;

  constructor(opts: UploadListenerOptions) {
    this.opts = opts;
    this.server = createServer((req, res) => {
      this.handle(req).then(
        (location) => {
          res.writeHead(201, { location, 'content-length': '0' });
          res.end();
        },
        (err: unknown) => {
          const e =
            err instanceof HttpError
              ? err
              : new HttpError(502, 'Bad gateway', `the upload failed: ${(err as Error).message}`);
          this.opts.log.warn({ status: e.status, detail: e.message }, 'output file upload refused or failed');
          req.resume();
          sendProblem(res, e);
        },
      );
    });
  }

  /** Listens; resolves the URL to give Cog's `--upload-url`. */
  async open(): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port, this.opts.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const a = this.server.address() as AddressInfo;
    const host = a.address.includes(':') ? `[${a.address}]` : a.address;
    return `http://${host}:${a.port}${UPLOAD_PATH}`;
  }

  async close(): Promise<void> {
    if (!this.server.listening) return;
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  /** Streams one file to the gateway; resolves the stored file's URL. */
  private async handle(req: IncomingMessage): Promise<string> {
    const url = new URL(req.url ?? '/', 'http://upload');
    if (req.method !== 'PUT' && req.method !== 'POST')
      throw new HttpError(405, 'Method not allowed', 'upload files with PUT /upload/<filename>');
    if (!url.pathname.startsWith(UPLOAD_PATH) || url.pathname.length === UPLOAD_PATH.length)
      throw new HttpError(404, 'Not found', 'upload files with PUT /upload/<filename>');
    const name = url.pathname.slice(UPLOAD_PATH.length);
    const header = req.headers['x-prediction-id'];
    const id = Array.isArray(header) ? header[0] : header;
    if (!id) throw new HttpError(400, 'Bad request', 'X-Prediction-ID names the prediction the file is of');
    const target = this.opts.target(id);
    if (!target)
      throw new HttpError(
        404,
        'Not found',
        `prediction "${id}" has no upload URL here: output files are uploaded through the gateway only`,
      );
    const dest = new URL(`${target.replace(/\/+$/, '')}/${name}`);
    const headers: Record<string, string> = {
      'content-type': String(req.headers['content-type'] || 'application/octet-stream'),
    };
    if (req.headers['content-length'] !== undefined)
      headers['content-length'] = String(req.headers['content-length']);
    else headers['transfer-encoding'] = 'chunked';
    const send = dest.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise<string>((resolve, reject) => {
      const out = send(
        dest,
        { method: 'PUT', headers, timeout: this.opts.idleTimeoutMs ?? 60_000 },
        (res) => {
          const status = res.statusCode ?? 0;
          const chunks: Buffer[] = [];
          let kept = 0;
          res.on('data', (c: Buffer) => {
            // Only a problem's detail is read; a body past 64 KiB is not kept.
            if (kept < 65_536) chunks.push(c);
            kept += c.length;
          });
          res.on('error', reject);
          res.on('end', () => {
            const location = res.headers.location;
            if (status >= 200 && status < 300 && location) return resolve(location);
            let detail = `the gateway answered ${status}`;
            try {
              const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { detail?: unknown };
              if (typeof body.detail === 'string') detail = `${detail}: ${body.detail}`;
            } catch {}
            reject(
              new HttpError(
                status === 413 ? 413 : 502,
                status === 413 ? 'File too large' : 'Bad gateway',
                detail,
              ),
            );
          });
        },
      );
      out.on('timeout', () => out.destroy(new Error('the gateway did not answer in time')));
      out.on('error', reject);
      req.on('error', (err) => out.destroy(err));
      req.pipe(out);
    });
  }
}
