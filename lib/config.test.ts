import { describe, expect, it } from 'vitest';
import { ConfigError, formatOptions, HELP_ROW, option, parseOptions } from './config.ts';

const OPTIONS = {
  name: option({ flag: 'name', env: ['APP_NAME', 'NAME'], default: 'app', meta: 'NAME', help: 'the name' }),
  workers: option({
    flag: 'workers',
    env: 'APP_WORKERS',
    type: 'int',
    min: 1,
    max: 8,
    default: 2,
    help: 'w',
  }),
  ratio: option({ flag: 'ratio', env: 'APP_RATIO', type: 'number', min: 0, help: 'r' }),
  verbose: option({ flag: 'verbose', env: 'APP_VERBOSE', type: 'bool', default: false, help: 'v' }),
  timeoutMs: option({
    flag: 'timeout',
    env: 'APP_TIMEOUT',
    type: 'duration',
    min: 0.5,
    default: 30_000,
    help: 't',
  }),
  tags: option({ flag: 'tags', env: 'APP_TAGS', type: 'list', help: 'tags' }),
  mode: option({ flag: 'mode', env: 'APP_MODE', oneOf: ['fast', 'slow'], default: 'fast', help: 'm' }),
  port: option({
    flag: 'port',
    env: 'APP_PORT',
    parse: (raw) => {
      const port = Number(raw.replace(/^:/, ''));
      if (!Number.isInteger(port)) throw new Error(`want :PORT, got "${raw}"`);
      return port;
    },
    check: (port) => (port === 0 ? 'pick a port, not 0' : undefined),
    help: 'p',
  }),
  secret: option({ env: 'APP_SECRET', help: 'from the environment only' }),
};

function parse(argv: string[], env: Record<string, string> = {}) {
  const v = parseOptions(OPTIONS, argv, env);
  if (v === 'help') throw new Error('want values, got help');
  return v;
}

