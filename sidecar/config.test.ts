import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig, USAGE } from './config.ts';

describe('sidecar settings', () => {
  it('has defaults for a pod', () => {
    const c = parseConfig([], {});
    expect(c).toMatchObject({
      host: '0.0.0.0',
      port: 8080,
      metricsPort: 9090,
      modelUrl: 'http://127.0.0.1:5000',
      concurrency: 1,
      queueSize: 16,
      webhookHost: '127.0.0.1',
      uploadHost: '127.0.0.1',
      uploadPort: 8081,
      pricePerSecond: '0',
      shutdownModel: true,
      webhookToken: undefined,
      drainTimeout: 0,
      drainReadTimeout: 10,
      usageReadTimeout: 0,
      webhookAllowCidrs: [],
    });
  });

  it('reads the environment, and flags win', () => {
    const c = parseConfig(['--concurrency', '4', '--price-per-second', '0.001525'], {
      COG_MAX_CONCURRENCY: '2',
      MODELPLANE_QUEUE_SIZE: '3',
      MODELPLANE_DEPLOYMENT: 'team/llm',
      MODELPLANE_MODEL_VERSION: 'abc',
      MODELPLANE_HARDWARE: 'gpu-h100',
      MODELPLANE_SHUTDOWN_MODEL: 'false',
      WEBHOOK_AUTH_TOKEN: 's3cret',
      MODELPLANE_WEBHOOK_ALLOW_CIDRS: '10.0.0.0/8,::1',
    });
    expect(c).toMatchObject({
      concurrency: 4,
      queueSize: 3,
      deployment: 'team/llm',
      version: 'abc',
      hardware: 'gpu-h100',
      pricePerSecond: '0.001525',
      shutdownModel: false,
      webhookToken: 's3cret',
      webhookAllowCidrs: ['10.0.0.0/8', '::1'],
    });
  });

  it('refuses bad values with the flag named', () => {
    expect(() => parseConfig(['--concurrency', '0'], {})).toThrow(ConfigError);
    expect(() => parseConfig(['--port', 'x'], {})).toThrow(/--port/);
    expect(() => parseConfig(['--price-per-second', '1e-4'], {})).toThrow(/decimal/);
    expect(() => parseConfig(['--bogus'], {})).toThrow(ConfigError);
    expect(() => parseConfig(['--webhook-allow-cidrs', '10.0.0.0/40'], {})).toThrow(/--webhook-allow-cidrs/);
    expect(() => parseConfig([], { MODELPLANE_SHUTDOWN_MODEL: 'maybe' })).toThrow(/true or false/);
  });

  it('documents every flag in its usage', () => {
    expect(parseConfig(['--help'], {})).toBe('help');
    for (const flag of [
      '--model-url',
      '--concurrency',
      '--queue-size',
      '--predict-timeout',
      '--price-per-second',
      '--drain-read-timeout',
      'WEBHOOK_AUTH_TOKEN',
    ]) {
      expect(USAGE).toContain(flag);
    }
  });
});
