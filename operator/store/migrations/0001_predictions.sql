-- The first schema of the prediction store: predictions, their stream events, the replicas
-- that drive them, and settings every replica shares. See docs/store.md.

CREATE TABLE predictions (
  id               text PRIMARY KEY,
  namespace        text NOT NULL,
  deployment       text NOT NULL,
  via_deployment   boolean NOT NULL,
  model            text NOT NULL,
  version          text NOT NULL,
  input            jsonb NOT NULL,
  output           jsonb,
  logs             text NOT NULL,
  error            text,
  status           text NOT NULL,
  created_at       timestamptz NOT NULL,
  started_at       timestamptz,
  completed_at     timestamptz,
  predict_time     double precision,
  cost             text,
  instance         text,
  webhook          text,
  webhook_events   jsonb NOT NULL,
  idempotency_key  text,
  deadline         timestamptz,
  base_url         text NOT NULL,
  origin           text,
  cancel_requested boolean NOT NULL DEFAULT false,
  data_removed     boolean NOT NULL DEFAULT false,
  -- The replica that drives it (queues it, sends it to an instance, writes its state).
  driver           text,
  updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Idempotency-Key: unique per namespace.
CREATE UNIQUE INDEX predictions_idempotency ON predictions (namespace, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
-- Lists: newest first, cursor (created_at, id); all namespaces, or some.
CREATE INDEX predictions_newest ON predictions (created_at DESC, id DESC);
CREATE INDEX predictions_namespace_newest ON predictions (namespace, created_at DESC, id DESC);
-- Adoption: the unfinished ones, by driver.
CREATE INDEX predictions_unfinished ON predictions (driver)
  WHERE status NOT IN ('succeeded', 'failed', 'canceled');
-- Data removal and purge: the finished ones, by end time.
CREATE INDEX predictions_finished ON predictions (completed_at)
  WHERE status IN ('succeeded', 'failed', 'canceled');

CREATE TABLE prediction_events (
  prediction_id text NOT NULL REFERENCES predictions (id) ON DELETE CASCADE,
  id            integer NOT NULL,
  event         text NOT NULL,
  data          text NOT NULL,
  PRIMARY KEY (prediction_id, id)
);

-- Replicas announce they are alive; heartbeat_at is the database's clock (no skew between replicas).
CREATE TABLE replicas (
  id           text PRIMARY KEY,
  heartbeat_at timestamptz NOT NULL
);

-- Settings every replica shares (the key that signs stream URLs).
CREATE TABLE settings (
  name  text PRIMARY KEY,
  value text NOT NULL
);
