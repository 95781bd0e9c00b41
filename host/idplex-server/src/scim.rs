//! The SCIM 2.0 surface (RFC 7644) of one connection: `/scim/v2/{connection}/...`.
//!
//! Authentication: `Authorization: Bearer <SCIM token of that connection>` (tokens are issued by
//! `idplex scim-token create`, stored hashed and compared in constant time by the store; a token
//! of one connection never authenticates another). Every error is an RFC 7644 §3.12 error body
//! with `Content-Type: application/scim+json`.
//!
//! Served: the discovery endpoints (`/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas`,
//! and single resource types and schemas by id), `/Users`, `/Groups` and the `/.search`
//! endpoints. The latter are decoded into an [`idplex_hub::ScimCall`] and served by the hub's
//! [`idplex_hub::ScimService`] (connector, RFC semantics, store, sync log); this module only
//! routes, authenticates, decodes and encodes. `/Bulk` is not served (and `bulk.supported` is false):
//! Okta, Entra ID and OneLogin never send bulk requests, and a bulk request would hold many
//! writes in one request with per-operation failure semantics that IdPs do not retry well.
//!
//! Request bodies are limited to [`MAX_BODY`]; a larger one is answered 413 with a SCIM error.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequestParts, Path, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use idplex_hub::runtime::ResourceKind;
use idplex_hub::{ScimCall, ScimReply, ScimTarget, ScimTypes};
use idplex_scim::{ScimError, ScimType};
use serde_json::Value;

use crate::AppState;

/// Largest SCIM request body accepted (a user or group document, or a PATCH of many members).
pub const MAX_BODY: usize = 1 << 20;

/// `application/scim+json`, the media type of every SCIM response.
pub const SCIM_JSON: &str = idplex_scim::SCIM_MEDIA_TYPE;

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
        if let Some(seconds) = idplex_hub::provisioning::retry_after(&self.0) {
            // Transient by definition (a busy connection, a store hiccup): IdPs back off.
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"idplex-scim\""));
        }
        resp
    }
}

