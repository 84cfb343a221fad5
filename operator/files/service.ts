/**
 * Files: their bytes in a backend (backend.ts), their records in the prediction store, and
 * their signed URLs (urls.ts). `FileService` stores and serves them and removes those that are
 * gone (expired uploads; outputs of predictions whose data was removed) on a timer.
 */
import { type Clock, realClock } from '../../lib/clock.ts';
import { newPredictionId } from '../../lib/prediction.ts';
import type { FileRecord } from '../predictions/record.ts';
import type { FileListOptions, FileListPage, PredictionStore } from '../predictions/store.ts';
import type { FileBackend } from './backend.ts';
import { FileUrls } from './urls.ts';

export const DEFAULT_MAX_FILE_BYTES = 100 * 1024 * 1024;
export const DEFAULT_UPLOAD_TTL_MS = 24 * 3600_000;

export interface FileServiceOptions {
  backend: FileBackend;
  /** Runs `fn` on the open prediction store (503 while it is not open). */
  withStore: <T>(fn: (store: PredictionStore) => Promise<T>) => Promise<T>;
  /** Largest file, in bytes (default 100 MiB). */
  maxBytes?: number;
  /** How long an uploaded file is kept (default 24 h). */
  uploadTtlMs?: number;
  /** How long the URL of an output file works (default 24 h; the data retention in the operator). */
  outputUrlTtlMs?: number;
  /** How often gone files are removed (default 60 s). */
  sweepEveryMs?: number;
  urls?: FileUrls;
  clock?: Clock;
  log?: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void };
}

export interface NewFile {
  namespace: string;
  name: string;
  contentType: string;
  metadata?: Record<string, unknown>;
  /** The prediction whose output it is. */
  prediction?: string;
}

/** A file as the API shows it (the hosted API's file object). */
export interface FileObject {
  id: string;
  name: string;
  content_type: string;
  size: number;
  etag: string;
  checksums: { sha256: string; md5: string };
  metadata: Record<string, unknown>;
  created_at: string;
  expires_at: string | null;
  urls: { get: string };
}

export class FileService {
  readonly backend: FileBackend;
  readonly urls: FileUrls;
  readonly maxBytes: number;
  private readonly opts: FileServiceOptions;
  private readonly clock: Clock;
  private timer: ReturnType<Clock['setTimer']> | undefined;
  private stopped = false;

  constructor(opts: FileServiceOptions) {
    this.opts = opts;
    this.backend = opts.backend;
    this.urls = opts.urls ?? new FileUrls({ clock: opts.clock });
    this.maxBytes = opts.maxBytes ?? DEFAULT_MAX_FILE_BYTES;
    this.clock = opts.clock ?? realClock;
  }

  /**
   * Stores the bytes of `body` in `namespace` (under the size limit: a FileTooLargeError past
   * it) and keeps the record `describe` resolves once they are in (a multipart body's fields
   * may follow its file).
   */
  async create(
    body: NodeJS.ReadableStream,
    describe: () => Promise<NewFile>,
    contentType: string,
    namespace: string,
  ): Promise<FileRecord> {
    const id = newPredictionId();
    const key = `${namespace}/${id}`;
    const stored = await this.backend.put(key, body, { contentType, maxBytes: this.maxBytes });
    let f: NewFile;
    try {
      f = await describe();
    } catch (err) {
      await this.backend.delete(key).catch(() => {});
      throw err;
    }
    const now = this.clock.now();
    const rec: FileRecord = {
      id,
      namespace,
      name: f.name,
      contentType: f.contentType,
      size: stored.size,
      sha256: stored.sha256,
      md5: stored.md5,
      metadata: f.metadata ?? {},
      createdAt: now,
      key,
    };
    if (f.prediction) rec.prediction = f.prediction;
    else rec.expiresAt = now + (this.opts.uploadTtlMs ?? DEFAULT_UPLOAD_TTL_MS);
    try {
      await this.opts.withStore((s) => s.insertFile(rec));
    } catch (err) {
      await this.backend.delete(key).catch(() => {});
      throw err;
    }
    return rec;
  }

  /** The record of a file callers may still read: undefined when unknown, expired or removed with its prediction's data. */
  async get(id: string): Promise<FileRecord | undefined> {
    return this.opts.withStore(async (s) => {
      const rec = await s.getFile(id);
      if (!rec) return undefined;
      if (rec.expiresAt !== undefined && rec.expiresAt <= this.clock.now()) return undefined;
      if (rec.prediction !== undefined) {
        const p = await s.get(rec.prediction);
        if (!p || p.dataRemoved) return undefined;
      }
      return rec;
    });
  }

  list(opts: FileListOptions): Promise<FileListPage> {
    return this.opts.withStore(async (s) => {
      const page = await s.listFiles(opts);
      const now = this.clock.now();
      return { ...page, items: page.items.filter((f) => f.expiresAt === undefined || f.expiresAt > now) };
    });
  }

  /** Removes a file: its record, then its bytes. */
  async delete(rec: FileRecord): Promise<void> {
    await this.opts.withStore((s) => s.deleteFile(rec.id));
    await this.backend.delete(rec.key);
  }

  /** The bytes of a file callers may read. */
  async open(rec: FileRecord): Promise<{ body: NodeJS.ReadableStream; size: number } | undefined> {
    return this.backend.get(rec.key);
  }

  /** When the signed URL of `rec` expires: its own expiry, or the output URL lifetime. */
  urlExpiry(rec: FileRecord): number {
    return rec.expiresAt ?? rec.createdAt + (this.opts.outputUrlTtlMs ?? DEFAULT_UPLOAD_TTL_MS);
  }

  /** The file object of `rec`, its URL under `baseUrl`. */
  view(rec: FileRecord, baseUrl: string): FileObject {
    return {
      id: rec.id,
      name: rec.name,
      content_type: rec.contentType,
      size: rec.size,
      etag: rec.md5,
      checksums: { sha256: rec.sha256, md5: rec.md5 },
      metadata: rec.metadata,
      created_at: new Date(rec.createdAt).toISOString(),
      expires_at: rec.expiresAt === undefined ? null : new Date(rec.expiresAt).toISOString(),
      urls: { get: this.urls.download(baseUrl, rec.id, this.urlExpiry(rec)) },
    };
  }

  /** The URL output files of `prediction` are uploaded under, good for `ttlMs`. */
  uploadUrl(baseUrl: string, prediction: string, ttlMs: number): string {
    return this.urls.upload(baseUrl, prediction, this.clock.now() + ttlMs);
  }

  /** Removes the files that are gone (their bytes, then their records); resolves how many. */
  async sweep(limit = 500): Promise<number> {
    const gone = await this.opts.withStore((s) => s.goneFiles(this.clock.now(), limit));
    for (const f of gone) {
      await this.backend.delete(f.key);
      await this.opts.withStore((s) => s.deleteFile(f.id));
    }
    return gone.length;
  }

  /** Sweeps every `sweepEveryMs` until `stop`. */
  start(): void {
    const every = this.opts.sweepEveryMs ?? 60_000;
    const tick = () => {
      this.timer = this.clock.setTimer(() => {
        void this.sweep()
          .then((n) => {
            if (n) this.opts.log?.info({ removed: n }, 'removed files that are gone');
          })
          .catch((err: unknown) =>
            this.opts.log?.warn({ err: (err as Error).message }, 'cannot remove gone files'),
          )
          .finally(() => {
            if (!this.stopped) tick();
          });
      }, every);
    };
    tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    await this.backend.close();
  }
}
