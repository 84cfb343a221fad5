import { expect, it } from 'vitest';
import { FileUrls } from './urls.ts';

it('signs URLs that verify until they expire, and refuses altered or foreign ones', () => {
  let now = 1_700_000_000_000;
  const clock = { now: () => now, mono: () => now, setTimer: () => ({ cancel() {} }) };
  const urls = new FileUrls({ clock });
  const url = urls.download('http://gw/v1', 'abc', now + 60_000);
  const token = url.split('/').at(-1)!;
  expect(url).toMatch(/^http:\/\/gw\/v1\/files\/abc\/download\/\d+\.[A-Za-z0-9_-]{43}$/);
  expect(urls.verify('download:abc', token)).toBe('ok');
  expect(urls.verify('download:abd', token)).toBe('forged');
  const [exp, mac] = token.split('.');
  expect(urls.verify('download:abc', `${Number(exp) + 1000}.${mac}`)).toBe('forged');
  expect(urls.verify('download:abc', `${exp}.${mac!.slice(0, -1)}${mac!.endsWith('A') ? 'B' : 'A'}`)).toBe(
    'forged',
  );
  expect(urls.verify('download:abc', 'nonsense')).toBe('forged');
  expect(new FileUrls({ clock }).verify('download:abc', token)).toBe('forged');
  now += 61_000;
  expect(urls.verify('download:abc', token)).toBe('expired');
});
