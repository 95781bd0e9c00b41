//! OpenID Connect provider state: registered apps (OAuth 2.0 clients), the ID-token signing
//! keys, authorization requests waiting for a sign-in, authorization codes and access tokens;
//! and each organization's session policy.
//!
//! Every secret (client secret, code, access token) is shown once and stored as its sha256,
//! compared in constant time, like the other tokens. A code is redeemed by one statement
//! (`UPDATE … WHERE used_at IS NULL RETURNING`), so two replicas cannot both redeem it; a second
//! redemption marks the code *reused* and revokes the access tokens issued for it (RFC 6749
//! §4.1.2), and a token is only issued while its code is not marked reused, so the two cannot
//! cross. Access tokens are verified with their user in one query (active, not soft-deleted):
//! a deactivation stops them at once, on every replica.

use serde::{Deserialize, Serialize};

use crate::directory::{UserRow, user_columns};
use crate::error::is_unique_violation;
use crate::tokens::{hash_secret, hashes_match, is_well_formed, new_secret};
use crate::{DirectoryUser, Store, StoreError, now_ms, random_id};

/// Every app's client secret starts with this.
pub const OIDC_CLIENT_SECRET_PREFIX: &str = "idp_ocs_";
/// Every authorization code starts with this.
pub const OIDC_CODE_PREFIX: &str = "idp_occ_";
/// Every access token starts with this.
pub const OIDC_ACCESS_TOKEN_PREFIX: &str = "idp_oat_";

/// An app (OAuth 2.0 / OpenID Connect client) of an organization. Never carries its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcClient {
    /// The `client_id`: `app_` and 32 hex digits.
    pub id: String,
    /// Only users of this organization sign in to it.
    pub org_id: String,
    pub name: String,
    /// Where codes may be sent, compared exactly.
    pub redirect_uris: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// When the current secret was issued.
    pub secret_rotated_at: i64,
}

/// A key ID tokens are signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSigningKey {
    pub kid: String,
    /// `RS256`.
    pub alg: String,
    /// The private key, sealed by the caller (the store never sees it in the clear).
    pub private_key_sealed: String,
    /// The public key as a JWK (JSON object text).
    pub public_jwk_json: String,
    pub created_at: i64,
    /// When a newer key took over signing; `None` for the key that signs.
    pub retired_at: Option<i64>,
}

/// An authorization code: what it grants and to whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcCode {
    /// Names the code in the tokens issued for it.
    pub id: String,
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    /// PKCE `code_challenge` (S256).
    pub code_challenge: String,
    pub scope: String,
    pub nonce: Option<String>,
    /// When the user signed in (the session's start), unix ms.
    pub auth_time: i64,
    pub created_at: i64,
    pub expires_at: i64,
}

/// What redeeming a code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeRedemption {
    /// The code, now used: issue tokens for it (or refuse them), never again.
    Redeemed(OidcCode),
    /// The code was redeemed before: it is now marked reused and the tokens issued for it are
    /// revoked. The app it was issued to is named.
    Reused { client_id: String, code_id: String, revoked_tokens: u64 },
    /// No such code, or it expired.
    Invalid,
}

/// An access token (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcAccessToken {
    pub id: String,
    pub code_id: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// An organization's session policy; `None` leaves a bound off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgSessionPolicy {
    /// A session ends after this many minutes without a request.
    pub session_idle_minutes: Option<i64>,
    /// A session ends this many minutes after it was opened, whatever its own lifetime.
    pub session_absolute_minutes: Option<i64>,
}

/// Most redirect URIs an app may register.
pub const MAX_REDIRECT_URIS: usize = 20;
/// Longest redirect URI, in bytes.
pub const MAX_REDIRECT_URI_BYTES: usize = 2000;
/// Longest app name, in bytes.
pub const MAX_APP_NAME_BYTES: usize = 200;
/// Longest parameters of a pending authorization request, in bytes.
pub const MAX_PENDING_PARAMS_BYTES: usize = 8 * 1024;

#[derive(sqlx::FromRow)]
struct ClientRow {
    id: String,
    org_id: String,
    name: String,
    redirect_uris_json: String,
    created_at: i64,
    updated_at: i64,
    secret_rotated_at: i64,
}

