/**
 * The AdmissionReview exchange (`admission.k8s.io/v1`): the request the API server sends,
 * and the answer built from a verdict.
 */
import { GROUP } from '../crds/index.ts';
import type { Obj, Verdict } from './rules.ts';

export interface AdmissionRequest {
  uid: string;
  kind: { group: string; version: string; kind: string };
  resource?: { group: string; version: string; resource: string };
  subResource?: string;
  name?: string;
  namespace?: string;
  operation: string;
  userInfo?: { username?: string; groups?: string[] };
  object?: Obj | null;
  oldObject?: Obj | null;
  dryRun?: boolean;
}

export interface AdmissionReview {
  apiVersion: 'admission.k8s.io/v1';
  kind: 'AdmissionReview';
  request?: AdmissionRequest;
  response?: AdmissionResponse;
}

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  status?: { code: number; reason: string; message: string };
  warnings?: string[];
}

/** The request inside a review, or a reason it is not one. */
export function readReview(body: unknown): AdmissionRequest | string {
  const review = body as Partial<AdmissionReview> | null;
  if (!review || typeof review !== 'object') return 'not a JSON object';
  if (review.apiVersion !== 'admission.k8s.io/v1' || review.kind !== 'AdmissionReview')
    return 'not an admission.k8s.io/v1 AdmissionReview';
  const req = review.request;
  if (!req || typeof req.uid !== 'string' || !req.kind || typeof req.operation !== 'string')
    return 'an AdmissionReview without a request';
  return req;
}

/** Whether the webhook has rules for this request (modelplane.dev kinds; not subresources). */
export function isOurs(req: AdmissionRequest): boolean {
  return req.kind.group === GROUP && !req.subResource;
}

/** Kubernetes keeps warnings short; longer ones are cut with an ellipsis. */
const MAX_WARNING = 240;

/** The review answering `uid` with `verdict`. */
export function answer(uid: string, verdict: Verdict): AdmissionReview {
  const response: AdmissionResponse = { uid, allowed: verdict.refusals.length === 0 };
  if (!response.allowed) {
    response.status = { code: 422, reason: 'Invalid', message: verdict.refusals.join('; ') };
  }
  if (verdict.warnings.length)
    response.warnings = verdict.warnings.map((w) =>
      w.length > MAX_WARNING ? `${w.slice(0, MAX_WARNING - 1)}…` : w,
    );
  return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response };
}
