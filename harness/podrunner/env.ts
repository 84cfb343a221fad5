/**
 * A container's environment as the kubelet builds it: `envFrom` first, then `env` in order
 * (later wins), with `$(VAR)` references expanded and `valueFrom` read from Secrets,
 * ConfigMaps and the pod's own fields.
 */
import type { IContainer } from 'kubernetes-models/v1/Container';

export interface PodFields {
  name: string;
  namespace: string;
  uid: string;
  nodeName: string;
  podIP: string;
  hostIP: string;
  serviceAccountName?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

/** Reads a Secret's or ConfigMap's data (decoded), or undefined when it does not exist. */
export type DataLookup = (
  kind: 'Secret' | 'ConfigMap',
  name: string,
) => Promise<Record<string, string> | undefined>;

/** A container cannot be started until something exists: the kubelet's CreateContainerConfigError. */
export class EnvConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EnvConfigError';
  }
}

function fieldValue(path: string, pod: PodFields): string {
  const label = /^metadata\.labels\['(.+)'\]$/.exec(path);
  if (label) return pod.labels[label[1]!] ?? '';
  const annotation = /^metadata\.annotations\['(.+)'\]$/.exec(path);
  if (annotation) return pod.annotations[annotation[1]!] ?? '';
  switch (path) {
    case 'metadata.name':
      return pod.name;
    case 'metadata.namespace':
      return pod.namespace;
    case 'metadata.uid':
      return pod.uid;
    case 'spec.nodeName':
      return pod.nodeName;
    case 'spec.serviceAccountName':
      return pod.serviceAccountName ?? 'default';
    case 'status.podIP':
    case 'status.podIPs':
      return pod.podIP;
    case 'status.hostIP':
    case 'status.hostIPs':
      return pod.hostIP;
    default:
      throw new EnvConfigError(`unsupported fieldRef fieldPath ${path}`);
  }
}

/** Expands `$(NAME)` from `vars`; `$$(NAME)` stays literal, unknown names stay as written. */
export function expandRefs(value: string, vars: Record<string, string>): string {
  return value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (m, name: string | undefined) => {
    if (m === '$$') return '$';
    return name !== undefined && vars[name] !== undefined ? vars[name]! : m;
  });
}

export async function resolveEnv(
  container: Pick<IContainer, 'env' | 'envFrom'>,
  pod: PodFields,
  lookup: DataLookup,
): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const cache = new Map<string, Record<string, string> | undefined>();
  const read = async (kind: 'Secret' | 'ConfigMap', name: string) => {
    const k = `${kind}/${name}`;
    if (!cache.has(k)) cache.set(k, await lookup(kind, name));
    return cache.get(k);
  };
  const what = (kind: 'Secret' | 'ConfigMap') => (kind === 'Secret' ? 'secret' : 'configmap');
  for (const from of container.envFrom ?? []) {
    const ref = from.secretRef ?? from.configMapRef;
    const kind = from.secretRef ? 'Secret' : 'ConfigMap';
    if (!ref?.name) continue;
    const data = await read(kind, ref.name);
    if (!data) {
      if (ref.optional) continue;
      throw new EnvConfigError(`${what(kind)} "${ref.name}" not found`);
    }
    for (const [k, v] of Object.entries(data)) out[`${from.prefix ?? ''}${k}`] = v;
  }
  for (const e of container.env ?? []) {
    if (e.value !== undefined || !e.valueFrom) {
      out[e.name] = expandRefs(e.value ?? '', out);
      continue;
    }
    const vf = e.valueFrom;
    const keyRef = vf.secretKeyRef ?? vf.configMapKeyRef;
    if (keyRef) {
      const kind = vf.secretKeyRef ? 'Secret' : 'ConfigMap';
      const data = keyRef.name ? await read(kind, keyRef.name) : undefined;
      if (!data) {
        if (keyRef.optional) continue;
        throw new EnvConfigError(`${what(kind)} "${keyRef.name ?? ''}" not found`);
      }
      if (data[keyRef.key] === undefined) {
        if (keyRef.optional) continue;
        throw new EnvConfigError(
          `couldn't find key ${keyRef.key} in ${kind} ${pod.namespace}/${keyRef.name}`,
        );
      }
      out[e.name] = data[keyRef.key]!;
    } else if (vf.fieldRef) {
      out[e.name] = fieldValue(vf.fieldRef.fieldPath, pod);
    } else {
      throw new EnvConfigError(`env ${e.name}: resourceFieldRef is not supported by the local pod runner`);
    }
  }
  return out;
}
