//! The API of directory users themselves, under `/api/v1`.
//!
//! Authentication: `Authorization: Bearer idp_uat_...` (a user API token) or the cookie
//! `idplex_session=idp_ses_...` (a session). The store checks the credential and its user in one
//! query, so a user deactivated by its IdP is refused on its very next request. A refusal is a
//! 401 JSON error that says the same whether the credential is unknown, expired, revoked or its
//! user inactive.
//!
//! * `GET /api/v1/me` → `{"id", "userName", "active", "connection"}`.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use idplex_hub::UserCredential;
use idplex_hub::store::DirectoryUser;
use serde_json::json;

use crate::lifecycle::SESSION_COOKIE;
use crate::{ApiError, AppState};

/// The routes under `/api/v1`.
pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/api/v1/me", get(me))
}

/// The bearer token if there is an `Authorization` header, else the session cookie.
fn credential(headers: &HeaderMap) -> Option<UserCredential<'_>> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .unwrap_or_default();
        return Some(UserCredential::ApiToken(token));
    }
    session_cookie(headers).map(UserCredential::Session)
}

/// The value of the `idplex_session` cookie, if the request carries one.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
}

fn unauthorized(message: &str) -> Response {
    let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"idplex\""));
    resp
}

/// The user a request authenticates as, or the response refusing it.
async fn authenticate(s: &AppState, headers: &HeaderMap) -> Result<DirectoryUser, Response> {
    let Some(presented) = credential(headers) else {
        return Err(unauthorized(&format!(
            "missing credentials: send `Authorization: Bearer <user API token>` or the {SESSION_COOKIE} cookie"
        )));
    };
    let verified = s.hub.authenticate_user(presented).await;
    match verified {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(unauthorized(
            "invalid credentials: the token or session is unknown, expired, revoked or ended, or its user is not active",
        )),
        Err(e) => {
            tracing::error!(error = %e, "user credential check failed");
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the directory store is unavailable; retry later")
                .into_response())
        }
    }
}

async fn me(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let user = match authenticate(&s, &headers).await {
        Ok(user) => user,
        Err(resp) => return resp,
    };
    let mut resp = Json(json!({
        "id": user.id,
        "userName": user.user_name,
        "active": user.active,
        "connection": user.connection_id,
    }))
    .into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
