/**
 * Readiness and liveness probes, as the kubelet runs them: httpGet and tcpSocket against the
 * pod's own (loopback) IP, with its thresholds and period. The result bookkeeping is a pure
 * class; `runProbe` does one attempt.
 */
import { connect } from 'node:net';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IProbe } from 'kubernetes-models/v1/Probe';

/** The container a probe runs against: its named ports. */
export type ContainerPorts = Pick<IContainer, 'ports'>;

/** A probe's port: a number, or the name of one of the container's ports. */
export function resolvePort(port: number | string, container: ContainerPorts): number {
  if (typeof port === 'number') return port;
  if (/^\d+$/.test(port)) return Number(port);
  const found = container.ports?.find((p) => p.name === port);
  if (!found) throw new Error(`probe port "${port}" is not a named port of the container`);
  return found.containerPort;
}

/** Settings with the kubelet's defaults. */
export function probeTiming(p: IProbe): {
  initialDelayMs: number;
  periodMs: number;
  timeoutMs: number;
  successThreshold: number;
  failureThreshold: number;
} {
  return {
    initialDelayMs: (p.initialDelaySeconds ?? 0) * 1000,
    periodMs: (p.periodSeconds ?? 10) * 1000,
    timeoutMs: (p.timeoutSeconds ?? 1) * 1000,
    successThreshold: p.successThreshold ?? 1,
    failureThreshold: p.failureThreshold ?? 3,
  };
}

/**
 * Counts consecutive successes and failures; the result flips after `successThreshold`
 * successes or `failureThreshold` failures in a row. Readiness starts failed, liveness
 * starts passed (as in the kubelet).
 */
export class ProbeResult {
  private okRun = 0;
  private failRun = 0;
  private value: boolean;
  private readonly successThreshold: number;
  private readonly failureThreshold: number;
  lastMessage = '';

  constructor(successThreshold: number, failureThreshold: number, initial: boolean) {
    this.successThreshold = successThreshold;
    this.failureThreshold = failureThreshold;
    this.value = initial;
  }

  get ok(): boolean {
    return this.value;
  }

  /** Records one attempt; returns true when the result changed. */
  record(success: boolean, message = ''): boolean {
    this.lastMessage = message;
    if (success) {
      this.okRun++;
      this.failRun = 0;
      if (!this.value && this.okRun >= this.successThreshold) {
        this.value = true;
        return true;
      }
    } else {
      this.failRun++;
      this.okRun = 0;
      if (this.value && this.failRun >= this.failureThreshold) {
        this.value = false;
        return true;
      }
    }
    return false;
  }
}

/** Loopback hosts a probe may name; anything else is refused (the runner dials loopback only). */
function probeHost(host: string | undefined, podIP: string): string {
  if (!host) return podIP;
  if (host === 'localhost' || /^127\.\d+\.\d+\.\d+$/.test(host)) return host;
  throw new Error(`probe host ${host} is not a loopback address; the local pod runner dials loopback only`);
}

/** One attempt of `probe` against the container at `podIP`: success and a message. */
export async function runProbe(
  probe: IProbe,
  container: ContainerPorts,
  podIP: string,
): Promise<{ ok: boolean; message: string }> {
  const { timeoutMs } = probeTiming(probe);
  try {
    if (probe.httpGet) {
      const g = probe.httpGet;
      if (g.scheme && g.scheme.toUpperCase() !== 'HTTP')
        return { ok: false, message: `scheme ${g.scheme} is not supported` };
      const port = resolvePort(g.port, container);
      const path = g.path ?? '/';
      const url = `http://${probeHost(g.host, podIP)}:${port}${path.startsWith('/') ? path : `/${path}`}`;
      const res = await fetch(url, {
        redirect: 'manual',
        signal: AbortSignal.timeout(timeoutMs),
        headers: { 'user-agent': 'kube-probe/modelplane-pod-runner' },
      });
      await res.body?.cancel();
      const ok = res.status >= 200 && res.status < 400;
      return { ok, message: ok ? '' : `HTTP probe failed with statuscode: ${res.status}` };
    }
    if (probe.tcpSocket) {
      const port = resolvePort(probe.tcpSocket.port, container);
      const host = probeHost(probe.tcpSocket.host, podIP);
      await new Promise<void>((resolveConn, reject) => {
        const sock = connect({ host, port, timeout: timeoutMs });
        sock.once('connect', () => {
          sock.destroy();
          resolveConn();
        });
        sock.once('timeout', () => {
          sock.destroy();
          reject(new Error(`dial tcp ${host}:${port}: i/o timeout`));
        });
        sock.once('error', reject);
      });
      return { ok: true, message: '' };
    }
    return { ok: false, message: 'only httpGet and tcpSocket probes run on the local pod runner' };
  } catch (err) {
    return { ok: false, message: (err as Error).message };
  }
}
