import { afterEach, describe, expect, it } from 'vitest';
import { chromiumPath } from './chromium.ts';

describe('chromiumPath', () => {
  const before = process.env.MODELPLANE_CHROMIUM;
  afterEach(() => {
    if (before === undefined) delete process.env.MODELPLANE_CHROMIUM;
    else process.env.MODELPLANE_CHROMIUM = before;
  });
  it('names the package and the make target when the executable is missing', () => {
    process.env.MODELPLANE_CHROMIUM = '/nonexistent/chromium';
    expect(() => chromiumPath()).toThrow(
      'Chromium is not installed (no /nonexistent/chromium): run `make chromium`, or install the Debian/Ubuntu package chromium (apt-get install -y chromium)',
    );
  });
  it('returns the executable that is there', () => {
    process.env.MODELPLANE_CHROMIUM = process.execPath;
    expect(chromiumPath()).toBe(process.execPath);
  });
});
