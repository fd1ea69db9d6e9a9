-- Registered clients (RFC 6749 §2). Lists are JSON arrays of strings; times are Unix seconds.
CREATE TABLE clients (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT,
    token_endpoint_auth_method TEXT NOT NULL,
    grant_types TEXT NOT NULL,
    scopes TEXT NOT NULL,
    audiences TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,
    post_logout_redirect_uris TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Signing keys and their lifecycle: next -> active -> retired -> deleted.
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    alg TEXT NOT NULL,
    state TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    private_key_encrypted TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    activated_at BIGINT,
    retired_at BIGINT,
    remove_after BIGINT
);
CREATE INDEX signing_keys_state ON signing_keys (alg, state);

-- Change counters every process polls: a bump means "reload this".
CREATE TABLE cluster_state (
    name TEXT PRIMARY KEY,
    generation BIGINT NOT NULL
);
INSERT INTO cluster_state (name, generation) VALUES ('keyring', 0), ('clients', 0);
