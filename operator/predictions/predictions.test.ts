/** The parts of the predictions module that are pure logic: choice of instance, pod endpoints, the
 * object callers read, webhook signing and delivery. */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { EgressPolicy } from '../../lib/egress.ts';
import { notReadyReason } from './catalog.ts';
import { leastOutstanding, type PodLike, podEndpoint } from './endpoints.ts';
import { LOG_TAIL_BYTES, logTail, type PredictionRecord, toView } from './record.ts';
import { sign, stableMessageId, WebhookSender } from './webhooks.ts';

const LOOPBACK = new EgressPolicy(['127.0.0.0/8']);

function record(id: string, over: Partial<PredictionRecord> = {}): PredictionRecord {
  return {
    id,
    namespace: 'ns',
    deployment: 'dep',
    viaDeployment: false,
    model: 'ns/model',
    version: 'a'.repeat(64),
    input: {},
    output: null,
    logs: '',
    error: null,
    status: 'starting',
    createdAt: 1000,
    webhookEvents: [],
    baseUrl: 'http://gw/v1',
    events: [],
    ...over,
  };
}

describe('least outstanding', () => {
  const eps = [
    { id: 'a', url: 'http://127.0.0.1:1' },
    { id: 'b', url: 'http://127.0.0.1:2' },
    { id: 'c', url: 'http://127.0.0.1:3' },
  ];
  it('picks the instance with the fewest outstanding below the concurrency', () => {
    const load: Record<string, number> = { a: 2, b: 1, c: 1 };
    expect(leastOutstanding(eps, (id) => load[id]!, 4)?.id).toBe('b');
    expect(
      leastOutstanding(
        eps,
        (id) => load[id]!,
        4,
        (id) => id === 'b',
      )?.id,
    ).toBe('c');
    expect(leastOutstanding(eps, (id) => load[id]!, 1)).toBeUndefined();
    expect(leastOutstanding([], () => 0, 4)).toBeUndefined();
  });
});

describe('pod endpoints', () => {
  const pod: PodLike = {
    metadata: { name: 'llm-abc', namespace: 'ns', labels: { 'modelplane.dev/deployment': 'llm' } },
    spec: {
      containers: [
        { name: 'model', ports: [{ name: 'model', containerPort: 5000 }] },
        {
          name: 'sidecar',
          ports: [
            { name: 'api', containerPort: 8080 },
            { name: 'metrics', containerPort: 9090 },
          ],
        },
      ],
    },
    status: { podIP: '127.0.1.5', phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] },
  };
  it('is the sidecar api port on the pod IP of a ready pod', () => {
    expect(podEndpoint(pod)).toEqual({ id: 'llm-abc', url: 'http://127.0.1.5:8080' });
  });
  it('is nothing for a pod not ready, terminating or without an IP', () => {
    expect(
      podEndpoint({ ...pod, status: { ...pod.status, conditions: [{ type: 'Ready', status: 'False' }] } }),
    ).toBeUndefined();
    expect(
      podEndpoint({ ...pod, metadata: { ...pod.metadata, deletionTimestamp: '2026-01-01T00:00:00Z' } }),
    ).toBeUndefined();
    expect(podEndpoint({ ...pod, status: { ...pod.status, podIP: undefined } })).toBeUndefined();
  });
});

describe('why a deployment has no instance', () => {
  it('quotes the Degraded and Ready conditions', () => {
    const reason = notReadyReason({
      namespace: 'ns',
      name: 'd',
      model: 'm',
      versionId: '',
      maxConcurrency: 1,
      maxLength: 1,
      maxWaitSeconds: 1,
      conditions: [
        {
          type: 'Ready',
          status: 'False',
          reason: 'InsufficientInstances',
          message: '0 of 1 instances ready',
        },
        {
          type: 'Degraded',
          status: 'True',
          reason: 'InsufficientCapacity',
          message: 'no node has a free nvidia.com/gpu',
        },
      ],
    });
    expect(reason).toBe(
      'InsufficientCapacity: no node has a free nvidia.com/gpu; InsufficientInstances: 0 of 1 instances ready',
    );
  });
});

describe('the prediction object', () => {
  it('has the API shape, never a null url, and names its deployment when made through one', () => {
    const v = toView(
      record('x'.repeat(26), { viaDeployment: true }),
      'http://gw/v1/predictions/x/stream?token=t',
    );
    expect(v).toMatchObject({
      status: 'starting',
      version: 'a'.repeat(64),
      model: 'ns/model',
      source: 'api',
      data_removed: false,
      deployment: 'ns/dep',
      started_at: null,
      metrics: {},
    });
    expect(v.urls).toEqual({
      get: `http://gw/v1/predictions/${'x'.repeat(26)}`,
      cancel: `http://gw/v1/predictions/${'x'.repeat(26)}/cancel`,
      stream: 'http://gw/v1/predictions/x/stream?token=t',
    });
    const plain = toView(record('y'.repeat(26)));
    expect('deployment' in plain).toBe(false);
    expect('stream' in plain.urls).toBe(false);
    const done = toView(
      record('z'.repeat(26), { status: 'succeeded', completedAt: 3500, predictTime: 1.25 }),
    );
    expect(done.metrics).toEqual({ predict_time: 1.25, total_time: 2.5 });
    expect('cost' in done).toBe(false);
  });

  it("carries the cost and the model's own metrics beside the timings", () => {
    const v = toView(
      record('w'.repeat(26), {
        status: 'succeeded',
        completedAt: 3500,
        predictTime: 1.25,
        cost: '0.000281250',
        metrics: { image_count: 2, total_time: 7 },
      }),
    );
    expect(v.cost).toBe('0.000281250');
    expect(v.metrics).toEqual({ image_count: 2, predict_time: 1.25, total_time: 2.5 });
  });
});

