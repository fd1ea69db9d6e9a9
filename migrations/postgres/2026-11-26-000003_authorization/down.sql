DELETE FROM cluster_state WHERE name = 'authorization';
DROP TABLE audit_events;
DROP TABLE client_assertion_jtis;
ALTER TABLE clients DROP COLUMN jwks;
ALTER TABLE clients DROP COLUMN roles;
DROP TABLE api_resources;
DROP TABLE roles;
