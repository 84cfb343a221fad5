import { describe, expect, it } from 'vitest';
import { type DataLookup, EnvConfigError, expandRefs, type PodFields, resolveEnv } from './env.ts';

const pod: PodFields = {
  name: 'echo-abc',
  namespace: 'team',
  uid: 'u-1',
  nodeName: 'local-gpu-t4-0',
  podIP: '127.10.0.3',
  hostIP: '127.0.0.1',
  labels: { app: 'echo' },
  annotations: {},
};
const data: Record<string, Record<string, string>> = {
  'Secret/echo-webhook-token': { token: 's3cret' },
  'ConfigMap/settings': { MODE: 'fast', LEVEL: '2' },
};
const lookup: DataLookup = async (kind, name) => data[`${kind}/${name}`];

describe('resolveEnv', () => {
  it('reads secretKeyRef, configMapKeyRef, envFrom and fieldRef, later entries winning', async () => {
    const env = await resolveEnv(
      {
        envFrom: [{ configMapRef: { name: 'settings' }, prefix: 'CFG_' }],
        env: [
          {
            name: 'WEBHOOK_AUTH_TOKEN',
            valueFrom: { secretKeyRef: { name: 'echo-webhook-token', key: 'token' } },
          },
          { name: 'MODE', valueFrom: { configMapKeyRef: { name: 'settings', key: 'MODE' } } },
          { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
          { name: 'APP', valueFrom: { fieldRef: { fieldPath: "metadata.labels['app']" } } },
          { name: 'URL', value: 'http://$(POD_IP):5000/$$(LITERAL)' },
          { name: 'CFG_LEVEL', value: '3' },
        ],
      },
      pod,
      lookup,
    );
    expect(env).toEqual({
      CFG_MODE: 'fast',
      CFG_LEVEL: '3',
      WEBHOOK_AUTH_TOKEN: 's3cret',
      MODE: 'fast',
      POD_IP: '127.10.0.3',
      APP: 'echo',
      URL: 'http://127.10.0.3:5000/$(LITERAL)',
    });
  });

  it('fails like the kubelet on a missing Secret or key, unless optional', async () => {
    await expect(
      resolveEnv(
        { env: [{ name: 'T', valueFrom: { secretKeyRef: { name: 'nope', key: 'token' } } }] },
        pod,
        lookup,
      ),
    ).rejects.toThrow(new EnvConfigError('secret "nope" not found'));
    await expect(
      resolveEnv(
        { env: [{ name: 'T', valueFrom: { secretKeyRef: { name: 'echo-webhook-token', key: 'x' } } }] },
        pod,
        lookup,
      ),
    ).rejects.toThrow(/couldn't find key x in Secret team\/echo-webhook-token/);
    expect(
      await resolveEnv(
        { env: [{ name: 'T', valueFrom: { secretKeyRef: { name: 'nope', key: 'token', optional: true } } }] },
        pod,
        lookup,
      ),
    ).toEqual({});
  });

  it('expands only known references', () => {
    expect(expandRefs('$(A)-$(B)-$$(A)', { A: 'a' })).toBe('a-$(B)-$(A)');
  });
});
