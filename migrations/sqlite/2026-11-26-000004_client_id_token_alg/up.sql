-- OpenID Connect Dynamic Client Registration §2: the algorithm of this client's ID tokens.
ALTER TABLE clients ADD COLUMN id_token_signed_response_alg TEXT;
