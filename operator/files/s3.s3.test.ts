/** The S3 backend against a real S3-compatible server (versitygw, harness/s3.ts): the same contract as the directory. */
import { randomBytes } from 'node:crypto';
import { ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { S3Server } from '../../harness/s3.ts';
import { backendContract, patterned } from './backend.contract.ts';
import { S3Backend } from './s3.ts';

let s3: S3Server;
const bucket = 'modelplane-files';
const backends: S3Backend[] = [];

beforeAll(async () => {
  s3 = await S3Server.start();
  await s3.createBucket(bucket);
});
afterAll(async () => {
  for (const b of backends) await b.close();
  await s3?.destroy();
});

function backend(prefix: string): S3Backend {
  const b = new S3Backend({
    endpoint: s3.endpoint,
    region: s3.region,
    bucket,
    prefix,
    accessKeyId: s3.accessKeyId,
    secretAccessKey: s3.secretAccessKey,
  });
  backends.push(b);
  return b;
}

// Each test under its own prefix of the one bucket.
backendContract('s3', async () => backend(`t-${randomBytes(4).toString('hex')}/`));

it('leaves no object and no multipart upload behind when a file goes over the limit mid-way', async () => {
  const prefix = `over-${randomBytes(4).toString('hex')}/`;
  const b = backend(prefix);
  await expect(
    b.put('ns/big', patterned(12 * 1024 * 1024), { contentType: 'video/mp4', maxBytes: 7 * 1024 * 1024 }),
  ).rejects.toThrow(/over the limit/);
  const client = s3.client();
  const objects = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
  expect(objects.KeyCount ?? 0).toBe(0);
  const uploads = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix }));
  expect(uploads.Uploads ?? []).toEqual([]);
});
