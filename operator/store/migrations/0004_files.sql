-- Files: the records of uploaded files (POST /v1/files) and of predictions' output files. Their
-- bytes are in the files backend (a directory or an S3 bucket) under `key`. An output file has
-- no expiry of its own: it goes when its prediction's data is removed (or its record purged),
-- so it references the prediction without a foreign key (the file's row outlives the
-- prediction's until its bytes are removed). See docs/files.md.
CREATE TABLE files (
  id            text PRIMARY KEY,
  namespace     text NOT NULL,
  name          text NOT NULL,
  content_type  text NOT NULL,
  size          bigint NOT NULL,
  sha256        text NOT NULL,
  md5           text NOT NULL,
  metadata      jsonb NOT NULL,
  created_at    timestamptz NOT NULL,
  expires_at    timestamptz,
  prediction_id text,
  key           text NOT NULL
);

-- Lists: newest first, cursor (created_at, id); all namespaces, or some.
CREATE INDEX files_newest ON files (created_at DESC, id DESC);
CREATE INDEX files_namespace_newest ON files (namespace, created_at DESC, id DESC);
-- The sweep: expired files, and outputs by prediction.
CREATE INDEX files_expires ON files (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX files_prediction ON files (prediction_id) WHERE prediction_id IS NOT NULL;
