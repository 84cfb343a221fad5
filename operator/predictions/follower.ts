/**
 * Following a prediction on the instance that took it: its sidecar's event stream (logs as
 * they come; an output event makes a read of the record for the output so far), then the
 * final record when the stream says it ended. A stream that drops while the instance still
 * runs the prediction is followed again; an instance that no longer knows it, or cannot be
 * reached any more, fails it with an error naming the instance.
 */
import { Backoff } from '../../lib/backoff.ts';
import { byteLength, jsonBytes, MAX_OUTPUT_BYTES, outputTooLarge } from '../../lib/bounded.ts';
import { type Clock, sleep } from '../../lib/clock.ts';
import { isTerminal, modelMetrics, type StreamEvent } from '../../lib/prediction.ts';
import type { Endpoint } from './endpoints.ts';
import type { Lifecycle } from './lifecycle.ts';
import type { Live } from './live.ts';
import { logTail } from './record.ts';
import type {
  FinalResult,
  GetResult,
  InstanceClient,
  InstanceEvent,
  InstancePrediction,
} from './sidecar-client.ts';

export interface FollowerOptions {
  sidecar: InstanceClient;
  clock: Clock;
  lifecycle: Lifecycle;
  /**
   * The most bytes of output (its JSON) a prediction may bring from its instance (default
   * MAX_OUTPUT_BYTES): past it the prediction fails, whatever the instance's own cap.
   */
  maxOutputBytes?: number;
}

/** Least time between two reads of a running prediction's output from its instance. */
const REFRESH_MS = 250;
/** Reads of a prediction's record after its stream broke, while the instance does not answer. */
const READ_RETRIES = 3;

const parseTime = (s: string | null | undefined): number | undefined => {
  if (!s) return undefined;
  const t = Date.parse(s);
  return Number.isFinite(t) ? t : undefined;
};

export class Follower {
  private readonly sidecar: InstanceClient;
  private readonly clock: Clock;
  private readonly lifecycle: Lifecycle;
  private readonly maxOutputBytes: number;

  constructor(opts: FollowerOptions) {
    this.sidecar = opts.sidecar;
    this.clock = opts.clock;
    this.lifecycle = opts.lifecycle;
    this.maxOutputBytes = opts.maxOutputBytes ?? MAX_OUTPUT_BYTES;
  }

  /**
   * Fails the prediction when an output of `bytes` bytes is past the cap (and asks its
   * instance to cancel it): true when it did.
   */
  private outputOverflow(live: Live, bytes: number): boolean {
    if (bytes <= this.maxOutputBytes) return false;
    live.items = [];
    live.rec.output = null;
    const ep = live.endpoint;
    this.lifecycle.finish(live, 'failed', outputTooLarge(bytes, this.maxOutputBytes));
    if (ep) void this.sidecar.cancel(ep.url, live.rec.id).catch(() => undefined);
    return true;
  }

  /**
   * Follows a prediction through the event stream its create answered with: ends it with the
   * final record that closes the stream, or, when the stream broke first, follows it as
   * `follow` does (from the last event it brought).
   */
  async followCreated(live: Live, ep: Endpoint, final: Promise<FinalResult>): Promise<void> {
    const r = await final;
    if (isTerminal(live.rec.status) || live.abort.signal.aborted) return;
    if (r.kind === 'final' && isTerminal(r.body.status)) {
      this.complete(live, r.body);
      return;
    }
    await this.follow(live, ep);
  }

  /** A `logs` or `output` event of the create's stream. */
  onCreateEvent(live: Live, e: InstanceEvent): void {
    const rec = live.rec;
    if (e.id <= live.sidecarEventId || isTerminal(rec.status)) return;
    live.sidecarEventId = e.id;
    this.lifecycle.markProcessing(live);
    if (e.event === 'logs') {
      rec.logs = logTail(rec.logs + e.data);
      this.lifecycle.emit(live, 'logs', e.data);
      this.lifecycle.changed(rec);
      this.lifecycle.notify(rec, 'logs');
      return;
    }
    // The output while it runs is the items so far (the final record brings the output).
    live.outputBytes += byteLength(e.data);
    if (this.outputOverflow(live, live.outputBytes)) return;
    live.items.push(e.value);
    rec.output = live.items;
    this.lifecycle.emit(live, 'output', e.data);
    this.lifecycle.changed(rec);
    this.lifecycle.notify(rec, 'output');
  }

  /** Follows the prediction on `ep` until it ends (or the engine stops following it). */
  async follow(live: Live, ep: Endpoint): Promise<void> {
    const rec = live.rec;
    const signal = live.abort.signal;
    // Between two streams of the same prediction: 100 ms doubling to 1 s.
    const again = new Backoff(100, 1000);
    while (!isTerminal(rec.status) && !signal.aborted) {
      let dropped = '';
      try {
        await this.sidecar.stream(ep.url, rec.id, live.sidecarEventId, (e) => this.onEvent(live, e), signal);
      } catch (err) {
        dropped = (err as Error).message;
      }
      if (isTerminal(rec.status) || signal.aborted) return;
      const got = await this.readWithRetry(ep, rec.id);
      if (isTerminal(rec.status)) return;
      switch (got.kind) {
        case 'ok':
          if (isTerminal(got.body.status)) {
            this.complete(live, got.body);
            return;
          }
          this.applySnapshot(live, got.body);
          // The stream ended or dropped while the instance still runs it: follow again.
          await sleep(again.next(), signal, this.clock);
          break;
        case 'not-found':
          this.lifecycle.finish(
            live,
            'failed',
            `instance ${ep.id} no longer knows the prediction (it restarted while running it)`,
          );
          return;
        case 'unreachable':
          this.lifecycle.finish(
            live,
            'failed',
            `instance ${ep.id} (${ep.url}) went away while running the prediction: ${got.error}${dropped ? `; its event stream broke: ${dropped}` : ''}`,
          );
          return;
        case 'error':
          this.lifecycle.finish(
            live,
            'failed',
            `instance ${ep.id} answered ${got.status} for the prediction: ${got.detail}`,
          );
          return;
      }
    }
  }

