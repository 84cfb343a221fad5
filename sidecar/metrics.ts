/**
 * The sidecar's Prometheus metrics, on a registry of its own. Every series carries the
 * deployment, version and hardware of the pod.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export interface MetricSources {
  /** Seconds per instance state since start. */
  instanceSeconds(): Record<string, number>;
  inflight(): number;
  queued(): number;
  ready(): boolean;
}

export class SidecarMetrics {
  readonly registry = new Registry();
  readonly predictions: Counter<'status'>;
  readonly duration: Histogram<'status'>;
  readonly billableSeconds: Counter;
  readonly cost: Counter;

  constructor(labels: { deployment: string; version: string; hardware: string }, sources: MetricSources) {
    this.registry.setDefaultLabels(labels);
    const registers = [this.registry];
    this.predictions = new Counter({
      name: 'modelplane_predictions_total',
      help: 'Predictions that ended, by final status (succeeded, failed, canceled).',
      labelNames: ['status'],
      registers,
    });
    this.duration = new Histogram({
      name: 'modelplane_prediction_duration_seconds',
      help: 'Seconds each prediction ran on the model (its billed predict_time), by final status.',
      labelNames: ['status'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800],
      registers,
    });
    new Counter({
      name: 'modelplane_instance_seconds_total',
      help: 'Seconds this instance spent in each state: setup, idle (ready, nothing running), busy (a prediction running), down (model server not ready after setup).',
      labelNames: ['state'],
      registers,
      collect() {
        this.reset();
        for (const [state, seconds] of Object.entries(sources.instanceSeconds()))
          this.inc({ state }, seconds);
      },
    });
    this.billableSeconds = new Counter({
      name: 'modelplane_billable_seconds_total',
      help: 'Seconds of model run time billed (sum of predict_time).',
      registers,
    });
    this.cost = new Counter({
      name: 'modelplane_cost_total',
      help: 'Cost of the billed seconds at the hardware price per second (exact sum in GET /status).',
      registers,
    });
    new Gauge({
      name: 'modelplane_inflight',
      help: 'Predictions the model server is running now.',
      registers,
      collect() {
        this.set(sources.inflight());
      },
    });
    new Gauge({
      name: 'modelplane_queued',
      help: 'Predictions waiting in the sidecar for a free slot.',
      registers,
      collect() {
        this.set(sources.queued());
      },
    });
    new Gauge({
      name: 'modelplane_ready',
      help: '1 when the instance takes predictions, else 0.',
      registers,
      collect() {
        this.set(sources.ready() ? 1 : 0);
      },
    });
  }
}
