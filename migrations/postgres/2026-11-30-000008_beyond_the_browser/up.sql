-- Clients beyond the browser tab: pushed authorization requests (RFC 9126), the device
-- authorization grant (RFC 8628) and DPoP (RFC 9449).
ALTER TABLE clients ADD COLUMN require_pushed_authorization_requests BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE clients ADD COLUMN dpop_bound_access_tokens BOOLEAN NOT NULL DEFAULT FALSE;

-- RFC 9126 §2.2: a pushed request, named by the hash of its request_uri; single use.
CREATE TABLE pushed_requests (
    request_uri_hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    request TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);

-- RFC 8628 §3.2: a device authorization, named by the hash of its device_code.
CREATE TABLE device_authorizations (
    device_code_hash TEXT PRIMARY KEY,
    user_code TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    audience TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    interval_secs BIGINT NOT NULL,
    last_polled_at BIGINT,
    status TEXT NOT NULL,
    user_id TEXT,
    auth_time BIGINT,
    grant_id TEXT,
    access_token_jti TEXT,
    dpop_jkt TEXT
);
CREATE UNIQUE INDEX device_authorizations_user_code ON device_authorizations (user_code);
CREATE INDEX device_authorizations_grant ON device_authorizations (grant_id);

-- RFC 9449 §5: a public client's refresh tokens are bound to the key of the first proof.
ALTER TABLE refresh_tokens ADD COLUMN dpop_jkt TEXT;

-- RFC 9449 §11.1: proof ids seen within the acceptance window (when there is no Redis).
CREATE TABLE dpop_proofs (
    jti_hash TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
