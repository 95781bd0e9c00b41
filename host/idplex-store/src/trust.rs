//! The deployment's trust in connector publishers: the publisher keys it trusts to sign
//! modules, its policy for modules that are unsigned or signed by another key, and who published
//! each installed module (the `modules` columns `admitted_as`, `publisher`, `publisher_key`).
//!
//! The store knows nothing of signatures: keys are opaque strings here (the hub parses and
//! verifies them), identified by their fingerprint. Everything lives in the database, so every
//! replica sharing it applies the same policy.

use serde::{Deserialize, Serialize};

use crate::{Store, StoreError, now_ms};

/// Longest publisher name, in bytes.
pub const MAX_PUBLISHER_BYTES: usize = 128;

/// What the policy does with a class of modules ([`TrustPolicy`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrustRule {
    /// Refused at install (the default).
    #[default]
    Refuse,
    /// Installed, and recorded as such.
    Allow,
}

impl TrustRule {
    /// `refuse` or `allow`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            TrustRule::Refuse => "refuse",
            TrustRule::Allow => "allow",
        }
    }
}

impl std::fmt::Display for TrustRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TrustRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "refuse" => Ok(TrustRule::Refuse),
            "allow" => Ok(TrustRule::Allow),
            other => Err(format!("expected `refuse` or `allow`, not {other:?}")),
        }
    }
}

/// The deployment's trust policy. A signature that does not verify is refused whatever it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustPolicy {
    /// Modules without a signature.
    pub unsigned: TrustRule,
    /// Modules with a valid signature by a key that is not trusted.
    pub untrusted: TrustRule,
    /// Who set it last (`None`: never set, the defaults apply).
    pub updated_by: Option<String>,
    /// When (unix ms; `None`: never set).
    pub updated_at: Option<i64>,
}

impl Default for TrustPolicy {
    /// Refuse both: what a deployment that never set a policy gets.
    fn default() -> Self {
        TrustPolicy { unsigned: TrustRule::Refuse, untrusted: TrustRule::Refuse, updated_by: None, updated_at: None }
    }
}

/// A publisher key the deployment trusts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct TrustedKey {
    /// First 16 hex digits of the sha256 of the raw public key.
    pub fingerprint: String,
    /// The publisher's name, as given with the key.
    pub publisher: String,
    /// The public key, base64 (opaque to the store).
    pub public_key: String,
    /// Who added it.
    pub added_by: String,
    /// When (unix ms).
    pub added_at: i64,
}

/// A key to trust ([`Store::add_trusted_key`]).
#[derive(Debug, Clone)]
pub struct NewTrustedKey {
    /// 16 lowercase hex digits.
    pub fingerprint: String,
    /// The publisher's name.
    pub publisher: String,
    /// The public key, base64.
    pub public_key: String,
    /// Who adds it.
    pub added_by: String,
}

/// How an installed module was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Admission {
    /// Signed by a trusted publisher key.
    Trusted,
    /// Signed by a key the deployment does not trust; let in by the policy.
    Untrusted,
    /// Not signed; let in by the policy.
    Unsigned,
    /// A first-party connector bundled in the binary (trusted as part of it).
    FirstParty,
}

impl Admission {
    /// As stored (`trusted`, `untrusted`, `unsigned`, `first-party`).
    pub fn as_str(self) -> &'static str {
        match self {
            Admission::Trusted => "trusted",
            Admission::Untrusted => "untrusted",
            Admission::Unsigned => "unsigned",
            Admission::FirstParty => "first-party",
        }
    }

    fn parse(s: &str) -> Option<Admission> {
        Some(match s {
            "trusted" => Admission::Trusted,
            "untrusted" => Admission::Untrusted,
            "unsigned" => Admission::Unsigned,
            "first-party" => Admission::FirstParty,
            _ => return None,
        })
    }
}

/// Who published an installed module, as judged at its install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModulePublisher {
    /// How it was admitted.
    pub admitted_as: Admission,
    /// The trusted key's publisher; the name an untrusted signature claims (unverified);
    /// `first-party (bundled)`; `None` when unsigned.
    pub publisher: Option<String>,
    /// The signing key's fingerprint; `None` when unsigned or first-party.
    pub fingerprint: Option<String>,
}

