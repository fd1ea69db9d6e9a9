-- Revocation is a state of the grant (RFC 9700 §4.14.2, RFC 7009): every redemption and
-- rotation takes this row (a conditional UPDATE) in the transaction that spends a code or a
-- refresh token and writes its successor, and revocation sets `revoked_at` on it, so the two
-- cannot interleave.
CREATE TABLE grants (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    version BIGINT NOT NULL DEFAULT 0
);
INSERT INTO grants (id, client_id, user_id, created_at, revoked_at)
    SELECT grant_id, MIN(client_id), MIN(user_id), MIN(created_at), MAX(revoked_at)
    FROM refresh_tokens GROUP BY grant_id;
INSERT INTO grants (id, client_id, user_id, created_at)
    SELECT grant_id, MIN(client_id), MIN(user_id), MIN(expires_at)
    FROM authorization_codes
    WHERE grant_id NOT IN (SELECT id FROM grants)
    GROUP BY grant_id;
CREATE INDEX grants_client ON grants (client_id);
CREATE INDEX authorization_codes_grant ON authorization_codes (grant_id);
