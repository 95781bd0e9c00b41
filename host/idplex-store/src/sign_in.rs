//! The writes that finish a SAML sign-in, as one unit: claim the assertion ID in the replay
//! cache, consume the outstanding AuthnRequest it answers, open the session (only for an active
//! user) and, where the IdP offers single logout, link the session to the IdP's. All of them or
//! none: a refusal (replayed, no such request, user inactive) undoes what came before it.
//!
//! On SQLite the unit is one job of the group committer (`group_commit.rs`), inside a
//! `SAVEPOINT`, so concurrent sign-ins share one transaction and one `fsync` (with
//! `synchronous=FULL`) instead of paying three each; on PostgreSQL it is a transaction of its
//! own. The checks the hub makes before (reads: [`Store::saml_assertion_seen`],
//! [`Store::saml_request_pending`]) only spare a refused sign-in the connector call and any
//! provisioning; this unit is what decides, so two replicas racing for one assertion or one
//! request cannot both win.

use rusqlite::OptionalExtension;

use crate::readers::numbered;
use crate::saml::MAX_SAML_ID_LEN;
use crate::tokens::{hash_secret, new_secret};
use crate::user_tokens::{INSERT_SESSION, USER_SESSION_DEFAULT_TTL_MS, USER_SESSION_PREFIX};
use crate::{Pools, Store, StoreError, UserSession, now_ms, random_id};

const CLAIM: &str = "INSERT INTO saml_assertions_seen (connection_id, assertion_id, expires_at) VALUES ($1, $2, $3) \
     ON CONFLICT (connection_id, assertion_id) DO NOTHING";
const TAKE: &str = "DELETE FROM saml_requests WHERE id = $1 AND connection_id = $2 RETURNING relay_state, expires_at";
const LINK: &str = "INSERT INTO saml_sessions (session_id, connection_id, name_id, name_id_format, session_index, \
     created_at) VALUES ($1, $2, $3, $4, $5, $6)";

/// A sign-in to finish.
#[derive(Debug, Clone)]
pub struct FinishSignIn {
    pub connection_id: String,
    /// The assertion's ID, claimed in the replay cache until `assertion_expires_at` (unix ms).
    pub assertion_id: String,
    pub assertion_expires_at: i64,
    /// The AuthnRequest it answers (`InResponseTo`); `None` for an unsolicited response.
    pub request_id: Option<String>,
    /// The directory user to open the session for.
    pub user_id: String,
    /// The session's lifetime (the store's default when `None`; the organization's absolute
    /// timeout bounds it).
    pub session_ttl_ms: Option<i64>,
    /// The IdP session to link (single logout): NameID, its format, SessionIndex.
    pub idp_session: Option<(String, Option<String>, Option<String>)>,
}

/// What finishing a sign-in did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInFinished {
    /// The session and its secret (the cookie value, not stored), and the return path kept
    /// with the request answered.
    Done { session: UserSession, secret: String, relay_state: Option<String> },
    /// The assertion was accepted before (here or at another replica).
    Replayed,
    /// No outstanding request of the connection has that ID (never sent, answered, expired).
    NoRequest,
    /// The user is inactive or gone.
    UserInactive,
}

/// One sign-in's writes as the committer carries them.
#[derive(Debug)]
pub(crate) struct SignInWrite {
    finish: FinishSignIn,
    now: i64,
    session_id: String,
    token_hash: String,
    session_expires_at: i64,
}

/// What the unit found (the session's organization and end when it opened one).
#[derive(Debug)]
pub(crate) enum SignInWritten {
    Done { org_id: String, expires_at: i64, relay_state: Option<String> },
    Replayed,
    NoRequest,
    UserInactive,
}

/// The unit on the committer's connection, inside its transaction, in a savepoint of its own.
pub(crate) fn execute_sign_in_sqlite(conn: &rusqlite::Connection, w: &SignInWrite) -> rusqlite::Result<SignInWritten> {
    conn.execute_batch("SAVEPOINT sign_in")?;
    let out = sign_in_sqlite(conn, w);
    match &out {
        Ok(SignInWritten::Done { .. }) => conn.execute_batch("RELEASE sign_in")?,
        _ => conn.execute_batch("ROLLBACK TO sign_in; RELEASE sign_in")?,
    }
    out
}

