//! Credentials of directory users: API tokens (`Authorization: Bearer idp_uat_...`, for a user's
//! scripts) and sessions (the `idplex_session` cookie). Secrets are shown once at creation; only
//! their sha256 is stored, and they are compared in constant time (same helpers as admin and
//! SCIM tokens).
//!
//! # Deactivation stops them at once
//!
//! [`Store::verify_user_api_token`] and [`Store::verify_user_session`] check the credential
//! *and* its user in one query (a join): a credential works only while its user is active and
//! not soft-deleted. Deactivating a user therefore takes effect on the very next request, with
//! no cache to invalidate, on every replica.
//!
//! The two kinds differ after a reactivation, on purpose:
//!
//! * sessions are *ended* (`ended_at`, `end_reason`) in the same transaction that makes the user
//!   inactive ([`Store::replace_user`], [`Store::set_user_active`], [`Store::scim_delete_user`]),
//!   so reactivating the user does not revive a session that was open when access was cut: the
//!   person signs in again;
//! * API tokens are not touched: they stop working while the user is inactive and work again
//!   once the IdP reactivates it (a temporary suspension should not break every script of the
//!   user). An admin revokes a token for good with [`Store::revoke_user_api_token`].
//!
//! Nothing is issued to an inactive or soft-deleted user ([`StoreError::Conflict`]). Deleting a
//! user (policy `delete`, or [`Store::delete_user`]) deletes its tokens and sessions (foreign
//! keys, `ON DELETE CASCADE`).

use serde::{Deserialize, Serialize};

use crate::directory::{UserRow, user_columns};
use crate::tokens::{TokenTable, hash_secret, hashes_match, is_well_formed, new_secret};
use crate::{DirectoryUser, Store, StoreError, now_ms, random_id};

/// Every user API token secret starts with this, so it is recognisable in logs and secret scanners.
pub const USER_API_TOKEN_PREFIX: &str = "idp_uat_";

/// Every session secret starts with this.
pub const USER_SESSION_PREFIX: &str = "idp_ses_";

/// Lifetime of a user API token issued without an explicit one: 90 days, in milliseconds.
pub const USER_API_TOKEN_DEFAULT_TTL_MS: i64 = 90 * 24 * 60 * 60 * 1000;

/// Lifetime of a session issued without an explicit one: 12 hours, in milliseconds.
pub const USER_SESSION_DEFAULT_TTL_MS: i64 = 12 * 60 * 60 * 1000;

/// Longest accepted token label, in bytes.
pub const MAX_USER_TOKEN_LABEL_BYTES: usize = 200;

/// How many hex digits of the secret the displayed `prefix` keeps (32 of its 256 bits).
const DISPLAY_HEX_DIGITS: usize = 8;

/// Ends the open sessions of the user `$3` at `$1` for the reason `$2`. Run in the transaction
/// that makes the user inactive.
pub(crate) const END_USER_SESSIONS: &str = "UPDATE user_sessions SET ended_at = $1, end_reason = $2 \
     WHERE user_id = $3 AND ended_at IS NULL";

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEndReason {
    /// The user was deactivated (SCIM `active: false`, or [`Store::set_user_active`]).
    UserDeactivated,
    /// The user was deleted through SCIM and soft-deleted (policy `deactivate`).
    UserDeleted,
    /// An admin ended the session ([`Store::end_user_session`]).
    Revoked,
}

impl SessionEndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionEndReason::UserDeactivated => "user_deactivated",
            SessionEndReason::UserDeleted => "user_deleted",
            SessionEndReason::Revoked => "revoked",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "user_deactivated" => Some(SessionEndReason::UserDeactivated),
            "user_deleted" => Some(SessionEndReason::UserDeleted),
            "revoked" => Some(SessionEndReason::Revoked),
            _ => None,
        }
    }
}

/// An API token of a directory user: never carries the secret nor its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserApiToken {
    /// `uat_` followed by 32 hex digits.
    pub id: String,
    /// The organization of the user.
    pub org_id: String,
    /// The directory user it authenticates as.
    pub user_id: String,
    /// What the token is for, as given at creation.
    pub label: String,
    /// The start of the secret (`idp_uat_` and 8 hex digits), for people to recognise it.
    pub prefix: String,
    pub created_at: i64,
    /// Every user API token expires.
    pub expires_at: i64,
    /// When it last authenticated a request, to within a minute.
    pub last_used_at: Option<i64>,
    /// When it was revoked, if it was. A revoked token never works again.
    pub revoked_at: Option<i64>,
}

