-- RFC 9449 §10: an authorization code bound to a DPoP key (dpop_jkt, or a proof at /par).
ALTER TABLE authorization_codes ADD COLUMN dpop_jkt TEXT;
