import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { generatedDir } from '../crds/generate.ts';
import { repoRoot } from '../harness/cluster/paths.ts';
import { DEFAULT_PEER_SELECTOR } from '../operator/autoscaler/peers.ts';
import { ENV, parseConfig } from '../operator/config.ts';
import { webhookConfiguration } from '../webhook/index.ts';
import { chartDrift, rbacPath } from './generate.ts';
import { chartPath, kubeVersion, type Obj, readManifests, render, runHelm, templateArgs } from './testing.ts';
import { ValuesSchema } from './values.ts';

const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };

function one(objs: Obj[], kind: string, name?: string): Obj {
  const found = objs.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1) throw new Error(`want one ${kind} ${name ?? ''}, rendered ${found.length}`);
  return found[0]!;
}

function envOf(container: Obj): Record<string, unknown> {
  return Object.fromEntries(
    (container.env as Array<{ name: string; value?: string; valueFrom?: unknown }>).map((e) => [
      e.name,
      e.value ?? e.valueFrom,
    ]),
  );
}

function selectorPairs(selector: string): Record<string, string> {
  return Object.fromEntries(selector.split(',').map((p) => p.split('=') as [string, string]));
}

describe('the chart is in sync with the tree', () => {
  it('has the CRDs, rbac.yaml and values.schema.json that `make chart` writes', () => {
    expect(chartDrift()).toEqual([]);
  });

  it('values.yaml passes its own zod schema', () => {
    const values = parse(readFileSync(join(chartPath, 'values.yaml'), 'utf8'));
    expect(ValuesSchema.safeParse(values).error?.issues ?? []).toEqual([]);
  });

  it('appVersion is the package version', () => {
    const chart = parse(readFileSync(join(chartPath, 'Chart.yaml'), 'utf8')) as { appVersion: string };
    expect(chart.appVersion).toBe(pkg.version);
  });

  it('passes helm lint', async () => {
    const r = await runHelm(['lint', chartPath, '--strict', '--kube-version', kubeVersion()]);
    expect(r.stderr + r.stdout).toContain('0 chart(s) failed');
    expect(r.code).toBe(0);
  });
});