/// A user API token as admins list it: with its owner's name and state (as of the listing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedUserApiToken {
    #[serde(flatten)]
    pub token: UserApiToken,
    /// The directory (connection) the owner belongs to.
    pub connection_id: String,
    /// The owner's `userName`.
    pub user_name: String,
    /// Whether the owner is active: the token works only while it is (and not soft-deleted).
    pub user_active: bool,
    /// When the owner was soft-deleted through SCIM, if it was.
    pub user_scim_deleted_at: Option<i64>,
}

/// Where a page of [`Store::list_user_api_tokens`] ends: the next page starts after this token
/// (newest first). Written `CREATED_AT_ID`; opaque to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserTokenCursor {
    pub created_at: i64,
    pub id: String,
}

impl std::fmt::Display for UserTokenCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.created_at, self.id)
    }
}

impl std::str::FromStr for UserTokenCursor {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, StoreError> {
        let (created_at, id) = crate::parse_cursor(s, "API token cursor", "CREATED_AT_ID")?;
        Ok(UserTokenCursor { created_at, id })
    }
}

impl Serialize for UserTokenCursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Tokens per page of [`Store::list_user_api_tokens`] unless asked otherwise, and at most.
pub const USER_TOKEN_DEFAULT_LIMIT: u32 = 100;
pub const MAX_USER_TOKEN_LIMIT: u32 = 1000;

/// A page of user API tokens, newest first; `next` continues after its last one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserApiTokenPage {
    pub tokens: Vec<ListedUserApiToken>,
    pub next: Option<UserTokenCursor>,
}

/// Which user API tokens [`Store::list_user_api_tokens`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserTokenFilter<'a> {
    /// Every token of every organization.
    All,
    /// The tokens of the users of this organization.
    Org(&'a str),
    /// The tokens of this user.
    User(&'a str),
}

/// A session of a directory user: never carries the secret nor its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSession {
    /// `ses_` followed by 32 hex digits.
    pub id: String,
    pub org_id: String,
    pub user_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    /// When it last authenticated a request, to within a minute.
    pub last_seen_at: Option<i64>,
    /// When it ended, if it did; an ended session never works again.
    pub ended_at: Option<i64>,
    pub end_reason: Option<SessionEndReason>,
}

const TOKEN_COLUMNS: &str =
    "id, org_id, user_id, label, prefix, created_at, expires_at, last_used_at, revoked_at";

