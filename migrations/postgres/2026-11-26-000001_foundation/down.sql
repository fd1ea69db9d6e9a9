DROP TABLE cluster_state;
DROP TABLE signing_keys;
DROP TABLE clients;