impl ModulePublisher {
    /// The record of a module `admitted_as` by `publisher` with key `fingerprint`, as read back
    /// from the `modules` columns (`None` when the module predates them).
    pub(crate) fn from_columns(
        sha256: &str,
        admitted_as: Option<String>,
        publisher: Option<String>,
        fingerprint: Option<String>,
    ) -> Result<Option<ModulePublisher>, StoreError> {
        let Some(admitted_as) = admitted_as else { return Ok(None) };
        let admitted_as = Admission::parse(&admitted_as)
            .ok_or_else(|| StoreError::corrupt("admitted_as of module", sha256, format!("unknown value {admitted_as:?}")))?;
        Ok(Some(ModulePublisher { admitted_as, publisher, fingerprint }))
    }
}

impl std::fmt::Display for ModulePublisher {
    /// `acme (key 0123456789abcdef, trusted)`, `unsigned`, `first-party (bundled)`, …
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.admitted_as, &self.publisher, &self.fingerprint) {
            (Admission::Unsigned, _, _) => f.write_str("unsigned"),
            (Admission::FirstParty, Some(p), _) => f.write_str(p),
            (Admission::FirstParty, None, _) => f.write_str("first-party (bundled)"),
            (Admission::Trusted, p, k) => {
                write!(f, "{} (key {}, trusted)", p.as_deref().unwrap_or("?"), k.as_deref().unwrap_or("?"))
            }
            (Admission::Untrusted, p, k) => write!(
                f,
                "{} (claimed; key {} not trusted)",
                p.as_deref().unwrap_or("?"),
                k.as_deref().unwrap_or("?")
            ),
        }
    }
}

const KEY_COLUMNS: &str = "fingerprint, publisher, public_key, added_by, added_at";

fn check_fingerprint(fingerprint: &str) -> Result<(), StoreError> {
    if fingerprint.len() == 16 && fingerprint.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(StoreError::InvalidInput {
            what: "key fingerprint",
            reason: format!("{fingerprint:?} is not 16 lowercase hex digits"),
        })
    }
}

fn check_text(what: &'static str, value: &str, max: usize) -> Result<(), StoreError> {
    if value.trim().is_empty() || value.len() > max || value.chars().any(char::is_control) {
        return Err(StoreError::InvalidInput {
            what,
            reason: format!("must be 1 to {max} bytes without control characters"),
        });
    }
    Ok(())
}

impl Store {
    /// The trust policy ([`TrustPolicy::default`], refuse both, when never set).
    pub async fn trust_policy(&self) -> Result<TrustPolicy, StoreError> {
        let row: Option<(String, String, String, i64)> = with_pool!(self, read, |pool| {
            sqlx::query_as("SELECT unsigned, untrusted, updated_by, updated_at FROM connector_trust_policy WHERE id = 1")
                .fetch_optional(pool)
                .await?
        });
        let Some((unsigned, untrusted, updated_by, updated_at)) = row else {
            return Ok(TrustPolicy::default());
        };
        let rule = |v: &str| v.parse::<TrustRule>().map_err(|e| StoreError::corrupt("trust policy", "1", e));
        Ok(TrustPolicy {
            unsigned: rule(&unsigned)?,
            untrusted: rule(&untrusted)?,
            updated_by: Some(updated_by),
            updated_at: Some(updated_at),
        })
    }

