-- Each event carries the id its server gave it, so that a batch written again after an error
-- whose commit had in fact gone through (a connection cut after COMMIT) adds nothing: the
-- audit writer's retries are idempotent. Rows written before this have none.
ALTER TABLE audit_events ADD COLUMN event_id TEXT;
CREATE UNIQUE INDEX audit_events_event_id ON audit_events (event_id);
