//! The admin service: the administrative use cases the admin API and the CLI share (admin
//! tokens, installed connectors, connections and their history, connector events, SCIM tokens,
//! a directory's delete policy, users' API tokens and sessions). One implementation of each,
//! with its checks (an unknown connection is *not found* before a token is issued for it; a
//! lifetime out of bounds is *invalid* whoever asks), so neither front end reaches the store:
//! they decode, call one of these, and encode.

use idplex_store::{
    AdminToken, BindingChange, Connection, DirectoryUser, Event, ModuleSummary, ScimDeletePolicy, ScimToken,
    StoreError, UserApiToken, UserApiTokenPage, UserSession, UserTokenCursor, UserTokenFilter,
};

use crate::{Hub, HubError, now_ms};

/// The longest lifetime of a user API token an admin can ask for, in days (ten years).
pub const MAX_USER_TOKEN_TTL_DAYS: u32 = 3650;

/// The longest lifetime of a user session an admin can open, in minutes (30 days).
pub const MAX_SESSION_TTL_MINUTES: u32 = 30 * 24 * 60;

/// The longest lifetime of an admin token, in days (ten years).
pub const MAX_ADMIN_TOKEN_TTL_DAYS: u32 = 3650;

const DAY_MS: i64 = 86_400_000;

impl Hub {
    /// Whether the database answers (readiness).
    pub async fn ready(&self) -> Result<(), HubError> {
        Ok(self.store.ping().await?)
    }

    /// Which database this hub runs on (`sqlite`, `postgres`), for logs.
    pub fn backend_name(&self) -> String {
        self.store.backend().to_string()
    }

    /// Closes the database pools: the last step of a graceful shutdown.
    pub async fn close(&self) {
        self.store.close().await;
    }

    // -- admin tokens ----------------------------------------------------------------------------

    /// The admin token a secret belongs to, if it is known, unexpired and not revoked (compared
    /// in constant time by its hash).
    pub async fn verify_admin_token(&self, secret: &str) -> Result<Option<AdminToken>, HubError> {
        Ok(self.store.verify_admin_token(secret).await?)
    }

    /// Issues an admin token that expires after `expires_days` (none: it never expires). The
    /// secret is returned once and stored hashed.
    pub async fn create_admin_token(
        &self,
        name: &str,
        expires_days: Option<u32>,
    ) -> Result<(AdminToken, String), HubError> {
        let expires_at = lifetime_ms("expires_days", expires_days, MAX_ADMIN_TOKEN_TTL_DAYS, DAY_MS)?.map(|ms| now_ms() + ms);
        Ok(self.store.create_admin_token(name, expires_at).await?)
    }

    /// Every admin token (never their secrets).
    pub async fn admin_tokens(&self) -> Result<Vec<AdminToken>, HubError> {
        Ok(self.store.list_admin_tokens().await?)
    }

    /// Revokes an admin token (revoking it again changes nothing).
    pub async fn revoke_admin_token(&self, id: &str) -> Result<AdminToken, HubError> {
        Ok(self.store.revoke_admin_token(id).await?)
    }

    // -- connectors and connections --------------------------------------------------------------

    /// Every installed connector version.
    pub async fn connectors(&self) -> Result<Vec<ModuleSummary>, HubError> {
        Ok(self.store.list_modules().await?)
    }

    /// The installed versions of one connector; not found when none is.
    pub async fn connector_versions(&self, name: &str) -> Result<Vec<ModuleSummary>, HubError> {
        let versions = self.store.list_versions(name).await?;
        if versions.is_empty() {
            return Err(StoreError::NotFound { what: "connector", key: name.to_string() }.into());
        }
        Ok(versions)
    }

    /// One installed connector version.
    pub async fn connector_module(&self, name: &str, version: &str) -> Result<ModuleSummary, HubError> {
        Ok(self.store.get_module(name, version).await?)
    }

    /// Every connection (callers show them [`crate::redacted`]).
    pub async fn connections(&self) -> Result<Vec<Connection>, HubError> {
        Ok(self.store.list_connections().await?)
    }

    /// One connection.
    pub async fn connection(&self, id: &str) -> Result<Connection, HubError> {
        Ok(self.store.get_connection(id).await?)
    }

    /// A connection's activations and rollbacks, oldest first; not found for an unknown
    /// connection.
    pub async fn binding_history(&self, connection_id: &str) -> Result<Vec<BindingChange>, HubError> {
        self.store.get_connection(connection_id).await?;
        Ok(self.store.binding_history(connection_id).await?)
    }