impl ClientRow {
    fn into_client(self) -> Result<OidcClient, StoreError> {
        let redirect_uris = serde_json::from_str(&self.redirect_uris_json).map_err(|e| StoreError::Corrupt {
            what: "OIDC app",
            key: self.id.clone(),
            reason: format!("redirect URIs: {e}"),
        })?;
        Ok(OidcClient {
            id: self.id,
            org_id: self.org_id,
            name: self.name,
            redirect_uris,
            created_at: self.created_at,
            updated_at: self.updated_at,
            secret_rotated_at: self.secret_rotated_at,
        })
    }
}

const CLIENT_COLUMNS: &str = "id, org_id, name, redirect_uris_json, created_at, updated_at, secret_rotated_at";

#[derive(sqlx::FromRow)]
struct ClientSecretRow {
    secret_hash: String,
    #[sqlx(flatten)]
    client: ClientRow,
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    kid: String,
    alg: String,
    private_key_sealed: String,
    public_jwk_json: String,
    created_at: i64,
    retired_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct CodeRow {
    id: String,
    client_id: String,
    user_id: String,
    redirect_uri: String,
    code_challenge: String,
    scope: String,
    nonce: Option<String>,
    auth_time: i64,
    created_at: i64,
    expires_at: i64,
}

impl From<CodeRow> for OidcCode {
    fn from(r: CodeRow) -> Self {
        OidcCode {
            id: r.id,
            client_id: r.client_id,
            user_id: r.user_id,
            redirect_uri: r.redirect_uri,
            code_challenge: r.code_challenge,
            scope: r.scope,
            nonce: r.nonce,
            auth_time: r.auth_time,
            created_at: r.created_at,
            expires_at: r.expires_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct VerifiedTokenRow {
    t_hash: String,
    t_id: String,
    t_code_id: String,
    t_client_id: String,
    t_user_id: String,
    t_scope: String,
    t_created_at: i64,
    t_expires_at: i64,
    #[sqlx(flatten)]
    user: UserRow,
}

fn invalid(what: &'static str, reason: impl Into<String>) -> StoreError {
    StoreError::InvalidInput { what, reason: reason.into() }
}

fn check_client_fields(name: &str, redirect_uris: &[String]) -> Result<(), StoreError> {
    if name.trim().is_empty() || name.len() > MAX_APP_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(invalid("app name", format!("must be 1 to {MAX_APP_NAME_BYTES} bytes, no control characters")));
    }
    if redirect_uris.is_empty() || redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(invalid("redirect URIs", format!("give 1 to {MAX_REDIRECT_URIS}")));
    }
    if let Some(long) = redirect_uris.iter().find(|u| u.len() > MAX_REDIRECT_URI_BYTES) {
        return Err(invalid("redirect URI", format!("{} bytes; at most {MAX_REDIRECT_URI_BYTES}", long.len())));
    }
    Ok(())
}

impl Store {
    // -- apps ----------------------------------------------------------------------------------

