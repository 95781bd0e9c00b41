//! Admin API for the user lifecycle and the SCIM sync log (mounted under `/admin/v1`, behind the
//! admin token):
//!
//! * `GET  /connections/{id}/sync-log?limit=&before=&outcome=&resource=` — a directory's SCIM
//!   requests, newest first: `{"connection_id", "entries": [...], "next": cursor|null}`;
//! * `PUT  /connections/{id}/scim-delete-policy` `{"policy": "deactivate"|"delete"}` — what a
//!   SCIM `DELETE` of a user does there; answers the connection;
//! * `GET  /connections/{id}/users?offset=&limit=` — the directory's users as admins see them,
//!   soft-deleted ones included (`scim_deleted_at` set);
//! * `GET  /users/{user_id}` — one user, whatever its state; `DELETE /users/{user_id}` — purge
//!   it for good (memberships, API tokens, sessions too), freeing its `userName`;
//! * `POST /users/{user_id}/api-tokens` `{"label", "ttl_days"?}` — 201 with the secret, once;
//! * `GET  /api-tokens[?user=|?org=][&limit=&before=]` — newest first, a page at a time
//!   (`{"tokens": [...], "next": cursor|null}`); `POST /api-tokens/{id}/revoke`;
//! * `POST /users/{user_id}/sessions` `{"ttl_minutes"?}` — 201 with the session secret, once. An
//!   admin-issued session is a stand-in until the SAML service provider issues sessions at
//!   sign-in; it follows the same rules (ended when the user is deactivated);
//! * `GET  /users/{user_id}/sessions`, `POST /sessions/{id}/end`.
//!
//! The hub's SCIM service records each request in its directory's sync log
//! (`idplex_hub::provisioning::sync_log`: a bounded queue written in batches, off the request
//! path); the steps that take more than one store call ([`Hub::sync_log`](idplex_hub::Hub::sync_log),
//! [`Hub::directory_users`](idplex_hub::Hub::directory_users),
//! [`Hub::purge_user`](idplex_hub::Hub::purge_user)) are hub services the CLI shares.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use idplex_hub::store::{
    MAX_DIRECTORY_LIST_LIMIT, OutcomeFilter, ScimDeletePolicy, StoreError, SyncLogCursor, SyncLogQuery,
    UserTokenCursor, UserTokenFilter,
};
use idplex_hub::redacted;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{ApiError, ApiResult, AppState};

/// The cookie that carries a session secret (see [`crate::me`]).
pub const SESSION_COOKIE: &str = "idplex_session";

/// The routes, relative to `/admin/v1`.
pub(crate) fn admin_routes() -> Router<AppState> {
    Router::new()
        .route("/connections/{id}/sync-log", get(sync_log))
        .route("/connections/{id}/scim-delete-policy", put(set_delete_policy))
        .route("/connections/{id}/users", get(list_users))
        .route("/users/{user_id}", get(get_user).delete(purge_user))
        .route("/users/{user_id}/api-tokens", post(create_api_token))
        .route("/users/{user_id}/sessions", get(list_sessions).post(create_session))
        .route("/api-tokens", get(list_api_tokens))
        .route("/api-tokens/{id}/revoke", post(revoke_api_token))
        .route("/sessions/{id}/end", post(end_session))
}

fn bad_query(e: QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text())
}

fn bad_json(e: JsonRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.body_text())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncLogParams {
    limit: Option<u32>,
    before: Option<String>,
    outcome: Option<String>,
    resource: Option<String>,
}

