//! The SCIM 2.0 surface (RFC 7644) of one connection: `/scim/v2/{connection}/...`.
//!
//! Authentication: `Authorization: Bearer <SCIM token of that connection>` (tokens are issued by
//! `idplex scim-token create`, stored hashed and compared in constant time by the store; a token
//! of one connection never authenticates another). Every error is an RFC 7644 §3.12 error body
//! with `Content-Type: application/scim+json`.
//!
//! Served: the discovery endpoints (`/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas`,
//! and single resource types and schemas by id), `/Users`, `/Groups` and the `/.search`
//! endpoints (see [`scim_resources`]). `/Bulk` is not served (and `bulk.supported` is false):
//! Okta, Entra ID and OneLogin never send bulk requests, and a bulk request would hold many
//! writes in one request with per-operation failure semantics that IdPs do not retry well.
//!
//! Request bodies are limited to [`MAX_BODY`]; a larger one is answered 413 with a SCIM error.

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use idplex_scim::{ScimError, ScimType};
use serde_json::Value;

use crate::{AppState, scim_resources as res};

/// Largest SCIM request body accepted (a user or group document, or a PATCH of many members).
pub const MAX_BODY: usize = 1 << 20;

/// `application/scim+json`, the media type of every SCIM response.
pub const SCIM_JSON: &str = "application/scim+json";

/// A SCIM answer: a status and a JSON body, sent as `application/scim+json`.
pub struct ScimJson(pub StatusCode, pub Value);

impl IntoResponse for ScimJson {
    fn into_response(self) -> Response {
        let mut resp = (self.0, self.1.to_string()).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
        resp
    }
}

/// A SCIM error answered with its RFC 7644 body.
#[derive(Debug)]
pub struct ScimFailure(pub ScimError);

impl IntoResponse for ScimFailure {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = ScimJson(status, self.0.to_json()).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // Transient by definition here (a busy connection, a store hiccup): IdPs back off.
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"idplex-scim\""));
        }
        resp
    }
}

impl From<ScimError> for ScimFailure {
    fn from(e: ScimError) -> Self {
        ScimFailure(e)
    }
}

/// The routes under `/scim/v2/{connection}`.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/scim/v2/{connection}/ServiceProviderConfig", get(service_provider_config))
        .route("/scim/v2/{connection}/ResourceTypes", get(resource_types))
        .route("/scim/v2/{connection}/ResourceTypes/{id}", get(resource_type))
        .route("/scim/v2/{connection}/Schemas", get(schemas))
        .route("/scim/v2/{connection}/Schemas/{id}", get(schema))
        .route("/scim/v2/{connection}/Users", get(res::users).post(res::users))
        .route("/scim/v2/{connection}/Users/.search", post(res::users_search))
        .route("/scim/v2/{connection}/Users/{id}", get(res::user).put(res::user).patch(res::user).delete(res::user))
        .route("/scim/v2/{connection}/Groups", get(res::groups).post(res::groups))
        .route("/scim/v2/{connection}/Groups/.search", post(res::groups_search))
        .route(
            "/scim/v2/{connection}/Groups/{id}",
            get(res::group).put(res::group).patch(res::group).delete(res::group),
        )
        .route("/scim/v2/{connection}/.search", post(res::root_search))
        // A method a SCIM endpoint does not serve gets an RFC 7644 error body, not an empty 405.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .route_layer(middleware::from_fn_with_state(state, require_scim_token))
}

/// 405 for a method the endpoint does not serve, as an RFC 7644 §3.12 error body.
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    ScimFailure(ScimError::with_status(
        405,
        format!("{method} is not supported on {}", uri.path()),
    ))
    .into_response()
}

/// `Path<T>` whose rejection (a segment that is not valid UTF-8 once percent-decoded, say) is an
/// RFC 7644 error body instead of axum's `text/plain` 400.
pub struct ScimPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ScimPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ScimFailure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(ScimPath(v)),
            Err(e) => Err(ScimFailure(path_rejection(&e))),
        }
    }
}