  /** Folds a non-final record from the instance into ours. */
  applySnapshot(live: Live, body: InstancePrediction): void {
    const rec = live.rec;
    if (isTerminal(rec.status)) return;
    if (body.status === 'processing') this.lifecycle.markProcessing(live, parseTime(body.started_at));
    if (body.output !== undefined && body.output !== null && !isTerminal(body.status)) {
      if (this.outputOverflow(live, jsonBytes(body.output))) return;
      const changed = JSON.stringify(body.output) !== JSON.stringify(rec.output);
      rec.output = body.output;
      if (changed) {
        this.lifecycle.notify(rec, 'output');
        this.lifecycle.changed(rec);
      }
    }
    if (typeof body.logs === 'string' && body.logs.length > rec.logs.length) rec.logs = logTail(body.logs);
  }

  /** Ends the prediction with the instance's final record. */
  complete(live: Live, body: InstancePrediction): void {
    if (!isTerminal(body.status)) return;
    const rec = live.rec;
    // Started and ended between two looks: it did start (its `start` webhook goes out).
    if (rec.status === 'starting' && body.started_at)
      this.lifecycle.markProcessing(live, parseTime(body.started_at));
    if (this.outputOverflow(live, jsonBytes(body.output))) return;
    rec.output = body.output ?? null;
    if (typeof body.logs === 'string') rec.logs = logTail(body.logs);
    rec.startedAt = parseTime(body.started_at) ?? rec.startedAt;
    if (typeof body.metrics?.predict_time === 'number') rec.predictTime = body.metrics.predict_time;
    if (typeof body.cost === 'string') rec.cost = body.cost;
    const recorded = modelMetrics(body.metrics);
    if (recorded) rec.metrics = recorded;
    this.lifecycle.finish(
      live,
      body.status,
      body.status === 'failed' ? (body.error ?? 'prediction failed') : null,
    );
  }

  /** Reads the prediction from its instance, trying again over ~1.5 s while it is unreachable. */
  private async readWithRetry(ep: Endpoint, id: string): Promise<GetResult> {
    const backoff = new Backoff(200, 800);
    let got = await this.sidecar.get(ep.url, id);
    for (let i = 0; i < READ_RETRIES && got.kind === 'unreachable'; i++) {
      await sleep(backoff.next(), undefined, this.clock);
      got = await this.sidecar.get(ep.url, id);
    }
    return got;
  }

  private onEvent(live: Live, e: StreamEvent): void {
    if (e.id <= live.sidecarEventId || isTerminal(live.rec.status)) return;
    live.sidecarEventId = e.id;
    const rec = live.rec;
    if (e.event === 'logs') {
      this.lifecycle.markProcessing(live);
      rec.logs = logTail(rec.logs + e.data);
      this.lifecycle.emit(live, 'logs', e.data);
      this.lifecycle.changed(rec);
      this.lifecycle.notify(rec, 'logs');
    } else if (e.event === 'output') {
      this.lifecycle.markProcessing(live);
      live.outputBytes += byteLength(e.data);
      if (this.outputOverflow(live, live.outputBytes)) return;
      this.lifecycle.emit(live, 'output', e.data);
      this.refresh(live);
    } else {
      // `done` or `error`: their details come with the final record, read when the stream ends.
      live.sidecarEnded = true;
    }
  }

  /**
   * Reads the instance's record for the output so far: one read at a time, at most every
   * REFRESH_MS (a model streaming tokens sends many output events a second). The read waits
   * for the events that arrived with the output event: when the stream ends the prediction
   * there (a model that returns one value sends its output just before `done`), the final
   * record brings the output and no read is made for it.
   */
  private refresh(live: Live): void {
    if (live.refreshing) {
      live.refreshAgain = true;
      return;
    }
    const ep = live.endpoint;
    if (!ep || live.sidecarEnded) return;
    live.refreshing = true;
    void (async () => {
      try {
        await new Promise((r) => setImmediate(r));
        if (live.sidecarEnded) return;
        do {
          live.refreshAgain = false;
          const started = this.clock.mono();
          const got = await this.sidecar.get(ep.url, live.rec.id);
          if (got.kind === 'ok' && !isTerminal(got.body.status)) this.applySnapshot(live, got.body);
          const pause = REFRESH_MS - (this.clock.mono() - started);
          if (live.refreshAgain && pause > 0) await sleep(pause, undefined, this.clock);
        } while (live.refreshAgain && !isTerminal(live.rec.status) && !live.sidecarEnded);
      } finally {
        live.refreshing = false;
      }
    })();
  }
}