    /// Sets the parts of the trust policy given (`None` keeps a part as it is, or its default,
    /// refuse, when never set) in one statement, and returns the policy now in force.
    pub async fn set_trust_policy(
        &self,
        unsigned: Option<TrustRule>,
        untrusted: Option<TrustRule>,
        actor: &str,
    ) -> Result<TrustPolicy, StoreError> {
        check_text("actor", actor, MAX_PUBLISHER_BYTES)?;
        let now = now_ms();
        with_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO connector_trust_policy (id, unsigned, untrusted, updated_by, updated_at) \
                 VALUES (1, COALESCE($1, 'refuse'), COALESCE($2, 'refuse'), $3, $4) \
                 ON CONFLICT (id) DO UPDATE SET \
                     unsigned = COALESCE($1, connector_trust_policy.unsigned), \
                     untrusted = COALESCE($2, connector_trust_policy.untrusted), \
                     updated_by = $3, updated_at = $4",
            )
            .bind(unsigned.map(TrustRule::as_str))
            .bind(untrusted.map(TrustRule::as_str))
            .bind(actor)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        self.trust_policy().await
    }

    /// Trusts a publisher key. Adding a key that is already trusted changes nothing and answers
    /// its record (`false`: not inserted); another key under the same fingerprint is a
    /// [`StoreError::Conflict`].
    pub async fn add_trusted_key(&self, key: &NewTrustedKey) -> Result<(TrustedKey, bool), StoreError> {
        check_fingerprint(&key.fingerprint)?;
        check_text("publisher", &key.publisher, MAX_PUBLISHER_BYTES)?;
        check_text("public key", &key.public_key, 256)?;
        check_text("actor", &key.added_by, MAX_PUBLISHER_BYTES)?;
        let inserted = with_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO trusted_publisher_keys (fingerprint, publisher, public_key, added_by, added_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(&key.fingerprint)
            .bind(&key.publisher)
            .bind(&key.public_key)
            .bind(&key.added_by)
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        let existing = self.trusted_key(&key.fingerprint).await?;
        match existing {
            Some(k) if k.public_key == key.public_key => Ok((k, inserted == 1)),
            Some(k) => Err(StoreError::conflict(
                "publisher key",
                k.fingerprint,
                "another key with this fingerprint is already trusted",
            )),
            // Inserted nothing, yet no row under the fingerprint: the key itself is trusted
            // under another fingerprint (the unique public_key).
            None => Err(StoreError::conflict(
                "publisher key",
                key.fingerprint.clone(),
                "this public key is already trusted under another fingerprint",
            )),
        }
    }

    /// The trusted key with this fingerprint, if any.
    pub async fn trusted_key(&self, fingerprint: &str) -> Result<Option<TrustedKey>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM trusted_publisher_keys WHERE fingerprint = $1");
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as::<_, TrustedKey>(&sql).bind(fingerprint).fetch_optional(pool).await?
        }))
    }

    /// Every trusted key, oldest first.
    pub async fn trusted_keys(&self) -> Result<Vec<TrustedKey>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM trusted_publisher_keys ORDER BY added_at, fingerprint");
        Ok(with_pool!(self, read, |pool| sqlx::query_as::<_, TrustedKey>(&sql).fetch_all(pool).await?))
    }

    /// Stops trusting a key and answers what it was; [`StoreError::NotFound`] if it was not
    /// trusted. Modules it signed stay installed (they are not judged again); later installs of
    /// modules it signs are judged as untrusted.
    pub async fn remove_trusted_key(&self, fingerprint: &str) -> Result<TrustedKey, StoreError> {
        check_fingerprint(fingerprint)?;
        let sql = format!("DELETE FROM trusted_publisher_keys WHERE fingerprint = $1 RETURNING {KEY_COLUMNS}");
        let row: Option<TrustedKey> = with_pool!(self, write, |pool| {
            sqlx::query_as::<_, TrustedKey>(&sql).bind(fingerprint).fetch_optional(pool).await?
        });
        row.ok_or_else(|| StoreError::not_found("trusted publisher key", fingerprint))
    }

    /// Records who published the installed module `sha256` (see [`ModulePublisher`]), replacing
    /// what was recorded; whether the module exists.
    pub async fn set_module_publisher(&self, sha256: &str, publisher: &ModulePublisher) -> Result<bool, StoreError> {
        let updated = with_pool!(self, write, |pool| {
            sqlx::query("UPDATE modules SET admitted_as = $2, publisher = $3, publisher_key = $4 WHERE sha256 = $1")
                .bind(sha256)
                .bind(publisher.admitted_as.as_str())
                .bind(publisher.publisher.as_deref())
                .bind(publisher.fingerprint.as_deref())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(updated == 1)
    }
}
