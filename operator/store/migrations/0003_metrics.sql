-- The metrics a model recorded itself (Cog's record_metric: image_count, input_token_count,
-- ...), by name, as the instance reported them when the prediction ended. The timings stay in
-- their own columns.
ALTER TABLE predictions ADD COLUMN metrics jsonb;
