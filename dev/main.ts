/**
 * `modelplane dev`: runs modelplane on this machine (see dev.ts) until Ctrl-C, then stops
 * everything it started.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { banner, startDev } from './dev.ts';

export const USAGE = `Usage: modelplane dev [flags]

Starts a local Kubernetes control plane with GPU node pools (kwok A100 and H100 nodes, and
a T4 and a CPU node whose pods run here as processes), the modelplane operator with its
gateway, and the example models echo, embed and upscale; prints the gateway URL, an API token and how
to call the models. The operator keeps predictions in its embedded store (--store-dir); when
it exits unexpectedly it is restarted, as a kubelet would, and carries on with them. Ctrl-C
stops everything. Missing builds (the control plane from Go modules, the Python environment
of the models) are made on the first run.

Flags:
  --namespace NS     namespace of the example models and of the API token (default default)
  --port PORT        gateway port on 127.0.0.1 (default 8000)
  --models-dir DIR   also serve the Cog predictors in DIR/<name>/ as modelplane.local/<name>
                     (repeatable)
  -f, --filename F   apply these manifests instead of examples/dev/*.yaml (repeatable)
  --store-dir DIR    the operator's prediction store (default .modelplane/dev/store in the
                     checkout; one modelplane dev at a time may use a directory)
  -h, --help         show this help
`;

export async function run(argv: string[]): Promise<number> {
  let values: {
    namespace?: string;
    port?: string;
    'models-dir'?: string[];
    filename?: string[];
    'store-dir'?: string;
    help?: boolean;
  };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        namespace: { type: 'string' },
        port: { type: 'string' },
        'models-dir': { type: 'string', multiple: true },
        filename: { type: 'string', short: 'f', multiple: true },
        'store-dir': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`modelplane dev: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const port = values.port === undefined ? 8000 : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write(`modelplane dev: --port: want a port number, got "${values.port}"\n`);
    return 2;
  }
  const started = Date.now();
  const log = (line: string) =>
    process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s] ${line}\n`);
  const abort = new AbortController();
  const onSignal = () => {
    if (abort.signal.aborted) return;
    log('stopping everything');
    abort.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const stopped = new Promise<void>((resolve) => abort.signal.addEventListener('abort', () => resolve()));
  let dev: Awaited<ReturnType<typeof startDev>>;
  try {
    dev = await startDev({
      namespace: values.namespace,
      gatewayPort: port,
      modelsDirs: values['models-dir'],
      examples: values.filename,
      storeDir: values['store-dir'] === undefined ? undefined : resolve(values['store-dir']),
      signal: abort.signal,
      log,
    });
  } catch (err) {
    // startDev has stopped whatever it had started.
    if (abort.signal.aborted) {
      log('stopped');
      return 130;
    }
    log(`failed: ${(err as Error).message}`);
    return 1;
  }
  log(`ready in ${((Date.now() - started) / 1000).toFixed(1)}s`);
  process.stdout.write(banner(dev));
  await stopped;
  await dev.stop();
  log('stopped');
  // Everything started is stopped; leftover client timers (watch restarts, keep-alives) must
  // not hold the terminal.
  process.exit(0);
}
