import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type OperatorConfig, parseConfig, USAGE } from '../config.ts';
import { DEFAULT_PEER_SELECTOR } from './peers.ts';

/** The settings of `argv` and `env`, not help. */
function config(argv: string[], env: NodeJS.ProcessEnv): OperatorConfig {
  const c = parseConfig(argv, env);
  if (c === 'help') throw new Error('want settings, got help');
  return c;
}

describe('the operator’s autoscaler flags', () => {
  const missing = '/nonexistent/token';

  it('tick defaults to 1 s; peers are off outside a pod', () => {
    const c = config([`--autoscaler-peer-token-file=${missing}`], {});
    expect(c.autoscalerTickMs).toBe(1000);
    expect(c.autoscalerPeers).toBe(false);
    expect(config(['--autoscaler-tick=0.25'], {}).autoscalerTickMs).toBe(250);
    expect(() => config(['--autoscaler-tick=0'], {})).toThrow(/--autoscaler-tick/);
  });

  it('peers are on in a pod (a token file), on the HTTP port, in the pod’s namespace', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mp-token-'));
    const token = join(dir, 'token');
    writeFileSync(token, 'x.y.z');
    const c = config([`--autoscaler-peer-token-file=${token}`, '--http-address=:9443'], {
      POD_NAMESPACE: 'modelplane-system',
    });
    expect(c.autoscalerPeers).toEqual({
      labelSelector: DEFAULT_PEER_SELECTOR,
      port: 9443,
      tokenFile: token,
      namespace: 'modelplane-system',
    });
    const own = config([`--autoscaler-peer-token-file=${token}`, '--autoscaler-peers=app=op'], {
      MODELPLANE_AUTOSCALER_PEER_PORT: '8443',
    });
    expect(own.autoscalerPeers).toMatchObject({ labelSelector: 'app=op', port: 8443 });
    expect(
      config([`--autoscaler-peer-token-file=${token}`, '--autoscaler-peers=off'], {}).autoscalerPeers,
    ).toBe(false);
    expect(config([`--autoscaler-peer-token-file=${token}`, '--http-address=off'], {}).autoscalerPeers).toBe(
      false,
    );
    expect(() =>
      config(
        [`--autoscaler-peer-token-file=${token}`, '--autoscaler-peers=app=op', '--http-address=off'],
        {},
      ),
    ).toThrow(/needs the HTTP server/);
  });

  it('documents every flag in --help', () => {
    for (const flag of [
      '--autoscaler-tick',
      '--autoscaler-peers',
      '--autoscaler-peer-port',
      '--autoscaler-peer-token-file',
    ])
      expect(USAGE).toContain(flag);
  });
});
