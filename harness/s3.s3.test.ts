import { createHash, randomBytes } from 'node:crypto';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Server } from './s3.ts';

let s3: S3Server;
const bucket = 'modelplane-test';

beforeAll(async () => {
  s3 = await S3Server.start();
  await s3.createBucket(bucket);
});
afterAll(async () => {
  await s3?.destroy();
});

const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');

describe('the S3 test server (versitygw)', () => {
  it('listens on a loopback endpoint with its own region and credentials', () => {
    expect(s3.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(s3.region).toBe('us-east-1');
    expect(s3.accessKeyId).toMatch(/^[A-Z0-9]{16,}$/);
    expect(s3.secretAccessKey.length).toBeGreaterThanOrEqual(30);
  });

  it('puts, gets, lists and deletes an object', async () => {
    const c = s3.client();
    const body = randomBytes(10_000);
    const put = await c.send(
      new PutObjectCommand({ Bucket: bucket, Key: 'a/b.bin', Body: body, ContentType: 'application/x-test' }),
    );
    expect(put.ETag).toBe(`"${md5(body)}"`);

    const got = await c.send(new GetObjectCommand({ Bucket: bucket, Key: 'a/b.bin' }));
    expect(got.ContentType).toBe('application/x-test');
    expect(got.ContentLength).toBe(body.length);
    expect(Buffer.from(await got.Body!.transformToByteArray()).equals(body)).toBe(true);

    const listed = await c.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'a/' }));
    expect(listed.Contents?.map((o) => [o.Key, o.Size])).toEqual([['a/b.bin', body.length]]);

    await c.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'a/b.bin' }));
    await expect(c.send(new HeadObjectCommand({ Bucket: bucket, Key: 'a/b.bin' }))).rejects.toMatchObject({
      $metadata: { httpStatusCode: 404 },
    });
    const after = await c.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'a/' }));
    expect(after.Contents ?? []).toEqual([]);
  });

  it('refuses a request signed with another secret (403)', async () => {
    const { S3Client } = await import('@aws-sdk/client-s3');
    const wrong = new S3Client({
      endpoint: s3.endpoint,
      region: s3.region,
      forcePathStyle: true,
      maxAttempts: 1,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: `${s3.secretAccessKey}x` },
    });
    try {
      await expect(wrong.send(new ListObjectsV2Command({ Bucket: bucket }))).rejects.toMatchObject({
        $metadata: { httpStatusCode: 403 },
      });
    } finally {
      wrong.destroy();
    }
  });

  it('assembles a multipart upload from its parts', async () => {
    const c = s3.client();
    const key = 'multi/object.bin';
    const parts = [randomBytes(5 * 1024 * 1024), randomBytes(123_457)];
    const { UploadId } = await c.send(
      new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ContentType: 'image/png' }),
    );
    expect(UploadId).toBeTruthy();
    const uploads = await c.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    expect(uploads.Uploads?.map((u) => u.UploadId)).toContain(UploadId);
    const etags: string[] = [];
    for (const [i, part] of parts.entries()) {
      const r = await c.send(
        new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: i + 1, Body: part }),
      );
      etags.push(r.ETag!);
    }
    const done = await c.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        UploadId,
        MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
      }),
    );
    // S3's multipart ETag: the MD5 of the parts' MD5s, then "-<number of parts>".
    const partsMd5 = createHash('md5')
      .update(Buffer.concat(parts.map((p) => createHash('md5').update(p).digest())))
      .digest('hex');
    expect(done.ETag).toBe(`"${partsMd5}-2"`);

    const got = await c.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    expect(got.ContentType).toBe('image/png');
    expect(Buffer.from(await got.Body!.transformToByteArray()).equals(Buffer.concat(parts))).toBe(true);
    const left = await c.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    expect(left.Uploads ?? []).toEqual([]);
  });

  it('forgets an aborted multipart upload', async () => {
    const c = s3.client();
    const { UploadId } = await c.send(
      new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'aborted.bin' }),
    );
    await c.send(
      new UploadPartCommand({
        Bucket: bucket,
        Key: 'aborted.bin',
        UploadId,
        PartNumber: 1,
        Body: randomBytes(100),
      }),
    );
    await c.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: 'aborted.bin', UploadId }));
    const left = await c.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    expect(left.Uploads ?? []).toEqual([]);
    await expect(c.send(new HeadObjectCommand({ Bucket: bucket, Key: 'aborted.bin' }))).rejects.toMatchObject(
      {
        $metadata: { httpStatusCode: 404 },
      },
    );
  });

  it('serves a presigned GET URL to plain fetch, and refuses an altered or expired one (403)', async () => {
    const c = s3.client();
    const body = randomBytes(4_321);
    await c.send(
      new PutObjectCommand({ Bucket: bucket, Key: 'out/image.png', Body: body, ContentType: 'image/png' }),
    );
    const get = new GetObjectCommand({ Bucket: bucket, Key: 'out/image.png' });
    const url = await getSignedUrl(c, get, { expiresIn: 300 });
    expect(url.startsWith(`${s3.endpoint}/${bucket}/out/image.png?`)).toBe(true);
    expect(new URL(url).searchParams.get('X-Amz-Algorithm')).toBe('AWS4-HMAC-SHA256');

    const ok = await fetch(url);
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toBe('image/png');
    expect(Buffer.from(await ok.arrayBuffer()).equals(body)).toBe(true);

    const altered = new URL(url);
    const sig = altered.searchParams.get('X-Amz-Signature')!;
    altered.searchParams.set('X-Amz-Signature', `${sig[0] === '0' ? '1' : '0'}${sig.slice(1)}`);
    const forged = await fetch(altered);
    expect(forged.status).toBe(403);
    await forged.arrayBuffer();

    // The same signature for another key.
    const otherKey = new URL(url);
    otherKey.pathname = `/${bucket}/out/other.png`;
    const moved = await fetch(otherKey);
    expect(moved.status).toBe(403);
    await moved.arrayBuffer();

    // Signed a minute ago for one second: expired.
    const old = await getSignedUrl(c, get, { expiresIn: 1, signingDate: new Date(Date.now() - 60_000) });
    const expired = await fetch(old);
    expect(expired.status).toBe(403);
    await expired.arrayBuffer();
  });

  it('takes an upload through a presigned PUT URL', async () => {
    const c = s3.client();
    const body = randomBytes(2_000);
    const url = await getSignedUrl(c, new PutObjectCommand({ Bucket: bucket, Key: 'up/put.bin' }), {
      expiresIn: 300,
    });
    const r = await fetch(url, { method: 'PUT', body });
    expect(r.status).toBe(200);
    await r.arrayBuffer();
    const got = await c.send(new GetObjectCommand({ Bucket: bucket, Key: 'up/put.bin' }));
    expect(Buffer.from(await got.Body!.transformToByteArray()).equals(body)).toBe(true);
  });

  it('keeps its objects across a crash and a restart on the same directory and port', async () => {
    const c = s3.client();
    await c.send(new PutObjectCommand({ Bucket: bucket, Key: 'kept.txt', Body: 'still here' }));
    await s3.kill();
    expect(s3.running).toBe(false);
    await expect(c.send(new ListObjectsV2Command({ Bucket: bucket }))).rejects.toThrow();
    await s3.start();
    const got = await c.send(new GetObjectCommand({ Bucket: bucket, Key: 'kept.txt' }));
    expect(await got.Body!.transformToString()).toBe('still here');
  });
});
