import { describe, expect, it } from 'vitest';
import { hardwareList, parseConfig, parseInputFlag, renderTable, run } from './main.ts';

describe('modelplane check settings', () => {
  it('reads a YAML or JSON config with the flag names', () => {
    expect(parseConfig('runs: 3\nmaxP95: 1.5\ninput:\n  text: hi\n', 'c.yaml')).toEqual({
      runs: 3,
      maxP95: 1.5,
      input: { text: 'hi' },
    });
    expect(parseConfig('{"unitsPerAction": 4}', 'c.json')).toEqual({ unitsPerAction: 4 });
    expect(parseConfig('worstInput:\n  seconds: 3600\n', 'c.yaml')).toEqual({
      worstInput: { seconds: 3600 },
    });
    expect(() => parseConfig('worstInput: 3', 'c.yaml')).toThrow('c.yaml: worstInput must be a mapping');
  });
  it('reads where the HTML and JSON reports go, refusing anything but a file name', () => {
    expect(parseConfig('html: out/report.html\njsonFile: out/report.json\n', 'c.yaml')).toEqual({
      html: 'out/report.html',
      jsonFile: 'out/report.json',
    });
    expect(() => parseConfig('html: 3', 'c.yaml')).toThrow('c.yaml: html must be a file name');
    expect(() => parseConfig('jsonFile: ""', 'c.yaml')).toThrow('c.yaml: jsonFile must be a file name');
  });
  it('refuses unknown settings and bad numbers, naming them', () => {
    expect(() => parseConfig('rns: 3', 'c.yaml')).toThrow('unknown setting "rns"');
    expect(() => parseConfig('runs: many', 'c.yaml')).toThrow('c.yaml: runs must be a number');
    expect(() => parseConfig('- 1', 'c.yaml')).toThrow('must be a mapping');
  });
  it('reads the cold start mode, the hardware to compare and the latency target', () => {
    expect(parseConfig('coldStart: skip\nhardware: [gpu-t4, cpu]\nlatencyTarget: 2\n', 'c.yaml')).toEqual({
      coldStart: 'skip',
      hardware: ['gpu-t4', 'cpu'],
      latencyTarget: 2,
    });
    expect(parseConfig('hardware: gpu-t4,cpu', 'c.yaml')).toEqual({ hardware: ['gpu-t4', 'cpu'] });
    expect(() => parseConfig('coldStart: cold', 'c.yaml')).toThrow(
      'c.yaml: coldStart must be one of temporary, deployment, skip',
    );
    expect(() => hardwareList('gpu-t4,,cpu', '--hardware')).toThrow('"" is not a HardwareClass name');
    expect(() => hardwareList('GPU', '--hardware')).toThrow('"GPU" is not a HardwareClass name');
    expect(hardwareList('a,a,b', '--hardware')).toEqual(['a', 'b']);
  });
  it('exits 2 on a bad --cold-start, --hardware or --latency-target', async () => {
    expect(await run(['ns/echo', '--cold-start', 'warm'])).toBe(2);
    expect(await run(['ns/echo', '--hardware', 'A_B'])).toBe(2);
    expect(await run(['ns/echo', '--latency-target', 'soon'])).toBe(2);
  });
  it('parses --input values as JSON when they parse, else as strings', () => {
    expect(parseInputFlag('n=3')).toEqual(['n', 3]);
    expect(parseInputFlag('text=hello world')).toEqual(['text', 'hello world']);
    expect(parseInputFlag('a=b=c')).toEqual(['a', 'b=c']);
    expect(() => parseInputFlag('=x')).toThrow('--input must be KEY=VALUE');
    expect(() => parseInputFlag('x', 'worst-input')).toThrow('--worst-input must be KEY=VALUE');
  });
  it('exits 2 on a malformed target or runs before touching any cluster', async () => {
    expect(await run([])).toBe(2);
    expect(await run(['no-slash'])).toBe(2);
    expect(await run(['ns/echo', '--runs', '1'])).toBe(2);
  });
  it('renders a table with notes and counts', () => {
    const out = renderTable({
      target: 'ns/echo',
      deployment: 'echo',
      version: 'echo-v1',
      startedAt: '2026-12-04T12:00:00.000Z',
      data: { latencies: { predictTimes: [0.002], totalTimes: [0.01] } },
      rows: [
        { check: 'consistency', verdict: 'pass', figure: '5/5 identical' },
        { check: 'license', verdict: 'warn', figure: 'none', detail: "set the Model's spec.licenseUrl" },
      ],
    });
    expect(out).toContain('consistency   PASS     5/5 identical');
    expect(out).toContain("license: set the Model's spec.licenseUrl");
    expect(out).toContain('1 pass, 1 warn, 0 fail, 0 skip');
  });
});
