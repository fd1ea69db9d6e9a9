ALTER TABLE clients DROP COLUMN introspection_audiences;
