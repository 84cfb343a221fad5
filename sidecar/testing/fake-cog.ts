/**
 * A sidecar for unit tests: a fake model server (a `CogClient` the test drives) and a
 * `FakeClock`, so the whole lifecycle runs with no Python, no sockets and no real timers.
 */
import pino from 'pino';
import { FakeClock } from '../../lib/clock.ts';
import type { CogClient, CogHealth, CreateResult } from '../cog-client.ts';
import type { CogPayload } from '../cog-webhooks.ts';
import { parseConfig, type SidecarConfig } from '../config.ts';
import { Sidecar } from '../sidecar.ts';

/** What a create of the fake answers: a result, an error it throws, or `hold` (no answer until `answer`). */
export type FakeAnswer = CreateResult | Error | 'hold';

/** A model server the test drives: its health, its answers to creates, and its webhooks. */
export class FakeCog implements CogClient {
  /** What the next health checks answer. */
  state: CogHealth = { status: 'READY', setup: { started_at: '2026-01-01T00:00:00.000000+00:00', logs: '' } };
  /** When set, health checks throw it (the model server cannot be reached). */
  unreachable: Error | undefined;
  /** The OpenAPI document it serves. */
  schema: unknown;
  /** Answers to the next creates, in order; then async creates are accepted and held ones wait. */
  readonly answers: FakeAnswer[] = [];
  readonly creates: Array<{ id: string; input: unknown; webhook: string | undefined }> = [];
  readonly cancels: string[] = [];
  healthChecks = 0;
  shutdowns = 0;
  closed = false;
  /** Where its webhooks go (the sidecar's listener would pass them on). */
  deliver: (id: string, payload: CogPayload) => void = () => {};
  private readonly held = new Map<string, (r: CreateResult) => void>();

  async health(): Promise<CogHealth> {
    this.healthChecks++;
    if (this.unreachable) throw this.unreachable;
    return structuredClone(this.state);
  }

  async openapi(): Promise<unknown> {
    return this.schema;
  }

  create(id: string, input: unknown, webhook: string | undefined): Promise<CreateResult> {
    this.creates.push({ id, input, webhook });
    const next = this.answers.shift();
    if (next instanceof Error) return Promise.reject(next);
    if (next === 'hold' || (next === undefined && !webhook)) {
      return new Promise((resolveCreate) => this.held.set(id, resolveCreate));
    }
    return Promise.resolve(next ?? { kind: 'accepted', body: { id, status: 'starting' } });
  }

  /** Answers the held create of `id`. */
  answer(id: string, result: CreateResult): void {
    const resolveCreate = this.held.get(id);
    if (!resolveCreate) throw new Error(`no held create of ${id}`);
    this.held.delete(id);
    resolveCreate(result);
  }

  /** Sends the webhook of prediction `id` with `payload`. */
  send(id: string, payload: CogPayload): void {
    this.deliver(id, { id, ...payload });
  }

  /** Ids of the predictions created, in order. */
  get created(): string[] {
    return this.creates.map((c) => c.id);
  }

  async cancel(id: string): Promise<boolean> {
    this.cancels.push(id);
    return true;
  }

  async shutdown(): Promise<void> {
    this.shutdowns++;
  }

  close(): void {
    this.closed = true;
  }
}

export interface UnitSidecar {
  sidecar: Sidecar;
  cog: FakeCog;
  clock: FakeClock;
  config: SidecarConfig;
  /** The sidecar's log lines, parsed. */
  logs: Array<Record<string, unknown> & { msg: string }>;
  /** Lets every promise that can settle now settle. */
  flush(): Promise<void>;
  /** Moves the clock `ms` forward in steps of `step` ms, settling promises after each. */
  run(ms: number, step?: number): Promise<void>;
}

/** 2026-01-01T00:00:00Z: the fake clock's start, and the timestamps' origin. */
export const T0 = Date.parse('2026-01-01T00:00:00Z');

/**
 * A sidecar on a fake clock in front of a `FakeCog`, watching it (not listening on any
 * port). By default the model server is ready and the sidecar has seen it.
 */
export async function unitSidecar(
  overrides: Partial<SidecarConfig> = {},
  { ready = true }: { ready?: boolean } = {},
): Promise<UnitSidecar> {
  const base = parseConfig([], {});
  if (base === 'help') throw new Error('unreachable');
  const config: SidecarConfig = {
    ...base,
    uploadPort: 0,
    healthInterval: 0.5,
    deployment: 'test-deployment',
    version: 'test-version',
    hardware: 'gpu-t4',
    pricePerSecond: '0.000225',
    ...overrides,
  };
  const clock = new FakeClock(T0);
  const cog = new FakeCog();
  if (!ready) cog.state = { status: 'STARTING', setup: { logs: '' } };
  const logs: UnitSidecar['logs'] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line)) });
  const sidecar = new Sidecar(config, { clock, cog, logger });
  cog.deliver = (id, payload) => sidecar.onCogPayload(id, payload);
  const flush = async () => {
    for (let i = 0; i < 100; i++) await Promise.resolve();
  };
  const run = async (ms: number, step = 100) => {
    for (let left = ms; left > 0; left -= step) {
      clock.advance(Math.min(step, left));
      await flush();
    }
  };
  sidecar.watch();
  clock.advance(0);
  await flush();
  return { sidecar, cog, clock, config, logs, flush, run };
}
