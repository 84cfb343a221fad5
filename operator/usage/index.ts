/** Usage: the collector that records what every instance spent its time on (collector.ts). */
import { caches } from '../controllers/caches.ts';
import type { UsageStore } from '../predictions/usage-store.ts';
import type { Manager } from '../runtime/index.ts';
import { UsageCollector, type UsageCollectorOptions } from './collector.ts';

export {
  type SidecarStatus,
  sampleOf,
  sidecarStatusUrl,
  USAGE_FIELD_MANAGER,
  UsageCollector,
} from './collector.ts';

/** Runs the usage collector on the Lease holder. */
export function addUsageCollector(
  manager: Manager,
  usage: () => UsageStore | undefined,
  setup: Pick<
    UsageCollectorOptions,
    'intervalMs' | 'terminatingIntervalMs' | 'statusIntervalMs' | 'authorization'
  > = {},
): UsageCollector {
  const collector = new UsageCollector({
    client: manager.leaderClient,
    caches: caches(manager),
    usage,
    registry: manager.metrics.registry,
    log: manager.log,
    ...setup,
  });
  manager.addLeaderRunnable({ name: 'usage', run: (signal) => collector.run(signal) });
  return collector;
}
