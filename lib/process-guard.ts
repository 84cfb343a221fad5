/**
 * Process-level handlers of `modelplane operator` and `modelplane sidecar`, the last line of
 * defence behind catching every promise where it is made:
 *
 * - an **unhandled rejection** is logged with its error and counted in
 *   `<prefix>_unhandled_rejections_total`, and the process keeps serving. A rejected promise
 *   nobody awaited is a bug in one piece of background work (a delivery, a reconcile); the
 *   state the process shares with others is left as it was, so ending every prediction under
 *   way, the gateway and the controllers for it would do more harm than the bug. The counter
 *   is there to alert on.
 * - an **uncaught exception** is logged and the process exits with status 1: a throw that
 *   unwound to the event loop may have left any state half changed, and a restart (by
 *   Kubernetes, or `modelplane dev`) is the safe way back.
 */
import { Counter, type Registry } from 'prom-client';

export interface GuardLog {
  error(obj: object, msg: string): void;
  fatal(obj: object, msg: string): void;
}

export interface GuardOptions {
  log: GuardLog;
  /** Where the counter goes (its name is `<prefix>_unhandled_rejections_total`). */
  registry: Registry;
  prefix: string;
  /** Ends the process (default `process.exit`). */
  exit?: (code: number) => void;
  /** The process whose events are handled (default `process`). */
  proc?: Pick<NodeJS.Process, 'on' | 'off'>;
}

/** Installs the handlers; returns a function that removes them. */
export function guardProcess(opts: GuardOptions): () => void {
  const name = `${opts.prefix}_unhandled_rejections_total`;
  const rejections =
    (opts.registry.getSingleMetric(name) as Counter | undefined) ??
    new Counter({
      name,
      help: 'Promise rejections nothing handled: each is a bug, logged with its error; the process keeps serving',
      registers: [opts.registry],
    });
  const exit = opts.exit ?? ((code: number) => process.exit(code));
  const proc = opts.proc ?? process;
  const onRejection = (reason: unknown) => {
    rejections.inc();
    opts.log.error({ err: reason }, 'unhandled promise rejection (a bug); serving on');
  };
  const onException = (err: Error) => {
    try {
      opts.log.fatal({ err }, 'uncaught exception: exiting, as the state it left is unknown');
    } finally {
      exit(1);
    }
  };
  proc.on('unhandledRejection', onRejection);
  proc.on('uncaughtException', onException);
  return () => {
    proc.off('unhandledRejection', onRejection);
    proc.off('uncaughtException', onException);
  };
}
