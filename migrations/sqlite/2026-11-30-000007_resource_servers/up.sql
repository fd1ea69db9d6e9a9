-- RFC 7662 §2.1, §4: the audiences whose tokens this client, a resource server, may
-- introspect (a JSON array). A client always may introspect the tokens issued to itself.
ALTER TABLE clients ADD COLUMN introspection_audiences TEXT NOT NULL DEFAULT '[]';