fn sign_in_sqlite(conn: &rusqlite::Connection, w: &SignInWrite) -> rusqlite::Result<SignInWritten> {
    let f = &w.finish;
    let claimed = conn
        .prepare_cached(CLAIM)?
        .execute(numbered(&[&f.connection_id, &f.assertion_id, &f.assertion_expires_at]).as_slice())?;
    if claimed == 0 {
        return Ok(SignInWritten::Replayed);
    }
    let mut relay_state = None;
    if let Some(request_id) = &f.request_id {
        let taken: Option<(Option<String>, i64)> = conn
            .prepare_cached(TAKE)?
            .query_row(numbered(&[request_id, &f.connection_id]).as_slice(), |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match taken {
            Some((relay, expires_at)) if expires_at > w.now => relay_state = relay,
            _ => return Ok(SignInWritten::NoRequest),
        }
    }
    let opened: Option<(String, i64)> = conn
        .prepare_cached(INSERT_SESSION)?
        .query_row(
            numbered(&[&f.user_id, &w.session_id, &w.token_hash, &w.now, &w.session_expires_at]).as_slice(),
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((org_id, expires_at)) = opened else { return Ok(SignInWritten::UserInactive) };
    if let Some((name_id, format, index)) = &f.idp_session {
        conn.prepare_cached(LINK)?
            .execute(numbered(&[&w.session_id, &f.connection_id, name_id, format, index, &w.now]).as_slice())?;
    }
    Ok(SignInWritten::Done { org_id, expires_at, relay_state })
}

async fn sign_in_pg(pool: &sqlx::PgPool, w: &SignInWrite) -> Result<SignInWritten, sqlx::Error> {
    let f = &w.finish;
    let mut tx = pool.begin().await?;
    let claimed = sqlx::query(CLAIM)
        .bind(&f.connection_id)
        .bind(&f.assertion_id)
        .bind(f.assertion_expires_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if claimed == 0 {
        return Ok(SignInWritten::Replayed);
    }
    let mut relay_state = None;
    if let Some(request_id) = &f.request_id {
        let taken: Option<(Option<String>, i64)> =
            sqlx::query_as(TAKE).bind(request_id).bind(&f.connection_id).fetch_optional(&mut *tx).await?;
        match taken {
            Some((relay, expires_at)) if expires_at > w.now => relay_state = relay,
            _ => return Ok(SignInWritten::NoRequest),
        }
    }
    let opened: Option<(String, i64)> = sqlx::query_as(INSERT_SESSION)
        .bind(&f.user_id)
        .bind(&w.session_id)
        .bind(&w.token_hash)
        .bind(w.now)
        .bind(w.session_expires_at)
        .fetch_optional(&mut *tx)
        .await?;
    let Some((org_id, expires_at)) = opened else { return Ok(SignInWritten::UserInactive) };
    if let Some((name_id, format, index)) = &f.idp_session {
        sqlx::query(LINK)
            .bind(&w.session_id)
            .bind(&f.connection_id)
            .bind(name_id)
            .bind(format)
            .bind(index)
            .bind(w.now)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(SignInWritten::Done { org_id, expires_at, relay_state })
}

impl Store {
    /// Finishes a sign-in in one unit of writes (see the module docs).
    pub async fn finish_sign_in(&self, finish: FinishSignIn) -> Result<SignInFinished, StoreError> {
        let ttl = match finish.session_ttl_ms {
            None => USER_SESSION_DEFAULT_TTL_MS,
            Some(ms) if ms > 0 => ms,
            Some(_) => return Err(StoreError::InvalidInput { what: "session lifetime", reason: "must be positive".into() }),
        };
        if finish.assertion_id.is_empty() || finish.assertion_id.len() > MAX_SAML_ID_LEN {
            return Err(StoreError::InvalidInput {
                what: "SAML assertion ID",
                reason: format!("must be 1 to {MAX_SAML_ID_LEN} bytes"),
            });
        }
        if finish.request_id.as_ref().is_some_and(|id| id.is_empty() || id.len() > MAX_SAML_ID_LEN) {
            // Longer than any ID idplex issues: no such request.
            return Ok(SignInFinished::NoRequest);
        }
        let secret = new_secret(USER_SESSION_PREFIX);
        let now = now_ms();
        let write = SignInWrite {
            finish,
            now,
            session_id: random_id("ses_"),
            token_hash: hash_secret(&secret),
            session_expires_at: now.saturating_add(ttl),
        };
        let (session_id, user_id) = (write.session_id.clone(), write.finish.user_id.clone());
        let written = match &self.pools {
            Pools::Sqlite { committer, .. } => committer.submit_sign_in(write).await.map_err(StoreError::from)?,
            Pools::Postgres(pool) => sign_in_pg(pool, &write).await?,
        };
        Ok(match written {
            SignInWritten::Done { org_id, expires_at, relay_state } => SignInFinished::Done {
                session: UserSession {
                    id: session_id,
                    org_id,
                    user_id,
                    created_at: now,
                    expires_at,
                    last_seen_at: None,
                    ended_at: None,
                    end_reason: None,
                },
                secret,
                relay_state,
            },
            SignInWritten::Replayed => SignInFinished::Replayed,
            SignInWritten::NoRequest => SignInFinished::NoRequest,
            SignInWritten::UserInactive => SignInFinished::UserInactive,
        })
    }
}
