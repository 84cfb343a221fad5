import { describe, expect, it } from 'vitest';
import {
  awaitsExplicitShutdown,
  cogServerArgs,
  modelplaneArgs,
  rewriteModelplane,
  rewriteUrl,
} from './commands.ts';

describe('cogServerArgs', () => {
  it('runs the Cog server on the pod IP, keeping its flags', () => {
    const args = cogServerArgs(
      { args: ['python', '-m', 'cog.server.http', '--await-explicit-shutdown', 'true'] },
      '127.10.0.5',
    );
    expect(args).toEqual([
      '-m',
      'cog.server.http',
      '--await-explicit-shutdown',
      'true',
      '--host',
      '127.10.0.5',
    ]);
    expect(awaitsExplicitShutdown(args)).toBe(true);
  });

  it('takes the image default, tini, and replaces a --host', () => {
    expect(cogServerArgs({}, '127.10.0.5')).toEqual(['-m', 'cog.server.http', '--host', '127.10.0.5']);
    expect(
      cogServerArgs(
        { command: ['/sbin/tini', '--'], args: ['python3', '-m', 'cog.server.http', '--host=0.0.0.0'] },
        '127.10.0.9',
      ),
    ).toEqual(['-m', 'cog.server.http', '--host', '127.10.0.9']);
    expect(awaitsExplicitShutdown(['-m', 'cog.server.http'])).toBe(false);
    expect(awaitsExplicitShutdown(['--await-explicit-shutdown=false'])).toBe(false);
  });

  it("moves the upload URL on the pod's loopback to the pod IP, in both flag forms", () => {
    expect(
      cogServerArgs(
        { args: ['python', '-m', 'cog.server.http', '--upload-url', 'http://127.0.0.1:8081/upload/'] },
        '127.10.0.5',
      ),
    ).toEqual([
      '-m',
      'cog.server.http',
      '--upload-url',
      'http://127.10.0.5:8081/upload/',
      '--host',
      '127.10.0.5',
    ]);
    expect(
      cogServerArgs(
        { args: ['python', '-m', 'cog.server.http', '--upload-url=http://localhost:8081/upload/'] },
        '127.10.0.6',
      ),
    ).toEqual([
      '-m',
      'cog.server.http',
      '--upload-url=http://127.10.0.6:8081/upload/',
      '--host',
      '127.10.0.6',
    ]);
  });

  it('refuses a command other than the Cog server', () => {
    expect(() => cogServerArgs({ command: ['bash', '-c', 'run.sh'] }, '127.10.0.5')).toThrow(
      /python -m cog.server.http .*bash -c run.sh/,
    );
  });
});

describe('modelplane containers', () => {
  it('drops a leading modelplane from the command', () => {
    expect(modelplaneArgs({ args: ['sidecar'] })).toEqual(['sidecar']);
    expect(
      modelplaneArgs({ command: ['/usr/local/bin/modelplane'], args: ['sidecar', '--port', '8080'] }),
    ).toEqual(['sidecar', '--port', '8080']);
  });

  it('binds the pod IP and moves a loopback model URL there, in env and flags', () => {
    const { args, env } = rewriteModelplane(
      [
        'sidecar',
        '--host',
        '0.0.0.0',
        '--model-url=http://localhost:5000',
        '--webhook-host',
        '127.0.0.1',
        '--port',
        '8080',
      ],
      {
        MODELPLANE_MODEL_URL: 'http://127.0.0.1:5000',
        MODELPLANE_SIDECAR_PORT: '8080',
        WEBHOOK_AUTH_TOKEN: 't',
      },
      '127.10.0.5',
    );
    expect(args).toEqual([
      'sidecar',
      '--host',
      '127.10.0.5',
      '--model-url=http://127.10.0.5:5000',
      '--webhook-host',
      '127.10.0.5',
      '--port',
      '8080',
    ]);
    expect(env).toEqual({
      MODELPLANE_MODEL_URL: 'http://127.10.0.5:5000',
      MODELPLANE_SIDECAR_HOST: '127.10.0.5',
      MODELPLANE_METRICS_HOST: '127.10.0.5',
      MODELPLANE_WEBHOOK_HOST: '127.10.0.5',
      MODELPLANE_UPLOAD_HOST: '127.10.0.5',
      MODELPLANE_SIDECAR_PORT: '8080',
      WEBHOOK_AUTH_TOKEN: 't',
    });
  });

  it("defaults a sidecar's model URL to the pod's own port 5000", () => {
    expect(rewriteModelplane(['sidecar'], {}, '127.10.0.5').env.MODELPLANE_MODEL_URL).toBe(
      'http://127.10.0.5:5000',
    );
    expect(rewriteModelplane(['operator'], {}, '127.10.0.5').env.MODELPLANE_MODEL_URL).toBeUndefined();
  });

  it('leaves URLs off loopback alone', () => {
    expect(rewriteUrl('http://model.internal:5000', '127.10.0.5')).toBe('http://model.internal:5000');
    expect(rewriteUrl('http://127.0.0.1:5000/x/', '127.10.0.5')).toBe('http://127.10.0.5:5000/x/');
  });
});