const SESSION_COLUMNS: &str =
    "id, org_id, user_id, created_at, expires_at, last_seen_at, ended_at, end_reason";

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: String,
    org_id: String,
    user_id: String,
    label: String,
    prefix: String,
    created_at: i64,
    expires_at: i64,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl TokenRow {
    fn into_token(self) -> UserApiToken {
        UserApiToken {
            id: self.id,
            org_id: self.org_id,
            user_id: self.user_id,
            label: self.label,
            prefix: self.prefix,
            created_at: self.created_at,
            expires_at: self.expires_at,
            last_used_at: self.last_used_at,
            revoked_at: self.revoked_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct ListedTokenRow {
    #[sqlx(flatten)]
    token: TokenRow,
    connection_id: String,
    user_name: String,
    user_active: bool,
    user_scim_deleted_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: String,
    org_id: String,
    user_id: String,
    created_at: i64,
    expires_at: i64,
    last_seen_at: Option<i64>,
    ended_at: Option<i64>,
    end_reason: Option<String>,
}

impl SessionRow {
    fn into_session(self) -> Result<UserSession, StoreError> {
        let end_reason = match &self.end_reason {
            None => None,
            Some(r) => Some(SessionEndReason::parse(r).ok_or_else(|| {
                StoreError::corrupt("session", &self.id, format!("unknown end reason {r:?}"))
            })?),
        };
        Ok(UserSession {
            id: self.id,
            org_id: self.org_id,
            user_id: self.user_id,
            created_at: self.created_at,
            expires_at: self.expires_at,
            last_seen_at: self.last_seen_at,
            ended_at: self.ended_at,
            end_reason,
        })
    }
}

/// What token verification selects: the token (columns prefixed `t_`, which the user's columns
/// would otherwise shadow) and its user.
#[derive(sqlx::FromRow)]
struct VerifiedTokenRow {
    t_hash: String,
    t_id: String,
    t_org_id: String,
    t_user_id: String,
    t_label: String,
    t_prefix: String,
    t_created_at: i64,
    t_expires_at: i64,
    t_last_used_at: Option<i64>,
    #[sqlx(flatten)]
    user: UserRow,
}

/// What session verification selects, like [`VerifiedTokenRow`].
#[derive(sqlx::FromRow)]
struct VerifiedSessionRow {
    s_hash: String,
    s_id: String,
    s_org_id: String,
    s_user_id: String,
    s_created_at: i64,
    s_expires_at: i64,
    s_last_seen_at: Option<i64>,
    #[sqlx(flatten)]
    user: UserRow,
}

/// Issues to the user `$1` only if it is active and not soft-deleted; the organization comes from
/// the user. Matches no row (inserts nothing) otherwise.
const INSERT_TOKEN: &str = "INSERT INTO user_api_tokens \
     (id, org_id, user_id, label, prefix, token_hash, created_at, expires_at, last_used_at, revoked_at) \
     SELECT $2, u.org_id, u.id, $3, $4, $5, $6, $7, NULL, NULL FROM directory_users u \
     WHERE u.id = $1 AND u.active AND u.scim_deleted_at IS NULL \
     RETURNING org_id";

/// Like [`INSERT_TOKEN`], for sessions.
pub(crate) const INSERT_SESSION: &str = "INSERT INTO user_sessions \
     (id, org_id, user_id, token_hash, created_at, expires_at, last_seen_at, ended_at, end_reason) \
     SELECT $2, u.org_id, u.id, $3, $4, \
         CASE WHEN o.session_absolute_minutes IS NOT NULL AND $4 + o.session_absolute_minutes * 60000 < $5 \
              THEN $4 + o.session_absolute_minutes * 60000 ELSE $5 END, \
         NULL, NULL, NULL \
     FROM directory_users u LEFT JOIN org_settings o ON o.org_id = u.org_id \
     WHERE u.id = $1 AND u.active AND u.scim_deleted_at IS NULL \
     RETURNING org_id, expires_at";

/// A positive lifetime, or the default.
fn lifetime(ttl_ms: Option<i64>, default: i64, what: &'static str) -> Result<i64, StoreError> {
    match ttl_ms {
        None => Ok(default),
        Some(ms) if ms > 0 => Ok(ms),
        Some(ms) => Err(StoreError::InvalidInput {
            what,
            reason: format!("{ms} ms is not a positive lifetime"),
        }),
    }
}

impl Store {
    /// Why nothing could be issued to `user_id`: it does not exist (`NotFound`), or it is
    /// inactive or soft-deleted (`Conflict`).
    async fn issue_refused(&self, user_id: &str, what: &str) -> StoreError {
        match self.get_user_for_admin(user_id).await {
            Ok(user) if user.scim_deleted_at.is_some() => StoreError::conflict(
                "user",
                user_id,
                format!("was deleted by its directory; {what} are issued to active users only"),
            ),
            Ok(user) if !user.active => StoreError::conflict(
                "user",
                user_id,
                format!("is inactive; {what} are issued to active users only"),
            ),
            // Reactivated in between: let the caller retry.
            Ok(_) => StoreError::conflict("user", user_id, "changed while issuing; retry"),
            Err(e) => e,
        }
    }

    /// Issues an API token to the directory user `user_id`, labelled `label`, valid for `ttl_ms`
    /// (default [`USER_API_TOKEN_DEFAULT_TTL_MS`]). Returns the token and its secret
    /// (`idp_uat_` + 64 hex digits): the secret is not stored and cannot be shown again.
    ///
    /// [`StoreError::NotFound`] if there is no such user; [`StoreError::Conflict`] if it is
    /// inactive or soft-deleted; [`StoreError::InvalidInput`] for an empty or over-long label
    /// or a non-positive lifetime.
    pub async fn create_user_api_token(
        &self,
        user_id: &str,
        label: &str,
        ttl_ms: Option<i64>,
    ) -> Result<(UserApiToken, String), StoreError> {
        let label = label.trim();
        if label.is_empty() || label.len() > MAX_USER_TOKEN_LABEL_BYTES {
            return Err(StoreError::InvalidInput {
                what: "API token label",
                reason: format!("must be 1 to {MAX_USER_TOKEN_LABEL_BYTES} bytes"),
            });
        }
        let ttl = lifetime(ttl_ms, USER_API_TOKEN_DEFAULT_TTL_MS, "API token lifetime")?;
        let secret = new_secret(USER_API_TOKEN_PREFIX);
        let prefix = secret[..USER_API_TOKEN_PREFIX.len() + DISPLAY_HEX_DIGITS].to_owned();
        let now = now_ms();
        let mut token = UserApiToken {
            id: random_id("uat_"),
            org_id: String::new(),
            user_id: user_id.to_owned(),
            label: label.to_owned(),
            prefix,
            created_at: now,
            expires_at: now.saturating_add(ttl),
            last_used_at: None,
            revoked_at: None,
        };
        let org_id: Option<String> = with_pool!(self, write, |pool| {
            sqlx::query_scalar(INSERT_TOKEN)
                .bind(user_id)
                .bind(&token.id)
                .bind(&token.label)
                .bind(&token.prefix)
                .bind(hash_secret(&secret))
                .bind(token.created_at)
                .bind(token.expires_at)
                .fetch_optional(pool)
                .await?
        });
        let Some(org_id) = org_id else {
            return Err(self.issue_refused(user_id, "API tokens").await);
        };
        token.org_id = org_id;
        tracing::info!(
            token = %token.id, user = %user_id, org = %token.org_id, expires_at = token.expires_at,
            "user API token created"
        );
        Ok((token, secret))
    }

    /// The token whose secret this is and its user, if the token is neither revoked nor expired
    /// *and* its user is active and not soft-deleted, all checked in one query; `None` otherwise
    /// (the caller cannot tell which, by design). Malformed secrets are refused without a
    /// database query. Records the use (at most once a minute per token).
    pub async fn verify_user_api_token(
        &self,
        secret: &str,
    ) -> Result<Option<(UserApiToken, DirectoryUser)>, StoreError> {
        if !is_well_formed(secret, USER_API_TOKEN_PREFIX) {
            return Ok(None);
        }
        let presented = hash_secret(secret);
        let now = now_ms();
        let sql = format!(
            "SELECT t.token_hash AS t_hash, t.id AS t_id, t.org_id AS t_org_id, \
                 t.user_id AS t_user_id, t.label AS t_label, t.prefix AS t_prefix, \
                 t.created_at AS t_created_at, t.expires_at AS t_expires_at, \
                 t.last_used_at AS t_last_used_at, {} \
             FROM user_api_tokens t JOIN directory_users u ON u.id = t.user_id \
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND t.expires_at > $2 \
               AND u.org_id = t.org_id AND u.active AND u.scim_deleted_at IS NULL",
            user_columns("u")
        );
        let row: Option<VerifiedTokenRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(&sql)
                .bind(&presented)
                .bind(now)
                .fetch_optional(pool)
                .await?
        });
        let Some(row) = row else { return Ok(None) };
        if !hashes_match(&row.t_hash, &presented) {
            return Ok(None);
        }
        let mut token = UserApiToken {
            id: row.t_id,
            org_id: row.t_org_id,
            user_id: row.t_user_id,
            label: row.t_label,
            prefix: row.t_prefix,
            created_at: row.t_created_at,
            expires_at: row.t_expires_at,
            last_used_at: row.t_last_used_at,
            revoked_at: None,
        };
        let user = row.user.into_user()?;
        self.touch_token(
            TokenTable::UserApi,
            &token.id.clone(),
            &mut token.last_used_at,
            now,
        )
        .await?;
        Ok(Some((token, user)))
    }

    /// Revokes the user API token `id` (idempotent: a second revocation keeps the first
    /// `revoked_at`). [`StoreError::NotFound`] if there is no such token.
    pub async fn revoke_user_api_token(&self, id: &str) -> Result<UserApiToken, StoreError> {
        let sql = format!(
            "UPDATE user_api_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 \
             RETURNING {TOKEN_COLUMNS}"
        );
        let row: Option<TokenRow> = with_pool!(self, write, |pool| {
            sqlx::query_as(&sql)
                .bind(now_ms())
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        let token = row
            .ok_or_else(|| StoreError::not_found("API token", id))?
            .into_token();
        tracing::info!(token = %token.id, user = %token.user_id, "user API token revoked");
        Ok(token)
    }

    /// A page of user API tokens, revoked and expired ones included, newest first, with their
    /// owner's `userName` and state: at most `limit` (default [`USER_TOKEN_DEFAULT_LIMIT`],
    /// clamped to [`MAX_USER_TOKEN_LIMIT`]), after `before` when given (keyset paging, stable
    /// while tokens are added). Never includes secrets or their hashes. Empty for an unknown
    /// organization or user.
    pub async fn list_user_api_tokens(
        &self,
        filter: UserTokenFilter<'_>,
        limit: Option<u32>,
        before: Option<&UserTokenCursor>,
    ) -> Result<UserApiTokenPage, StoreError> {
        let columns = TOKEN_COLUMNS
            .split(',')
            .map(|c| format!("t.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let limit = limit.unwrap_or(USER_TOKEN_DEFAULT_LIMIT).clamp(1, MAX_USER_TOKEN_LIMIT);
        let (mut conditions, key) = match filter {
            UserTokenFilter::All => (Vec::new(), None),
            UserTokenFilter::Org(org) => (vec!["t.org_id = $1".to_string()], Some(org)),
            UserTokenFilter::User(user) => (vec!["t.user_id = $1".to_string()], Some(user)),
        };
        let mut n = usize::from(key.is_some());
        if before.is_some() {
            conditions.push(format!(
                "(t.created_at < ${a} OR (t.created_at = ${a} AND t.id < ${b}))",
                a = n + 1,
                b = n + 2
            ));
            n += 2;
        }
        let condition = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
        let sql = format!(
            "SELECT {columns}, u.connection_id, u.user_name, u.active AS user_active, \
                 u.scim_deleted_at AS user_scim_deleted_at \
             FROM user_api_tokens t JOIN directory_users u ON u.id = t.user_id {condition} \
             ORDER BY t.created_at DESC, t.id DESC LIMIT ${}",
            n + 1
        );
        // One more than the page: whether there is a next page, without another query.
        let fetch = i64::from(limit) + 1;
        let mut rows: Vec<ListedTokenRow> = with_pool!(self, read, |pool| {
            let mut query = sqlx::query_as(&sql);
            if let Some(key) = key {
                query = query.bind(key);
            }
            if let Some(c) = before {
                query = query.bind(c.created_at).bind(c.id.as_str());
            }
            query.bind(fetch).fetch_all(pool).await?
        });
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let tokens: Vec<ListedUserApiToken> = rows
            .into_iter()
            .map(|r| ListedUserApiToken {
                token: r.token.into_token(),
                connection_id: r.connection_id,
                user_name: r.user_name,
                user_active: r.user_active,
                user_scim_deleted_at: r.user_scim_deleted_at,
            })
            .collect();
        let next = more
            .then(|| tokens.last())
            .flatten()
            .map(|t| UserTokenCursor { created_at: t.token.created_at, id: t.token.id.clone() });
        Ok(UserApiTokenPage { tokens, next })
    }

    /// Opens a session for the directory user `user_id`, valid for `ttl_ms` (default
    /// [`USER_SESSION_DEFAULT_TTL_MS`]). Returns the session and its secret (`idp_ses_` + 64 hex
    /// digits, the `idplex_session` cookie value): the secret is not stored.
    ///
    /// [`StoreError::NotFound`] if there is no such user; [`StoreError::Conflict`] if it is
    /// inactive or soft-deleted; [`StoreError::InvalidInput`] for a non-positive lifetime.
    pub async fn create_user_session(
        &self,
        user_id: &str,
        ttl_ms: Option<i64>,
    ) -> Result<(UserSession, String), StoreError> {
        let ttl = lifetime(ttl_ms, USER_SESSION_DEFAULT_TTL_MS, "session lifetime")?;
        let secret = new_secret(USER_SESSION_PREFIX);
        let now = now_ms();
        let mut session = UserSession {
            id: random_id("ses_"),
            org_id: String::new(),
            user_id: user_id.to_owned(),
            created_at: now,
            expires_at: now.saturating_add(ttl),
            last_seen_at: None,
            ended_at: None,
            end_reason: None,
        };
        let opened: Option<(String, i64)> = with_pool!(self, write, |pool| {
            sqlx::query_as(INSERT_SESSION)
                .bind(user_id)
                .bind(&session.id)
                .bind(hash_secret(&secret))
                .bind(session.created_at)
                .bind(session.expires_at)
                .fetch_optional(pool)
                .await?
        });
        let Some((org_id, expires_at)) = opened else {
            return Err(self.issue_refused(user_id, "sessions").await);
        };
        session.org_id = org_id;
        // The organization's absolute timeout, if shorter, bounds the lifetime asked for.
        session.expires_at = expires_at;
        tracing::info!(session = %session.id, user = %user_id, "user session opened");
        Ok((session, secret))
    }

    /// The session whose secret this is and its user, if the session has not ended nor expired
    /// *and* its user is active and not soft-deleted, all checked in one query; `None`
    /// otherwise (the caller cannot tell which). Records the use (at most once a minute).
    pub async fn verify_user_session(
        &self,
        secret: &str,
    ) -> Result<Option<(UserSession, DirectoryUser)>, StoreError> {
        if !is_well_formed(secret, USER_SESSION_PREFIX) {
            return Ok(None);
        }
        let presented = hash_secret(secret);
        let now = now_ms();
        let sql = format!(
            "SELECT s.token_hash AS s_hash, s.id AS s_id, s.org_id AS s_org_id, \
                 s.user_id AS s_user_id, s.created_at AS s_created_at, \
                 s.expires_at AS s_expires_at, s.last_seen_at AS s_last_seen_at, {} \
             FROM user_sessions s JOIN directory_users u ON u.id = s.user_id \
                 LEFT JOIN org_settings o ON o.org_id = s.org_id \
             WHERE s.token_hash = $1 AND s.ended_at IS NULL AND s.expires_at > $2 \
               AND u.org_id = s.org_id AND u.active AND u.scim_deleted_at IS NULL \
               AND (o.session_idle_minutes IS NULL \
                    OR COALESCE(s.last_seen_at, s.created_at) > $2 - o.session_idle_minutes * 60000) \
               AND (o.session_absolute_minutes IS NULL \
                    OR s.created_at > $2 - o.session_absolute_minutes * 60000)",
            user_columns("u")
        );
        let row: Option<VerifiedSessionRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(&sql)
                .bind(&presented)
                .bind(now)
                .fetch_optional(pool)
                .await?
        });
        let Some(row) = row else { return Ok(None) };
        if !hashes_match(&row.s_hash, &presented) {
            return Ok(None);
        }
        let mut session = UserSession {
            id: row.s_id,
            org_id: row.s_org_id,
            user_id: row.s_user_id,
            created_at: row.s_created_at,
            expires_at: row.s_expires_at,
            last_seen_at: row.s_last_seen_at,
            ended_at: None,
            end_reason: None,
        };
        let user = row.user.into_user()?;
        self.touch_token(
            TokenTable::Session,
            &session.id.clone(),
            &mut session.last_seen_at,
            now,
        )
        .await?;
        Ok(Some((session, user)))
    }

    /// The sessions of the user `user_id`, ended and expired ones included, newest first.
    /// Never includes secrets or their hashes. Empty for an unknown user.
    pub async fn list_user_sessions(&self, user_id: &str) -> Result<Vec<UserSession>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM user_sessions WHERE user_id = $1 \
             ORDER BY created_at DESC, id DESC"
        );
        let rows: Vec<SessionRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(&sql).bind(user_id).fetch_all(pool).await?
        });
        rows.into_iter().map(SessionRow::into_session).collect()
    }

    /// Ends the session `id` (reason `revoked`); idempotent: an ended session keeps its first
    /// end. [`StoreError::NotFound`] if there is no such session.
    pub async fn end_user_session(&self, id: &str) -> Result<UserSession, StoreError> {
        let sql = format!(
            "UPDATE user_sessions SET ended_at = COALESCE(ended_at, $1), \
                 end_reason = COALESCE(end_reason, $2) \
             WHERE id = $3 RETURNING {SESSION_COLUMNS}"
        );
        let row: Option<SessionRow> = with_pool!(self, write, |pool| {
            sqlx::query_as(&sql)
                .bind(now_ms())
                .bind(SessionEndReason::Revoked.as_str())
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        let session = row
            .ok_or_else(|| StoreError::not_found("session", id))?
            .into_session()?;
        tracing::info!(session = %session.id, user = %session.user_id, "user session ended by an admin");
        Ok(session)
    }
}
