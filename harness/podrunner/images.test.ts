import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isModelplaneImage, parseImage, readPredictor, resolveImage } from './images.ts';
import { EXAMPLE_MODELS_DIR } from './runner.ts';

const rules = { modelsDirs: [EXAMPLE_MODELS_DIR], modelplaneImages: ['ghcr.io/modelplane/modelplane'] };

describe('parseImage', () => {
  it('splits repository, tag and digest, a registry port being no tag', () => {
    expect(parseImage('modelplane.local/echo:dev')).toEqual({
      repository: 'modelplane.local/echo',
      tag: 'dev',
    });
    expect(parseImage(`r.example.com:5000/a/b@sha256:${'a'.repeat(64)}`)).toEqual({
      repository: 'r.example.com:5000/a/b',
      digest: `sha256:${'a'.repeat(64)}`,
    });
    expect(parseImage('r.example.com:5000/a/b')).toEqual({ repository: 'r.example.com:5000/a/b' });
  });
});

describe('resolveImage', () => {
  it('maps modelplane.local/<name> with any tag or digest to examples/models/<name>', () => {
    for (const image of [
      'modelplane.local/echo',
      'modelplane.local/echo:dev',
      `modelplane.local/echo@sha256:${'b'.repeat(64)}`,
    ]) {
      expect(resolveImage(image, rules)).toEqual({
        kind: 'cog',
        name: 'echo',
        dir: join(EXAMPLE_MODELS_DIR, 'echo'),
        predictor: 'predict.py:Runner',
      });
    }
  });

  it('searches the extra models directories first', () => {
    const root = mkdtempSync(join(tmpdir(), 'modelplane-models-'));
    mkdirSync(join(root, 'echo'));
    writeFileSync(
      join(root, 'echo', 'cog.yaml'),
      "build:\n  gpu: true\npredict: 'predict.py:Predictor'  # mine\n",
    );
    mkdirSync(join(root, 'mine'));
    writeFileSync(join(root, 'mine', 'cog.yaml'), 'predict: "main.py:Model"\n');
    const r = { ...rules, modelsDirs: [root, EXAMPLE_MODELS_DIR] };
    expect(resolveImage('modelplane.local/echo:1', r)).toMatchObject({
      dir: join(root, 'echo'),
      predictor: 'predict.py:Predictor',
    });
    expect(resolveImage('modelplane.local/mine', r)).toMatchObject({
      kind: 'cog',
      predictor: 'main.py:Model',
    });
    expect(resolveImage('modelplane.local/sleep', r)).toMatchObject({
      dir: join(EXAMPLE_MODELS_DIR, 'sleep'),
    });
  });

  it('runs the modelplane image, by repository (any tag) or exact reference', () => {
    expect(resolveImage('ghcr.io/modelplane/modelplane:0.1.0', rules)).toEqual({ kind: 'modelplane' });
    expect(isModelplaneImage('ghcr.io/modelplane/modelplane-other:1', rules.modelplaneImages)).toBe(false);
    expect(isModelplaneImage('me/mp:dev', ['me/mp:dev'])).toBe(true);
    expect(isModelplaneImage('me/mp:other', ['me/mp:dev'])).toBe(false);
  });

  it('says why an image cannot run, naming the image and the mapping rule', () => {
    const other = resolveImage('registry.example.com/models/echo:1.0', rules);
    expect(other.kind).toBe('unknown');
    expect(other.kind === 'unknown' && other.message).toContain('registry.example.com/models/echo:1.0');
    expect(other.kind === 'unknown' && other.message).toContain('modelplane.local/<name>');
    const missing = resolveImage('modelplane.local/nope:1', rules);
    expect(missing.kind === 'unknown' && missing.message).toMatch(/no directory nope\/ with a cog.yaml/);
    expect(resolveImage('modelplane.local/a/b', rules).kind).toBe('unknown');
    expect(resolveImage(undefined, rules).kind).toBe('unknown');
  });

  it('reads the predictor of every example model', () => {
    for (const m of ['echo', 'sleep', 'fail', 'stream', 'setup-fail', 'embed', 'upscale'])
      expect(readPredictor(join(EXAMPLE_MODELS_DIR, m))).toMatch(/^\w+\.py:\w+$/);
  });
});
