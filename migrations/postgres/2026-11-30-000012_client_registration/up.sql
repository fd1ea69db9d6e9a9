-- Dynamic client registration (RFC 7591) and its management (RFC 7592).
-- A client registered through POST /register names the policy it was registered under
-- ('open' or 'token'); administrators' clients have NULL. Its registration access token is kept
-- as SHA-256 only, and the extra metadata it registered (client_uri, contacts, …) as a JSON
-- object. last_used_at (Unix seconds, written at most daily at token issuance) lets unused
-- dynamic clients expire.
ALTER TABLE clients ADD COLUMN registered_with TEXT;
ALTER TABLE clients ADD COLUMN registration_token_hash TEXT;
ALTER TABLE clients ADD COLUMN registration_metadata TEXT;
ALTER TABLE clients ADD COLUMN last_used_at BIGINT;

-- RFC 7591 §3: initial access tokens, which authorize registrations under the `token` policy.
-- Kept as SHA-256 only; NULL expires_at or max_uses means no limit.
CREATE TABLE initial_access_tokens (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    max_uses BIGINT,
    uses BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX initial_access_tokens_hash ON initial_access_tokens (token_hash);
