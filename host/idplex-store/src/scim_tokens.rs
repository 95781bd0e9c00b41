//! SCIM bearer tokens, one set per connection (directory): what an IdP (Okta, Entra, OneLogin,
//! ...) presents to `/scim/v2/{connection}`. The secret is shown once at creation; only its
//! sha256 is stored (same helpers as admin tokens).
//!
//! A token authenticates requests to its own connection only: [`Store::verify_scim_token`]
//! takes the connection from the request path and refuses a token of any other, so one
//! directory's token can never reach another directory's data. Every token expires (one year by
//! default), and rotation lets the old token keep working for an overlap window while the IdP is
//! reconfigured.

use rusqlite::OptionalExtension;
use crate::error::is_foreign_key_violation;
use crate::tokens::{TokenTable, hash_secret, hashes_match, is_well_formed, new_secret};
use crate::{ScimToken, Store, StoreError, now_ms, random_id};

/// Every SCIM secret starts with this, so it is recognisable in logs and secret scanners.
pub const SCIM_TOKEN_PREFIX: &str = "idp_scim_";

/// Lifetime of a SCIM token issued without an explicit expiry (by creation or rotation):
/// 365 days, in milliseconds.
pub const SCIM_TOKEN_DEFAULT_LIFETIME_MS: i64 = 365 * 24 * 60 * 60 * 1000;

/// Every column but the hash, which only verification reads.
const COLUMNS: &str =
    "id, connection_id, created_at, expires_at, revoked_at, last_used_at, rotated_from";

const INSERT_TOKEN: &str = "INSERT INTO scim_tokens \
     (id, connection_id, token_hash, created_at, expires_at, revoked_at, last_used_at, rotated_from) \
     VALUES ($1, $2, $3, $4, $5, NULL, NULL, $6)";

/// Brings a live token's expiry forward to `$1` unless it already ends earlier (no `MIN`/`LEAST`:
/// the dialects disagree on its name). Matches no row for an unknown, foreign or revoked token.
const SHORTEN_FOR_ROTATION: &str = "UPDATE scim_tokens \
     SET expires_at = CASE WHEN expires_at < $1 THEN expires_at ELSE $1 END \
     WHERE id = $2 AND connection_id = $3 AND revoked_at IS NULL";

#[derive(sqlx::FromRow)]
struct ScimTokenRow {
    id: String,
    connection_id: String,
    created_at: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
    last_used_at: Option<i64>,
    rotated_from: Option<String>,
}

impl ScimTokenRow {
    fn into_token(self) -> ScimToken {
        ScimToken {
            id: self.id,
            connection_id: self.connection_id,
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            last_used_at: self.last_used_at,
            rotated_from: self.rotated_from,
        }
    }
}

/// What verification selects: a token row and the hash it was found by.
#[derive(sqlx::FromRow)]
struct VerifiedRow {
    token_hash: String,
    #[sqlx(flatten)]
    token: ScimTokenRow,
}

/// A new token of `connection_id` issued at `now` for the default lifetime unless `expires_at`
/// says otherwise, with its secret.
fn issue(
    connection_id: &str,
    now: i64,
    expires_at: Option<i64>,
    rotated_from: Option<&str>,
) -> (ScimToken, String) {
    let token = ScimToken {
        id: random_id("stok_"),
        connection_id: connection_id.to_owned(),
        created_at: now,
        expires_at: expires_at.unwrap_or(now.saturating_add(SCIM_TOKEN_DEFAULT_LIFETIME_MS)),
        revoked_at: None,
        last_used_at: None,
        rotated_from: rotated_from.map(str::to_owned),
    };
    (token, new_secret(SCIM_TOKEN_PREFIX))
}

