/**
 * For bench/activation: watches the Pods of one modelplane Deployment and prints, for each
 * pod, one JSON line the moment the update that shows it Ready reaches this process:
 * `{"uid", "name", "url", "at"}` (`at`: epoch ms; `url`: its sidecar's API). It runs as a
 * process of its own, idle but for the watch, so its stamp is not delayed by the pod runner
 * and the load generator in the bench's process.
 *
 * Usage: node bench/ready-watch.ts KUBECONFIG NAMESPACE DEPLOYMENT
 */
import { CONDITION, LABEL } from '../crds/index.ts';
import { PodResource, podEndpoint } from '../operator/predictions/endpoints.ts';
import { clientOf } from './pods.ts';

const [kubeconfig, namespace, name] = process.argv.slice(2);
if (!kubeconfig || !namespace || !name)
  throw new Error('usage: ready-watch.ts KUBECONFIG NAMESPACE DEPLOYMENT');
const seen = new Set<string>();
const watch = clientOf(kubeconfig).watch(
  PodResource,
  { namespace, labelSelector: `${LABEL.deployment}=${name}` },
  (ev) => {
    const at = Date.now();
    const pod = ev.object;
    const uid = pod.metadata?.uid ?? '';
    const ep = podEndpoint(pod);
    const ready = pod.status?.conditions?.some((c) => c.type === CONDITION.Ready && c.status === 'True');
    const line = {
      uid,
      name: pod.metadata?.name,
      url: ep?.url,
      at,
      type: ev.type,
      ready: Boolean(ready && ep),
    };
    if (ev.type === 'DELETED' || !seen.has(uid) || (line.ready && !seen.has(`${uid}/ready`))) {
      seen.add(uid);
      if (line.ready) seen.add(`${uid}/ready`);
      process.stdout.write(`${JSON.stringify(line)}\n`);
    }
  },
);
process.on('SIGTERM', () => process.exit(0));
await watch.done;
