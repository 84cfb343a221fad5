/**
 * Pages of a list as the prediction API returns them: `{previous, next, results}`, where
 * `next` and `previous` are absolute URLs (the npm client mangles relative ones) carrying an
 * opaque `cursor` query parameter.
 *
 * A cursor names the sort key of the item a page starts after (or ends before), not an
 * offset, so items added or removed between two requests neither repeat nor vanish from the
 * pages that follow.
 */
import { HttpError } from '../../lib/http.ts';

export interface Page<T> {
  previous: string | null;
  next: string | null;
  results: T[];
}

export interface PageOptions<T> {
  /** The request's absolute URL (its other query parameters are kept in next/previous). */
  url: URL;
  /** A unique, stable sort key per item (e.g. `${created_at}/${id}`). */
  key: (item: T) => string;
  /** `desc` lists the greatest key first (newest first when keys start with a timestamp). */
  order?: 'asc' | 'desc';
  /** Items per page (default 100). */
  pageSize?: number;
}

export const DEFAULT_PAGE_SIZE = 100;
export const CURSOR_PARAM = 'cursor';

interface Cursor {
  /** `a`: the page starts after key `k`; `b`: the page ends before it. */
  d: 'a' | 'b';
  k: string;
}

export function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify(c), 'utf8').toString('base64url');
}

/** The cursor of a request, undefined without one; a malformed one is a 400. */
export function decodeCursor(raw: string | null): Cursor | undefined {
  if (raw === null || raw === '') return undefined;
  try {
    const c = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as Partial<Cursor>;
    if ((c.d === 'a' || c.d === 'b') && typeof c.k === 'string') return { d: c.d, k: c.k };
  } catch {}
  throw new HttpError(400, 'Invalid cursor', 'the cursor parameter is not one this API returned');
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** One page of `items` (in any order: they are sorted here) for the request at `opts.url`. */
export function paginate<T>(items: readonly T[], opts: PageOptions<T>): Page<T> {
  const size = opts.pageSize ?? DEFAULT_PAGE_SIZE;
  const sign = opts.order === 'asc' ? 1 : -1;
  const keyed = items.map((item) => ({ item, key: opts.key(item) }));
  keyed.sort((x, y) => sign * compare(x.key, y.key));
  // "before/after" below are in list order.
  const after = (k: string, c: string) => sign * compare(k, c) > 0;
  const cursor = decodeCursor(opts.url.searchParams.get(CURSOR_PARAM));
  let start = 0;
  let end = Math.min(size, keyed.length);
  if (cursor?.d === 'a') {
    start = keyed.findIndex((x) => after(x.key, cursor.k));
    if (start < 0) start = keyed.length;
    end = Math.min(start + size, keyed.length);
  } else if (cursor?.d === 'b') {
    end = keyed.findIndex((x) => !after(cursor.k, x.key));
    if (end < 0) end = keyed.length;
    start = Math.max(0, end - size);
  }
  const page = keyed.slice(start, end);
  const link = (c: Cursor) => {
    const u = new URL(opts.url);
    u.searchParams.set(CURSOR_PARAM, encodeCursor(c));
    return u.toString();
  };
  return {
    previous: start > 0 && page.length ? link({ d: 'b', k: page[0]!.key }) : null,
    next: end < keyed.length && page.length ? link({ d: 'a', k: page[page.length - 1]!.key }) : null,
    results: page.map((x) => x.item),
  };
}

/** Where a request asks a store-paged list to start: `cursor=<position>` pages on, `cursor=b.<position>` back. */
export interface StorePosition {
  cursor?: string;
  before?: string;
}

const BACK = 'b.';

/**
 * The position a request's `cursor` names in a list the store pages (its cursors are the
 * store's own, checked with `valid`); a malformed one is a 400.
 */
export function storePosition(url: URL, valid: (position: string) => boolean): StorePosition {
  const raw = url.searchParams.get(CURSOR_PARAM) || undefined;
  if (raw === undefined) return {};
  const back = raw.startsWith(BACK);
  const position = back ? raw.slice(BACK.length) : raw;
  if (!valid(position))
    throw new HttpError(400, 'Invalid cursor', 'the cursor parameter is not one this API returned');
  return back ? { before: position } : { cursor: position };
}

/** A page the store made, as the API answers it: absolute `next`/`previous` links. */
export function storePage<T, V>(
  url: URL,
  page: { items: T[]; next?: string | undefined; previous?: string | undefined },
  view: (item: T) => V,
): Page<V> {
  const link = (cursor: string | undefined) => {
    if (!cursor) return null;
    const u = new URL(url);
    u.searchParams.set(CURSOR_PARAM, cursor);
    return u.toString();
  };
  return {
    previous: link(page.previous && `${BACK}${page.previous}`),
    next: link(page.next),
    results: page.items.map(view),
  };
}
