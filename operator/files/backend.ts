/**
 * Where the bytes of files are kept: a `FileBackend`. Two implement it — a directory
 * (directory.ts) and any S3-compatible store (s3.ts) — and both pass the same contract
 * (backend.contract.ts). Bytes stream through: `put` reads its body as it arrives and counts,
 * hashes and limits it on the way (`Metered`), never holding a whole file.
 */
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

/** What `put` learned of the bytes it stored. */
export interface Stored {
  size: number;
  /** Hex SHA-256. */
  sha256: string;
  /** Hex MD5 (the etag). */
  md5: string;
}

export interface FileBackend {
  /** `directory` or `s3`. */
  readonly kind: string;
  /**
   * Stores `body` under `key` (replacing what was there). Rejects with a FileTooLargeError,
   * keeping nothing, once more than `maxBytes` arrive.
   */
  put(
    key: string,
    body: NodeJS.ReadableStream,
    opts: { contentType: string; maxBytes: number },
  ): Promise<Stored>;
  /** The bytes under `key`, as a stream, with their size; undefined when there are none. */
  get(key: string): Promise<{ body: NodeJS.ReadableStream; size: number } | undefined>;
  /** Removes what is under `key`; nothing when there is nothing. */
  delete(key: string): Promise<void>;
  close(): Promise<void>;
}

export class FileTooLargeError extends Error {
  readonly maxBytes: number;
  constructor(maxBytes: number) {
    super(`the file is over the limit of ${maxBytes} bytes`);
    this.name = 'FileTooLargeError';
    this.maxBytes = maxBytes;
  }
}

/** Keys are `/`-separated segments of letters, digits, `.`, `_` and `-`, none `.` or `..`. */
const KEY = /^(?!.*(^|\/)\.{1,2}(\/|$))[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;

export function checkKey(key: string): string {
  if (!KEY.test(key) || key.length > 512) throw new Error(`not a valid file key: ${JSON.stringify(key)}`);
  return key;
}

/** Passes bytes through, counting and hashing them; fails with FileTooLargeError past `maxBytes`. */
export class Metered extends Transform {
  /** Bytes so far (not `size`: an uploader would take that for the stream's length). */
  bytes = 0;
  private readonly sha256: Hash = createHash('sha256');
  private readonly md5: Hash = createHash('md5');
  private readonly maxBytes: number;

  constructor(maxBytes: number) {
    super();
    this.maxBytes = maxBytes;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.maxBytes) {
      done(new FileTooLargeError(this.maxBytes));
      return;
    }
    this.sha256.update(chunk);
    this.md5.update(chunk);
    done(null, chunk);
  }

  /** What passed through (once the stream has ended). */
  stored(): Stored {
    return { size: this.bytes, sha256: this.sha256.digest('hex'), md5: this.md5.digest('hex') };
  }
}
