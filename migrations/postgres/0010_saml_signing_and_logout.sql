-- Signed AuthnRequests, single logout and group sync at sign-in, PostgreSQL dialect.
-- Keep equivalent to ../sqlite/0010_saml_signing_and_logout.sql: same tables, columns, constraints and indexes.

-- The deployment's SAML SP signing key and its certificate (the one SP metadata publishes):
-- one row; the private key sealed with the deployment's secrets key.
CREATE TABLE saml_sp_keys (
    id                 TEXT    NOT NULL PRIMARY KEY,
    private_key_sealed TEXT    NOT NULL,
    certificate_der    TEXT    NOT NULL,
    created_at         BIGINT  NOT NULL
);

-- Whether the connection signs its AuthnRequests (needs an SP key).
ALTER TABLE saml_connections ADD COLUMN sign_authn_requests BOOLEAN NOT NULL DEFAULT FALSE;

-- The IdP's single logout URL (HTTP-Redirect), where idplex sends LogoutRequests; none: the IdP
-- offers no single logout and signing out is local.
ALTER TABLE saml_connections ADD COLUMN slo_url TEXT;

-- What a session opened by SAML sign-in knows of its IdP session: the subject and the
-- SessionIndex, to ask the IdP to end it (SP-initiated logout) and to find it when the IdP asks
-- (IdP-initiated logout).
CREATE TABLE saml_sessions (
    session_id     TEXT    NOT NULL PRIMARY KEY REFERENCES user_sessions (id) ON DELETE CASCADE,
    connection_id  TEXT    NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    name_id        TEXT    NOT NULL,
    name_id_format TEXT,
    session_index  TEXT,
    created_at     BIGINT  NOT NULL
);
CREATE INDEX saml_sessions_subject_idx ON saml_sessions (connection_id, name_id);

-- Whether just-in-time sign-in also removes the user from the connection's groups the
-- assertion no longer names (off: memberships are only added).
ALTER TABLE saml_connections ADD COLUMN jit_sync_groups BOOLEAN NOT NULL DEFAULT FALSE;
