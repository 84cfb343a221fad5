/**
 * Metering: each prediction that ends is priced by its version's pricing (lib/pricing.ts: by
 * default its predict_time, rounded to the microsecond, at the hardware's price per second;
 * or per unit of the metrics the model recorded), in exact decimal arithmetic, and counted; the
 * instance's time is split into setup, idle, busy and down seconds that add up to its
 * uptime. Both feed the Prometheus metrics and `GET /status`.
 */
import type { Clock } from '../lib/clock.ts';
import { add, type Decimal, format, fromNumber, parseDecimal, toNumber, zero } from '../lib/decimal.ts';
import type { TerminalStatus } from '../lib/prediction.ts';
import { type Pricing, predictionCost } from '../lib/pricing.ts';
import { type MetricSources, SidecarMetrics } from './metrics.ts';
import type { ModelState } from './model-health.ts';
import type { Prediction } from './prediction.ts';
import { StateClock } from './state-clock.ts';

export const INSTANCE_STATES = ['setup', 'idle', 'busy', 'down'] as const;
export type InstanceState = (typeof INSTANCE_STATES)[number];

export class Meter {
  readonly metrics: SidecarMetrics;
  private readonly instance: StateClock<InstanceState>;
  private readonly price: Decimal;
  private readonly pricing: Pricing | undefined;
  private billable: Decimal = zero();
  private costTotal: Decimal = zero();
  private readonly counts = { succeeded: 0, failed: 0, canceled: 0 };

  constructor(
    deps: {
      clock: Clock;
      /** Price per second, a decimal string. */
      pricePerSecond: string;
      /** How predictions are priced (the version's `spec.pricing`); hardware time when absent. */
      pricing?: Pricing | undefined;
      labels: { deployment: string; version: string; hardware: string };
    },
    sources: Omit<MetricSources, 'instanceSeconds'>,
  ) {
    const clock = deps.clock;
    this.instance = new StateClock<InstanceState>('setup', INSTANCE_STATES, () => clock.mono());
    this.price = parseDecimal(deps.pricePerSecond);
    this.pricing = deps.pricing;
    this.metrics = new SidecarMetrics(deps.labels, {
      ...sources,
      instanceSeconds: () => this.instance.seconds(),
    });
  }

  /** Prices, counts and records a prediction that has just ended (sets its `cost`). */
  charge(p: Prediction): void {
    const billed = fromNumber(p.metrics.predict_time ?? 0, 6);
    const cost = predictionCost(this.pricing, this.price, billed, p.metrics);
    p.cost = format(cost);
    this.billable = add(this.billable, billed);
    this.costTotal = add(this.costTotal, cost);
    const status = p.status as TerminalStatus;
    this.counts[status]++;
    this.metrics.predictions.inc({ status });
    this.metrics.duration.observe({ status }, toNumber(billed));
    this.metrics.billableSeconds.inc(toNumber(billed));
    this.metrics.cost.inc(toNumber(cost));
  }

  /** Moves the instance to the state that the model server's and the slots' give. */
  track(model: ModelState, busy: boolean): void {
    if (model === 'ready') this.instance.enter(busy ? 'busy' : 'idle');
    else if (model === 'waiting') this.instance.enter('setup');
    else this.instance.enter('down');
  }

  /** Stops counting instance time (the drain is done): the figures are final. */
  freeze(): void {
    this.instance.freeze();
  }

  get frozen(): boolean {
    return this.instance.frozen;
  }

  get state(): InstanceState {
    return this.instance.state;
  }

  /** Seconds per instance state since start. */
  instanceSeconds(): Record<InstanceState, number> {
    return this.instance.seconds();
  }

  uptimeSeconds(): number {
    return this.instance.elapsed();
  }

  /** Predictions ended by status, and the exact sums of billed seconds and cost. */
  totals(): { predictions: Record<TerminalStatus, number>; billable_seconds: string; cost: string } {
    return {
      predictions: { ...this.counts },
      billable_seconds: format(this.billable),
      cost: format(this.costTotal),
    };
  }
}
