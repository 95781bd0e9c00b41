//! SAML single sign-on state: each connection's service-provider settings (the IdP it trusts),
//! the e-mail domains routed to it, the AuthnRequests awaiting an answer and the replay cache of
//! accepted assertion IDs.
//!
//! The last two live in the database, not in a process, so that replicas behind one load
//! balancer behave as one: a request sent by one replica may be answered at another, and an
//! assertion accepted by one is a replay at every other. Both are consumed or claimed by one
//! statement each (`DELETE … RETURNING`, `INSERT … ON CONFLICT DO NOTHING`) in the unit of
//! writes that finishes a sign-in (`sign_in.rs`), so two replicas racing for the same ID cannot
//! both win. Expired rows are pruned by [`Store::prune_saml`].

use rusqlite::OptionalExtension;

use crate::error::{is_foreign_key_violation, is_unique_violation};
use crate::{Store, StoreError, now_ms};

/// A connection's SAML service-provider settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SamlSettings {
    pub connection_id: String,
    /// The IdP's entity ID: the `Issuer` its responses must carry.
    pub idp_entity_id: String,
    /// Where AuthnRequests go (HTTP-Redirect binding).
    pub sso_url: String,
    /// The IdP's signing certificates, base64 DER; more than one during a key rollover.
    pub certificates: Vec<String>,
    /// Whether sign-in through this connection is on. Never without a certificate.
    pub enabled: bool,
    /// Whether unsolicited (IdP-initiated) responses are accepted.
    pub allow_idp_initiated: bool,
    /// Whether a signature over the Response alone (unsigned Assertion inside) is enough.
    pub allow_response_only_signing: bool,
    /// Whether AuthnRequests are signed with the deployment's SP key.
    #[serde(default)]
    pub sign_authn_requests: bool,
    /// The IdP's single logout URL (HTTP-Redirect), if it offers single logout.
    #[serde(default)]
    pub slo_url: Option<String>,
    /// With `jit`: also remove the user from the connection's groups the assertion does not
    /// name (otherwise memberships are only added).
    #[serde(default)]
    pub jit_sync_groups: bool,
    /// Whether a sign-in of a user the directory does not know creates it (just in time).
    pub jit: bool,
    /// Lifetime of the sessions its sign-ins open; the store's default when `None`.
    pub session_ttl_minutes: Option<i64>,
    /// The imported IdP metadata's `validUntil` (unix ms), if it had one.
    pub metadata_valid_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An AuthnRequest sent and not yet answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamlRequest {
    pub id: String,
    pub connection_id: String,
    pub relay_state: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// The IdP session a session opened by SAML sign-in came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamlSessionLink {
    pub session_id: String,
    pub connection_id: String,
    /// The subject's NameID, full text, and its format.
    pub name_id: String,
    pub name_id_format: Option<String>,
    /// The assertion's `SessionIndex`.
    pub session_index: Option<String>,
}

/// The deployment's SAML SP signing key (signs AuthnRequests of the connections that ask).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamlSpKey {
    pub id: String,
    /// The private key (PKCS#8 DER, base64), sealed by the caller.
    pub private_key_sealed: String,
    /// The certificate SP metadata publishes, base64 DER.
    pub certificate_der: String,
    pub created_at: i64,
}

/// Longest e-mail domain accepted for routing (RFC 1035 names).
const MAX_DOMAIN_LEN: usize = 253;
/// Longest request or assertion ID kept (IdPs send 20–64 characters).
pub(crate) const MAX_SAML_ID_LEN: usize = 256;
/// Longest RelayState kept (SAML bindings §3.4.3: 80 bytes; some SPs send more).
const MAX_RELAY_STATE_LEN: usize = 1024;