impl Store {
    /// Issues a SCIM token for the connection `connection_id`, valid until `expires_at` (unix ms)
    /// or, when `None`, for [`SCIM_TOKEN_DEFAULT_LIFETIME_MS`]. Returns the token and its secret
    /// (`idp_scim_` + 64 hex digits): the secret is not stored and cannot be shown again.
    ///
    /// [`StoreError::NotFound`] if the connection does not exist.
    pub async fn create_scim_token(
        &self,
        connection_id: &str,
        expires_at: Option<i64>,
    ) -> Result<(ScimToken, String), StoreError> {
        let (token, secret) = issue(connection_id, now_ms(), expires_at, None);
        let result = with_pool!(self, write, |pool| {
            sqlx::query(INSERT_TOKEN)
                .bind(&token.id)
                .bind(&token.connection_id)
                .bind(hash_secret(&secret))
                .bind(token.created_at)
                .bind(token.expires_at)
                .bind(&token.rotated_from)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        });
        match result {
            Ok(_) => {}
            // The connection is referenced by a foreign key: its absence surfaces here, with no
            // window between a check and the insert.
            Err(e) if is_foreign_key_violation(&e) => {
                return Err(StoreError::not_found("connection", connection_id));
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(
            token = %token.id, connection = %token.connection_id, expires_at = token.expires_at,
            "SCIM token created"
        );
        Ok((token, secret))
    }

    /// The token whose secret this is, if it belongs to the connection `connection_id` and is
    /// neither revoked nor expired; `None` otherwise (the caller cannot tell which, by design).
    /// A token of another connection is refused. Malformed secrets are refused without a
    /// database query. Records the use (at most once a minute per token).
    pub async fn verify_scim_token(
        &self,
        connection_id: &str,
        secret: &str,
    ) -> Result<Option<ScimToken>, StoreError> {
        if !is_well_formed(secret, SCIM_TOKEN_PREFIX) {
            return Ok(None);
        }
        let presented = hash_secret(secret);
        let sql = format!("SELECT token_hash, {COLUMNS} FROM scim_tokens WHERE token_hash = $1");
        let row: Option<VerifiedRow> = with_reader!(self,
            sqlite: |r| r.prepare_cached(&sql)?
                .query_row(crate::readers::numbered(&[&presented]).as_slice(), |row| {
                    Ok(VerifiedRow {
                        token_hash: row.get(0)?,
                        token: ScimTokenRow {
                            id: row.get(1)?,
                            connection_id: row.get(2)?,
                            created_at: row.get(3)?,
                            expires_at: row.get(4)?,
                            revoked_at: row.get(5)?,
                            last_used_at: row.get(6)?,
                            rotated_from: row.get(7)?,
                        },
                    })
                })
                .optional(),
            pool: |c| sqlx::query_as(&sql).bind(&presented).fetch_optional(c).await
        )?;
        let Some(row) = row else { return Ok(None) };
        if !hashes_match(&row.token_hash, &presented) {
            return Ok(None);
        }
        let mut token = row.token.into_token();
        if token.connection_id != connection_id {
            // A genuine secret aimed at the wrong directory: worth an admin's attention.
            tracing::warn!(
                token = %token.id, token_connection = %token.connection_id,
                requested_connection = %connection_id,
                "SCIM token presented for another connection; refused"
            );
            return Ok(None);
        }
        let now = now_ms();
        if token.revoked_at.is_some() || token.expires_at <= now {
            return Ok(None);
        }
        self.touch_token(
            TokenTable::Scim,
            &token.id.clone(),
            &mut token.last_used_at,
            now,
        )
        .await?;
        Ok(Some(token))
    }

    /// Replaces the token `token_id` of the connection `connection_id`: issues a new token (with
    /// the default lifetime, `rotated_from` = `token_id`) and brings the old token's expiry
    /// forward to `overlap_ms` from now, unless it already ends earlier. Both work during the
    /// overlap, only the new one after it; an overlap of 0 retires the old token at once.
    /// Returns the new token and its secret, shown this once. An expired token may be rotated
    /// (it stays expired).
    ///
    /// [`StoreError::NotFound`] if there is no such token, or it belongs to another connection;
    /// [`StoreError::Conflict`] if it is revoked; [`StoreError::InvalidInput`] for a negative
    /// overlap.
    pub async fn rotate_scim_token(
        &self,
        connection_id: &str,
        token_id: &str,
        overlap_ms: i64,
    ) -> Result<(ScimToken, String), StoreError> {
        if overlap_ms < 0 {
            return Err(StoreError::InvalidInput {
                what: "SCIM token rotation overlap",
                reason: format!("{overlap_ms} ms is negative"),
            });
        }
        let now = now_ms();
        let old_ends_by = now.saturating_add(overlap_ms);
        let (token, secret) = issue(connection_id, now, None, Some(token_id));
        let select = format!("SELECT {COLUMNS} FROM scim_tokens WHERE id = $1");
        let old_expires_at = with_tx!(self, |tx| {
            // Update first, conditionally: the row lock it takes (PostgreSQL) or the write lock
            // of `BEGIN IMMEDIATE` (SQLite) means a concurrent revocation cannot slip in between.
            let shortened = sqlx::query(SHORTEN_FOR_ROTATION)
                .bind(old_ends_by)
                .bind(token_id)
                .bind(connection_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let old: Option<ScimTokenRow> = sqlx::query_as(&select)
                .bind(token_id)
                .fetch_optional(&mut *tx)
                .await?;
            let old = match old {
                Some(old) if old.connection_id == connection_id => old,
                _ => return Err(StoreError::not_found("SCIM token", token_id)),
            };
            if shortened == 0 {
                return Err(StoreError::conflict("SCIM token", token_id, "is revoked"));
            }
            sqlx::query(INSERT_TOKEN)
                .bind(&token.id)
                .bind(&token.connection_id)
                .bind(hash_secret(&secret))
                .bind(token.created_at)
                .bind(token.expires_at)
                .bind(&token.rotated_from)
                .execute(&mut *tx)
                .await?;
            old.expires_at
        });
        tracing::info!(
            token = %token.id, rotated_from = %token_id, connection = %connection_id,
            old_expires_at, expires_at = token.expires_at, "SCIM token rotated"
        );
        Ok((token, secret))
    }

    /// Revokes the token `token_id` of the connection `connection_id` (idempotent: a second
    /// revocation keeps the first `revoked_at`). [`StoreError::NotFound`] if there is no such
    /// token, or it belongs to another connection.
    pub async fn revoke_scim_token(
        &self,
        connection_id: &str,
        token_id: &str,
    ) -> Result<ScimToken, StoreError> {
        let sql = format!(
            "UPDATE scim_tokens SET revoked_at = COALESCE(revoked_at, $1) \
             WHERE id = $2 AND connection_id = $3 RETURNING {COLUMNS}"
        );
        let row: Option<ScimTokenRow> = with_pool!(self, write, |pool| {
            sqlx::query_as(&sql)
                .bind(now_ms())
                .bind(token_id)
                .bind(connection_id)
                .fetch_optional(pool)
                .await?
        });
        let token = row
            .ok_or_else(|| StoreError::not_found("SCIM token", token_id))?
            .into_token();
        tracing::info!(token = %token.id, connection = %token.connection_id, "SCIM token revoked");
        Ok(token)
    }

    /// All SCIM tokens of the connection `connection_id`, including revoked and expired ones,
    /// newest first. Never includes secrets or their hashes. Empty for an unknown connection.
    pub async fn list_scim_tokens(
        &self,
        connection_id: &str,
    ) -> Result<Vec<ScimToken>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM scim_tokens WHERE connection_id = $1 \
             ORDER BY created_at DESC, id DESC"
        );
        let rows: Vec<ScimTokenRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(&sql)
                .bind(connection_id)
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(ScimTokenRow::into_token).collect())
    }
}
