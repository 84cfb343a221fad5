-- Usage: each instance's last reading (cumulative figures since it started), and the time
-- buckets the growth between readings is added to. Costs are exact (numeric / decimal text).
CREATE TABLE usage_instances (
  instance          text PRIMARY KEY,
  pod               text NOT NULL,
  namespace         text NOT NULL,
  deployment        text NOT NULL,
  model             text NOT NULL,
  hardware          text NOT NULL,
  price_per_second  text NOT NULL,
  first_seen        bigint NOT NULL,
  last_seen         bigint NOT NULL,
  ended             boolean NOT NULL DEFAULT false,
  setup_ms          bigint NOT NULL,
  idle_ms           bigint NOT NULL,
  busy_ms           bigint NOT NULL,
  down_ms           bigint NOT NULL,
  predictions       bigint NOT NULL,
  prediction_cost   text NOT NULL
);
CREATE INDEX usage_instances_seen ON usage_instances (last_seen);

CREATE TABLE usage_buckets (
  bucket_start      bigint NOT NULL,
  namespace         text NOT NULL,
  deployment        text NOT NULL,
  model             text NOT NULL,
  hardware          text NOT NULL,
  price_per_second  text NOT NULL,
  setup_ms          bigint NOT NULL DEFAULT 0,
  idle_ms           bigint NOT NULL DEFAULT 0,
  busy_ms           bigint NOT NULL DEFAULT 0,
  down_ms           bigint NOT NULL DEFAULT 0,
  predictions       bigint NOT NULL DEFAULT 0,
  prediction_cost   numeric NOT NULL DEFAULT 0,
  PRIMARY KEY (bucket_start, namespace, deployment, model, hardware, price_per_second)
);
