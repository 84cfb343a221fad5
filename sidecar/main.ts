/** `modelplane sidecar`: runs the sidecar until SIGTERM (or SIGINT), then drains and exits. */
import { guardProcess } from '../lib/process-guard.ts';
import { ConfigError, parseConfig, USAGE } from './config.ts';
import { Sidecar } from './sidecar.ts';

export async function run(argv: string[]): Promise<number> {
  let config: ReturnType<typeof parseConfig>;
  try {
    config = parseConfig(argv, process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`modelplane sidecar: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    throw err;
  }
  if (config === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  const sidecar = new Sidecar(config);
  // An unhandled rejection is logged and counted, an uncaught exception exits 1 (lib/process-guard.ts).
  guardProcess({ log: sidecar.log, registry: sidecar.metrics.registry, prefix: 'modelplane_sidecar' });
  await sidecar.start();
  return new Promise<number>((resolveExit) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      signals++;
      if (signals > 1) {
        sidecar.log.warn({ signal }, 'second signal: exiting without finishing the drain');
        resolveExit(1);
        return;
      }
      sidecar.log.info({ signal }, 'signal received: draining');
      sidecar.drain().then(
        () => resolveExit(0),
        (err: unknown) => {
          sidecar.log.error({ err: (err as Error).message }, 'drain failed');
          resolveExit(1);
        },
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