/// The hub's answer as an HTTP response.
fn encode(reply: ScimReply) -> Response {
    let mut resp = match reply.body {
        Some(body) => ScimJson(reply.status, body).into_response(),
        None => reply.status.into_response(),
    };
    if let Some(v) = reply.etag.as_deref().and_then(|e| HeaderValue::from_str(e).ok()) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    if let Some(v) = reply.location.as_deref().and_then(|l| HeaderValue::from_str(l).ok()) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
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
        .route("/scim/v2/{connection}/Users", get(collection::<false>).post(collection::<false>))
        .route("/scim/v2/{connection}/Users/.search", post(users_search))
        .route(
            "/scim/v2/{connection}/Users/{id}",
            get(resource::<false>).put(resource::<false>).patch(resource::<false>).delete(resource::<false>),
        )
        .route("/scim/v2/{connection}/Groups", get(collection::<true>).post(collection::<true>))
        .route("/scim/v2/{connection}/Groups/.search", post(groups_search))
        .route(
            "/scim/v2/{connection}/Groups/{id}",
            get(resource::<true>).put(resource::<true>).patch(resource::<true>).delete(resource::<true>),
        )
        .route("/scim/v2/{connection}/.search", post(root_search))
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
    match s.hub.verify_scim_token(&connection, secret).await {
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

/// The connection's resource types: the core ones with the schema extensions its connector
/// declares (contract 1.1); the core ones while it is not bound (an IdP probes discovery
/// before anything else, and the core is what any version serves).
fn types_of(s: &AppState, connection: &str) -> [&'static idplex_scim::ResourceType; 2] {
    s.hub.scim_types(connection).unwrap_or(ScimTypes::CORE).all()
}

fn resource_types_list(s: &AppState, connection: &str, headers: &HeaderMap) -> Value {
    idplex_scim::resource_types_response_for(&types_of(s, connection), &base_url(headers, connection))
}

fn schemas_list(s: &AppState, connection: &str, headers: &HeaderMap) -> Value {
    idplex_scim::schemas_response_for(&types_of(s, connection), &base_url(headers, connection))
}

async fn resource_types(State(s): State<AppState>, ScimPath(connection): ScimPath<String>, headers: HeaderMap) -> ScimJson {
    ScimJson(StatusCode::OK, resource_types_list(&s, &connection, &headers))
}

async fn schemas(State(s): State<AppState>, ScimPath(connection): ScimPath<String>, headers: HeaderMap) -> ScimJson {
    ScimJson(StatusCode::OK, schemas_list(&s, &connection, &headers))
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
    State(s): State<AppState>,
    ScimPath((connection, id)): ScimPath<(String, String)>,
    headers: HeaderMap,
) -> Result<ScimJson, ScimFailure> {
    find_by_id(resource_types_list(&s, &connection, &headers), &id, "resource type")
}

async fn schema(
    State(s): State<AppState>,
    ScimPath((connection, id)): ScimPath<(String, String)>,
    headers: HeaderMap,
) -> Result<ScimJson, ScimFailure> {
    find_by_id(schemas_list(&s, &connection, &headers), &id, "schema")
}

// ---------------------------------------------------------------------------------------------
// `/Users`, `/Groups`, `/.search`: decoded here, served by the hub.

/// A request body, or why it could not be read (too large, most often).
type Body = Result<Bytes, BytesRejection>;

/// The resource type of a handler instance: `/Users` (`GROUP = false`) or `/Groups`.
const fn kind<const GROUP: bool>() -> ResourceKind {
    if GROUP { ResourceKind::Group } else { ResourceKind::User }
}

/// `/Users`, `/Groups` (list, create).
async fn collection<const GROUP: bool>(
    State(s): State<AppState>,
    ScimPath(connection): ScimPath<String>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    serve(&s, &connection, method, ScimTarget::Collection(kind::<GROUP>()), query, &headers, body).await
}

/// `/Users/{id}`, `/Groups/{id}` (get, replace, patch, delete).
async fn resource<const GROUP: bool>(
    State(s): State<AppState>,
    ScimPath((connection, id)): ScimPath<(String, String)>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    serve(&s, &connection, method, ScimTarget::Resource(kind::<GROUP>(), id), query, &headers, body).await
}

/// `POST /Users/.search`.
async fn users_search(State(s): State<AppState>, ScimPath(connection): ScimPath<String>, headers: HeaderMap, body: Body) -> Response {
    serve(&s, &connection, Method::POST, ScimTarget::Search(Some(ResourceKind::User)), None, &headers, body).await
}

/// `POST /Groups/.search`.
async fn groups_search(State(s): State<AppState>, ScimPath(connection): ScimPath<String>, headers: HeaderMap, body: Body) -> Response {
    serve(&s, &connection, Method::POST, ScimTarget::Search(Some(ResourceKind::Group)), None, &headers, body).await
}

/// `POST /.search`: users and groups together (RFC 7644 §3.4.3, search from the root).
async fn root_search(State(s): State<AppState>, ScimPath(connection): ScimPath<String>, headers: HeaderMap, body: Body) -> Response {
    serve(&s, &connection, Method::POST, ScimTarget::Search(None), None, &headers, body).await
}

/// Decodes the request into a [`ScimCall`], has the hub serve it, encodes the answer.
async fn serve(
    s: &AppState,
    connection: &str,
    method: Method,
    target: ScimTarget,
    query: Option<String>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let text = |name: header::HeaderName| headers.get(name).map(|v| v.to_str().unwrap_or_default());
    let base = base_url(headers, connection);
    let call = ScimCall {
        connection,
        method,
        target,
        raw_query: query.as_deref().unwrap_or(""),
        if_match: text(header::IF_MATCH),
        content_type: text(header::CONTENT_TYPE),
        body: body.as_deref().map_err(body_failure),
        base_url: &base,
        user_agent: headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()),
    };
    match s.scim.serve(call).await {
        Ok(reply) => encode(reply),
        Err(e) => ScimFailure(e).into_response(),
    }
}

/// Why a request body could not be read, as a SCIM error (413 for one over [`MAX_BODY`]).
fn body_failure(e: &BytesRejection) -> ScimError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ScimError::with_status(413, format!("the request body exceeds {MAX_BODY} bytes; send smaller requests"))
    } else {
        ScimError::new(ScimType::InvalidSyntax, format!("the request body could not be read: {e}"))
    }
}
