/** Shared by the controllers' cluster tests: objects to apply and an in-process operator. */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import type { OperatorConfig } from '../config.ts';
import { createOperator, type Operator, type OperatorParts } from '../main.ts';
import { Deployments, HardwareClasses, Models, ModelVersions, Pods, Workloads } from '../resources.ts';
import { KubeClient, type KubeObject, type Manager } from '../runtime/index.ts';

export const TEST_MANAGER = 'modelplane-test';

export function clientFor(kubeconfig: string): KubeClient {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  return new KubeClient(kc);
}

/** The default HardwareClasses of examples/hardware-classes.yaml, applied. */
export async function applyDefaultHardware(client: KubeClient): Promise<void> {
  const text = readFileSync(new URL('../../examples/hardware-classes.yaml', import.meta.url), 'utf8');
  for (const doc of parseAllDocuments(text)) {
    const obj = doc.toJS() as KubeObject | null;
    if (obj) await client.apply(HardwareClasses, obj as never, { fieldManager: TEST_MANAGER });
  }
}

/** A Model, a version of it and a Deployment of that version, as a user would write them. */
export async function applyModel(
  client: KubeClient,
  namespace: string,
  name: string,
  opts: { hardware: string; minInstances?: number; maxInstances?: number; version?: string; image?: string },
): Promise<void> {
  const version = opts.version ?? `${name}-v1`;
  await client.apply(
    Models,
    { apiVersion: Models.apiVersion, kind: Models.kind, metadata: { name, namespace }, spec: {} } as never,
    { fieldManager: TEST_MANAGER },
  );
  await applyVersion(client, namespace, name, version, opts.image);
  await client.apply(
    Deployments,
    {
      apiVersion: Deployments.apiVersion,
      kind: Deployments.kind,
      metadata: { name, namespace },
      spec: {
        model: name,
        version,
        hardware: opts.hardware,
        minInstances: opts.minInstances ?? 1,
        maxInstances: Math.max(opts.maxInstances ?? 1, opts.minInstances ?? 1),
      },
    } as never,
    { fieldManager: TEST_MANAGER },
  );
}

export async function applyVersion(
  client: KubeClient,
  namespace: string,
  model: string,
  name: string,
  image = 'registry.example.com/models/echo:1.0',
): Promise<void> {
  await client.apply(
    ModelVersions,
    {
      apiVersion: ModelVersions.apiVersion,
      kind: ModelVersions.kind,
      metadata: { name, namespace },
      spec: { model, image, predictTimeoutSeconds: 5 },
    } as never,
    { fieldManager: TEST_MANAGER },
  );
}

export async function workloadsOf(client: KubeClient, namespace: string, name?: string) {
  const { items } = await client.list(Workloads, {
    namespace,
    labelSelector: name ? `modelplane.dev/deployment=${name}` : 'modelplane.dev/deployment',
  });
  return items;
}

export async function podsOf(client: KubeClient, namespace: string, name: string) {
  const { items } = await client.list(Pods, {
    namespace,
    labelSelector: `modelplane.dev/deployment=${name}`,
  });
  return items.filter((p) => !p.metadata?.deletionTimestamp);
}

export function operatorConfig(overrides: Partial<OperatorConfig> = {}): OperatorConfig {
  return {
    kubeconfig: undefined,
    roles: ['controllers'],
    leaderElect: false,
    leaseName: 'modelplane-operator',
    leaseNamespace: 'default',
    leaseDurationMs: 15_000,
    renewDeadlineMs: 10_000,
    retryPeriodMs: 2_000,
    http: false,
    logLevel: process.env.LOG_LEVEL ?? 'warn',
    sidecarImage: 'registry.example.com/modelplane:test',
    workers: 4,
    resyncPeriodMs: 600_000,
    identity: undefined,
    shutdownTimeoutMs: 5_000,
    autoscalerTickMs: 1_000,
    podDeletionCost: false,
    autoscalerPeers: false,
    // Tests in one process start several operators: each keeps its predictions in memory
    // unless the test gives it a store.
    store: {
      kind: 'memory',
      dir: '',
      databaseUrl: undefined,
      streamKeyFile: undefined,
      dataRetentionMs: 3_600_000,
      recordRetentionMs: 86_400_000,
      usageRetentionMs: 400 * 86_400_000,
    },
    // Files in a fresh directory of the test's own.
    files: {
      kind: 'directory',
      dir: mkdtempSync(join(tmpdir(), 'mp-files-')),
      s3: { endpoint: undefined, region: 'us-east-1', bucket: '', prefix: '' },
      maxBytes: 100 * 1024 * 1024,
      uploadTtlMs: 86_400_000,
      internalUrl: undefined,
    },
    gateway: {
      address: { host: '127.0.0.1', port: 0 },
      publicUrl: undefined,
      trustForwardedHeaders: false,
      tokenNamespace: 'default',
      allowAnonymous: [],
      tokenReviewAudiences: [],
      // Webhook receivers in tests listen on loopback.
      webhookAllowCidrs: ['127.0.0.0/8', '::1'],
      inputBudget: { perDeploymentBytes: 256 * 2 ** 20, perReplicaBytes: 2 ** 30 },
      maxOutputBytes: 16 * 2 ** 20,
    },
    webhook: {
      address: { host: '127.0.0.1', port: 0 },
      configurationName: 'modelplane',
      certSecret: 'modelplane-webhook-cert',
      certNamespace: 'default',
      certNames: ['127.0.0.1'],
      certDir: undefined,
    },
    ...overrides,
  };
}

/** An operator in this process, started. */
export async function startOperator(
  kubeconfig: string,
  overrides: Partial<OperatorConfig> = {},
  parts: OperatorParts = {},
): Promise<Operator> {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  const operator = createOperator(operatorConfig(overrides), kc, parts);
  await operator.start();
  return operator;
}

/** Reconciles counted by the manager's metrics, per controller. */
export async function reconciles(manager: Manager, controller: string): Promise<number> {
  const { values } = await manager.metrics.reconcileTotal.get();
  return values.filter((v) => v.labels.controller === controller).reduce((s, v) => s + v.value, 0);
}
