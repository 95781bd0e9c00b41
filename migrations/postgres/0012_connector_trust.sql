-- Signed connector modules and the deployment's trust policy (issue 13), PostgreSQL dialect.
-- Keep equivalent to ../sqlite/0012_connector_trust.sql: same tables, columns, constraints and indexes.

-- Publisher keys this deployment trusts to sign connector modules (Ed25519). fingerprint: the
-- first 16 hex digits of the sha256 of the raw 32-byte public key; public_key: that key in
-- base64; publisher: the name given with the key (`idplex-ed25519 <key> <publisher>`).
CREATE TABLE trusted_publisher_keys (
    fingerprint TEXT    NOT NULL PRIMARY KEY CHECK (length(fingerprint) = 16),
    publisher   TEXT    NOT NULL,
    public_key  TEXT    NOT NULL UNIQUE,
    added_by    TEXT    NOT NULL,
    added_at    BIGINT  NOT NULL
);

-- The trust policy: one row (id 1), absent until first set. Absent means refuse both: a module
-- without a signature, or signed by a key not in trusted_publisher_keys, is refused at install.
CREATE TABLE connector_trust_policy (
    id         INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    unsigned   TEXT    NOT NULL CHECK (unsigned IN ('refuse', 'allow')),
    untrusted  TEXT    NOT NULL CHECK (untrusted IN ('refuse', 'allow')),
    updated_by TEXT    NOT NULL,
    updated_at BIGINT  NOT NULL
);

-- Who published each installed module, as judged when it was installed: admitted_as is
-- 'trusted' (signed by a trusted key), 'untrusted' (signed by another key, let in by the
-- policy), 'unsigned' (let in by the policy) or 'first-party' (bundled in the binary); NULL for
-- modules installed before signatures were checked. publisher: the trusted key's publisher, or
-- the name an untrusted signature claims; publisher_key: the signing key's fingerprint.
ALTER TABLE modules ADD COLUMN admitted_as TEXT CHECK (admitted_as IN ('trusted', 'untrusted', 'unsigned', 'first-party'));
ALTER TABLE modules ADD COLUMN publisher TEXT;
ALTER TABLE modules ADD COLUMN publisher_key TEXT;