describe('what a record keeps', () => {
  it('keeps the last LOG_TAIL_BYTES bytes of logs behind a marker line', () => {
    expect(logTail('short')).toBe('short');
    const long = `${'a'.repeat(10)}${'b'.repeat(LOG_TAIL_BYTES)}`;
    expect(logTail(long)).toBe(`[… 10 bytes of earlier logs dropped …]\n${'b'.repeat(LOG_TAIL_BYTES)}`);
    // In bytes: two-byte characters keep half as many.
    const wide = 'é'.repeat(LOG_TAIL_BYTES);
    expect(logTail(wide)).toBe(
      `[… ${LOG_TAIL_BYTES} bytes of earlier logs dropped …]\n${'é'.repeat(LOG_TAIL_BYTES / 2)}`,
    );
  });

  it('shows data_removed once the data is removed', () => {
    expect(toView(record('r'.repeat(26))).data_removed).toBe(false);
    expect(toView(record('r'.repeat(26), { dataRemoved: true, input: {} })).data_removed).toBe(true);
  });
});

describe('webhook ids', () => {
  it('are the same for the start and completed deliveries of a prediction, whoever sends them', () => {
    expect(stableMessageId('p1', 'completed')).toBe(stableMessageId('p1', 'completed'));
    expect(stableMessageId('p1', 'completed')).not.toBe(stableMessageId('p1', 'start'));
    expect(stableMessageId('p1', 'completed')).not.toBe(stableMessageId('p2', 'completed'));
    expect(stableMessageId('p1', 'start')).toMatch(/^msg_[A-Za-z0-9_-]{24}$/);
  });
});

describe('Standard Webhooks signing', () => {
  it('matches the test vector of the clients', () => {
    expect(
      sign(
        'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
        'msg_p5jXN8AQM9LWM0D4loKWxJek',
        1614265330,
        '{"test": 2432232314}',
      ),
    ).toBe('v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=');
  });
});

describe('webhook delivery', () => {
  let server: Server | undefined;
  afterEach(() => server?.close());

  async function receiver(answer: (n: number) => number) {
    const got: { headers: IncomingMessage['headers']; body: string; at: number }[] = [];
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => {
        body += c;
      });
      req.on('end', () => {
        got.push({ headers: req.headers, body, at: Date.now() });
        res.writeHead(answer(got.length)).end();
      });
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    return { got, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook` };
  }

  it('retries only the terminal one, with the same webhook-id, and throttles output', async () => {
    const { got, url } = await receiver((n) => (n === 3 || n === 4 ? 500 : 200));
    const w = new WebhookSender({
      secretFor: () => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
      log: pino({ level: 'silent' }),
      throttleMs: 200,
      retryBaseMs: 10,
      egress: LOOPBACK,
    });
    w.register('p', 'ns', url, ['start', 'output', 'completed']);
    w.notify('p', 'start', () => ({ n: 'start' }));
    for (let i = 0; i < 5; i++) w.notify('p', 'output', () => ({ n: `output` }));
    w.notify('p', 'logs', () => ({ n: 'logs' })); // not in the filter
    await new Promise((r) => setTimeout(r, 300)); // past the throttle window, so the trailing output goes
    w.notify('p', 'completed', () => ({ n: 'completed' }));
    await w.drain();
    expect(got.map((g) => JSON.parse(g.body).n)).toEqual([
      'start',
      'output',
      'completed',
      'completed',
      'completed',
    ]);
    const terminal = got.slice(2).map((g) => g.headers['webhook-id']);
    expect(new Set(terminal).size).toBe(1);
    expect(got[0]!.headers['webhook-id']).not.toBe(terminal[0]);
    for (const g of got) {
      expect(g.headers['webhook-signature']).toBe(
        sign(
          'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
          String(g.headers['webhook-id']),
          Number(g.headers['webhook-timestamp']),
          g.body,
        ),
      );
    }
  });

  it('does not follow redirects', async () => {
    const { got, url } = await receiver(() => 302);
    const w = new WebhookSender({
      secretFor: () => 'whsec_AAAA',
      log: pino({ level: 'silent' }),
      retryBaseMs: 1,
      egress: LOOPBACK,
    });
    w.register('p', 'ns', url, ['completed']);
    w.notify('p', 'completed', () => ({}));
    await w.drain();
    expect(got).toHaveLength(1);
  });
});
