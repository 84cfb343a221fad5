/**
 * Logs: pino, one JSON object per line on stdout. Values under secret-like keys are
 * replaced by `[Redacted]` at any depth up to four levels (`token`, `{ auth: { token } }`, ...).
 */
import { type DestinationStream, type Logger, pino } from 'pino';

export type { Logger } from 'pino';

const SECRET_KEYS = ['authorization', 'Authorization', 'token', 'password', 'secret', 'apiKey'];

export const REDACTED_PATHS = SECRET_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`, `*.*.*.${k}`]);

export interface LogOptions {
  /** pino level (default: $LOG_LEVEL, else `info`). */
  level?: string;
  /** Where lines go (default stdout); tests pass a stream to read them. */
  destination?: DestinationStream;
}

export function createLogger(opts: LogOptions = {}): Logger {
  return pino(
    {
      level: opts.level ?? process.env.LOG_LEVEL ?? 'info',
      redact: { paths: REDACTED_PATHS },
      // `level: "info"` rather than pino's numbers, for people and log pipelines alike.
      formatters: { level: (label) => ({ level: label }) },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    opts.destination,
  );
}

/** A logger that writes nothing, for code run without one. */
export const silentLogger: Logger = pino({ level: 'silent' });
