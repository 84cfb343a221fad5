-- A prediction's `completed` webhook is owed: set with its end, cleared once delivered (or given
-- up). A replica that takes over the predictions of one that stopped also takes the ended ones
-- whose webhook is still owed, and sends it.
ALTER TABLE predictions ADD COLUMN webhook_pending boolean NOT NULL DEFAULT false;

CREATE INDEX predictions_webhook_pending ON predictions (driver) WHERE webhook_pending;