    /// Runs the connector's *test connection* (contract 1.1 `diagnostics.test-connection`) on
    /// the connection's live binding: its config, and for a connector that calls its IdP's
    /// API, reachability with the credentials the host attaches. A failed check is a result;
    /// a connector fault (trap, timeout, limits) is an error, recorded as an event like any
    /// other call's. A connector built against contract 1.0 has no such call: the answer says
    /// so (`available: false`).
    pub async fn test_connection(&self, connection_id: &str) -> Result<ConnectionTest, HubError> {
        self.store.get_connection(connection_id).await?;
        if self.binding(connection_id).is_err() {
            // Not bound in this process (the CLI binds nothing at start): bind it from the
            // store; an unbound or unbindable connection then answers why.
            self.sync_connection(connection_id).await?;
        }
        let b = self.binding(connection_id)?;
        // With the credential a pull would carry (a token from the connection's provider), so
        // the connector's API checks test what a sync will meet. A provider that cannot give one
        // is the answer.
        let ctx = match self.api_call_context(&b).await {
            Ok((ctx, _, _)) => ctx,
            Err(e) if b.connector.has(idplex_runtime::Capability::DirectorySync) => return Err(e),
            Err(_) => (*b.context).clone(),
        };
        let out = b.connector.test_connection(&ctx).await;
        let out = self.observe(&b, out).await?;
        let connector = b.connector.label().to_string();
        let contract_version = b.connector.contract_version().to_string();
        Ok(match out {
            None => ConnectionTest {
                connection_id: connection_id.to_string(),
                message: format!(
                    "{connector} is built against contract {contract_version}, before test-connection (1.1): \
                     nothing was checked; install a newer version of it to get the checks"
                ),
                connector,
                contract_version,
                available: false,
                ok: false,
                checks: Vec::new(),
            },
            Some(checks) => {
                let failed = checks.iter().filter(|c| !c.ok).count();
                ConnectionTest {
                    connection_id: connection_id.to_string(),
                    message: match failed {
                        0 => format!("{} check(s) passed", checks.len()),
                        n => format!("{n} of {} check(s) failed", checks.len()),
                    },
                    connector,
                    contract_version,
                    available: true,
                    ok: failed == 0,
                    checks: checks
                        .into_iter()
                        .map(|c| CheckOutcome { name: c.name, ok: c.ok, detail: c.detail })
                        .collect(),
                }
            }
        })
    }

    /// What a SCIM `DELETE /Users/{id}` does on this connection.
    pub async fn set_scim_delete_policy(&self, id: &str, policy: ScimDeletePolicy) -> Result<Connection, HubError> {
        Ok(self.store.set_scim_delete_policy(id, policy).await?)
    }

    /// The newest connector events (traps, timeouts, limits hit, refused installs), of one
    /// connection or all.
    pub async fn events(&self, connection_id: Option<&str>, limit: u32) -> Result<Vec<Event>, HubError> {
        Ok(self.store.list_events(connection_id, limit).await?)
    }

    // -- SCIM tokens -----------------------------------------------------------------------------

    /// A connection's SCIM tokens (never their secrets); not found for an unknown connection.
    pub async fn scim_tokens(&self, connection_id: &str) -> Result<Vec<ScimToken>, HubError> {
        self.store.get_connection(connection_id).await?;
        Ok(self.store.list_scim_tokens(connection_id).await?)
    }

    /// Issues a SCIM bearer token for a connection (`expires_at` in unix ms; none: the store's
    /// default of one year). The secret is returned once and stored hashed.
    pub async fn create_scim_token(
        &self,
        connection_id: &str,
        expires_at: Option<i64>,
    ) -> Result<(ScimToken, String), HubError> {
        self.store.get_connection(connection_id).await?;
        Ok(self.store.create_scim_token(connection_id, expires_at).await?)
    }

    /// Replaces a SCIM token with a new one; the old one keeps working for `overlap_ms`.
    pub async fn rotate_scim_token(
        &self,
        connection_id: &str,
        token_id: &str,
        overlap_ms: i64,
    ) -> Result<(ScimToken, String), HubError> {
        Ok(self.store.rotate_scim_token(connection_id, token_id, overlap_ms).await?)
    }

    /// Revokes a SCIM token at once.
    pub async fn revoke_scim_token(&self, connection_id: &str, token_id: &str) -> Result<ScimToken, HubError> {
        Ok(self.store.revoke_scim_token(connection_id, token_id).await?)
    }

    /// The SCIM token a bearer secret presented for `connection_id` belongs to, if it is valid
    /// for that connection.
    pub async fn verify_scim_token(&self, connection_id: &str, secret: &str) -> Result<Option<ScimToken>, HubError> {
        Ok(self.store.verify_scim_token(connection_id, secret).await?)
    }

