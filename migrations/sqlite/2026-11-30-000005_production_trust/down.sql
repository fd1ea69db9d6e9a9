DELETE FROM cluster_state WHERE name = 'audit_purge';
ALTER TABLE users DROP COLUMN sign_in_generation;
