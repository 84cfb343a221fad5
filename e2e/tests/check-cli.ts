/**
 * Runs `modelplane check` in this process against a `modelplane dev` cluster (its
 * kubeconfig, gateway URL and token), capturing what it prints on stdout.
 */
import { vi } from 'vitest';
import { run as checkCli } from '../../cli/check/main.ts';
import type { Dev } from '../../dev/dev.ts';

export async function runCheck(dev: Dev, args: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((s) => {
    out += String(s);
    return true;
  });
  let code: number;
  try {
    code = await checkCli([...args, '--kubeconfig', dev.kubeconfig], {
      MODELPLANE_API_URL: `${dev.gatewayUrl}/v1`,
      MODELPLANE_API_TOKEN: dev.token,
    });
  } finally {
    spy.mockRestore();
  }
  return { code, out };
}
