-- Sign-in protection: bumping it forgets every failure counted for the user (`user unlock`,
-- `user set-password`); the counters are keyed by it.
ALTER TABLE users ADD COLUMN sign_in_generation BIGINT NOT NULL DEFAULT 0;
-- The audit purge runs on one instance at a time: this row is its lease (the time it last ran).
INSERT INTO cluster_state (name, generation) VALUES ('audit_purge', 0);
