-- Roles grant permissions: scopes of API resources (JSON array).
CREATE TABLE roles (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
INSERT INTO roles (name, description, scopes, created_at, updated_at) VALUES
    ('admin', 'Administers Portcullis', '["portcullis:admin"]', 0, 0),
    ('user', 'A signed-in person', '[]', 0, 0),
    ('guest', 'Limited access', '[]', 0, 0);

-- API resources (RFC 8707 resource indicators): the audience of a token and its scopes.
CREATE TABLE api_resources (
    audience TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    access_token_ttl BIGINT,
    signing_alg TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

ALTER TABLE clients ADD COLUMN roles TEXT NOT NULL DEFAULT '[]';
-- Public keys for private_key_jwt client authentication (RFC 7523), a JWKS document.
ALTER TABLE clients ADD COLUMN jwks TEXT;

-- Client assertion ids seen, so each is usable once within its lifetime (RFC 7523 §3).
CREATE TABLE client_assertion_jtis (
    client_id TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti)
);

-- The audit log: who got access to what, and who changed what.
CREATE TABLE audit_events (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    client_id TEXT,
    subject TEXT,
    details TEXT NOT NULL
);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_kind ON audit_events (kind, at);

INSERT INTO cluster_state (name, generation) VALUES ('authorization', 0);