    // -- users: their record, API tokens and sessions ------------------------------------------

    /// A user as admins see it (soft-deleted ones included).
    pub async fn user(&self, user_id: &str) -> Result<DirectoryUser, HubError> {
        Ok(self.store.get_user_for_admin(user_id).await?)
    }

    /// Issues a user API token living `ttl_days` (none: the store's default of 90 days, at most
    /// [`MAX_USER_TOKEN_TTL_DAYS`]). The secret is returned once and stored hashed.
    pub async fn create_user_api_token(
        &self,
        user_id: &str,
        label: &str,
        ttl_days: Option<u32>,
    ) -> Result<(UserApiToken, String), HubError> {
        let ttl_ms = lifetime_ms("ttl_days", ttl_days, MAX_USER_TOKEN_TTL_DAYS, DAY_MS)?;
        Ok(self.store.create_user_api_token(user_id, label, ttl_ms).await?)
    }

    /// A page of user API tokens, newest first.
    pub async fn user_api_tokens(
        &self,
        filter: UserTokenFilter<'_>,
        limit: Option<u32>,
        before: Option<&UserTokenCursor>,
    ) -> Result<UserApiTokenPage, HubError> {
        Ok(self.store.list_user_api_tokens(filter, limit, before).await?)
    }

    /// Revokes a user API token at once.
    pub async fn revoke_user_api_token(&self, id: &str) -> Result<UserApiToken, HubError> {
        Ok(self.store.revoke_user_api_token(id).await?)
    }

    /// Opens a session for a user living `ttl_minutes` (none: the store's default of 12 hours,
    /// at most [`MAX_SESSION_TTL_MINUTES`]). The secret is returned once and stored hashed.
    pub async fn create_session(
        &self,
        user_id: &str,
        ttl_minutes: Option<u32>,
    ) -> Result<(UserSession, String), HubError> {
        let ttl_ms = lifetime_ms("ttl_minutes", ttl_minutes, MAX_SESSION_TTL_MINUTES, 60_000)?;
        Ok(self.store.create_user_session(user_id, ttl_ms).await?)
    }

    /// A user's sessions, newest first; not found for an unknown user.
    pub async fn sessions(&self, user_id: &str) -> Result<Vec<UserSession>, HubError> {
        self.store.get_user_for_admin(user_id).await?;
        Ok(self.store.list_user_sessions(user_id).await?)
    }

    /// Ends a session at once.
    pub async fn end_session(&self, id: &str) -> Result<UserSession, HubError> {
        Ok(self.store.end_user_session(id).await?)
    }
}

/// The answer to a *test connection* ([`Hub::test_connection`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnectionTest {
    /// The connection tested.
    pub connection_id: String,
    /// The connector version that ran the checks (`name@version`).
    pub connector: String,
    /// The contract version that connector was built against.
    pub contract_version: String,
    /// Whether the connector offers the checks (contract 1.1 or newer).
    pub available: bool,
    /// Whether every check passed (false when none could run).
    pub ok: bool,
    /// The checks, in the connector's order.
    pub checks: Vec<CheckOutcome>,
    /// One line for people.
    pub message: String,
}

/// One check of a [`ConnectionTest`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckOutcome {
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found (never a secret).
    pub detail: String,
}

/// A lifetime given in `unit_ms` units, in ms: none when not given, [`HubError::Invalid`]
/// naming `what` and the bounds when outside 1 to `max`.
fn lifetime_ms(what: &'static str, value: Option<u32>, max: u32, unit_ms: i64) -> Result<Option<i64>, HubError> {
    match value {
        None => Ok(None),
        Some(v) if (1..=max).contains(&v) => Ok(Some(i64::from(v) * unit_ms)),
        Some(v) => Err(HubError::Invalid { what, reason: format!("{v} is out of range: must be 1 to {max}") }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lifetime_out_of_bounds_names_the_field_and_the_bounds() {
        for bad in [0, MAX_USER_TOKEN_TTL_DAYS + 1] {
            let e = lifetime_ms("ttl_days", Some(bad), MAX_USER_TOKEN_TTL_DAYS, DAY_MS).unwrap_err();
            assert_eq!(e.to_string(), format!("invalid ttl_days: {bad} is out of range: must be 1 to 3650"));
            assert_eq!(e.class(), crate::ErrorClass::Invalid);
        }
        assert_eq!(lifetime_ms("ttl_minutes", Some(2), 10, 60_000).unwrap(), Some(120_000));
        assert_eq!(lifetime_ms("ttl_minutes", None, 10, 60_000).unwrap(), None);
    }
}
