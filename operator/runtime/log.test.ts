import { describe, expect, it } from 'vitest';
import { createLogger } from './log.ts';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const destination = { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) };
  return { lines, log: createLogger({ level: 'debug', destination }) };
}

describe('createLogger', () => {
  it('writes JSON lines with a readable level and the child logger’s fields', () => {
    const { lines, log } = capture();
    log
      .child({ controller: 'deployment', namespace: 'team-a', name: 'llama' })
      .info({ replicas: 2 }, 'scaled');
    expect(lines[0]).toMatchObject({
      level: 'info',
      controller: 'deployment',
      namespace: 'team-a',
      name: 'llama',
      replicas: 2,
      msg: 'scaled',
    });
    expect(typeof lines[0]?.time).toBe('string');
  });

  it('redacts secret-like fields at the top and nested', () => {
    const { lines, log } = capture();
    log.info(
      {
        token: 't0p',
        headers: { authorization: 'Bearer abc', accept: 'json' },
        user: { credentials: { password: 'hunter2' } },
        webhook: { secret: 's3', url: 'https://example.com' },
      },
      'request',
    );
    const text = JSON.stringify(lines[0]);
    for (const secret of ['t0p', 'Bearer abc', 'hunter2', 's3']) expect(text).not.toContain(secret);
    expect(lines[0]).toMatchObject({
      token: '[Redacted]',
      headers: { authorization: '[Redacted]', accept: 'json' },
      user: { credentials: { password: '[Redacted]' } },
      webhook: { secret: '[Redacted]', url: 'https://example.com' },
    });
  });
});