async fn sync_log(
    State(s): State<AppState>,
    Path(id): Path<String>,
    params: Result<Query<SyncLogParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(p) = params.map_err(bad_query)?;
    let invalid = |e: StoreError| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.to_string());
    let query = SyncLogQuery {
        limit: p.limit,
        before: p.before.as_deref().filter(|b| !b.is_empty()).map(str::parse::<SyncLogCursor>).transpose().map_err(invalid)?,
        outcome: p.outcome.as_deref().filter(|o| !o.is_empty()).map(str::parse::<OutcomeFilter>).transpose().map_err(invalid)?,
        resource_id: p.resource.filter(|r| !r.is_empty()),
    };
    let page = s.hub.sync_log(&id, &query).await?;
    Ok(Json(json!({ "connection_id": id, "entries": page.entries, "next": page.next })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    policy: String,
}

async fn set_delete_policy(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<PolicyBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(b) = body.map_err(bad_json)?;
    let policy = ScimDeletePolicy::parse(&b.policy).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("invalid SCIM delete policy {:?}: expected \"deactivate\" or \"delete\"", b.policy),
        )
    })?;
    let conn = s.hub.set_scim_delete_policy(&id, policy).await?;
    Ok(Json(redacted(&conn)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageParams {
    offset: Option<u64>,
    limit: Option<u32>,
}

async fn list_users(
    State(s): State<AppState>,
    Path(id): Path<String>,
    params: Result<Query<PageParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(p) = params.map_err(bad_query)?;
    let (users, total) =
        s.hub.directory_users(&id, p.offset.unwrap_or(0), p.limit.unwrap_or(100).min(MAX_DIRECTORY_LIST_LIMIT)).await?;
    Ok(Json(json!({ "connection_id": id, "users": users, "total": total })))
}

async fn get_user(State(s): State<AppState>, Path(user_id): Path<String>) -> ApiResult<Json<Value>> {
    let user = s.hub.user(&user_id).await?;
    Ok(Json(json!({ "user": user })))
}

/// Purge a user for good, whatever its directory's delete policy: the user, its memberships,
/// API tokens and sessions are removed, and its `userName` is free again in the organization
/// (a soft-deleted user keeps it). For an admin cleaning up after an IdP, or before another
/// directory provisions the same person.
async fn purge_user(State(s): State<AppState>, Path(user_id): Path<String>) -> ApiResult<Json<Value>> {
    let user = s.hub.purge_user(&user_id).await?;
    Ok(Json(json!({
        "purged": { "id": user.id, "connection_id": user.connection_id, "user_name": user.user_name }
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewApiToken {
    label: String,
    /// Days until it expires; default 90.
    #[serde(default)]
    ttl_days: Option<u32>,
}

/// Issue a user API token; the secret is in this response only.
async fn create_api_token(
    State(s): State<AppState>,
    Path(user_id): Path<String>,
    body: Result<Json<NewApiToken>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Json(b) = body.map_err(bad_json)?;
    let (token, secret) = s.hub.create_user_api_token(&user_id, &b.label, b.ttl_days).await?;
    Ok((StatusCode::CREATED, Json(json!({ "token": token, "secret": secret }))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenListParams {
    user: Option<String>,
    org: Option<String>,
    limit: Option<u32>,
    before: Option<String>,
}

async fn list_api_tokens(
    State(s): State<AppState>,
    params: Result<Query<TokenListParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(p) = params.map_err(bad_query)?;
    let filter = match (p.user.as_deref(), p.org.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", "give either user or org, not both"));
        }
        (Some(user), None) => UserTokenFilter::User(user),
        (None, Some(org)) => UserTokenFilter::Org(org),
        (None, None) => UserTokenFilter::All,
    };
    let before = p
        .before
        .as_deref()
        .filter(|b| !b.is_empty())
        .map(str::parse::<UserTokenCursor>)
        .transpose()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.to_string()))?;
    let page = s.hub.user_api_tokens(filter, p.limit, before.as_ref()).await?;
    Ok(Json(json!({ "tokens": page.tokens, "next": page.next })))
}

async fn revoke_api_token(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let token = s.hub.revoke_user_api_token(&id).await?;
    Ok(Json(json!({ "token": token })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NewSession {
    /// Minutes until it expires; default 12 hours.
    #[serde(default)]
    ttl_minutes: Option<u32>,
}

/// Open a session for a user (a stand-in until SAML sign-in issues them); the secret is in this
/// response only, also as a ready `Set-Cookie`-style value.
async fn create_session(
    State(s): State<AppState>,
    Path(user_id): Path<String>,
    body: Option<Json<NewSession>>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let ttl_minutes = body.and_then(|Json(b)| b.ttl_minutes);
    let (session, secret) = s.hub.create_session(&user_id, ttl_minutes).await?;
    let cookie = format!("{SESSION_COOKIE}={secret}");
    Ok((StatusCode::CREATED, Json(json!({ "session": session, "secret": secret, "cookie": cookie }))))
}

async fn list_sessions(State(s): State<AppState>, Path(user_id): Path<String>) -> ApiResult<Json<Value>> {
    let sessions = s.hub.sessions(&user_id).await?;
    Ok(Json(json!({ "user_id": user_id, "sessions": sessions })))
}

async fn end_session(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let session = s.hub.end_session(&id).await?;
    Ok(Json(json!({ "session": session })))
}
