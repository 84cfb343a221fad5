import type { Logger } from 'pino';

/** What the store logs through (a pino logger, or a child of one). */
export type StoreLog = Pick<Logger, 'info' | 'warn' | 'error'>;
