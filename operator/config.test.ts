import { describe, expect, it } from 'vitest';
import { ConfigError, OPTIONS, type OperatorConfig, parseConfig, USAGE } from './config.ts';

/** The settings of `argv` and `env`, not help. */
function config(argv: string[], env: NodeJS.ProcessEnv): OperatorConfig {
  const c = parseConfig(argv, env);
  if (c === 'help') throw new Error('want settings, got help');
  return c;
}

describe('modelplane operator flags', () => {
  it('runs the controllers, the gateway and the webhook by default, the gateway on 0.0.0.0:8000', () => {
    const c = config([], {});
    expect(c.roles).toEqual(['controllers', 'gateway', 'webhook']);
    expect(c.gateway).toEqual({
      address: { host: '0.0.0.0', port: 8000 },
      publicUrl: undefined,
      trustForwardedHeaders: false,
      tokenNamespace: c.leaseNamespace,
      allowAnonymous: [],
      tokenReviewAudiences: [],
      webhookAllowCidrs: [],
      inputBudget: { perDeploymentBytes: 256 * 2 ** 20, perReplicaBytes: 2 ** 30 },
      maxOutputBytes: 16 * 2 ** 20,
    });
  });

  it('reads the input byte budgets in bytes or with Ki, Mi, Gi, and refuses other sizes', () => {
    const c = config(['--queue-bytes-per-deployment=64Mi'], {
      MODELPLANE_QUEUE_BYTES_PER_REPLICA: '2147483648',
    });
    expect(c.gateway.inputBudget).toEqual({ perDeploymentBytes: 64 * 2 ** 20, perReplicaBytes: 2 ** 31 });
    expect(() => parseConfig(['--queue-bytes-per-replica=1GB'], {})).toThrow('--queue-bytes-per-replica');
    expect(() => parseConfig(['--queue-bytes-per-deployment=0'], {})).toThrow('at least 1 byte');
    expect(config(['--max-output-bytes=4Mi'], {}).gateway.maxOutputBytes).toBe(4 * 2 ** 20);
    expect(config([], { MODELPLANE_MAX_OUTPUT_BYTES: '1024' }).gateway.maxOutputBytes).toBe(1024);
    expect(() => parseConfig(['--max-output-bytes=lots'], {})).toThrow('--max-output-bytes');
    expect(() => parseConfig(['--max-output-bytes=512'], {})).toThrow('at least 1Ki');
  });

  it('reads the gateway flags, and their variables when a flag is absent', () => {
    const c = config(
      [
        '--roles=gateway',
        '--gateway-address=127.0.0.1:9000',
        '--public-url=https://models.example.com/v1/',
        '--token-namespace=tokens',
        '--allow-anonymous=dev, demo',
      ],
      {
        MODELPLANE_WEBHOOK_ALLOW_CIDRS: '10.20.0.0/16, 127.0.0.1',
        MODELPLANE_TOKEN_REVIEW_AUDIENCES: 'modelplane,https://kubernetes.default.svc',
        MODELPLANE_TOKEN_NAMESPACE: 'ignored',
      },
    );
    expect(c.roles).toEqual(['gateway']);
    expect(c.gateway).toMatchObject({
      address: { host: '127.0.0.1', port: 9000 },
      publicUrl: 'https://models.example.com',
      tokenNamespace: 'tokens',
      allowAnonymous: ['dev', 'demo'],
      tokenReviewAudiences: ['modelplane', 'https://kubernetes.default.svc'],
      webhookAllowCidrs: ['10.20.0.0/16', '127.0.0.1'],
    });
  });

  it('refuses bad gateway values with the flag named', () => {
    expect(() => parseConfig(['--public-url=models.example.com'], {})).toThrow(ConfigError);
    expect(() => parseConfig(['--public-url=ftp://x'], {})).toThrow('--public-url');
    expect(() => parseConfig(['--gateway-address=off'], {})).toThrow('--gateway-address: want HOST:PORT');
    expect(() => parseConfig(['--roles=admission'], {})).toThrow('unknown role "admission"');
    expect(() => parseConfig(['--webhook-allow-cidrs=10.0.0.0/33'], {})).toThrow('--webhook-allow-cidrs');
  });

  it('serves the webhook on 0.0.0.0:9443 with certificates of its own for the Service name by default', () => {
    const c = config(['--lease-namespace=mp'], {});
    expect(c.webhook).toEqual({
      address: { host: '0.0.0.0', port: 9443 },
      configurationName: 'modelplane',
      certSecret: 'modelplane-webhook-cert',
      certNamespace: 'mp',
      certNames: ['modelplane-webhook.mp.svc'],
      certDir: undefined,
    });
  });

  it('reads the webhook flags and variables', () => {
    const c = config(
      ['--roles=webhook', '--webhook-address=127.0.0.1:9444', '--webhook-cert-names=a.b.svc,127.0.0.1'],
      {
        MODELPLANE_WEBHOOK_CONFIGURATION: 'mp-admission',
        MODELPLANE_WEBHOOK_CERT_SECRET: 'mp-cert',
        MODELPLANE_WEBHOOK_CERT_DIR: '/certs',
      },
    );
    expect(c.roles).toEqual(['webhook']);
    expect(c.webhook).toMatchObject({
      address: { host: '127.0.0.1', port: 9444 },
      configurationName: 'mp-admission',
      certSecret: 'mp-cert',
      certNames: ['a.b.svc', '127.0.0.1'],
      certDir: '/certs',
    });
    expect(() => parseConfig(['--webhook-address=off'], {})).toThrow('--webhook-address: want HOST:PORT');
  });

  it('names the variable a bad value came from', () => {
    expect(() => parseConfig([], { MODELPLANE_WORKERS: '0' })).toThrow(
      '--workers: want a whole number from 1 to 64, got "0" (from MODELPLANE_WORKERS)',
    );
    expect(config(['--workers=8'], { MODELPLANE_WORKERS: '0' }).workers).toBe(8);
  });

  it('answers --help whatever else is set', () => {
    expect(parseConfig(['--help'], { MODELPLANE_WORKERS: 'many' })).toBe('help');
    expect(parseConfig(['-h'], {})).toBe('help');
  });

  it('documents every flag with its variable in --help', () => {
    for (const o of Object.values(OPTIONS)) {
      expect(USAGE).toContain(`--${o.flag}`);
      expect(o.help).toContain(o.env[0]);
    }
  });
});
