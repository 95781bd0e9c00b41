-- Signed AuthnRequests, SQLite dialect.
-- Keep equivalent to ../postgres/0010_saml_sp_key.sql: same tables, columns, constraints and indexes.

-- The deployment's SAML SP signing key and its certificate (the one SP metadata publishes):
-- one row; the private key sealed with the deployment's secrets key.
CREATE TABLE saml_sp_keys (
    id                 TEXT    NOT NULL PRIMARY KEY,
    private_key_sealed TEXT    NOT NULL,
    certificate_der    TEXT    NOT NULL,
    created_at         INTEGER NOT NULL
);

-- Whether the connection signs its AuthnRequests (needs an SP key).
ALTER TABLE saml_connections ADD COLUMN sign_authn_requests INTEGER NOT NULL DEFAULT 0
    CHECK (sign_authn_requests IN (0, 1));
