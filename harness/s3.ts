/**
 * A real S3-compatible server for tests and benchmarks: versitygw, the Versity S3 Gateway
 * (`make s3` builds it from its Go module, hack/s3.sh), run with its posix backend (each
 * bucket a directory of `<dir>/data`), started as a process on a free 127.0.0.1 port, like
 * etcd and PostgreSQL. It is tethered to this process (harness/tether.ts): it does not
 * outlive it. It speaks S3's REST API with SigV4 (header and presigned query auth),
 * multipart uploads included.
 *
 * Each server gets fresh random root credentials (passed in its environment, not its command
 * line); `client()` is an `@aws-sdk/client-s3` client already set up for it (path-style).
 *
 * `stop()` shuts it down, `kill()` SIGKILLs it as a crash would, and `start()` starts it again
 * on the same data directory and port; `destroy()` kills it and removes the directory the
 * harness made.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, ListBucketsCommand, S3Client } from '@aws-sdk/client-s3';
import { cacheDir, versions } from './cluster/paths.ts';
import { freePort, GiveUp, GroupProcess, waitFor } from './processes.ts';

/** The server the harness runs, as hack/s3.sh builds it. */
export const S3_SERVER_MODULE = 'github.com/versity/versitygw';

/**
 * The versitygw binary of the pinned version ($MODELPLANE_S3_SERVER when set); throws, naming
 * `make s3`, when it is not built. A test never skips for want of it.
 */
export function s3ServerBinary(): string {
  const override = process.env.MODELPLANE_S3_SERVER;
  if (override) {
    if (!existsSync(override)) {
      throw new Error(
        `MODELPLANE_S3_SERVER=${override} does not exist: point it at a versitygw binary, or unset it and run \`make s3\``,
      );
    }
    return override;
  }
  const v = versions().VERSITYGW_VERSION;
  if (!v) throw new Error('hack/versions.env names no VERSITYGW_VERSION');
  const dir = join(cacheDir(), 'bin', `versitygw-${v}`);
  const bin = join(dir, 'versitygw');
  if (!existsSync(join(dir, '.complete')) || !existsSync(bin)) {
    throw new Error(
      `the S3 test server is not built (no ${bin}): run \`make s3\` (builds versitygw ${v} from the Go module ` +
        `${S3_SERVER_MODULE}; needs Go), or set MODELPLANE_S3_SERVER to a versitygw binary`,
    );
  }
  return bin;
}

export interface S3ServerOptions {
  /**
   * The directory that holds the buckets (`data/`) and the log (`versitygw.log`); made when
   * missing, and left in place by `destroy()`. Default: a fresh temporary directory, which
   * `destroy()` removes.
   */
  dir?: string;
  /** The 127.0.0.1 port to listen on (default: a free one). */
  port?: number;
  /** The region it answers for (default us-east-1). */
  region?: string;
}

export class S3Server {
  /** http://127.0.0.1:PORT — path-style: a bucket's URL is `${endpoint}/${bucket}`. */
  readonly endpoint: string;
  readonly port: number;
  readonly region: string;
  /** The root user's credentials (random per server). */
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly dir: string;
  /** The posix backend's root: one directory per bucket. */
  readonly dataDir: string;
  readonly logFile: string;
  private proc: GroupProcess | undefined;
  private readonly bin: string;
  private readonly ownsDir: boolean;
  private s3: S3Client | undefined;

  private constructor(bin: string, dir: string, ownsDir: boolean, port: number, region: string) {
    this.bin = bin;
    this.dir = dir;
    this.ownsDir = ownsDir;
    this.port = port;
    this.region = region;
    this.endpoint = `http://127.0.0.1:${port}`;
    this.dataDir = join(dir, 'data');
    this.logFile = join(dir, 'versitygw.log');
    this.accessKeyId = `MP${randomBytes(9).toString('hex').toUpperCase()}`;
    this.secretAccessKey = randomBytes(30).toString('base64url');
  }

  /** Starts a server on a free (or the given) port; resolves once it answers S3 requests. */
  static async start(opts: S3ServerOptions = {}): Promise<S3Server> {
    const bin = s3ServerBinary();
    const ownsDir = opts.dir === undefined;
    const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'modelplane-s3-'));
    const port = opts.port ?? (await freePort());
    const server = new S3Server(bin, dir, ownsDir, port, opts.region ?? 'us-east-1');
    mkdirSync(server.dataDir, { recursive: true });
    try {
      await server.start();
    } catch (err) {
      await server.kill();
      if (ownsDir) rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    return server;
  }

  get running(): boolean {
    return this.proc?.running ?? false;
  }

  /** Starts the server (again) on its directory and port; resolves once it lists buckets. */
  async start(): Promise<void> {
    if (this.proc?.running) return;
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      ROOT_ACCESS_KEY_ID: this.accessKeyId,
      ROOT_SECRET_ACCESS_KEY: this.secretAccessKey,
    };
    const args = [
      '--port',
      `127.0.0.1:${this.port}`,
      '--region',
      this.region,
      '--quiet',
      'posix',
      this.dataDir,
    ];
    const proc = new GroupProcess('versitygw', this.bin, args, { logFile: this.logFile, cwd: this.dir, env });
    this.proc = proc;
    const client = this.client();
    await waitFor(
      `versitygw to answer S3 requests on ${this.endpoint}`,
      async () => {
        if (!proc.running) throw new GiveUp(`versitygw exited at start:\n${proc.logTail(20)}`);
        await client.send(new ListBucketsCommand({}));
        return true;
      },
      { timeoutMs: 30_000, intervalMs: 50 },
    );
  }

  /** An S3 client for this server (path-style requests, its root credentials); one per server. */
  client(): S3Client {
    this.s3 ??= new S3Client({
      endpoint: this.endpoint,
      region: this.region,
      forcePathStyle: true,
      credentials: { accessKeyId: this.accessKeyId, secretAccessKey: this.secretAccessKey },
      maxAttempts: 1,
    });
    return this.s3;
  }

  /** Makes a bucket; resolves its name. */
  async createBucket(name: string): Promise<string> {
    await this.client().send(new CreateBucketCommand({ Bucket: name }));
    return name;
  }

  /** Shuts it down (SIGTERM, SIGKILL after 10 s); resolves once it is gone. */
  async stop(): Promise<void> {
    const proc = this.proc;
    if (!proc?.running) return;
    await proc.stop(10_000);
  }

  /** SIGKILLs it, as a crash would; resolves once it is gone. */
  async kill(): Promise<void> {
    const proc = this.proc;
    if (!proc?.running) return;
    proc.signalGroup('SIGKILL');
    await proc.stop(0);
  }

  /** The last lines of its log. */
  logTail(lines = 20): string {
    return this.proc?.logTail(lines) ?? '';
  }

  /** Kills it, closes its client, and removes its directory when the harness made it. */
  async destroy(): Promise<void> {
    await this.kill();
    this.s3?.destroy();
    this.s3 = undefined;
    if (this.ownsDir) rmSync(this.dir, { recursive: true, force: true });
  }
}
