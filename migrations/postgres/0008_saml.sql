-- SAML single sign-on, PostgreSQL dialect.
-- Keep equivalent to ../sqlite/0008_saml.sql: same tables, columns, constraints and indexes.

-- A connection's SAML service-provider settings: the IdP it trusts (entity ID, SSO URL, signing
-- certificates as a JSON array of base64 DER, several during a rollover) and its switches.
-- Sign-in is refused unless enabled, and it cannot be enabled without a certificate.
CREATE TABLE saml_connections (
    connection_id               TEXT    NOT NULL PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    idp_entity_id               TEXT    NOT NULL,
    sso_url                     TEXT    NOT NULL,
    certificates_json           TEXT    NOT NULL,
    enabled                     BOOLEAN NOT NULL,
    allow_idp_initiated         BOOLEAN NOT NULL,
    allow_response_only_signing BOOLEAN NOT NULL,
    jit                         BOOLEAN NOT NULL,
    session_ttl_minutes         BIGINT,
    metadata_valid_until        BIGINT,
    created_at                  BIGINT  NOT NULL,
    updated_at                  BIGINT  NOT NULL
);

-- E-mail domains routed to a connection by the sign-in entry point; a domain routes to one.
CREATE TABLE sso_domains (
    domain        TEXT    NOT NULL PRIMARY KEY,
    connection_id TEXT    NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    created_at    BIGINT  NOT NULL
);
CREATE INDEX sso_domains_connection_idx ON sso_domains (connection_id);

-- AuthnRequests sent and not yet answered: a Response's InResponseTo must name one, once.
CREATE TABLE saml_requests (
    id            TEXT    NOT NULL PRIMARY KEY,
    connection_id TEXT    NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    relay_state   TEXT,
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL
);
CREATE INDEX saml_requests_expires_idx ON saml_requests (expires_at);

-- Assertion IDs accepted, kept until the assertion could no longer be accepted anyway: the
-- replay cache, shared by every replica.
CREATE TABLE saml_assertions_seen (
    connection_id TEXT    NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    assertion_id  TEXT    NOT NULL,
    expires_at    BIGINT  NOT NULL,
    PRIMARY KEY (connection_id, assertion_id)
);
CREATE INDEX saml_assertions_seen_expires_idx ON saml_assertions_seen (expires_at);
