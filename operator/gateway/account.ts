/**
 * The account-level endpoints: `/hardware`, `/account` and `/webhooks/default/secret` (the
 * Files API is in files.ts).
 */
import { methodNotAllowed } from '../../lib/express.ts';
import { sendJson } from '../../lib/http.ts';
import type { GatewayCaches } from './caches.ts';
import { callerNamespace, requireCallerNamespace } from './common.ts';
import { context } from './server.ts';
import type { Routes } from './types.ts';
import type { WebhookSecrets } from './webhook-secret.ts';

export function accountRoutes(deps: { caches: GatewayCaches; webhookSecrets: WebhookSecrets }): Routes {
  const { caches, webhookSecrets } = deps;
  return (api, { authenticated }) => {
    api
      .route('/hardware')
      // Every authenticated caller may see what hardware exists (HardwareClasses are cluster-wide).
      .get(authenticated, (_req, res) => {
        const list = caches.hardwareClasses
          .list()
          .map((h) => ({ sku: h.metadata.name ?? '', name: h.spec.displayName || h.metadata.name || '' }))
          .sort((a, b) => a.sku.localeCompare(b.sku));
        sendJson(res, 200, list);
      })
      .all(methodNotAllowed);

    api
      .route('/account')
      .get(authenticated, async (_req, res) => {
        const ctx = context(res);
        const ns = await callerNamespace(ctx);
        sendJson(
          res,
          200,
          ns
            ? { type: 'organization', username: ns, name: ns }
            : { type: 'user', username: ctx.principal.name, name: ctx.principal.name },
        );
      })
      .all(methodNotAllowed);

    api
      .route('/webhooks/default/secret')
      .get(authenticated, async (_req, res) => {
        const ctx = context(res);
        const ns = await requireCallerNamespace(ctx, 'whose webhook secret you want');
        // The key signs webhooks of predictions: whoever may create predictions there may know it.
        await ctx.authorize('create', 'predictions', ns);
        sendJson(res, 200, { key: await webhookSecrets.get(ns) });
      })
      .all(methodNotAllowed);
  };
}
