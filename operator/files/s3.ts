/**
 * The files backend on any S3-compatible store (AWS S3, GCS interoperability, MinIO, Ceph
 * RGW, ...), through the AWS SDK: uploads stream as multipart uploads (`@aws-sdk/lib-storage`,
 * one part of `partSize` bytes in memory at a time), downloads stream from GetObject.
 */
import { DeleteObjectCommand, GetObjectCommand, NoSuchKey, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { checkKey, type FileBackend, Metered, type Stored } from './backend.ts';

export interface S3Settings {
  /** e.g. `https://s3.eu-west-1.amazonaws.com` or `http://minio.storage:9000`; absent: AWS's. */
  endpoint?: string;
  region: string;
  bucket: string;
  /** Prefix of every key (e.g. `modelplane/`). */
  prefix?: string;
  /** From the chart's Secret; absent: the SDK's default chain (IAM roles for service accounts...). */
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Path-style URLs (`endpoint/bucket/key`): what most S3-compatible servers want (default true with an endpoint). */
  forcePathStyle?: boolean;
  /** Bytes per part of a multipart upload (default 5 MiB, S3's least). */
  partSize?: number;
}

export class S3Backend implements FileBackend {
  readonly kind = 's3';
  private readonly client: S3Client;
  private readonly settings: S3Settings;

  constructor(settings: S3Settings) {
    this.settings = settings;
    this.client = new S3Client({
      region: settings.region,
      ...(settings.endpoint ? { endpoint: settings.endpoint } : {}),
      forcePathStyle: settings.forcePathStyle ?? settings.endpoint !== undefined,
      ...(settings.accessKeyId && settings.secretAccessKey
        ? { credentials: { accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey } }
        : {}),
    });
  }

  async put(
    key: string,
    body: NodeJS.ReadableStream,
    opts: { contentType: string; maxBytes: number },
  ): Promise<Stored> {
    const meter = new Metered(opts.maxBytes);
    const failed = new Promise<never>((_, reject) => {
      body.once('error', reject);
      meter.once('error', reject);
    });
    body.pipe(meter);
    const upload = new Upload({
      client: this.client,
      params: {
        Bucket: this.settings.bucket,
        Key: this.key(key),
        Body: meter,
        ContentType: opts.contentType,
      },
      queueSize: 1,
      partSize: this.settings.partSize ?? 5 * 1024 * 1024,
      leavePartsOnError: false,
    });
    const done = upload.done();
    try {
      await Promise.race([done, failed]);
    } catch (err) {
      // Abort, and wait until the uploader has aborted the multipart upload: no parts left behind.
      await upload.abort().catch(() => {});
      await done.catch(() => {});
      throw err;
    }
    return meter.stored();
  }

  async get(key: string): Promise<{ body: NodeJS.ReadableStream; size: number } | undefined> {
    try {
      const out = await this.client.send(
        new GetObjectCommand({ Bucket: this.settings.bucket, Key: this.key(key) }),
      );
      if (!out.Body) return undefined;
      return { body: out.Body as NodeJS.ReadableStream, size: Number(out.ContentLength ?? 0) };
    } catch (err) {
      if (err instanceof NoSuchKey || (err as { name?: string }).name === 'NoSuchKey') return undefined;
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.settings.bucket, Key: this.key(key) }));
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  private key(key: string): string {
    return `${this.settings.prefix ?? ''}${checkKey(key)}`;
  }
}
