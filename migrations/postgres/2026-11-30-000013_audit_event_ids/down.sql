DROP INDEX audit_events_event_id;
ALTER TABLE audit_events DROP COLUMN event_id;