    /// Registers an app of `org_id`. Returns it and its client secret (`idp_ocs_` + 64 hex
    /// digits), which is not stored. [`StoreError::Conflict`] if the organization has an app of
    /// that name. The caller checks the redirect URIs' form; the store bounds their number and
    /// size.
    pub async fn create_oidc_client(
        &self,
        org_id: &str,
        name: &str,
        redirect_uris: &[String],
    ) -> Result<(OidcClient, String), StoreError> {
        if org_id.trim().is_empty() {
            return Err(invalid("organization id", "must not be empty"));
        }
        check_client_fields(name, redirect_uris)?;
        let secret = new_secret(OIDC_CLIENT_SECRET_PREFIX);
        let now = now_ms();
        let client = OidcClient {
            id: random_id("app_"),
            org_id: org_id.to_owned(),
            name: name.to_owned(),
            redirect_uris: redirect_uris.to_vec(),
            created_at: now,
            updated_at: now,
            secret_rotated_at: now,
        };
        let uris = serde_json::to_string(&client.redirect_uris).map_err(|e| invalid("redirect URIs", e.to_string()))?;
        let done = with_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO oidc_clients (id, org_id, name, redirect_uris_json, secret_hash, created_at, \
                 updated_at, secret_rotated_at) VALUES ($1, $2, $3, $4, $5, $6, $6, $6)",
            )
            .bind(&client.id)
            .bind(&client.org_id)
            .bind(&client.name)
            .bind(&uris)
            .bind(hash_secret(&secret))
            .bind(now)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        });
        match done {
            Ok(_) => Ok((client, secret)),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict {
                what: "app",
                key: name.to_owned(),
                reason: format!("already exists in organization {org_id}"),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// The app `id`, if there is one.
    pub async fn oidc_client(&self, id: &str) -> Result<Option<OidcClient>, StoreError> {
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM oidc_clients WHERE id = $1");
        let row: Option<ClientRow> =
            with_pool!(self, read, |pool| { sqlx::query_as(&sql).bind(id).fetch_optional(pool).await? });
        row.map(ClientRow::into_client).transpose()
    }

    /// Every app, by organization then name.
    pub async fn list_oidc_clients(&self) -> Result<Vec<OidcClient>, StoreError> {
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM oidc_clients ORDER BY org_id, name, id");
        let rows: Vec<ClientRow> = with_pool!(self, read, |pool| { sqlx::query_as(&sql).fetch_all(pool).await? });
        rows.into_iter().map(ClientRow::into_client).collect()
    }

    /// Renames the app and/or replaces its redirect URIs. [`StoreError::NotFound`],
    /// [`StoreError::Conflict`] (name taken in its organization).
    pub async fn update_oidc_client(
        &self,
        id: &str,
        name: Option<&str>,
        redirect_uris: Option<&[String]>,
    ) -> Result<OidcClient, StoreError> {
        let current = self.oidc_client(id).await?.ok_or_else(|| StoreError::not_found("app", id))?;
        let name = name.unwrap_or(&current.name);
        let uris = redirect_uris.unwrap_or(&current.redirect_uris);
        check_client_fields(name, uris)?;
        let uris_json = serde_json::to_string(uris).map_err(|e| invalid("redirect URIs", e.to_string()))?;
        let sql = format!(
            "UPDATE oidc_clients SET name = $1, redirect_uris_json = $2, updated_at = $3 WHERE id = $4 \
             RETURNING {CLIENT_COLUMNS}"
        );
        let row: Result<Option<ClientRow>, sqlx::Error> = with_pool!(self, write, |pool| {
            sqlx::query_as(&sql).bind(name).bind(&uris_json).bind(now_ms()).bind(id).fetch_optional(pool).await
        });
        match row {
            Ok(Some(row)) => row.into_client(),
            Ok(None) => Err(StoreError::not_found("app", id)),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict {
                what: "app",
                key: name.to_owned(),
                reason: format!("already exists in organization {}", current.org_id),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Issues the app a new client secret; the old one stops working at once.
    pub async fn rotate_oidc_client_secret(&self, id: &str) -> Result<(OidcClient, String), StoreError> {
        let secret = new_secret(OIDC_CLIENT_SECRET_PREFIX);
        let now = now_ms();
        let sql = format!(
            "UPDATE oidc_clients SET secret_hash = $1, secret_rotated_at = $2, updated_at = $2 WHERE id = $3 \
             RETURNING {CLIENT_COLUMNS}"
        );
        let row: Option<ClientRow> = with_pool!(self, write, |pool| {
            sqlx::query_as(&sql).bind(hash_secret(&secret)).bind(now).bind(id).fetch_optional(pool).await?
        });
        let client = row.ok_or_else(|| StoreError::not_found("app", id))?.into_client()?;
        Ok((client, secret))
    }

    /// Deletes the app, its codes, pending requests and tokens.
    pub async fn delete_oidc_client(&self, id: &str) -> Result<(), StoreError> {
        let gone = with_pool!(self, write, |pool| {
            sqlx::query("DELETE FROM oidc_clients WHERE id = $1").bind(id).execute(pool).await?.rows_affected()
        });
        if gone == 0 {
            return Err(StoreError::not_found("app", id));
        }
        Ok(())
    }

    /// The app `id` if `secret` is its client secret (compared in constant time); `None`
    /// otherwise, whichever part was wrong.
    pub async fn verify_oidc_client(&self, id: &str, secret: &str) -> Result<Option<OidcClient>, StoreError> {
        if !is_well_formed(secret, OIDC_CLIENT_SECRET_PREFIX) || id.len() > 64 {
            return Ok(None);
        }
        let sql = format!("SELECT secret_hash, {CLIENT_COLUMNS} FROM oidc_clients WHERE id = $1");
        let row: Option<ClientSecretRow> =
            with_pool!(self, read, |pool| { sqlx::query_as(&sql).bind(id).fetch_optional(pool).await? });
        let row = row.map(|r| (r.secret_hash, r.client));
        let Some((hash, client)) = row else { return Ok(None) };
        if !hashes_match(&hash, &hash_secret(secret)) {
            return Ok(None);
        }
        client.into_client().map(Some)
    }

    // -- signing keys -------------------------------------------------------------------------

    /// Adds `key` as the signing key and retires the one that signed until now, in one
    /// transaction.
    pub async fn add_oidc_signing_key(&self, key: &OidcSigningKey) -> Result<(), StoreError> {
        with_tx!(self, |tx| {
            sqlx::query("UPDATE oidc_signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
                .bind(key.created_at)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO oidc_signing_keys (kid, alg, private_key_sealed, public_jwk_json, created_at, retired_at) \
                 VALUES ($1, $2, $3, $4, $5, NULL)",
            )
            .bind(&key.kid)
            .bind(&key.alg)
            .bind(&key.private_key_sealed)
            .bind(&key.public_jwk_json)
            .bind(key.created_at)
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }

    /// The signing keys kept, newest first: the one that signs (if any) first.
    pub async fn oidc_signing_keys(&self) -> Result<Vec<OidcSigningKey>, StoreError> {
        let rows: Vec<KeyRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT kid, alg, private_key_sealed, public_jwk_json, created_at, retired_at \
                 FROM oidc_signing_keys ORDER BY created_at DESC, kid DESC",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|r| OidcSigningKey {
                kid: r.kid,
                alg: r.alg,
                private_key_sealed: r.private_key_sealed,
                public_jwk_json: r.public_jwk_json,
                created_at: r.created_at,
                retired_at: r.retired_at,
            })
            .collect())
    }

    // -- pending authorization requests -------------------------------------------------------

    /// Keeps an authorization request of `client_id` until `expires_at` while its user signs
    /// in; returns its id (`oar_` + 32 hex digits).
    pub async fn remember_oidc_request(
        &self,
        client_id: &str,
        params_json: &str,
        expires_at: i64,
    ) -> Result<String, StoreError> {
        if params_json.len() > MAX_PENDING_PARAMS_BYTES {
            return Err(invalid("authorization request", format!("over {MAX_PENDING_PARAMS_BYTES} bytes")));
        }
        let id = random_id("oar_");
        with_pool!(self, write, |pool| {
            sqlx::query("INSERT INTO oidc_pending (id, client_id, params_json, expires_at) VALUES ($1, $2, $3, $4)")
                .bind(&id)
                .bind(client_id)
                .bind(params_json)
                .bind(expires_at)
                .execute(pool)
                .await?;
        });
        Ok(id)
    }

    /// Takes (deletes and returns) the pending request `id`: its app and parameters, unless it
    /// expired before `now`.
    pub async fn take_oidc_request(&self, id: &str, now: i64) -> Result<Option<(String, String)>, StoreError> {
        if id.len() > 64 {
            return Ok(None);
        }
        let row: Option<(String, String, i64)> = with_pool!(self, write, |pool| {
            sqlx::query_as("DELETE FROM oidc_pending WHERE id = $1 RETURNING client_id, params_json, expires_at")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.filter(|(_, _, expires_at)| *expires_at > now).map(|(c, p, _)| (c, p)))
    }

    // -- codes and tokens ---------------------------------------------------------------------

    /// Stores a code (its `id` and the rest as given); returns its secret (`idp_occ_` + 64 hex
    /// digits), which is not stored.
    pub async fn create_oidc_code(&self, code: &OidcCode) -> Result<String, StoreError> {
        let secret = new_secret(OIDC_CODE_PREFIX);
        with_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO oidc_codes (code_hash, id, client_id, user_id, redirect_uri, code_challenge, scope, \
                 nonce, auth_time, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(hash_secret(&secret))
            .bind(&code.id)
            .bind(&code.client_id)
            .bind(&code.user_id)
            .bind(&code.redirect_uri)
            .bind(&code.code_challenge)
            .bind(&code.scope)
            .bind(&code.nonce)
            .bind(code.auth_time)
            .bind(code.created_at)
            .bind(code.expires_at)
            .execute(pool)
            .await?;
        });
        Ok(secret)
    }

    /// Redeems the code whose secret this is, at `now`: see [`CodeRedemption`].
    pub async fn redeem_oidc_code(&self, secret: &str, now: i64) -> Result<CodeRedemption, StoreError> {
        if !is_well_formed(secret, OIDC_CODE_PREFIX) {
            return Ok(CodeRedemption::Invalid);
        }
        let hash = hash_secret(secret);
        let redeemed: Option<CodeRow> = with_pool!(self, write, |pool| {
            sqlx::query_as(
                "UPDATE oidc_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL \
                 RETURNING id, client_id, user_id, redirect_uri, code_challenge, scope, nonce, auth_time, \
                 created_at, expires_at",
            )
            .bind(now)
            .bind(&hash)
            .fetch_optional(pool)
            .await?
        });
        if let Some(row) = redeemed {
            return Ok(if row.expires_at > now { CodeRedemption::Redeemed(row.into()) } else { CodeRedemption::Invalid });
        }
        // Used before (or unknown): mark it reused and revoke what it gave, in one transaction.
        let out = with_tx!(self, |tx| {
            let used: Option<(String, String)> = sqlx::query_as(
                "UPDATE oidc_codes SET reused_at = COALESCE(reused_at, $1) WHERE code_hash = $2 \
                 RETURNING id, client_id",
            )
            .bind(now)
            .bind(&hash)
            .fetch_optional(&mut *tx)
            .await?;
            match used {
                Some((code_id, client_id)) => {
                    let revoked = sqlx::query(
                        "UPDATE oidc_access_tokens SET revoked_at = $1 WHERE code_id = $2 AND revoked_at IS NULL",
                    )
                    .bind(now)
                    .bind(&code_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    CodeRedemption::Reused { client_id, code_id, revoked_tokens: revoked }
                }
                None => CodeRedemption::Invalid,
            }
        });
        Ok(out)
    }

    /// Issues an access token for the redeemed code `code`, valid until `expires_at`, unless
    /// the code was marked reused meanwhile (then `None`). Returns the token and its secret
    /// (`idp_oat_` + 64 hex digits), which is not stored.
    pub async fn issue_oidc_access_token(
        &self,
        code: &OidcCode,
        expires_at: i64,
    ) -> Result<Option<(OidcAccessToken, String)>, StoreError> {
        let secret = new_secret(OIDC_ACCESS_TOKEN_PREFIX);
        let token = OidcAccessToken {
            id: random_id("oat_"),
            code_id: code.id.clone(),
            client_id: code.client_id.clone(),
            user_id: code.user_id.clone(),
            scope: code.scope.clone(),
            created_at: now_ms(),
            expires_at,
        };
        let inserted = with_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO oidc_access_tokens (token_hash, id, code_id, client_id, user_id, scope, created_at, \
                 expires_at) SELECT $1, $2, $3, $4, $5, $6, $7, $8 \
                 WHERE EXISTS (SELECT 1 FROM oidc_codes WHERE id = $3 AND reused_at IS NULL)",
            )
            .bind(hash_secret(&secret))
            .bind(&token.id)
            .bind(&token.code_id)
            .bind(&token.client_id)
            .bind(&token.user_id)
            .bind(&token.scope)
            .bind(token.created_at)
            .bind(token.expires_at)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok((inserted == 1).then_some((token, secret)))
    }

    /// The access token whose secret this is and its user, if the token is neither expired nor
    /// revoked, its app still exists, *and* its user is active and not soft-deleted, all in one
    /// query; `None` otherwise.
    pub async fn verify_oidc_access_token(
        &self,
        secret: &str,
        now: i64,
    ) -> Result<Option<(OidcAccessToken, DirectoryUser)>, StoreError> {
        if !is_well_formed(secret, OIDC_ACCESS_TOKEN_PREFIX) {
            return Ok(None);
        }
        let presented = hash_secret(secret);
        let sql = format!(
            "SELECT t.token_hash AS t_hash, t.id AS t_id, t.code_id AS t_code_id, t.client_id AS t_client_id, \
                 t.user_id AS t_user_id, t.scope AS t_scope, t.created_at AS t_created_at, \
                 t.expires_at AS t_expires_at, {} \
             FROM oidc_access_tokens t JOIN directory_users u ON u.id = t.user_id \
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND t.expires_at > $2 \
               AND u.active AND u.scim_deleted_at IS NULL",
            user_columns("u")
        );
        let row: Option<VerifiedTokenRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(&sql).bind(&presented).bind(now).fetch_optional(pool).await?
        });
        let Some(row) = row else { return Ok(None) };
        if !hashes_match(&row.t_hash, &presented) {
            return Ok(None);
        }
        let token = OidcAccessToken {
            id: row.t_id,
            code_id: row.t_code_id,
            client_id: row.t_client_id,
            user_id: row.t_user_id,
            scope: row.t_scope,
            created_at: row.t_created_at,
            expires_at: row.t_expires_at,
        };
        Ok(Some((token, row.user.into_user()?)))
    }

    /// Revokes the access token whose secret this is (RFC 7009), if it belongs to `client_id`;
    /// whether one was revoked.
    pub async fn revoke_oidc_access_token(&self, secret: &str, client_id: &str, now: i64) -> Result<bool, StoreError> {
        if !is_well_formed(secret, OIDC_ACCESS_TOKEN_PREFIX) {
            return Ok(false);
        }
        let done = with_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE oidc_access_tokens SET revoked_at = COALESCE(revoked_at, $1) \
                 WHERE token_hash = $2 AND client_id = $3",
            )
            .bind(now)
            .bind(hash_secret(secret))
            .bind(client_id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(done > 0)
    }

    /// Deletes expired pending requests, codes and tokens, and the signing keys retired before
    /// `keys_retired_before`; returns how many rows went.
    pub async fn prune_oidc(&self, now: i64, keys_retired_before: i64) -> Result<u64, StoreError> {
        let gone = with_pool!(self, write, |pool| {
            let mut n = 0;
            for sql in [
                "DELETE FROM oidc_pending WHERE expires_at <= $1",
                "DELETE FROM oidc_access_tokens WHERE expires_at <= $1",
            ] {
                n += sqlx::query(sql).bind(now).execute(pool).await?.rows_affected();
            }
            // A code is kept while a token issued for it may live, so that a late reuse still
            // finds (and revokes) it: one day past its own expiry.
            n += sqlx::query("DELETE FROM oidc_codes WHERE expires_at <= $1")
                .bind(now - 24 * 60 * 60 * 1000)
                .execute(pool)
                .await?
                .rows_affected();
            n += sqlx::query("DELETE FROM oidc_signing_keys WHERE retired_at IS NOT NULL AND retired_at <= $1")
                .bind(keys_retired_before)
                .execute(pool)
                .await?
                .rows_affected();
            n
        });
        Ok(gone)
    }

    // -- organization session policy ----------------------------------------------------------

    /// The session policy of `org_id` (all bounds off when none was set).
    pub async fn org_session_policy(&self, org_id: &str) -> Result<OrgSessionPolicy, StoreError> {
        let row: Option<(Option<i64>, Option<i64>)> = with_pool!(self, read, |pool| {
            sqlx::query_as("SELECT session_idle_minutes, session_absolute_minutes FROM org_settings WHERE org_id = $1")
                .bind(org_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row
            .map(|(idle, absolute)| OrgSessionPolicy { session_idle_minutes: idle, session_absolute_minutes: absolute })
            .unwrap_or_default())
    }

    /// Sets the session policy of `org_id`. Applies at once to open sessions too (sessions are
    /// checked against it on every request).
    pub async fn set_org_session_policy(&self, org_id: &str, policy: &OrgSessionPolicy) -> Result<(), StoreError> {
        if org_id.trim().is_empty() {
            return Err(invalid("organization id", "must not be empty"));
        }
        for (what, v) in [("idle timeout", policy.session_idle_minutes), ("absolute timeout", policy.session_absolute_minutes)] {
            if v.is_some_and(|m| m <= 0) {
                return Err(invalid(what, "must be at least one minute"));
            }
        }
        with_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO org_settings (org_id, session_idle_minutes, session_absolute_minutes, updated_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (org_id) DO UPDATE SET \
                 session_idle_minutes = excluded.session_idle_minutes, \
                 session_absolute_minutes = excluded.session_absolute_minutes, updated_at = excluded.updated_at",
            )
            .bind(org_id)
            .bind(policy.session_idle_minutes)
            .bind(policy.session_absolute_minutes)
            .bind(now_ms())
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}
