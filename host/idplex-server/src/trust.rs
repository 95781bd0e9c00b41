//! Admin API for the deployment's trust in connector publishers (mounted under `/admin/v1`,
//! behind the admin token; see `idplex_hub::trust`):
//!
//! * `GET  /trust/policy` — `{"unsigned": "refuse"|"allow", "untrusted": "refuse"|"allow",
//!   "updated_by", "updated_at"}` (refuse both until set);
//! * `PUT  /trust/policy` `{"unsigned"?: "allow"|"refuse", "untrusted"?: "allow"|"refuse"}` —
//!   sets the parts given, answers the policy in force;
//! * `GET  /trust/keys` — `{"keys": [{"fingerprint", "publisher", "public_key", "added_by",
//!   "added_at"}]}`;
//! * `POST /trust/keys` `{"public_key": "idplex-ed25519 <base64> <publisher>"}` (the line of a
//!   `NAME.idplex-pub` file) — 201 with the key, or 200 if it was already trusted;
//! * `DELETE /trust/keys/{fingerprint}` — stops trusting it (404 if it was not); answers it.
//!
//! Every change is recorded as an event (`trust_policy_set`, `trust_key_added`,
//! `trust_key_removed`) naming the actor (`X-Idplex-Actor`, default `admin-api`).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get};
use axum::{Json, Router};
use idplex_hub::store::TrustRule;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{ApiError, ApiResult, AppState, actor};

/// The routes, relative to `/admin/v1`.
pub(crate) fn admin_routes() -> Router<AppState> {
    Router::new()
        .route("/trust/policy", get(policy).put(set_policy))
        .route("/trust/keys", get(keys).post(add_key))
        .route("/trust/keys/{fingerprint}", delete(remove_key))
}

fn bad_json(e: JsonRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.body_text())
}

async fn policy(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let policy = s.hub.trust_policy().await?;
    Ok(Json(serde_json::to_value(policy).unwrap_or_default()))
}

/// Body of `PUT /trust/policy`: the parts to change.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    #[serde(default)]
    unsigned: Option<TrustRule>,
    #[serde(default)]
    untrusted: Option<TrustRule>,
}

async fn set_policy(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<PolicyBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(b) = body.map_err(bad_json)?;
    if b.unsigned.is_none() && b.untrusted.is_none() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            "nothing to change: give `unsigned` and/or `untrusted` (`allow` or `refuse`)",
        ));
    }
    let policy = s.hub.set_trust_policy(b.unsigned, b.untrusted, actor(&headers)).await?;
    Ok(Json(serde_json::to_value(policy).unwrap_or_default()))
}

async fn keys(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let keys = s.hub.trusted_keys().await?;
    Ok(Json(json!({ "keys": keys })))
}

/// Body of `POST /trust/keys`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    /// The line of a `NAME.idplex-pub` file.
    public_key: String,
}

async fn add_key(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<KeyBody>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Json(b) = body.map_err(bad_json)?;
    let (key, added) = s.hub.trust_publisher_key(&b.public_key, actor(&headers)).await?;
    let status = if added { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(serde_json::to_value(key).unwrap_or_default())))
}

async fn remove_key(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(fingerprint): Path<String>,
) -> ApiResult<Json<Value>> {
    let key = s.hub.untrust_publisher_key(&fingerprint, actor(&headers)).await?;
    Ok(Json(serde_json::to_value(key).unwrap_or_default()))
}
