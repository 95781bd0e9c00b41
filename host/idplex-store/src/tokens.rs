//! Admin API tokens. The secret is shown once at creation; only its sha256 is stored.
//!
//! The secret helpers below are shared with SCIM tokens (`scim_tokens.rs`) and with user API
//! tokens and sessions (`user_tokens.rs`).

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{AdminToken, Store, StoreError, now_ms, random_id};

/// Every admin secret starts with this, so it is recognisable in logs and secret scanners.
pub const ADMIN_TOKEN_PREFIX: &str = "idp_adm_";

/// `last_used_at` is refreshed at most this often per token, so that verifying a token on
/// every request does not turn every request into a database write.
const LAST_USED_GRANULARITY_MS: i64 = 60_000;

/// Number of hex digits after the prefix of every secret (32 random bytes).
const SECRET_HEX_LEN: usize = 64;

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: String,
    name: String,
    token_hash: String,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    last_used_at: Option<i64>,
}

/// What listing selects: everything but the hash, which never leaves the database there.
#[derive(sqlx::FromRow)]
struct ListedTokenRow {
    id: String,
    name: String,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    last_used_at: Option<i64>,
}

impl TokenRow {
    fn into_token(self) -> AdminToken {
        AdminToken {
            id: self.id,
            name: self.name,
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            last_used_at: self.last_used_at,
        }
    }
}

/// A fresh secret: `prefix` followed by 32 random bytes in hex.
pub(crate) fn new_secret(prefix: &str) -> String {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    format!("{prefix}{}", hex::encode(raw))
}

/// Whether `secret` has the shape [`new_secret`] gives secrets with this `prefix`. Anything
/// else is refused before it costs a database query.
pub(crate) fn is_well_formed(secret: &str, prefix: &str) -> bool {
    secret.strip_prefix(prefix).is_some_and(|body| {
        body.len() == SECRET_HEX_LEN && body.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// What the database stores instead of a secret: its sha256 in lowercase hex.
pub(crate) fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares a stored hash with the presented secret's hash in constant time. The lookup is by
/// hash already; comparing again this way means no code path decides on a secret-derived value
/// with an early-exit comparison.
pub(crate) fn hashes_match(stored: &str, presented: &str) -> bool {
    bool::from(stored.as_bytes().ct_eq(presented.as_bytes()))
}

/// Whether a verified token's `last_used_at` is old enough to be written again at `now`.
fn last_use_is_stale(last_used_at: Option<i64>, now: i64) -> bool {
    last_used_at.is_none_or(|at| now - at >= LAST_USED_GRANULARITY_MS)
}

/// The token tables whose `last_used_at` (`last_seen_at` for sessions) [`Store::touch_token`]
/// maintains.
#[derive(Clone, Copy)]
pub(crate) enum TokenTable {
    Admin,
    Scim,
    UserApi,
    Session,
}

impl Store {
    /// Records that token `id` of `table` was just used, at most once per
    /// [`LAST_USED_GRANULARITY_MS`] so that verifying a token is not a write on every request.
    pub(crate) async fn touch_token(
        &self,
        table: TokenTable,
        id: &str,
        last_used_at: &mut Option<i64>,
        now: i64,
    ) -> Result<(), StoreError> {
        if !last_use_is_stale(*last_used_at, now) {
            return Ok(());
        }
        let sql = match table {
            TokenTable::Admin => "UPDATE admin_tokens SET last_used_at = $1 WHERE id = $2",
            TokenTable::Scim => "UPDATE scim_tokens SET last_used_at = $1 WHERE id = $2",
            TokenTable::UserApi => "UPDATE user_api_tokens SET last_used_at = $1 WHERE id = $2",
            TokenTable::Session => "UPDATE user_sessions SET last_seen_at = $1 WHERE id = $2",
        };
        with_pool!(self, write, |pool| {
            sqlx::query(sql).bind(now).bind(id).execute(pool).await?;
        });
        *last_used_at = Some(now);
        Ok(())
    }

    /// Creates an admin token named `name`, valid until `expires_at` (unix ms) or forever.
    /// Returns the token and its secret (`idp_adm_` + 64 hex digits): the secret is not stored
    /// and cannot be shown again.
    pub async fn create_admin_token(
        &self,
        name: &str,
        expires_at: Option<i64>,
    ) -> Result<(AdminToken, String), StoreError> {
        if name.trim().is_empty() {
            return Err(StoreError::InvalidInput {
                what: "admin token name",
                reason: "must not be empty".into(),
            });
        }
        let secret = new_secret(ADMIN_TOKEN_PREFIX);
        let token = AdminToken {
            id: random_id("tok_"),
            name: name.to_owned(),
            created_at: now_ms(),
            expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        with_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO admin_tokens (id, name, token_hash, created_at, expires_at, revoked_at, last_used_at) \
                 VALUES ($1, $2, $3, $4, $5, NULL, NULL)",
            )
            .bind(&token.id)
            .bind(&token.name)
            .bind(hash_secret(&secret))
            .bind(token.created_at)
            .bind(token.expires_at)
            .execute(pool)
            .await?;
        });
        tracing::info!(token = %token.id, name = %token.name, "admin token created");
        Ok((token, secret))
    }

    /// The token whose secret this is, if it exists and is neither revoked nor expired;
    /// `None` otherwise (the caller cannot tell which, by design). Records the use.
    pub async fn verify_admin_token(&self, secret: &str) -> Result<Option<AdminToken>, StoreError> {
        if !is_well_formed(secret, ADMIN_TOKEN_PREFIX) {
            return Ok(None);
        }
        let presented = hash_secret(secret);
        let row: Option<TokenRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT id, name, token_hash, created_at, expires_at, revoked_at, last_used_at \
                 FROM admin_tokens WHERE token_hash = $1",
            )
            .bind(&presented)
            .fetch_optional(pool)
            .await?
        });
        let Some(row) = row else { return Ok(None) };
        if !hashes_match(&row.token_hash, &presented) {
            return Ok(None);
        }
        let now = now_ms();
        if row.revoked_at.is_some_and(|at| at <= now) || row.expires_at.is_some_and(|at| at <= now)
        {
            return Ok(None);
        }
        let mut token = row.into_token();
        self.touch_token(
            TokenTable::Admin,
            &token.id.clone(),
            &mut token.last_used_at,
            now,
        )
        .await?;
        Ok(Some(token))
    }

    /// Revokes a token (idempotent: a second revocation keeps the first `revoked_at`).
    pub async fn revoke_admin_token(&self, id: &str) -> Result<AdminToken, StoreError> {
        let row: Option<TokenRow> = with_pool!(self, write, |pool| {
            sqlx::query_as(
                "UPDATE admin_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 \
                 RETURNING id, name, token_hash, created_at, expires_at, revoked_at, last_used_at",
            )
            .bind(now_ms())
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        let token = row
            .ok_or_else(|| StoreError::not_found("admin token", id))?
            .into_token();
        tracing::info!(token = %token.id, "admin token revoked");
        Ok(token)
    }

    /// All admin tokens, including revoked and expired ones, oldest first. Never includes
    /// secrets or their hashes.
    pub async fn list_admin_tokens(&self) -> Result<Vec<AdminToken>, StoreError> {
        let rows: Vec<ListedTokenRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT id, name, created_at, expires_at, revoked_at, last_used_at \
                 FROM admin_tokens ORDER BY created_at, id",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|r| AdminToken {
                id: r.id,
                name: r.name,
                created_at: r.created_at,
                expires_at: r.expires_at,
                revoked_at: r.revoked_at,
                last_used_at: r.last_used_at,
            })
            .collect())
    }
}
