DROP TABLE dpop_proofs;
ALTER TABLE refresh_tokens DROP COLUMN dpop_jkt;
DROP TABLE device_authorizations;
DROP TABLE pushed_requests;
ALTER TABLE clients DROP COLUMN dpop_bound_access_tokens;
ALTER TABLE clients DROP COLUMN require_pushed_authorization_requests;