describe('default values', async () => {
  const objs = await render();
  const deployment = one(objs, 'Deployment', 'modelplane-operator');
  const pod = deployment.spec.template.spec;
  const container = pod.containers[0];
  const env = envOf(container);
  const image = `ghcr.io/modelplane/modelplane:${pkg.version}`;

  it('templates the CRDs of crds/generated, kept on uninstall', () => {
    const want = readdirSync(generatedDir)
      .filter((f) => f.endsWith('.yaml'))
      .flatMap((f) => readManifests(join(generatedDir, f)));
    const got = objs.filter((o) => o.kind === 'CustomResourceDefinition');
    expect(got.map((c) => c.metadata.name).sort()).toEqual(want.map((c) => c.metadata.name).sort());
    for (const crd of got) {
      expect(crd.metadata.annotations).toEqual({ 'helm.sh/resource-policy': 'keep' });
      const { annotations: _, ...metadata } = crd.metadata;
      expect({ ...crd, metadata }).toEqual(want.find((w) => w.metadata.name === crd.metadata.name));
    }
  });

  it('has RBAC rules identical to operator/rbac.yaml, bound to the ServiceAccount', () => {
    const [clusterRole, secretsRole] = readManifests(rbacPath);
    expect(one(objs, 'ClusterRole', 'modelplane-operator').rules).toEqual(clusterRole!.rules);
    const role = one(objs, 'Role', 'modelplane-operator-secrets');
    expect(role.metadata.namespace).toBe('modelplane-system');
    expect(role.rules).toEqual(secretsRole!.rules);
    const sa = one(objs, 'ServiceAccount');
    expect(sa.metadata.namespace).toBe('modelplane-system');
    expect(pod.serviceAccountName).toBe(sa.metadata.name);
    const subject = [{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: 'modelplane-system' }];
    const crb = one(objs, 'ClusterRoleBinding', 'modelplane-operator');
    expect(crb.roleRef).toEqual({
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'ClusterRole',
      name: 'modelplane-operator',
    });
    expect(crb.subjects).toEqual(subject);
    const rb = one(objs, 'RoleBinding', 'modelplane-operator-secrets');
    expect(rb.metadata.namespace).toBe('modelplane-system');
    expect(rb.roleRef.name).toBe(role.metadata.name);
    expect(rb.subjects).toEqual(subject);
  });

  it('grants no Secret, Pod patch or Lease cluster-wide; the Lease by name in its namespace', () => {
    const [, , , , leaseRole] = readManifests(rbacPath);
    const clusterRules = objs
      .filter((o) => o.kind === 'ClusterRole')
      .flatMap((o) => o.rules as Array<{ apiGroups: string[]; resources: string[]; verbs: string[] }>);
    const clusterWide = (group: string, resource: string) =>
      clusterRules
        .filter((r) => r.apiGroups.includes(group) && r.resources.includes(resource))
        .flatMap((r) => r.verbs);
    expect(clusterWide('', 'secrets')).toEqual([]);
    expect(clusterWide('', 'pods')).toEqual(['get', 'list', 'watch']);
    expect(clusterWide('coordination.k8s.io', 'leases')).toEqual([]);
    expect(objs.some((o) => o.kind === 'ClusterRole' && o.metadata.name.endsWith('pod-deletion-cost'))).toBe(
      false,
    );
    expect(env.MODELPLANE_POD_DELETION_COST).toBe('false');
    const role = one(objs, 'Role', 'modelplane-operator-lease');
    expect(role.metadata.namespace).toBe('modelplane-system');
    expect(role.rules).toEqual(leaseRole!.rules);
    expect(role.rules).toEqual([
      {
        apiGroups: ['coordination.k8s.io'],
        resources: ['leases'],
        resourceNames: [env.MODELPLANE_LEASE_NAME],
        verbs: ['get', 'update'],
      },
      { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
    ]);
    const rb = one(objs, 'RoleBinding', 'modelplane-operator-lease');
    expect(rb.roleRef).toEqual({
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'Role',
      name: 'modelplane-operator-lease',
    });
    expect(rb.subjects).toEqual([
      { kind: 'ServiceAccount', name: pod.serviceAccountName, namespace: 'modelplane-system' },
    ]);
  });

  it('registers the webhook behind a Service, with RBAC for its one configuration and one Secret', () => {
    const [, , webhookRole, certRole] = readManifests(rbacPath);
    const service = one(objs, 'Service', 'modelplane-webhook');
    expect(service.spec.ports).toEqual([
      { name: 'webhook', port: 443, targetPort: 'webhook', protocol: 'TCP' },
    ]);
    const config = one(objs, 'ValidatingWebhookConfiguration', 'modelplane');
    const want = webhookConfiguration({
      name: 'modelplane',
      target: { service: { namespace: 'modelplane-system', name: 'modelplane-webhook', port: 443 } },
    });
    expect(config.webhooks).toEqual(want.webhooks);
    expect(config.metadata.annotations).toBeUndefined();
    expect(one(objs, 'ClusterRole', 'modelplane-operator-webhook').rules).toEqual(webhookRole!.rules);
    const role = one(objs, 'Role', 'modelplane-operator-webhook-cert');
    expect(role.rules).toEqual(certRole!.rules);
    expect(role.rules[0].resourceNames).toEqual(['modelplane-webhook-cert']);
    expect(one(objs, 'RoleBinding', 'modelplane-operator-webhook-cert').roleRef.name).toBe(
      role.metadata.name,
    );
    expect(one(objs, 'ClusterRoleBinding', 'modelplane-operator-webhook').roleRef.name).toBe(
      'modelplane-operator-webhook',
    );
    expect(env.MODELPLANE_WEBHOOK_CERT_DIR).toBeUndefined();
  });

  it('runs one replica of the appVersion image, leader-elected, the sidecar on the same image', () => {
    expect(deployment.spec.replicas).toBe(1);
    expect(container.image).toBe(image);
    expect(container.args).toEqual(['operator']);
    expect(env.MODELPLANE_LEADER_ELECT).toBe('true');
    expect(env.MODELPLANE_ROLES).toBe('controllers,gateway,webhook');
    expect(env.MODELPLANE_SIDECAR_IMAGE).toBe(image);
    expect(env.MODELPLANE_TOKEN_NAMESPACE).toBe('modelplane-system');
    expect(env.MODELPLANE_LEASE_NAMESPACE).toBe('modelplane-system');
    expect(env.MODELPLANE_PUBLIC_URL).toBeUndefined();
  });

  it('sets only settings the operator knows, and the operator accepts them', () => {
    const known = new Set<string>([...Object.values(ENV), 'POD_NAME', 'POD_NAMESPACE']);
    expect(Object.keys(env).filter((k) => !known.has(k))).toEqual([]);
    const values = Object.fromEntries(Object.entries(env).filter(([, v]) => typeof v === 'string')) as Record<
      string,
      string
    >;
    const config = parseConfig(container.args.slice(1), {
      ...values,
      POD_NAME: 'p-0',
      POD_NAMESPACE: 'modelplane-system',
    });
    if (config === 'help') throw new Error('want settings, got help');
    expect(config.roles).toEqual(['controllers', 'gateway', 'webhook']);
    expect(config.webhook).toEqual({
      address: { host: '0.0.0.0', port: 9443 },
      configurationName: 'modelplane',
      certSecret: 'modelplane-webhook-cert',
      certNamespace: 'modelplane-system',
      certNames: [
        'modelplane-webhook.modelplane-system.svc',
        'modelplane-webhook.modelplane-system.svc.cluster.local',
      ],
      certDir: undefined,
    });
    expect(config.http).toEqual({ host: '0.0.0.0', port: 8081 });
    expect(config.gateway.address).toEqual({ host: '0.0.0.0', port: 8000 });
    expect(config.gateway.tokenNamespace).toBe('modelplane-system');
    expect(config.gateway.inputBudget).toEqual({
      perDeploymentBytes: 256 * 2 ** 20,
      perReplicaBytes: 2 ** 30,
    });
    expect(config.gateway.maxOutputBytes).toBe(16 * 2 ** 20);
    expect(config.leaseName).toBe('modelplane-operator');
    expect(config.shutdownTimeoutMs).toBe(30_000);
    expect(config.resyncPeriodMs).toBe(600_000);
    expect(config.store).toEqual({
      kind: 'embedded',
      dir: '/var/lib/modelplane/store',
      databaseUrl: undefined,
      streamKeyFile: '/etc/modelplane/stream-key/key',
      dataRetentionMs: 3_600_000,
      recordRetentionMs: 30 * 86_400_000,
      usageRetentionMs: 400 * 86_400_000,
    });
    expect(config.autoscalerPeers).toMatchObject({
      labelSelector: `${DEFAULT_PEER_SELECTOR},app.kubernetes.io/instance=modelplane`,
      port: 8081,
      namespace: 'modelplane-system',
    });
  });

  it('gives the pod its name and namespace from the downward API', () => {
    expect(env.POD_NAME).toEqual({ fieldRef: { fieldPath: 'metadata.name' } });
    expect(env.POD_NAMESPACE).toEqual({ fieldRef: { fieldPath: 'metadata.namespace' } });
  });

  it("labels the pods so the autoscaler's peer selector finds this release's replicas", () => {
    const labels = deployment.spec.template.metadata.labels as Record<string, string>;
    for (const [k, v] of Object.entries(selectorPairs(DEFAULT_PEER_SELECTOR))) expect(labels[k]).toBe(v);
    const peers = selectorPairs(env.MODELPLANE_AUTOSCALER_PEERS as string);
    expect(peers).toEqual({
      ...selectorPairs(DEFAULT_PEER_SELECTOR),
      'app.kubernetes.io/instance': 'modelplane',
    });
    for (const [k, v] of Object.entries(peers)) expect(labels[k]).toBe(v);
    for (const [k, v] of Object.entries(deployment.spec.selector.matchLabels)) expect(labels[k]).toBe(v);
    expect(container.ports).toEqual([
      { name: 'http-api', containerPort: 8000, protocol: 'TCP' },
      { name: 'metrics', containerPort: 8081, protocol: 'TCP' },
      { name: 'webhook', containerPort: 9443, protocol: 'TCP' },
    ]);
    expect(env.MODELPLANE_HTTP_ADDRESS).toBe('0.0.0.0:8081');
    expect(env.MODELPLANE_GATEWAY_ADDRESS).toBe('0.0.0.0:8000');
  });

  it('meets the restricted Pod Security Standard', () => {
    expect(pod.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 65532,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(container.securityContext).toEqual({
      runAsNonRoot: true,
      runAsUser: 65532,
      runAsGroup: 65532,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(pod.automountServiceAccountToken).toBe(true);
    expect(pod.hostNetwork).toBeUndefined();
    // Volume types the restricted standard allows.
    for (const v of pod.volumes)
      expect(Object.keys(v).filter((k) => k !== 'name')).toSatisfy(
        (keys: string[]) =>
          keys.length === 1 && ['emptyDir', 'persistentVolumeClaim', 'secret'].includes(keys[0]!),
      );
  });

  it('keeps the embedded store on a claim of its own, kept on uninstall, and updates by Recreate', () => {
    expect(env.MODELPLANE_STORE).toBe('embedded');
    expect(env.MODELPLANE_DATABASE_URL).toBeUndefined();
    const claim = one(objs, 'PersistentVolumeClaim', 'modelplane-store');
    expect(claim.metadata.namespace).toBe('modelplane-system');
    expect(claim.metadata.annotations).toEqual({ 'helm.sh/resource-policy': 'keep' });
    expect(claim.spec).toEqual({
      accessModes: ['ReadWriteOnce'],
      resources: { requests: { storage: '10Gi' } },
    });
    const volume = pod.volumes.find((v: Obj) => v.persistentVolumeClaim);
    expect(volume.persistentVolumeClaim).toEqual({ claimName: 'modelplane-store' });
    const mount = container.volumeMounts.find((m: Obj) => m.name === volume.name);
    expect(mount.mountPath).toBe(env.MODELPLANE_STORE_DIR);
    expect(mount.readOnly).toBeUndefined();
    // One process may open the store and the claim is ReadWriteOnce: no surge.
    expect(deployment.spec.strategy).toEqual({ type: 'Recreate' });
  });

  it('makes a stream key Secret with a random key, mounted read-only as the stream key file', () => {
    const secret = one(objs, 'Secret', 'modelplane-stream-key');
    expect(Object.keys(secret.data)).toEqual(['key']);
    expect(Buffer.from(secret.data.key, 'base64').toString()).toMatch(/^[A-Za-z0-9]{64}$/);
    const volume = pod.volumes.find((v: Obj) => v.secret);
    expect(volume.secret).toEqual({
      secretName: 'modelplane-stream-key',
      defaultMode: 0o440,
      items: [{ key: 'key', path: 'key' }],
    });
    const mount = container.volumeMounts.find((m: Obj) => m.name === volume.name);
    expect(mount.readOnly).toBe(true);
    expect(env.MODELPLANE_STREAM_KEY_FILE).toBe(`${mount.mountPath}/key`);
  });

  it('passes the retention times', () => {
    expect(env.MODELPLANE_DATA_RETENTION).toBe('3600');
    expect(env.MODELPLANE_RECORD_RETENTION).toBe('2592000');
  });

  it('probes /healthz and /readyz, and outlives its shutdown timeout', () => {
    expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
    expect(env.MODELPLANE_SHUTDOWN_TIMEOUT).toBe('30');
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(30);
    expect(container.resources.requests).toEqual({ cpu: '100m', memory: '256Mi' });
  });

  it('spreads replicas across nodes and keeps one up through disruptions', () => {
    expect(pod.topologySpreadConstraints[0]).toMatchObject({
      topologyKey: 'kubernetes.io/hostname',
      maxSkew: 1,
    });
    expect(
      pod.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm,
    ).toMatchObject({
      topologyKey: 'kubernetes.io/hostname',
      labelSelector: { matchLabels: deployment.spec.selector.matchLabels },
    });
    const pdb = one(objs, 'PodDisruptionBudget');
    expect(pdb.spec).toEqual({
      maxUnavailable: 1,
      selector: { matchLabels: deployment.spec.selector.matchLabels },
    });
  });

  it('serves the gateway through a ClusterIP Service; no Ingress or ServiceMonitor', () => {
    const svc = one(objs, 'Service', 'modelplane-gateway');
    expect(svc.spec.type).toBe('ClusterIP');
    // Every replica serves every prediction: no session affinity.
    expect(svc.spec.sessionAffinity).toBeUndefined();
    expect(svc.spec.ports).toEqual([{ name: 'http-api', port: 80, targetPort: 'http-api', protocol: 'TCP' }]);
    expect(svc.spec.selector).toEqual(deployment.spec.selector.matchLabels);
    expect(one(objs, 'Service', 'modelplane-metrics').spec.ports[0].targetPort).toBe('metrics');
    expect(objs.filter((o) => o.kind === 'Ingress' || o.kind === 'ServiceMonitor')).toEqual([]);
  });

  it('installs the HardwareClasses of examples/hardware-classes.yaml, prices as decimal strings', () => {
    const want = readManifests(join(repoRoot, 'examples', 'hardware-classes.yaml'));
    const got = objs.filter((o) => o.kind === 'HardwareClass');
    expect(got.map((h) => [h.metadata.name, h.spec])).toEqual(want.map((h) => [h.metadata.name, h.spec]));
    for (const h of got) {
      expect(h.spec.pricePerSecond).toMatch(/^\d+\.\d+$/);
      // Created after the CRDs on a first install, by a hook.
      expect(h.metadata.annotations['helm.sh/hook']).toBe('post-install,post-upgrade');
    }
    expect(one(objs, 'HardwareClass', 'cpu').spec.pricePerSecond).toBe('0.000100');
  });
});

describe('other values', () => {
  it("admits only the operator's pods to model pods' sidecar API in each namespace listed", async () => {
    expect((await render()).filter((o) => o.kind === 'NetworkPolicy')).toEqual([]);
    const scrapers = [
      { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } },
    ];
    const objs = await render(
      { 'networkPolicy.namespaces': ['team-a', 'team-b'], 'networkPolicy.metricsFrom': scrapers },
      { release: 'prod', namespace: 'ml' },
    );
    const policies = objs.filter((o) => o.kind === 'NetworkPolicy');
    expect(policies.map((p) => `${p.metadata.namespace}/${p.metadata.name}`)).toEqual([
      'team-a/prod-modelplane-model-pods',
      'team-b/prod-modelplane-model-pods',
    ]);
    const operatorLabels = one(objs, 'Deployment', 'prod-modelplane-operator').spec.template.metadata.labels;
    for (const p of policies) {
      expect(p.spec.podSelector).toEqual({
        matchExpressions: [{ key: 'modelplane.dev/deployment', operator: 'Exists' }],
      });
      expect(p.spec.policyTypes).toEqual(['Ingress']);
      const [api, metrics] = p.spec.ingress;
      expect(api.ports).toEqual([{ protocol: 'TCP', port: 8080 }]);
      expect(api.from).toHaveLength(1);
      expect(api.from[0].namespaceSelector).toEqual({ matchLabels: { 'kubernetes.io/metadata.name': 'ml' } });
      // The peer selects this release's operator pods.
      for (const [k, v] of Object.entries(api.from[0].podSelector.matchLabels))
        expect(operatorLabels[k]).toBe(v);
      expect(metrics).toEqual({ ports: [{ protocol: 'TCP', port: 9090 }], from: scrapers });
      // The model server's port is admitted from nowhere.
      expect(JSON.stringify(p.spec.ingress)).not.toContain('5000');
    }
  }, 30_000);

  it('binds the pod-deletion-cost ClusterRole only when asked, with the Lease Role under its release name', async () => {
    const [, , , , , costRole] = readManifests(rbacPath);
    const objs = await render(
      { 'operator.autoscaler.podDeletionCost': true },
      { release: 'prod', namespace: 'ml' },
    );
    const role = one(objs, 'ClusterRole', 'prod-modelplane-operator-pod-deletion-cost');
    expect(role.rules).toEqual(costRole!.rules);
    expect(one(objs, 'ClusterRoleBinding', 'prod-modelplane-operator-pod-deletion-cost').roleRef.name).toBe(
      role.metadata.name,
    );
    const container = one(objs, 'Deployment', 'prod-modelplane-operator').spec.template.spec.containers[0];
    expect(envOf(container).MODELPLANE_POD_DELETION_COST).toBe('true');
    expect(one(objs, 'Role', 'prod-modelplane-operator-lease').rules[0].resourceNames).toEqual([
      'prod-modelplane-operator',
    ]);
    // Without leader election there is no Lease to hold.
    const single = await render({ 'operator.leaderElect': false });
    expect(single.filter((o) => o.kind === 'Role' && o.metadata.name.endsWith('-lease'))).toEqual([]);
  }, 30_000);

  it('takes a digest, a sidecar image, settings, and gateway-only roles', async () => {
    const digest = `sha256:${'a'.repeat(64)}`;
    const objs = await render(
      {
        'image.repository': 'registry.example.com/mp',
        'image.digest': digest,
        imagePullSecrets: [{ name: 'regcred' }],
        'operator.sidecarImage': 'registry.example.com/mp-sidecar:1',
        'operator.roles': ['gateway'],
        'operator.logLevel': 'debug',
        'operator.shutdownTimeoutSeconds': 120,
        'operator.autoscaler.peers': 'off',
        'operator.extraArgs': ['--lease-duration=30'],
        'operator.extraVolumes': [{ name: 'db-ca', configMap: { name: 'db-ca' } }],
        'operator.extraVolumeMounts': [{ name: 'db-ca', mountPath: '/etc/modelplane/db-ca', readOnly: true }],
        'gateway.publicUrl': 'https://models.example.com',
        'gateway.allowAnonymous': ['public', 'demo'],
        'gateway.webhookAllowCidrs': ['10.20.0.0/16', 'fd00::/8'],
        'store.kind': 'postgres',
        'store.postgres.existingSecret': 'db-app',
        'files.directory.existingClaim': 'shared-files',
        replicaCount: 3,
      },
      { release: 'prod', namespace: 'ml' },
    );
    const deployment = one(objs, 'Deployment', 'prod-modelplane-operator');
    const pod = deployment.spec.template.spec;
    const env = envOf(pod.containers[0]);
    expect(deployment.spec.replicas).toBe(3);
    expect(pod.containers[0].image).toBe(`registry.example.com/mp@${digest}`);
    expect(pod.imagePullSecrets).toEqual([{ name: 'regcred' }]);
    expect(pod.containers[0].args).toEqual(['operator', '--lease-duration=30']);
    expect(pod.volumes.at(-1)).toEqual({ name: 'db-ca', configMap: { name: 'db-ca' } });
    expect(pod.containers[0].volumeMounts.at(-1)).toEqual({
      name: 'db-ca',
      mountPath: '/etc/modelplane/db-ca',
      readOnly: true,
    });
    expect(env).toMatchObject({
      MODELPLANE_SIDECAR_IMAGE: 'registry.example.com/mp-sidecar:1',
      MODELPLANE_ROLES: 'gateway',
      MODELPLANE_LOG_LEVEL: 'debug',
      MODELPLANE_SHUTDOWN_TIMEOUT: '120',
      MODELPLANE_AUTOSCALER_PEERS: 'off',
      MODELPLANE_PUBLIC_URL: 'https://models.example.com',
      MODELPLANE_ALLOW_ANONYMOUS: 'public,demo',
      MODELPLANE_WEBHOOK_ALLOW_CIDRS: '10.20.0.0/16,fd00::/8',
      MODELPLANE_TOKEN_NAMESPACE: 'ml',
      MODELPLANE_LEASE_NAME: 'prod-modelplane-operator',
    });
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(120);
    expect(one(objs, 'ClusterRoleBinding').subjects[0].namespace).toBe('ml');
  });

  it('runs several replicas on PostgreSQL, the URL from a Secret, rolling one at a time', async () => {
    const objs = await render({
      'store.kind': 'postgres',
      'store.postgres.existingSecret': 'db-app',
      'store.dataRetentionSeconds': 600,
      'store.recordRetentionSeconds': 86400,
      'files.directory.existingClaim': 'shared-files',
      replicaCount: 3,
    });
    const deployment = one(objs, 'Deployment', 'modelplane-operator');
    const pod = deployment.spec.template.spec;
    const container = pod.containers[0];
    const env = envOf(container);
    expect(deployment.spec.replicas).toBe(3);
    expect(deployment.spec.strategy).toEqual({
      type: 'RollingUpdate',
      rollingUpdate: { maxUnavailable: 0, maxSurge: 1 },
    });
    expect(env.MODELPLANE_STORE).toBe('postgres');
    // CloudNativePG's <cluster>-app Secret holds the URL under uri.
    expect(env.MODELPLANE_DATABASE_URL).toEqual({ secretKeyRef: { name: 'db-app', key: 'uri' } });
    expect(env.MODELPLANE_STORE_DIR).toBeUndefined();
    // No claim of the chart's: every replica mounts the ReadWriteMany claim named.
    expect(objs.filter((o) => o.kind === 'PersistentVolumeClaim')).toEqual([]);
    expect(pod.volumes.find((v: Obj) => v.name === 'files').persistentVolumeClaim).toEqual({
      claimName: 'shared-files',
    });
    expect(pod.volumes.map((v: Obj) => v.name).sort()).toEqual(['files', 'stream-key', 'tmp']);
    // The same stream key for every replica.
    expect(one(objs, 'Secret', 'modelplane-stream-key').data.key).toBeTruthy();
    const strings = Object.fromEntries(Object.entries(env).filter(([, v]) => typeof v === 'string'));
    const config = parseConfig([], {
      ...strings,
      MODELPLANE_DATABASE_URL: 'postgresql://app:secret@db-rw.ml.svc:5432/app',
    });
    if (config === 'help') throw new Error('want settings, got help');
    expect(config.store).toMatchObject({
      kind: 'postgres',
      databaseUrl: 'postgresql://app:secret@db-rw.ml.svc:5432/app',
      dataRetentionMs: 600_000,
      recordRetentionMs: 86_400_000,
    });
    expect(one(objs, 'Service', 'modelplane-gateway').spec.sessionAffinity).toBeUndefined();
  });

  it('takes a storage class and size, or a claim of your own', async () => {
    const sized = await render({ 'store.embedded.size': '50Gi', 'store.embedded.storageClass': 'fast-ssd' });
    expect(one(sized, 'PersistentVolumeClaim', 'modelplane-store').spec).toEqual({
      accessModes: ['ReadWriteOnce'],
      storageClassName: 'fast-ssd',
      resources: { requests: { storage: '50Gi' } },
    });
    const own = await render({ 'store.embedded.existingClaim': 'my-claim' });
    expect(own.filter((o) => o.kind === 'PersistentVolumeClaim').map((o) => o.metadata.name)).toEqual([
      'modelplane-files',
    ]);
    const pod = one(own, 'Deployment').spec.template.spec;
    expect(pod.volumes.find((v: Obj) => v.name === 'store').persistentVolumeClaim).toEqual({
      claimName: 'my-claim',
    });
  });

  it('keeps files in a directory on a claim of its own by default, or in an S3 bucket by values alone', async () => {
    const settings = (objs: Obj[]) => {
      const c = one(objs, 'Deployment').spec.template.spec.containers[0];
      const env = envOf(c);
      const strings = Object.fromEntries(
        Object.entries(env).filter(([, v]) => typeof v === 'string'),
      ) as Record<string, string>;
      const config = parseConfig(c.args.slice(1), { ...strings, POD_NAMESPACE: 'modelplane-system' });
      if (config === 'help') throw new Error('want settings, got help');
      return { c, env, config };
    };
    const dir = await render({});
    const d = settings(dir);
    expect(d.config.files).toEqual({
      kind: 'directory',
      dir: '/var/lib/modelplane/files',
      s3: { endpoint: undefined, region: 'us-east-1', bucket: '', prefix: '' },
      maxBytes: 100 * 1024 * 1024,
      uploadTtlMs: 86_400_000,
      internalUrl: 'http://modelplane-gateway.modelplane-system.svc',
    });
    const claim = one(dir, 'PersistentVolumeClaim', 'modelplane-files');
    expect(claim.spec.accessModes).toEqual(['ReadWriteOnce']);
    expect(claim.metadata.annotations).toEqual({ 'helm.sh/resource-policy': 'keep' });
    expect(claim.spec.resources).toEqual({ requests: { storage: '20Gi' } });
    const pod = one(dir, 'Deployment').spec.template.spec;
    expect(pod.volumes.find((v: Obj) => v.name === 'files').persistentVolumeClaim).toEqual({
      claimName: 'modelplane-files',
    });
    expect(d.c.volumeMounts.find((m: Obj) => m.name === 'files').mountPath).toBe('/var/lib/modelplane/files');

    const s3 = await render({
      'files.kind': 's3',
      'files.s3.endpoint': 'http://minio.storage:9000',
      'files.s3.bucket': 'outputs',
      'files.s3.prefix': 'mp/',
      'files.s3.existingSecret': 's3-creds',
      'files.maxSizeBytes': 1048576,
    });
    const t = settings(s3);
    expect(t.config.files).toMatchObject({
      kind: 's3',
      s3: { endpoint: 'http://minio.storage:9000', region: 'us-east-1', bucket: 'outputs', prefix: 'mp/' },
      maxBytes: 1_048_576,
    });
    expect(t.env.AWS_ACCESS_KEY_ID).toEqual({ secretKeyRef: { name: 's3-creds', key: 'accessKeyId' } });
    expect(t.env.AWS_SECRET_ACCESS_KEY).toEqual({
      secretKeyRef: { name: 's3-creds', key: 'secretAccessKey' },
    });
    expect(s3.filter((o) => o.kind === 'PersistentVolumeClaim').map((o) => o.metadata.name)).toEqual([
      'modelplane-store',
    ]);
    expect(
      one(s3, 'Deployment').spec.template.spec.volumes.find((v: Obj) => v.name === 'files'),
    ).toBeUndefined();
    await expect(render({ 'files.kind': 's3' })).rejects.toThrow(/files.s3.bucket/);
  });

  it('takes a stream key Secret of your own, or none (the key kept in the store)', async () => {
    const own = await render({
      'gateway.streamKey.existingSecret': 'my-stream-key',
      'gateway.streamKey.secretKey': 'hmac',
    });
    expect(own.filter((o) => o.kind === 'Secret')).toEqual([]);
    const pod = one(own, 'Deployment').spec.template.spec;
    expect(pod.volumes.find((v: Obj) => v.name === 'stream-key').secret).toEqual({
      secretName: 'my-stream-key',
      defaultMode: 0o440,
      items: [{ key: 'hmac', path: 'key' }],
    });
    expect(envOf(pod.containers[0]).MODELPLANE_STREAM_KEY_FILE).toBe('/etc/modelplane/stream-key/key');

    const none = await render({ 'gateway.streamKey.generate': false });
    expect(none.filter((o) => o.kind === 'Secret')).toEqual([]);
    const nonePod = one(none, 'Deployment').spec.template.spec;
    expect(nonePod.volumes.map((v: Obj) => v.name).sort()).toEqual(['files', 'store', 'tmp']);
    expect(envOf(nonePod.containers[0]).MODELPLANE_STREAM_KEY_FILE).toBeUndefined();
  });

  it('makes an Ingress, a LoadBalancer Service and a ServiceMonitor when asked', async () => {
    const objs = await render({
      'service.type': 'LoadBalancer',
      'service.annotations': { 'service.beta.kubernetes.io/aws-load-balancer-internal': 'true' },
      'ingress.enabled': true,
      'ingress.className': 'nginx',
      'ingress.hosts': [{ host: 'models.example.com', paths: [{ path: '/', pathType: 'Prefix' }] }],
      'serviceMonitor.enabled': true,
      'podDisruptionBudget.enabled': false,
    });
    const svc = one(objs, 'Service', 'modelplane-gateway');
    expect(svc.spec.type).toBe('LoadBalancer');
    expect(svc.metadata.annotations).toEqual({
      'service.beta.kubernetes.io/aws-load-balancer-internal': 'true',
    });
    const ingress = one(objs, 'Ingress');
    expect(ingress.spec.ingressClassName).toBe('nginx');
    expect(ingress.spec.rules[0].http.paths[0].backend).toEqual({
      service: { name: 'modelplane-gateway', port: { name: 'http-api' } },
    });
    const sm = one(objs, 'ServiceMonitor');
    expect(sm.spec.endpoints).toEqual([{ port: 'metrics', path: '/metrics' }]);
    const metrics = one(objs, 'Service', 'modelplane-metrics');
    for (const [k, v] of Object.entries(sm.spec.selector.matchLabels))
      expect(metrics.metadata.labels[k]).toBe(v);
    expect(objs.filter((o) => o.kind === 'PodDisruptionBudget')).toEqual([]);
  });

  it('skips the CRDs and HardwareClasses, or installs a list of its own', async () => {
    const none = await render({ 'crds.install': false, 'hardwareClasses.install': false });
    expect(none.filter((o) => o.kind === 'CustomResourceDefinition' || o.kind === 'HardwareClass')).toEqual(
      [],
    );
    const own = await render({
      'hardwareClasses.items': [
        {
          name: 'gpu-l4',
          spec: {
            displayName: 'Nvidia L4',
            gpu: { count: 1, products: ['NVIDIA-L4'] },
            resources: { cpu: '4', memory: '16Gi' },
            pricePerSecond: '0.000300',
          },
        },
      ],
    });
    const classes = own.filter((o) => o.kind === 'HardwareClass');
    expect(classes.map((h) => h.metadata.name)).toEqual(['gpu-l4']);
    expect(classes[0]!.spec.pricePerSecond).toBe('0.000300');
  });
});

describe('the webhook with cert-manager', () => {
  it("mounts cert-manager's certificate, asks its CA injector for the caBundle, and needs no webhook RBAC", async () => {
    const objs = await render({ 'webhook.certManager.enabled': true }, { release: 'prod', namespace: 'ml' });
    const config = one(objs, 'ValidatingWebhookConfiguration', 'prod-modelplane');
    expect(config.metadata.annotations).toEqual({
      'cert-manager.io/inject-ca-from': 'ml/prod-modelplane-webhook',
    });
    const cert = one(objs, 'Certificate', 'prod-modelplane-webhook');
    expect(cert.spec.secretName).toBe('prod-modelplane-webhook-cert');
    expect(cert.spec.dnsNames).toEqual([
      'prod-modelplane-webhook.ml.svc',
      'prod-modelplane-webhook.ml.svc.cluster.local',
    ]);
    expect(one(objs, 'Issuer', 'prod-modelplane-webhook').spec).toEqual({ selfSigned: {} });
    const pod = one(objs, 'Deployment', 'prod-modelplane-operator').spec.template.spec;
    expect(envOf(pod.containers[0]).MODELPLANE_WEBHOOK_CERT_DIR).toBe('/etc/modelplane/webhook-cert');
    expect(pod.volumes).toContainEqual({
      name: 'webhook-cert',
      secret: { secretName: 'prod-modelplane-webhook-cert' },
    });
    expect(
      objs.filter(
        (o) => o.metadata.name.endsWith('-operator-webhook') || o.metadata.name.endsWith('-webhook-cert'),
      ),
    ).toEqual([]);
  });

  it('renders no webhook without the webhook role', async () => {
    const objs = await render({ 'operator.roles': ['controllers', 'gateway'] });
    expect(
      objs.filter((o) => o.kind === 'ValidatingWebhookConfiguration' || o.metadata.name.includes('webhook')),
    ).toEqual([]);
  });
});

describe('bad values fail with the offending key', () => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['replicaCount 0', { replicaCount: 0 }, /replicaCount/],
    ['an unknown log level', { 'operator.logLevel': 'loud' }, /logLevel/],
    ['an unknown role', { 'operator.roles': ['admission'] }, /roles/],
    ['a misspelt key', { 'image.pullpolicy': 'Always' }, /pullpolicy/],
    [
      'a price given as a number',
      { 'hardwareClasses.items': [{ name: 'x', spec: { displayName: 'X', pricePerSecond: 0.1 } }] },
      /pricePerSecond/,
    ],
    ['a public URL with a query', { 'gateway.publicUrl': 'https://x.example.com/?a=1' }, /publicUrl/],
    ['a digest that is not sha256', { 'image.digest': 'latest' }, /digest/],
    ['an unknown store kind', { 'store.kind': 'sqlite' }, /store\/kind/],
    ['a claim size that is not a quantity', { 'store.embedded.size': 'ten gigs' }, /store\/embedded\/size/],
    ['a data retention of 0', { 'store.dataRetentionSeconds': 0 }, /dataRetentionSeconds/],
    [
      'a byte bound with a unit the operator does not take',
      { 'gateway.limits.maxOutputBytes': '16MB' },
      /maxOutputBytes/,
    ],
    // Gone: every replica serves every prediction.
    ['session affinity', { 'service.sessionAffinity': 'ClientIP' }, /sessionAffinity/],
  ];
  for (const [what, values, key] of cases) {
    it(`rejects ${what}`, async () => {
      const r = await runHelm(templateArgs('modelplane', 'modelplane-system', values));
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain("values don't meet the specifications of the schema");
      expect(r.stderr).toMatch(key);
    });
  }

  it('rejects the embedded store with several replicas, naming both ways out', async () => {
    const r = await runHelm(templateArgs('modelplane', 'modelplane-system', { replicaCount: 2 }));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("values don't meet the specifications of the schema");
    expect(r.stderr).toContain("at '/replicaCount': value must be 1");
    expect(r.stderr).toContain("at '/store/kind': value must be 'postgres'");
  });

  it('rejects the postgres store without a Secret, with one replica or several', async () => {
    for (const replicaCount of [1, 2]) {
      const r = await runHelm(
        templateArgs('modelplane', 'modelplane-system', { 'store.kind': 'postgres', replicaCount }),
      );
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain("at '/store/postgres/existingSecret'");
    }
  });

  it('refuses the same in the templates when the schema is skipped', async () => {
    const several = await runHelm(
      templateArgs(
        'modelplane',
        'modelplane-system',
        { replicaCount: 2, 'files.kind': 's3', 'files.s3.bucket': 'b' },
        ['--skip-schema-validation'],
      ),
    );
    expect(several.code).not.toBe(0);
    expect(several.stderr).toContain('set replicaCount to 1, or use store.kind=postgres');
    const noSecret = await runHelm(
      templateArgs(
        'modelplane',
        'modelplane-system',
        { 'store.kind': 'postgres', replicaCount: 2, 'files.kind': 's3', 'files.s3.bucket': 'b' },
        ['--skip-schema-validation'],
      ),
    );
    expect(noSecret.code).not.toBe(0);
    expect(noSecret.stderr).toContain('set store.postgres.existingSecret');
    const sharedFiles = await runHelm(
      templateArgs(
        'modelplane',
        'modelplane-system',
        { 'store.kind': 'postgres', 'store.postgres.existingSecret': 'db', replicaCount: 2 },
        ['--skip-schema-validation'],
      ),
    );
    expect(sharedFiles.code).not.toBe(0);
    expect(sharedFiles.stderr).toContain('files.directory.existingClaim');
  });

  it('the zod schema and values.schema.json accept and refuse the same store values', async () => {
    const defaults = parse(readFileSync(join(chartPath, 'values.yaml'), 'utf8'));
    const cases: Array<Record<string, unknown>> = [
      {},
      { replicaCount: 2 },
      { 'store.kind': 'postgres' },
      { 'store.kind': 'postgres', replicaCount: 1, 'store.postgres.existingSecret': 'db' },
      { 'store.kind': 'postgres', replicaCount: 4, 'store.postgres.existingSecret': 'db' },
      { 'store.kind': 'postgres', replicaCount: 4, 'store.postgres.existingSecret': '' },
      { 'store.kind': 'embedded', 'store.postgres.existingSecret': 'db' },
      {
        'store.kind': 'postgres',
        replicaCount: 4,
        'store.postgres.existingSecret': 'db',
        'files.kind': 's3',
        'files.s3.bucket': 'b',
      },
      {
        'store.kind': 'postgres',
        replicaCount: 4,
        'store.postgres.existingSecret': 'db',
        'files.directory.existingClaim': 'shared-files',
      },
    ];
    // Several replicas on the chart's own (ReadWriteOnce) files claim are refused too.
    const want = [true, false, false, true, false, false, true, true, true];
    const zod: boolean[] = [];
    const helmSays: boolean[] = [];
    for (const values of cases) {
      const merged = structuredClone(defaults);
      for (const [key, value] of Object.entries(values)) {
        const path = key.split('.');
        let at = merged;
        for (const p of path.slice(0, -1)) at = at[p];
        at[path.at(-1)!] = value;
      }
      zod.push(ValuesSchema.safeParse(merged).success);
      helmSays.push((await runHelm(templateArgs('modelplane', 'modelplane-system', values))).code === 0);
    }
    expect(zod).toEqual(want);
    expect(helmSays).toEqual(want);
  });

  it('rejects several replicas without leader election', async () => {
    const r = await runHelm(
      templateArgs('modelplane', 'modelplane-system', {
        'operator.leaderElect': false,
        'store.kind': 'postgres',
        'store.postgres.existingSecret': 'db',
        'files.kind': 's3',
        'files.s3.bucket': 'b',
        replicaCount: 2,
      }),
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('set replicaCount to 1');
    const single = await runHelm(
      templateArgs('modelplane', 'modelplane-system', { 'operator.leaderElect': false, replicaCount: 1 }),
    );
    expect(single.stderr).toBe('');
    expect(single.code).toBe(0);
  });

  it('helm lint fails on bad values too', async () => {
    const r = await runHelm(['lint', chartPath, '--set', 'replicaCount=0', '--kube-version', kubeVersion()]);
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/replicaCount/);
  });
});
