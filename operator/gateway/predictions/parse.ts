/**
 * Pure parsing of what callers send with a prediction: `Prefer: wait`,
 * `Cancel-After`, the `version` field of `POST /predictions`, the webhook events filter.
 */
import type { EgressPolicy } from '../../../lib/egress.ts';
import { invalid, preferWait } from '../../../lib/http.ts';
import type { InvalidField } from '../../../lib/openapi-input.ts';
import { WEBHOOK_EVENTS, type WebhookEvent } from '../../../lib/prediction.ts';

/** Longest `Prefer: wait` the gateway holds a create for, in seconds. */
export const MAX_PREFER_WAIT = 60;

/**
 * Seconds to hold a create from its `Prefer` header: bare `wait` is 60, `wait=N` is N
 * clamped to [1, 60]; no wait preference is undefined.
 */
export function parsePreferWait(header: string | string[] | undefined): number | undefined {
  const wait = preferWait(header, MAX_PREFER_WAIT);
  if (wait === undefined) return undefined;
  return Math.min(MAX_PREFER_WAIT, Math.max(1, Math.round(wait)));
}

/** Shortest `Cancel-After` accepted, in seconds. */
export const MIN_CANCEL_AFTER = 5;

/**
 * Milliseconds from a `Cancel-After` header: a duration such as `30s`, `5m`, `1h30m`,
 * `1h2m3s`, `1.5m` or plain seconds (`90`). Undefined when absent; a 422 HttpError when
 * malformed or shorter than 5 s.
 */
export function parseCancelAfter(header: string | string[] | undefined): number | undefined {
  const raw = (Array.isArray(header) ? header[0] : header)?.trim();
  if (raw === undefined || raw === '') return undefined;
  const bad = (why: string) =>
    invalid([{ type: 'invalid', field: 'Cancel-After', description: why }], {
      title: 'Invalid Cancel-After',
      detail: `Cancel-After "${raw}" ${why}`,
    });
  let seconds: number;
  if (/^\d+(\.\d+)?$/.test(raw)) {
    seconds = Number(raw);
  } else {
    const m = /^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$/i.exec(raw);
    if (!m || (m[1] === undefined && m[2] === undefined && m[3] === undefined))
      throw bad('is not a duration such as 30s, 5m or 1h30m');
    seconds = Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0);
  }
  if (!Number.isFinite(seconds)) throw bad('is not a duration such as 30s, 5m or 1h30m');
  if (seconds < MIN_CANCEL_AFTER) throw bad(`must be at least ${MIN_CANCEL_AFTER}s`);
  return Math.round(seconds * 1000);
}

export type VersionRef =
  | { kind: 'id'; id: string }
  | { kind: 'model-version'; owner: string; name: string; id: string }
  | { kind: 'model'; owner: string; name: string };

const HEX64 = /^[0-9a-f]{64}$/;
const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/** The `version` of `POST /predictions`: a 64-hex id, `owner/name:id`, or `owner/name`. */
export function parseVersionRef(v: unknown): VersionRef {
  const bad = (description: string) =>
    invalid([{ type: 'invalid', field: 'version', description }], { title: 'Invalid version' });
  if (typeof v !== 'string' || v === '')
    throw bad('version is required: a 64-character version id, owner/name:id, or owner/name');
  if (HEX64.test(v)) return { kind: 'id', id: v };
  const m = /^([^/:]+)\/([^/:]+)(?::(.+))?$/.exec(v);
  if (!m || !NAME.test(m[1]!) || !NAME.test(m[2]!))
    throw bad(`version "${v}" is not a 64-character version id, owner/name:id, or owner/name`);
  if (m[3] === undefined) return { kind: 'model', owner: m[1]!, name: m[2]! };
  if (!HEX64.test(m[3])) throw bad(`version "${v}": the part after ":" must be a 64-character hex id`);
  return { kind: 'model-version', owner: m[1]!, name: m[2]!, id: m[3] };
}

/**
 * A webhook URL and its events filter from a create body; 422 when malformed, or when the
 * URL's host is an IP address or `localhost` that `egress` refuses (a host name is checked
 * when a delivery connects).
 */
export function parseWebhook(
  webhook: unknown,
  filter: unknown,
  egress?: EgressPolicy,
): { webhook?: string; events: WebhookEvent[] } {
  const fields: InvalidField[] = [];
  let url: string | undefined;
  if (webhook !== undefined && webhook !== null && webhook !== '') {
    let u: URL | undefined;
    if (typeof webhook === 'string' && URL.canParse(webhook)) {
      const parsed = new URL(webhook);
      if (parsed.protocol === 'http:' || parsed.protocol === 'https:') u = parsed;
    }
    const refused = u && egress?.literalRefusal(u);
    if (!u) fields.push({ type: 'invalid', field: 'webhook', description: 'webhook must be an http(s) URL' });
    else if (refused)
      fields.push({
        type: 'invalid',
        field: 'webhook',
        description: `webhook may not point at a private, loopback or link-local address: ${refused}`,
      });
    else url = webhook as string;
  }
  let events: WebhookEvent[] = [...WEBHOOK_EVENTS];
  if (filter !== undefined && filter !== null) {
    if (!Array.isArray(filter) || !filter.every((f) => (WEBHOOK_EVENTS as readonly unknown[]).includes(f))) {
      fields.push({
        type: 'invalid',
        field: 'webhook_events_filter',
        description: `webhook_events_filter may hold only ${WEBHOOK_EVENTS.join(', ')}`,
      });
    } else {
      events = [...new Set(filter as WebhookEvent[])];
    }
  }
  if (fields.length) throw invalid(fields);
  return { webhook: url, events };
}
