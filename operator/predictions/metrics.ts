/**
 * The prediction engine's metrics, on the operator's registry. Their names keep the
 * `modelplane_gateway_` prefix they were published under (docs/gateway.md).
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface EngineMetrics {
  queueDepth: Gauge<'deployment'>;
  predictions: Counter<'deployment' | 'status'>;
  held: Histogram<'deployment'>;
  duration: Histogram<'deployment' | 'status'>;
  webhookAttempts: Counter<'event' | 'result'>;
}

const HELD_BUCKETS = [0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];

function existing<T>(registry: Registry, name: string): T | undefined {
  return registry.getSingleMetric(name) as T | undefined;
}

export function engineMetrics(registry: Registry): EngineMetrics {
  const registers = [registry];
  return {
    queueDepth:
      existing(registry, 'modelplane_gateway_queue_depth') ??
      new Gauge({
        name: 'modelplane_gateway_queue_depth',
        help: 'Predictions waiting in this gateway for an instance of the deployment (namespace/name)',
        labelNames: ['deployment'],
        registers,
      }),
    predictions:
      existing(registry, 'modelplane_gateway_predictions_total') ??
      new Counter({
        name: 'modelplane_gateway_predictions_total',
        help: 'Predictions that ended, by deployment (namespace/name) and final status',
        labelNames: ['deployment', 'status'],
        registers,
      }),
    held:
      existing(registry, 'modelplane_gateway_hold_seconds') ??
      new Histogram({
        name: 'modelplane_gateway_hold_seconds',
        help: 'Seconds predictions waited in the gateway before an instance took them',
        labelNames: ['deployment'],
        buckets: HELD_BUCKETS,
        registers,
      }),
    duration:
      existing(registry, 'modelplane_gateway_prediction_duration_seconds') ??
      new Histogram({
        name: 'modelplane_gateway_prediction_duration_seconds',
        help: 'Seconds from creation to end of the predictions that ended, by deployment (namespace/name) and final status: the latency callers see',
        labelNames: ['deployment', 'status'],
        buckets: HELD_BUCKETS,
        registers,
      }),
    webhookAttempts:
      existing(registry, 'modelplane_webhook_attempts_total') ??
      new Counter({
        name: 'modelplane_webhook_attempts_total',
        help: 'Webhook delivery attempts by event and result: delivered, failed (an error or a non-2xx answer), refused (the target address is not allowed) or unserialisable (the body could not be written as JSON)',
        labelNames: ['event', 'result'],
        registers,
      }),
  };
}