fn path_rejection(e: &PathRejection) -> ScimError {
    ScimError::new(ScimType::InvalidValue, format!("the request path could not be read: {}", e.body_text()))
}

/// Only a valid, unexpired, unrevoked SCIM token *of this connection* gets through.
async fn require_scim_token(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let connection = req
        .uri()
        .path()
        .strip_prefix("/scim/v2/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .to_string();
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(secret) = presented else {
        return ScimFailure(ScimError::with_status(
            401,
            "missing `Authorization: Bearer <token>`; issue a SCIM token for this connection with `idplex scim-token create`",
        ))
        .into_response();
    };
    match s.hub.store().verify_scim_token(&connection, secret).await {
        Ok(Some(_)) => next.run(req).await,
        Ok(None) => ScimFailure(ScimError::with_status(
            401,
            "the bearer token is unknown, expired or revoked, or belongs to another connection",
        ))
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, connection = %connection, "SCIM token check failed");
            ScimFailure(ScimError::with_status(503, "the directory store is unavailable; retry later"))
                .into_response()
        }
    }
}

/// The absolute base URL of a connection's SCIM endpoint as the client addressed it.
pub(crate) fn base_url(headers: &HeaderMap, connection: &str) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http");
    format!("{scheme}://{host}/scim/v2/{connection}")
}

async fn service_provider_config(ScimPath(connection): ScimPath<String>, headers: HeaderMap) -> ScimJson {
    ScimJson(StatusCode::OK, idplex_scim::service_provider_config(&base_url(&headers, &connection)))
}

async fn resource_types(ScimPath(connection): ScimPath<String>, headers: HeaderMap) -> ScimJson {
    ScimJson(StatusCode::OK, idplex_scim::resource_types_response(&base_url(&headers, &connection)))
}

async fn schemas(ScimPath(connection): ScimPath<String>, headers: HeaderMap) -> ScimJson {
    ScimJson(StatusCode::OK, idplex_scim::schemas_response(&base_url(&headers, &connection)))
}

/// One entry of a discovery list, found by its `id`.
fn find_by_id(list: Value, id: &str, what: &str) -> Result<ScimJson, ScimFailure> {
    list["Resources"]
        .as_array()
        .and_then(|items| items.iter().find(|r| r["id"].as_str() == Some(id)))
        .cloned()
        .map(|r| ScimJson(StatusCode::OK, r))
        .ok_or_else(|| ScimFailure(ScimError::with_status(404, format!("{what} {id:?} does not exist"))))
}

async fn resource_type(
    ScimPath((connection, id)): ScimPath<(String, String)>,
    headers: HeaderMap,
) -> Result<ScimJson, ScimFailure> {
    find_by_id(idplex_scim::resource_types_response(&base_url(&headers, &connection)), &id, "resource type")
}

async fn schema(ScimPath((connection, id)): ScimPath<(String, String)>, headers: HeaderMap) -> Result<ScimJson, ScimFailure> {
    find_by_id(idplex_scim::schemas_response(&base_url(&headers, &connection)), &id, "schema")
}

/// Parse a SCIM request body: a JSON object sent as `application/scim+json` or
/// `application/json` (or without a content type).
pub(crate) fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ScimFailure> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if !media.is_empty() && media != SCIM_JSON && media != "application/json" {
        return Err(ScimFailure(ScimError::with_status(
            415,
            format!("Content-Type {media:?} is not accepted; send application/scim+json or application/json"),
        )));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ScimFailure(ScimError::new(
            ScimType::InvalidSyntax,
            format!("request body is not valid JSON: {e}"),
        ))
    })?;
    if !value.is_object() {
        return Err(ScimFailure(ScimError::new(ScimType::InvalidSyntax, "request body must be a JSON object")));
    }
    Ok(value)
}
