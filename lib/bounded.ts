/**
 * Logs and output held in memory, bounded in bytes (UTF-8): logs keep their last bytes behind
 * a marker line saying how many were dropped; output is measured as the JSON it is sent as.
 */

/** The marker line that starts logs whose earlier bytes were dropped. */
const MARKER = /^\[… (\d+) bytes of earlier logs dropped …\]\n/;

export function dropMarker(bytes: number): string {
  return `[… ${bytes} bytes of earlier logs dropped …]\n`;
}

/** Bytes of `s` in UTF-8. */
export function byteLength(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

/**
 * `logs` cut to at most `max` bytes of text after the marker: its last bytes (from the start of
 * a line when one begins in the last quarter, else from a character boundary), behind a marker
 * line counting every byte dropped so far (a marker already at its start is counted in).
 */
export function boundLogs(logs: string, max: number): string {
  if (logs.length * 3 <= max) return logs; // at most 3 UTF-8 bytes per UTF-16 unit
  const m = MARKER.exec(logs);
  const before = m ? Number(m[1]) : 0;
  const text = m ? logs.slice(m[0].length) : logs;
  const buf = Buffer.from(text, 'utf8');
  if (buf.length <= max) return logs;
  let start = buf.length - max;
  // Not in the middle of a UTF-8 sequence.
  while (start < buf.length && (buf[start]! & 0xc0) === 0x80) start++;
  const nl = buf[start - 1] === 0x0a ? -1 : buf.indexOf(0x0a, start);
  if (nl >= 0 && nl + 1 < buf.length && nl + 1 - start <= max / 4) start = nl + 1;
  return dropMarker(before + start) + buf.subarray(start).toString('utf8');
}

/** Bytes of `value` as JSON (0 for undefined; Infinity when it cannot be serialised). */
export function jsonBytes(value: unknown): number {
  if (value === undefined) return 0;
  try {
    const s = JSON.stringify(value);
    return s === undefined ? 0 : byteLength(s);
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}

/** `n` bytes for people: `16 MiB`, `1.5 KiB`, `12 bytes`. */
export function formatBytes(n: number): string {
  if (n >= 1 << 20) return `${+(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${+(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} bytes`;
}

/** The most bytes of output (its JSON) a prediction keeps by default: the sidecar's and the operator's. */
export const MAX_OUTPUT_BYTES = 16 << 20;

/** The error of a prediction whose output went past the cap. */
export function outputTooLarge(bytes: number, max: number): string {
  return `the output is larger than this deployment keeps (${bytes === Number.POSITIVE_INFINITY ? 'not serialisable' : formatBytes(bytes)}, more than ${formatBytes(max)}; --max-output-bytes)`;
}