#[derive(sqlx::FromRow)]
struct SettingsRow {
    connection_id: String,
    idp_entity_id: String,
    sso_url: String,
    certificates_json: String,
    enabled: bool,
    allow_idp_initiated: bool,
    allow_response_only_signing: bool,
    sign_authn_requests: bool,
    slo_url: Option<String>,
    jit_sync_groups: bool,
    jit: bool,
    session_ttl_minutes: Option<i64>,
    metadata_valid_until: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl SettingsRow {
    /// A row of [`SETTINGS_COLUMNS`], in that order, read through rusqlite.
    fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<SettingsRow> {
        Ok(SettingsRow {
            connection_id: row.get(0)?,
            idp_entity_id: row.get(1)?,
            sso_url: row.get(2)?,
            certificates_json: row.get(3)?,
            enabled: row.get(4)?,
            allow_idp_initiated: row.get(5)?,
            allow_response_only_signing: row.get(6)?,
            sign_authn_requests: row.get(7)?,
            slo_url: row.get(8)?,
            jit: row.get(9)?,
            session_ttl_minutes: row.get(10)?,
            metadata_valid_until: row.get(11)?,
            created_at: row.get(12)?,
            updated_at: row.get(13)?,
            jit_sync_groups: row.get(14)?,
        })
    }

    fn into_settings(self) -> Result<SamlSettings, StoreError> {
        let certificates = serde_json::from_str(&self.certificates_json).map_err(|e| StoreError::Corrupt {
            what: "SAML settings of connection",
            key: self.connection_id.clone(),
            reason: format!("certificates: {e}"),
        })?;
        Ok(SamlSettings {
            connection_id: self.connection_id,
            idp_entity_id: self.idp_entity_id,
            sso_url: self.sso_url,
            certificates,
            enabled: self.enabled,
            allow_idp_initiated: self.allow_idp_initiated,
            allow_response_only_signing: self.allow_response_only_signing,
            sign_authn_requests: self.sign_authn_requests,
            slo_url: self.slo_url,
            jit_sync_groups: self.jit_sync_groups,
            jit: self.jit,
            session_ttl_minutes: self.session_ttl_minutes,
            metadata_valid_until: self.metadata_valid_until,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

const SETTINGS_COLUMNS: &str = "connection_id, idp_entity_id, sso_url, certificates_json, enabled, \
     allow_idp_initiated, allow_response_only_signing, sign_authn_requests, slo_url, jit, session_ttl_minutes, metadata_valid_until, \
     created_at, updated_at, jit_sync_groups";

/// Insert or replace a connection's settings; `created_at` survives a replacement.
const UPSERT_SETTINGS: &str = "INSERT INTO saml_connections (connection_id, idp_entity_id, sso_url, \
     certificates_json, enabled, allow_idp_initiated, allow_response_only_signing, jit, session_ttl_minutes, \
     metadata_valid_until, created_at, updated_at, sign_authn_requests, slo_url, jit_sync_groups) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, $14) \
     ON CONFLICT (connection_id) DO UPDATE SET idp_entity_id = excluded.idp_entity_id, \
     sso_url = excluded.sso_url, certificates_json = excluded.certificates_json, enabled = excluded.enabled, \
     allow_idp_initiated = excluded.allow_idp_initiated, \
     allow_response_only_signing = excluded.allow_response_only_signing, jit = excluded.jit, \
     sign_authn_requests = excluded.sign_authn_requests, slo_url = excluded.slo_url, \
     jit_sync_groups = excluded.jit_sync_groups, \
     session_ttl_minutes = excluded.session_ttl_minutes, metadata_valid_until = excluded.metadata_valid_until, \
     updated_at = excluded.updated_at \
     RETURNING created_at";

fn invalid(what: &'static str, reason: impl Into<String>) -> StoreError {
    StoreError::InvalidInput { what, reason: reason.into() }
}

fn check_id(what: &'static str, id: &str) -> Result<(), StoreError> {
    if id.is_empty() || id.len() > MAX_SAML_ID_LEN {
        return Err(invalid(what, format!("must be 1 to {MAX_SAML_ID_LEN} bytes")));
    }
    Ok(())
}

/// A domain as routed: lowercase letters, digits, `-` and `.`, at least one dot, no empty label.
fn check_domain(domain: &str) -> Result<(), StoreError> {
    let ok = !domain.is_empty()
        && domain.len() <= MAX_DOMAIN_LEN
        && domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(invalid("e-mail domain", format!("{domain:?} is not a lowercase DNS name such as example.com")))
    }
}

impl Store {
    /// Stores `settings` for its connection (replacing earlier ones) and returns them as stored.
    ///
    /// [`StoreError::InvalidInput`] when enabled without a certificate (sign-in fails closed) or
    /// with an empty entity ID or SSO URL; [`StoreError::NotFound`] if the connection does not
    /// exist.
    pub async fn put_saml_settings(&self, settings: &SamlSettings) -> Result<SamlSettings, StoreError> {
        if settings.idp_entity_id.trim().is_empty() {
            return Err(invalid("SAML settings", "the IdP entity ID is empty"));
        }
        if settings.sso_url.trim().is_empty() {
            return Err(invalid("SAML settings", "the IdP SSO URL is empty"));
        }
        if settings.enabled && settings.certificates.is_empty() {
            return Err(invalid(
                "SAML settings",
                "sign-in cannot be enabled without an IdP signing certificate",
            ));
        }
        if settings.session_ttl_minutes.is_some_and(|m| m <= 0) {
            return Err(invalid("SAML settings", "the session lifetime must be positive"));
        }
        let certificates = serde_json::to_string(&settings.certificates)
            .map_err(|e| invalid("SAML settings", e.to_string()))?;
        let now = now_ms();
        let created: Result<i64, sqlx::Error> = with_pool!(self, write, |pool| {
            sqlx::query_scalar(UPSERT_SETTINGS)
                .bind(&settings.connection_id)
                .bind(&settings.idp_entity_id)
                .bind(&settings.sso_url)
                .bind(&certificates)
                .bind(settings.enabled)
                .bind(settings.allow_idp_initiated)
                .bind(settings.allow_response_only_signing)
                .bind(settings.jit)
                .bind(settings.session_ttl_minutes)
                .bind(settings.metadata_valid_until)
                .bind(now)
                .bind(settings.sign_authn_requests)
                .bind(&settings.slo_url)
                .bind(settings.jit_sync_groups)
                .fetch_one(pool)
                .await
        });
        let created_at = match created {
            Ok(at) => at,
            Err(e) if is_foreign_key_violation(&e) => {
                return Err(StoreError::not_found("connection", &settings.connection_id));
            }
            Err(e) => return Err(e.into()),
        };
        Ok(SamlSettings { created_at, updated_at: now, ..settings.clone() })
    }

    /// The connection's SAML settings, if it has any.
    pub async fn saml_settings(&self, connection_id: &str) -> Result<Option<SamlSettings>, StoreError> {
        let sql = format!("SELECT {SETTINGS_COLUMNS} FROM saml_connections WHERE connection_id = $1");
        // Read on every sign-in: the synchronous reader on SQLite.
        let row: Option<SettingsRow> = with_reader!(self,
            sqlite: |r| r.prepare_cached(&sql)?
                .query_row(crate::readers::numbered(&[&connection_id]).as_slice(), SettingsRow::from_sqlite)
                .optional(),
            pool: |c| sqlx::query_as(&sql).bind(connection_id).fetch_optional(c).await
        )?;
        row.map(SettingsRow::into_settings).transpose()
    }

    /// The connections of `org_id` whose SAML sign-in is enabled, by id.
    pub async fn saml_enabled_connections(&self, org_id: &str) -> Result<Vec<String>, StoreError> {
        let ids: Vec<String> = with_pool!(self, read, |pool| {
            sqlx::query_scalar(
                "SELECT c.id FROM connections c JOIN saml_connections s ON s.connection_id = c.id \
                 WHERE c.org_id = $1 AND s.enabled ORDER BY c.id",
            )
            .bind(org_id)
            .fetch_all(pool)
            .await?
        });
        Ok(ids)
    }

    /// Removes the connection's SAML settings (sign-in through it stops); `false` if it had none.
    pub async fn delete_saml_settings(&self, connection_id: &str) -> Result<bool, StoreError> {
        let done = with_pool!(self, write, |pool| {
            sqlx::query("DELETE FROM saml_connections WHERE connection_id = $1")
                .bind(connection_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done > 0)
    }

    /// Routes exactly `domains` (lowercase DNS names) to the connection, replacing the ones it
    /// had, in one transaction. [`StoreError::Conflict`] names a domain already routed to another
    /// connection (nothing changes); [`StoreError::NotFound`] if the connection does not exist.
    pub async fn set_sso_domains(&self, connection_id: &str, domains: &[String]) -> Result<Vec<String>, StoreError> {
        let mut wanted: Vec<String> = domains.to_vec();
        wanted.sort();
        wanted.dedup();
        for d in &wanted {
            check_domain(d)?;
        }
        let now = now_ms();
        with_tx!(self, |tx| {
            sqlx::query("DELETE FROM sso_domains WHERE connection_id = $1")
                .bind(connection_id)
                .execute(&mut *tx)
                .await?;
            for d in &wanted {
                let done = sqlx::query("INSERT INTO sso_domains (domain, connection_id, created_at) VALUES ($1, $2, $3)")
                    .bind(d)
                    .bind(connection_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await;
                match done {
                    Ok(_) => {}
                    Err(e) if is_unique_violation(&e) => {
                        return Err(StoreError::conflict("e-mail domain", d, "is routed to another connection"));
                    }
                    Err(e) if is_foreign_key_violation(&e) => {
                        return Err(StoreError::not_found("connection", connection_id));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        });
        Ok(wanted)
    }

    /// The e-mail domains routed to the connection, sorted.
    pub async fn sso_domains(&self, connection_id: &str) -> Result<Vec<String>, StoreError> {
        let rows: Vec<String> = with_pool!(self, read, |pool| {
            sqlx::query_scalar("SELECT domain FROM sso_domains WHERE connection_id = $1 ORDER BY domain")
                .bind(connection_id)
                .fetch_all(pool)
                .await?
        });
        Ok(rows)
    }

    /// The connection the e-mail domain `domain` (any case) is routed to.
    pub async fn connection_for_domain(&self, domain: &str) -> Result<Option<String>, StoreError> {
        let domain = domain.to_ascii_lowercase();
        if domain.is_empty() || domain.len() > MAX_DOMAIN_LEN {
            return Ok(None);
        }
        let row: Option<String> = with_pool!(self, read, |pool| {
            sqlx::query_scalar("SELECT connection_id FROM sso_domains WHERE domain = $1")
                .bind(&domain)
                .fetch_optional(pool)
                .await?
        });
        Ok(row)
    }

    /// Remembers the AuthnRequest `id` sent for the connection until `expires_at` (unix ms).
    /// [`StoreError::Conflict`] if the ID was used before; [`StoreError::NotFound`] if the
    /// connection does not exist.
    pub async fn remember_saml_request(
        &self,
        id: &str,
        connection_id: &str,
        relay_state: Option<&str>,
        expires_at: i64,
    ) -> Result<SamlRequest, StoreError> {
        check_id("SAML request ID", id)?;
        if relay_state.is_some_and(|r| r.len() > MAX_RELAY_STATE_LEN) {
            return Err(invalid("RelayState", format!("longer than {MAX_RELAY_STATE_LEN} bytes")));
        }
        let now = now_ms();
        let done = with_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO saml_requests (id, connection_id, relay_state, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(connection_id)
            .bind(relay_state)
            .bind(now)
            .bind(expires_at)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        });
        match done {
            Ok(_) => Ok(SamlRequest {
                id: id.to_owned(),
                connection_id: connection_id.to_owned(),
                relay_state: relay_state.map(str::to_owned),
                created_at: now,
                expires_at,
            }),
            Err(e) if is_unique_violation(&e) => Err(StoreError::conflict("SAML request", id, "was issued before")),
            Err(e) if is_foreign_key_violation(&e) => Err(StoreError::not_found("connection", connection_id)),
            Err(e) => Err(e.into()),
        }
    }

    /// The deployment's SAML SP signing key: its id, sealed private key and certificate (base64
    /// DER), if one was set.
    pub async fn saml_sp_key(&self) -> Result<Option<SamlSpKey>, StoreError> {
        let row: Option<(String, String, String, i64)> = with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT id, private_key_sealed, certificate_der, created_at FROM saml_sp_keys \
                 ORDER BY created_at DESC, id DESC LIMIT 1",
            )
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(id, private_key_sealed, certificate_der, created_at)| SamlSpKey {
            id,
            private_key_sealed,
            certificate_der,
            created_at,
        }))
    }

    /// Makes `key` the SP signing key, replacing the previous one, in one transaction.
    pub async fn set_saml_sp_key(&self, key: &SamlSpKey) -> Result<(), StoreError> {
        with_tx!(self, |tx| {
            sqlx::query("DELETE FROM saml_sp_keys").execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO saml_sp_keys (id, private_key_sealed, certificate_der, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&key.id)
            .bind(&key.private_key_sealed)
            .bind(&key.certificate_der)
            .bind(key.created_at)
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }

    /// Whether the assertion ID was claimed already (a read: [`Store::finish_sign_in`] decides).
    pub async fn saml_assertion_seen(&self, connection_id: &str, assertion_id: &str) -> Result<bool, StoreError> {
        let sql = "SELECT expires_at FROM saml_assertions_seen WHERE connection_id = $1 AND assertion_id = $2";
        let found: Option<i64> = with_reader!(self,
            sqlite: |r| r.prepare_cached(sql)?
                .query_row(crate::readers::numbered(&[&connection_id, &assertion_id]).as_slice(), |row| row.get(0))
                .optional(),
            pool: |c| sqlx::query_scalar(sql).bind(connection_id).bind(assertion_id).fetch_optional(c).await
        )?;
        Ok(found.is_some())
    }

    /// Whether the request `id` of the connection is outstanding at `now` (a read:
    /// [`Store::finish_sign_in`] consumes it).
    pub async fn saml_request_pending(&self, id: &str, connection_id: &str, now: i64) -> Result<bool, StoreError> {
        let sql = "SELECT expires_at FROM saml_requests WHERE id = $1 AND connection_id = $2";
        let found: Option<i64> = with_reader!(self,
            sqlite: |r| r.prepare_cached(sql)?
                .query_row(crate::readers::numbered(&[&id, &connection_id]).as_slice(), |row| row.get(0))
                .optional(),
            pool: |c| sqlx::query_scalar(sql).bind(id).bind(connection_id).fetch_optional(c).await
        )?;
        Ok(found.is_some_and(|expires_at| expires_at > now))
    }

    /// The IdP session the session `session_id` came from, if it came from SAML sign-in.
    pub async fn saml_session(&self, session_id: &str) -> Result<Option<SamlSessionLink>, StoreError> {
        let row: Option<(String, String, Option<String>, Option<String>)> = with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT connection_id, name_id, name_id_format, session_index FROM saml_sessions WHERE session_id = $1",
            )
            .bind(session_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(connection_id, name_id, name_id_format, session_index)| SamlSessionLink {
            session_id: session_id.to_owned(),
            connection_id,
            name_id,
            name_id_format,
            session_index,
        }))
    }

    /// Ends the open sessions that SAML sign-in through `connection_id` opened for `name_id`
    /// (only those with one of `session_indexes`, unless it is empty): the IdP asked. Returns
    /// the ids of the sessions ended.
    pub async fn end_saml_sessions(
        &self,
        connection_id: &str,
        name_id: &str,
        session_indexes: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let links: Vec<(String, Option<String>)> = with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT l.session_id, l.session_index FROM saml_sessions l JOIN user_sessions s ON s.id = l.session_id \
                 WHERE l.connection_id = $1 AND l.name_id = $2 AND s.ended_at IS NULL",
            )
            .bind(connection_id)
            .bind(name_id)
            .fetch_all(pool)
            .await?
        });
        let mut ended = Vec::new();
        for (session_id, index) in links {
            if !session_indexes.is_empty() && !index.is_some_and(|i| session_indexes.contains(&i)) {
                continue;
            }
            if self.end_user_session(&session_id).await.is_ok() {
                ended.push(session_id);
            }
        }
        Ok(ended)
    }

    /// Deletes the outstanding requests and replay-cache entries that expired before `now`
    /// (unix ms); returns how many rows went.
    pub async fn prune_saml(&self, now: i64) -> Result<u64, StoreError> {
        let gone = with_pool!(self, write, |pool| {
            let requests = sqlx::query("DELETE FROM saml_requests WHERE expires_at <= $1")
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected();
            let seen = sqlx::query("DELETE FROM saml_assertions_seen WHERE expires_at <= $1")
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected();
            requests + seen
        });
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::check_domain;

    #[test]
    fn domains() {
        for ok in ["example.com", "a-b.example.co.uk", "x1.io"] {
            assert!(check_domain(ok).is_ok(), "{ok}");
        }
        for bad in ["", "example", "Example.com", "-a.com", "a-.com", "a..com", ".com", "a.com.", "a_b.com", "é.com"] {
            assert!(check_domain(bad).is_err(), "{bad}");
        }
    }
}
