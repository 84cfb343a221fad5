/**
 * Who may call the sidecar's API: the operator, with a token signed by its key for this pod's
 * address (lib/sidecar-token.ts). Checked tokens are remembered until they expire (at most
 * 256), so the signature is verified once per token, not once per call.
 */
import type { Clock } from '../lib/clock.ts';
import { checkSidecarToken, operatorPublicKey, podAudience } from '../lib/sidecar-token.ts';

/** Why `authorization` is not the operator's, or undefined when it is; undefined when the API is open. */
export type OperatorAuth = (authorization: string | undefined) => string | undefined;

export function operatorAuth(
  settings: { operatorKey: string | undefined; podIp: string | undefined; port: number },
  clock: Clock,
): OperatorAuth | undefined {
  if (!settings.operatorKey) return undefined;
  if (!settings.podIp)
    throw new Error('MODELPLANE_OPERATOR_KEY needs MODELPLANE_POD_IP (the pod IP its tokens name)');
  const key = operatorPublicKey(settings.operatorKey);
  const aud = podAudience(settings.podIp, settings.port);
  const good = new Map<string, number>();
  return (authorization) => {
    if (!authorization) return 'no token: the operator sends "Authorization: Bearer <token>"';
    const m = /^Bearer\s+(\S+)$/i.exec(authorization);
    if (!m) return 'the Authorization header is not "Bearer <token>"';
    const token = m[1]!;
    const now = clock.now() / 1000;
    const exp = good.get(token);
    if (exp !== undefined && exp > now) return undefined;
    const why = checkSidecarToken(key, token, aud, now);
    if (why) return why;
    if (good.size >= 256) good.clear();
    good.set(token, now + 10);
    return undefined;
  };
}