describe('parseOptions', () => {
  it('gives the defaults when nothing is set, undefined without one, an empty list', () => {
    expect(parse([])).toEqual({
      name: 'app',
      workers: 2,
      ratio: undefined,
      verbose: false,
      timeoutMs: 30_000,
      tags: [],
      mode: 'fast',
      port: undefined,
      secret: undefined,
    });
  });

  it('reads each type from flags, both --flag value and --flag=value', () => {
    expect(
      parse([
        '--name',
        'x',
        '--workers=8',
        '--ratio=0.25',
        '--verbose=yes',
        '--timeout=1.5',
        '--tags= a, b,,c ',
        '--mode=slow',
        '--port=:8080',
      ]),
    ).toMatchObject({
      name: 'x',
      workers: 8,
      ratio: 0.25,
      verbose: true,
      timeoutMs: 1_500,
      tags: ['a', 'b', 'c'],
      mode: 'slow',
      port: 8080,
    });
  });

  it('reads true and false as 1/0, yes/no, on/off in any case', () => {
    for (const t of ['1', 'true', 'YES', 'On']) expect(parse([`--verbose=${t}`]).verbose).toBe(true);
    for (const f of ['0', 'False', 'no', 'OFF']) expect(parse([`--verbose=${f}`]).verbose).toBe(false);
  });

  it('takes a flag over its variables, and the first variable set over the next', () => {
    expect(parse(['--name=flag'], { APP_NAME: 'env', NAME: 'fallback' }).name).toBe('flag');
    expect(parse([], { APP_NAME: 'env', NAME: 'fallback' }).name).toBe('env');
    expect(parse([], { NAME: 'fallback' }).name).toBe('fallback');
    expect(parse([], { APP_NAME: '', NAME: 'fallback' }).name).toBe('fallback');
    expect(parse(['--name='], {}).name).toBe('app');
    expect(parse([], { APP_SECRET: 's3cret' }).secret).toBe('s3cret');
  });

  it('computes a default given as a function only when it is needed', () => {
    let calls = 0;
    const options = {
      n: option({
        flag: 'n',
        type: 'int',
        default: () => {
          calls++;
          return 7;
        },
        help: '',
      }),
    };
    expect(parseOptions(options, ['--n=1'], {})).toEqual({ n: 1 });
    expect(calls).toBe(0);
    expect(parseOptions(options, [], {})).toEqual({ n: 7 });
    expect(calls).toBe(1);
  });

  it('names the flag, and the variable a bad value came from', () => {
    const error = (argv: string[], env: Record<string, string> = {}) => {
      try {
        parse(argv, env);
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return (err as Error).message;
      }
      throw new Error('no error');
    };
    expect(error(['--workers=9'])).toBe('--workers: want a whole number from 1 to 8, got "9"');
    expect(error([], { APP_WORKERS: '1.5' })).toBe(
      '--workers: want a whole number from 1 to 8, got "1.5" (from APP_WORKERS)',
    );
    expect(error(['--ratio=-1'])).toBe('--ratio: want a number >= 0, got "-1"');
    expect(error(['--ratio=x'])).toBe('--ratio: want a number >= 0, got "x"');
    expect(error(['--timeout=0.1'])).toBe('--timeout: want a number of seconds >= 0.5, got "0.1"');
    expect(error([], { APP_VERBOSE: 'maybe' })).toBe(
      '--verbose: want true or false, got "maybe" (from APP_VERBOSE)',
    );
    expect(error(['--mode=medium'])).toBe('--mode: want one of fast, slow, got "medium"');
    expect(error(['--port=x'])).toBe('--port: want :PORT, got "x"');
    expect(error(['--port=0'])).toBe('--port: pick a port, not 0');
    expect(error(['--bogus'])).toContain("Unknown option '--bogus'");
    expect(error(['extra'])).toContain('extra');
  });

  it('checks each item of a list against oneOf', () => {
    const options = { roles: option({ flag: 'roles', type: 'list', oneOf: ['a', 'b'], help: '' }) };
    expect(parseOptions(options, ['--roles=b,a'], {})).toEqual({ roles: ['b', 'a'] });
    expect(() => parseOptions(options, ['--roles=a,c'], {})).toThrow('--roles: want some of a, b, got "c"');
  });

  it('answers help for -h or --help, before reading any value', () => {
    expect(parseOptions(OPTIONS, ['--help'], { APP_WORKERS: 'x' })).toBe('help');
    expect(parseOptions(OPTIONS, ['--workers=x', '-h'], {})).toBe('help');
  });

  it('refuses a flag declared twice', () => {
    const twice = { a: option({ flag: 'x', help: '' }), b: option({ flag: 'x', help: '' }) };
    expect(() => parseOptions(twice, [], {})).toThrow('--x is declared twice');
  });

  it('refuses an option without a flag or a variable', () => {
    expect(() => option({ help: 'nothing sets it' })).toThrow('needs a flag or an environment variable');
  });
});

describe('formatOptions', () => {
  it('puts each help text at the column, its own line breaks indented to it', () => {
    const text = formatOptions(
      [
        option({ flag: 'name', env: 'APP_NAME', meta: 'NAME', help: 'the name (APP_NAME;\ndefault app)' }),
        option({ flag: 'a-very-long-flag', meta: 'VALUE', help: 'beside it, after two spaces' }),
        option({ flag: 'below', meta: 'SECONDS', help: '\nunder the flag\nand on' }),
        option({ env: 'APP_SECRET', help: 'a variable only' }),
        HELP_ROW,
      ],
      20,
    );
    expect(text).toBe(
      [
        '  --name NAME       the name (APP_NAME;',
        '                    default app)',
        '  --a-very-long-flag VALUE  beside it, after two spaces',
        '  --below SECONDS',
        '                    under the flag',
        '                    and on',
        '  APP_SECRET        a variable only',
        '  -h, --help        show this help',
        '',
      ].join('\n'),
    );
  });

  it('keeps one space when the label ends just before the column', () => {
    expect(formatOptions([option({ flag: 'abcdef', meta: 'SECONDS', help: 'x' })], 19)).toBe(
      '  --abcdef SECONDS x\n',
    );
  });
});
