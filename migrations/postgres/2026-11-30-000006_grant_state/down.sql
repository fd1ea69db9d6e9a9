DROP INDEX authorization_codes_grant;
DROP TABLE grants;
