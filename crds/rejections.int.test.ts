/**
 * The invalid corpus against a real API server: every object is refused with a message that
 * names the offending field and says what is allowed.
 */
import {
  ApiException,
  createConfiguration,
  KubernetesObjectApi,
  PatchStrategy,
  ServerConfiguration,
} from '@kubernetes/client-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { useCluster, useNamespace } from '../harness/cluster/testing.ts';
import { KIND } from './constants.ts';
import { installCrds } from './install.ts';
import { invalid, type Obj, valid } from './testdata/objects.ts';

const cluster = useCluster();
const ns = useNamespace(cluster, 'rejections');

/** An object client that asks for strict field validation, as kubectl does: unknown fields are errors. */
const strict = new KubernetesObjectApi(
  createConfiguration({
    baseServer: new ServerConfiguration(cluster.kc.getCurrentCluster()!.server, {}),
    authMethods: { default: cluster.kc },
    promiseMiddleware: [
      {
        pre: async (ctx) => {
          ctx.setQueryParam('fieldValidation', 'Strict');
          return ctx;
        },
        post: async (res) => res,
      },
    ],
  }),
);

type Placed = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; uid?: string };
} & Obj;

function placed(o: Obj): Placed {
  const out = structuredClone(o) as Placed;
  if (out.kind !== KIND.HardwareClass) out.metadata.namespace = ns();
  return out;
}

/** The API server's message for a refused request. */
function messageOf(err: unknown): string {
  if (!(err instanceof ApiException)) throw err;
  const body = typeof err.body === 'string' ? JSON.parse(err.body) : err.body;
  return (body as { message: string }).message;
}

async function refusal(send: () => Promise<unknown>): Promise<string> {
  try {
    await send();
  } catch (err) {
    return messageOf(err);
  }
  throw new Error('the API server accepted it');
}

beforeAll(async () => {
  await installCrds(cluster.kubeconfig);
});

describe('the API server', () => {
  it.each(Object.entries(valid))('accepts the valid %s the corpus is built from', async (_name, make) => {
    const created = await strict.create(placed(make()), undefined, 'All', 'rejections-test');
    expect(created.metadata?.uid).toBeTruthy();
  });

  it.each(invalid.map((c) => [`${c.kind}: ${c.name}`, c] as const))(
    'refuses %s, naming the field',
    async (_name, c) => {
      const object = placed(c.object);
      let message: string;
      if (c.update) {
        await strict.create(object, undefined, undefined, 'rejections-test');
        const patch = {
          apiVersion: object.apiVersion,
          kind: object.kind,
          metadata: object.metadata,
          ...c.update,
        };
        message = await refusal(() =>
          strict.patch(patch, undefined, 'All', 'rejections-test', undefined, PatchStrategy.MergePatch),
        );
        // The stored object is as it was.
        const stored = (await strict.read(object)) as Obj;
        expect(stored.spec).toMatchObject(object.spec as Obj);
      } else {
        message = await refusal(() => strict.create(object, undefined, 'All', 'rejections-test'));
      }
      expect(message).toContain(c.field);
      expect(message).toMatch(c.message);
    },
  );
});
