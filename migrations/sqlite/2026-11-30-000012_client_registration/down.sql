DROP TABLE initial_access_tokens;
ALTER TABLE clients DROP COLUMN last_used_at;
ALTER TABLE clients DROP COLUMN registration_metadata;
ALTER TABLE clients DROP COLUMN registration_token_hash;
ALTER TABLE clients DROP COLUMN registered_with;
