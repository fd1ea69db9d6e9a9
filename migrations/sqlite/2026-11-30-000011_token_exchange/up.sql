-- RFC 8693: the access tokens issued by token exchange, by the grant the person's token came
-- from. Revoking that grant denies them; the grant's scope bounds every exchange after.
CREATE TABLE token_exchanges (
    jti TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX token_exchanges_grant ON token_exchanges (grant_id);

-- A subject token is traced to its grant by its jti.
CREATE INDEX refresh_tokens_access_token ON refresh_tokens (access_token_jti);
CREATE INDEX authorization_codes_access_token ON authorization_codes (access_token_jti);
CREATE INDEX device_authorizations_access_token ON device_authorizations (access_token_jti);
