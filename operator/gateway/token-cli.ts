/**
 * `modelplane token create|list|revoke`: API tokens for the gateway, kept hashed in Secrets of
 * the token namespace (see tokens.ts). The token itself is printed once, at creation.
 */
import { parseArgs } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import { KubeClient } from '../runtime/index.ts';
import { createApiToken, listApiTokens, parseNamespaces, revokeApiToken } from './tokens.ts';

export const DEFAULT_TOKEN_NAMESPACE = 'modelplane-system';

export const USAGE = `Usage:
  modelplane token create NAME --namespaces NS[,NS...] [--read-only] [flags]
  modelplane token list [flags]
  modelplane token revoke NAME [flags]

API tokens let callers use the prediction API (Authorization: Bearer <token>). A token acts
in the namespaces it is created for (--namespaces '*' for all), read-only (get and list)
with --read-only. It is printed once; the cluster keeps only its SHA-256, in the Secret
modelplane-token-NAME of the token namespace. Revoking deletes that Secret; the gateway
refuses the token within seconds.

Flags:
  --token-namespace NS   where the token Secrets live: the namespace the gateway's
                         --token-namespace names (MODELPLANE_TOKEN_NAMESPACE; default
                         ${DEFAULT_TOKEN_NAMESPACE})
  --kubeconfig PATH      kubeconfig to use (KUBECONFIG; default ~/.kube/config)
  -h, --help             show this help
`;

function clientFor(kubeconfig: string | undefined): KubeClient {
  const kc = new KubeConfig();
  if (kubeconfig) kc.loadFromFile(kubeconfig);
  else kc.loadFromDefault();
  return new KubeClient(kc);
}

export async function run(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      options: {
        namespaces: { type: 'string' },
        'read-only': { type: 'boolean' },
        'token-namespace': { type: 'string' },
        kubeconfig: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`modelplane token: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const [action, name, ...rest] = positionals;
  const fail = (message: string) => {
    process.stderr.write(`modelplane token: ${message}\n\n${USAGE}`);
    return 2;
  };
  if (rest.length) return fail(`unexpected arguments: ${rest.join(' ')}`);
  const tokenNamespace =
    (values['token-namespace'] as string | undefined) ||
    process.env.MODELPLANE_TOKEN_NAMESPACE ||
    DEFAULT_TOKEN_NAMESPACE;
  const kubeconfig = (values.kubeconfig as string | undefined) || process.env.KUBECONFIG || undefined;
  switch (action) {
    case 'create': {
      if (!name) return fail('create: name the token');
      if (typeof values.namespaces !== 'string') return fail('create: --namespaces is required');
      let namespaces: string[];
      try {
        namespaces = parseNamespaces(values.namespaces);
      } catch (err) {
        return fail(`--namespaces: ${(err as Error).message}`);
      }
      const { token } = await createApiToken(clientFor(kubeconfig), {
        name,
        namespaces,
        readOnly: values['read-only'] === true,
        tokenNamespace,
      });
      process.stdout.write(`${token}\n`);
      process.stderr.write(
        `Token "${name}" for ${namespaces.join(', ')}${values['read-only'] ? ' (read-only)' : ''}: it is shown only this once.\n`,
      );
      return 0;
    }
    case 'list': {
      if (name) return fail('list takes no name');
      const tokens = await listApiTokens(clientFor(kubeconfig), tokenNamespace);
      const rows = [
        ['NAME', 'ID', 'NAMESPACES', 'ACCESS', 'CREATED'],
        ...tokens.map((t) => [
          t.name,
          t.id,
          t.namespaces.join(','),
          t.readOnly ? 'read-only' : 'read-write',
          t.createdAt ?? '',
        ]),
      ];
      const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
      for (const r of rows)
        process.stdout.write(
          `${r
            .map((c, i) => c.padEnd(widths[i]!))
            .join('   ')
            .trimEnd()}\n`,
        );
      return 0;
    }
    case 'revoke': {
      if (!name) return fail('revoke: name the token');
      const gone = await revokeApiToken(clientFor(kubeconfig), name, tokenNamespace);
      if (!gone) {
        process.stderr.write(`modelplane token: no token named "${name}" in ${tokenNamespace}\n`);
        return 1;
      }
      process.stdout.write(`token "${name}" revoked\n`);
      return 0;
    }
    default:
      return fail(action ? `unknown action "${action}"` : 'name an action: create, list or revoke');
  }
}
