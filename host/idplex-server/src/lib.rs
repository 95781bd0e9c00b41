//! The idplex HTTP server: `/healthz`, `/readyz`, the admin API under `/admin/v1`, the SCIM
//! server under `/scim/v2/{connection}` ([`scim`]) and the users' own API under `/api/v1`
//! ([`me`]). User lifecycle and sync log admin routes are in [`lifecycle`]; SAML sign-in (the ACS,
//! SP metadata, login entry points) and its admin routes in [`saml`]; the OpenID Connect provider
//! for downstream apps and its admin routes in [`oidc`]; the trust policy and trusted publisher
//! keys of connector modules in [`trust`].
//!
//! This crate routes, authenticates, decodes and encodes; the use cases are the hub's
//! ([`idplex_hub::ScimService`] for SCIM, [`Hub`] for the rest). It names no store or runtime
//! type except through the hub's re-exports ([`idplex_hub::store`], [`idplex_hub::runtime`]).
//!
//! Every admin route requires `Authorization: Bearer <admin token>` (tokens are stored hashed
//! and compared in constant time by the store). Errors are JSON `{"error": code, "message": ...}`
//! with a status that matches their class: 404 not found, 409 conflict, 422 refused input,
//! 502/504 connector faults, 500 internal.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use idplex_hub::provisioning::operation_json;
use idplex_hub::runtime::{CallError, InstallError, ResourceKind, SamlAttribute, ScimRequest, VerifiedAssertion};
use idplex_hub::store::NewConnection;
use idplex_hub::{ErrorClass, Hub, HubError, ScimService, SyncTrigger, redacted};
use serde::Deserialize;
use serde_json::{Value, json};

pub mod lifecycle;
pub mod me;
pub mod oidc;
pub mod saml;
pub mod scim;
pub mod trust;

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    /// The application services.
    pub hub: Arc<Hub>,
    /// The SCIM provisioning service (with its sync log writer and PATCH locks).
    pub scim: ScimService,
}

/// An error answered as JSON with a status derived from its class.
pub struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError { status, code: code.into(), message: message.into() }
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> Self {
        let status = match e.class() {
            // Specific before the class: a config the connector's schema refuses is a bad
            // request; a full compile queue or instance cap is "try again shortly".
            _ if matches!(e, HubError::Config(_)) => StatusCode::BAD_REQUEST,
            _ if matches!(e, HubError::Refused(InstallError::Busy { .. }))
                || matches!(e, HubError::Call(CallError::Busy { .. })) =>
            {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorClass::NotFound => StatusCode::NOT_FOUND,
            ErrorClass::Conflict => StatusCode::CONFLICT,
            ErrorClass::Invalid | ErrorClass::ConnectorRefused => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorClass::ConnectorFault => match &e {
                HubError::Call(CallError::Timeout { .. }) => StatusCode::GATEWAY_TIMEOUT,
                HubError::Call(CallError::Instantiate { .. }) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_GATEWAY,
            },
            ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "admin API internal error");
        }
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(json!({"error": self.code, "message": self.message}))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        resp
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Largest module upload the admin API reads (the runtime applies its own, usually lower, limit).
const MAX_UPLOAD: usize = 64 << 20;

/// The whole router.
///
/// Must be called inside a Tokio runtime (it starts the sync log writer).
pub fn router(hub: Arc<Hub>) -> Router {
    router_with_state(app_state(hub))
}

/// The shared state of [`router`]; keep a clone to [`ScimService::flush_sync_log`] at shutdown.
pub fn app_state(hub: Arc<Hub>) -> AppState {
    AppState { scim: ScimService::new(hub.clone()), hub }
}

/// The whole router over an existing state.
pub fn router_with_state(state: AppState) -> Router {
    let admin = Router::new()
        .route("/connectors", get(list_connectors).post(install_connector))
        .route("/connectors/{name}", get(connector_versions))
        .route("/connectors/{name}/{version}", get(inspect_connector))
        .route("/connections", get(list_connections).post(create_connection))
        .route("/connections/{id}", get(get_connection).patch(update_connection))
        .route("/connections/{id}/activate", post(activate))
        .route("/connections/{id}/rollback", post(rollback))
        .route("/connections/{id}/history", get(history))
        .route("/connections/{id}/dry-run/scim", post(dry_run_scim))
        .route("/connections/{id}/dry-run/sso", post(dry_run_sso))
        .route("/connections/{id}/test", post(test_connection))
        .route("/connections/{id}/sync", get(sync_status).post(sync_run))
        .route("/connections/{id}/sync/schedule", put(sync_schedule))
        .route("/connections/{id}/sync/log", get(sync_log))
        .route("/events", get(events))
        .route("/connections/{id}/scim-tokens", get(list_scim_tokens).post(create_scim_token))
        .route("/connections/{id}/scim-tokens/{token}/rotate", post(rotate_scim_token))
        .route("/connections/{id}/scim-tokens/{token}/revoke", post(revoke_scim_token))
        .merge(lifecycle::admin_routes())
        .merge(saml::admin_routes())
        .merge(oidc::admin_routes())
        .merge(trust::admin_routes())
        .layer(DefaultBodyLimit::max(MAX_UPLOAD))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .nest("/admin/v1", admin)
        .merge(scim::router(state.clone()))
        .merge(me::router())
        .merge(saml::router())
        .merge(oidc::router())
        .fallback(not_found)
        .with_state(state)
}

/// Unknown paths: a SCIM error body under `/scim/`, the admin API's JSON error elsewhere.
async fn not_found(uri: axum::http::Uri) -> Response {
    let detail = format!("no such endpoint: {}", uri.path());
    if uri.path().starts_with("/scim/") {
        scim::ScimFailure(idplex_scim::ScimError::with_status(404, detail)).into_response()
    } else {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", detail).into_response()
    }
}

/// A handler that panicked answers 500 with a body both a SCIM client (RFC 7644 §3.12) and an
/// admin API client can read; the panic itself is logged by the process's panic hook. The
/// panic message is not echoed: it can hold request input.
fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let body = json!({
        "schemas": [idplex_scim::ERROR_SCHEMA],
        "status": "500",
        "detail": "internal error: the request failed and was not applied; the event is in the server log",
        "error": "internal",
        "message": "internal error: the request failed and was not applied; the event is in the server log",
    });
    let mut resp = (StatusCode::INTERNAL_SERVER_ERROR, body.to_string()).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, axum::http::HeaderValue::from_static(scim::SCIM_JSON));
    resp
}

async fn readyz(State(s): State<AppState>) -> Response {
    match s.hub.ready().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            // The detail goes to the log only: `/readyz` is unauthenticated, and database
            // error text can name hosts, users and schemas.
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "not ready: the database is unreachable").into_response()
        }
    }
}

async fn require_admin(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(secret) = presented else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing `Authorization: Bearer <admin token>`; create one with `idplex token create`",
        )
        .into_response();
    };
    match s.hub.verify_admin_token(secret).await {
        Ok(Some(_)) => next.run(req).await,
        Ok(None) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "admin token is unknown, expired or revoked",
        )
        .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn list_connectors(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let modules = s.hub.connectors().await?;
    Ok(Json(json!({ "connectors": modules })))
}

async fn install_connector(State(s): State<AppState>, body: Bytes) -> ApiResult<(StatusCode, Json<Value>)> {
    if body.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty_body",
            "send the component bytes as the request body (Content-Type: application/wasm)",
        ));
    }
    let report = s.hub.install(&body).await?;
    let status = if report.outcome == "installed" { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(serde_json::to_value(report).unwrap_or_default())))
}

async fn connector_versions(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let versions = s.hub.connector_versions(&name).await?;
    Ok(Json(json!({ "name": name, "versions": versions })))
}

async fn inspect_connector(
    State(s): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let module = s.hub.connector_module(&name, &version).await?;
    Ok(Json(serde_json::to_value(module).unwrap_or_default()))
}

async fn list_connections(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let conns = s.hub.connections().await?;
    Ok(Json(json!({ "connections": conns.iter().map(redacted).collect::<Vec<_>>() })))
}

/// Body of `POST /admin/v1/connections`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateConnection {
    name: String,
    connector: String,
    #[serde(default = "default_org")]
    org_id: String,
    #[serde(default)]
    config: Value,
    #[serde(default)]
    egress_allow: Vec<String>,
    #[serde(default)]
    limits: Value,
    /// Activate this version right away.
    #[serde(default)]
    version: Option<String>,
}

fn default_org() -> String {
    "default".into()
}

async fn create_connection(
    State(s): State<AppState>,
    body: Result<Json<CreateConnection>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Json(c) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.body_text()))?;
    let config = if c.config.is_null() { json!({}) } else { c.config };
    let limits = if c.limits.is_null() { json!({}) } else { c.limits };
    let conn = s
        .hub
        .create_connection(NewConnection {
            id: None,
            org_id: c.org_id,
            name: c.name,
            connector_name: c.connector,
            config,
            egress_allow: c.egress_allow,
            limits,
        })
        .await?;
    let conn = match c.version {
        Some(v) => s.hub.activate(&conn.id, &v, "admin-api").await?,
        None => conn,
    };
    Ok((StatusCode::CREATED, Json(redacted(&conn))))
}

async fn get_connection(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let conn = s.hub.connection(&id).await?;
    Ok(Json(redacted(&conn)))
}

/// `PATCH /connections/{id}`: each field present replaces that field.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateConnection {
    #[serde(default)]
    config: Option<Value>,
    #[serde(default)]
    egress_allow: Option<Vec<String>>,
    #[serde(default)]
    limits: Option<Value>,
}

async fn update_connection(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<UpdateConnection>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(u) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.body_text()))?;
    let update = idplex_hub::store::ConnectionUpdate { config: u.config, egress_allow: u.egress_allow, limits: u.limits };
    let conn = s.hub.update_connection(&id, update).await?;
    Ok(Json(redacted(&conn)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivateBody {
    version: String,
}

async fn activate(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<ActivateBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(b) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.body_text()))?;
    let conn = s.hub.activate(&id, &b.version, actor(&headers)).await?;
    Ok(Json(redacted(&conn)))
}

async fn rollback(State(s): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let conn = s.hub.rollback(&id, actor(&headers)).await?;
    Ok(Json(redacted(&conn)))
}

/// The connector's *test connection* on the connection's live binding: 200 with the checks
/// (`ok` false when one failed, `available` false for a contract 1.0 connector).
async fn test_connection(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let report = s.hub.test_connection(&id).await?;
    Ok(Json(serde_json::to_value(report).unwrap_or_default()))
}

#[derive(Deserialize)]
struct SyncRunQuery {
    /// Run to the end and answer the report (default: start it and answer 202 at once).
    #[serde(default)]
    wait: bool,
}

/// `POST /admin/v1/connections/{id}/sync`: a manual directory pull. 409 while one runs.
async fn sync_run(State(s): State<AppState>, Path(id): Path<String>, Query(q): Query<SyncRunQuery>) -> ApiResult<Response> {
    if q.wait {
        let report = s.hub.run_directory_sync(&id, SyncTrigger::Manual, None).await?;
        return Ok(Json(serde_json::to_value(report).unwrap_or_default()).into_response());
    }
    let status = s.hub.directory_sync_status(&id, 1).await?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    if status.state.as_ref().is_some_and(|st| st.lease_owner.is_some() && st.lease_expires_at.is_some_and(|t| t > now)) {
        return Err(HubError::Store(idplex_hub::store::StoreError::Conflict {
            what: "directory sync of connection",
            key: id,
            reason: "is already running; GET /admin/v1/connections/{id}/sync shows its progress".into(),
        })
        .into());
    }
    let hub = s.hub.clone();
    let connection = id.clone();
    tokio::spawn(async move {
        if let Err(e) = hub.run_directory_sync(&connection, SyncTrigger::Manual, None).await {
            tracing::warn!(connection = %connection, error = %e, "manual directory sync not run");
        }
    });
    Ok((StatusCode::ACCEPTED, Json(json!({ "connection_id": id, "started": true }))).into_response())
}

#[derive(Deserialize)]
struct SyncStatusQuery {
    #[serde(default)]
    runs: Option<u32>,
}

/// `GET /admin/v1/connections/{id}/sync`: the schedule, the pass in progress, recent runs.
async fn sync_status(State(s): State<AppState>, Path(id): Path<String>, Query(q): Query<SyncStatusQuery>) -> ApiResult<Json<Value>> {
    let status = s.hub.directory_sync_status(&id, q.runs.unwrap_or(10)).await?;
    Ok(Json(serde_json::to_value(status).unwrap_or_default()))
}

#[derive(Deserialize)]
struct SyncScheduleBody {
    enabled: bool,
    #[serde(default)]
    interval_minutes: Option<u64>,
}

/// `PUT /admin/v1/connections/{id}/sync/schedule`: `{"enabled": true, "interval_minutes": 15}`.
async fn sync_schedule(State(s): State<AppState>, Path(id): Path<String>, Json(body): Json<SyncScheduleBody>) -> ApiResult<Json<Value>> {
    let minutes = body.interval_minutes.unwrap_or(15);
    let state = s.hub.set_directory_sync_schedule(&id, body.enabled, std::time::Duration::from_secs(minutes.saturating_mul(60))).await?;
    Ok(Json(serde_json::to_value(state).unwrap_or_default()))
}

#[derive(Deserialize)]
struct SyncLogQuery {
    #[serde(default)]
    limit: Option<u32>,
}

/// `GET /admin/v1/connections/{id}/sync/log`: failed pages and per-item warnings, newest first.
async fn sync_log(State(s): State<AppState>, Path(id): Path<String>, Query(q): Query<SyncLogQuery>) -> ApiResult<Json<Value>> {
    let lines = s.hub.directory_sync_log(&id, q.limit.unwrap_or(100)).await?;
    Ok(Json(json!({ "connection_id": id, "log": lines })))
}

fn actor(headers: &HeaderMap) -> &str {
    headers.get("x-idplex-actor").and_then(|v| v.to_str().ok()).unwrap_or("admin-api")
}

async fn history(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let h = s.hub.binding_history(&id).await?;
    Ok(Json(json!({ "connection_id": id, "history": h })))
}

#[derive(Deserialize)]
struct EventsQuery {
    connection: Option<String>,
    limit: Option<u32>,
}

async fn events(State(s): State<AppState>, Query(q): Query<EventsQuery>) -> ApiResult<Json<Value>> {
    let events = s.hub.events(q.connection.as_deref(), q.limit.unwrap_or(100)).await?;
    Ok(Json(json!({ "events": events })))
}

/// Body of `POST /admin/v1/connections/{id}/scim-tokens`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NewScimToken {
    /// Expiry (unix ms); default one year.
    #[serde(default)]
    expires_at: Option<i64>,
}

async fn list_scim_tokens(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let tokens = s.hub.scim_tokens(&id).await?;
    Ok(Json(json!({ "connection_id": id, "tokens": tokens })))
}

/// Issue a SCIM token; the secret is in this response only.
async fn create_scim_token(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Option<Json<NewScimToken>>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let expires_at = body.and_then(|Json(b)| b.expires_at);
    let (token, secret) = s.hub.create_scim_token(&id, expires_at).await?;
    Ok((StatusCode::CREATED, Json(json!({ "token": token, "secret": secret, "scim_path": format!("/scim/v2/{id}") }))))
}

#[derive(Deserialize)]
struct RotateQuery {
    /// How long the old token keeps working, in ms (default one hour).
    overlap_ms: Option<i64>,
}

async fn rotate_scim_token(
    State(s): State<AppState>,
    Path((id, token)): Path<(String, String)>,
    Query(q): Query<RotateQuery>,
) -> ApiResult<Json<Value>> {
    let overlap = q.overlap_ms.unwrap_or(3_600_000);
    let (new, secret) = s.hub.rotate_scim_token(&id, &token, overlap).await?;
    Ok(Json(json!({ "token": new, "secret": secret })))
}

async fn revoke_scim_token(
    State(s): State<AppState>,
    Path((id, token)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let t = s.hub.revoke_scim_token(&id, &token).await?;
    Ok(Json(json!({ "token": t })))
}

/// Body of the SCIM dry run: a request envelope as the SCIM server would pass it on.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScimEnvelope {
    method: String,
    resource: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    query: Vec<(String, String)>,
    #[serde(default)]
    body: Option<Value>,
}

/// Show what the connection's connector makes of a SCIM request, without applying it.
async fn dry_run_scim(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<ScimEnvelope>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(env) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.body_text()))?;
    let resource = match env.resource.as_str() {
        "Users" | "User" | "user" => ResourceKind::User,
        "Groups" | "Group" | "group" => ResourceKind::Group,
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_resource",
                format!("resource must be Users or Groups, not {other:?}"),
            ));
        }
    };
    let request = ScimRequest {
        method: env.method.to_ascii_uppercase(),
        resource,
        id: env.id,
        query: env.query,
        body: env.body.map(|b| b.to_string()),
    };
    let ops = s.hub.normalize(&id, request).await?;
    Ok(Json(json!({ "operations": ops.iter().map(operation_json).collect::<Vec<_>>() })))
}

/// A verified assertion as JSON (the shape the SAML layer hands over).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssertionBody {
    issuer: String,
    name_id: String,
    #[serde(default)]
    name_id_format: Option<String>,
    #[serde(default)]
    session_index: Option<String>,
    #[serde(default)]
    authn_context: Option<String>,
    #[serde(default)]
    attributes: std::collections::BTreeMap<String, Vec<String>>,
}

/// Show which identity the connection's connector maps a (trusted, already verified) assertion to.
async fn dry_run_sso(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<AssertionBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(a) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.body_text()))?;
    let assertion = VerifiedAssertion {
        issuer: a.issuer,
        name_id: a.name_id,
        name_id_format: a.name_id_format,
        session_index: a.session_index,
        authn_context: a.authn_context,
        attributes: a.attributes.into_iter().map(|(name, values)| SamlAttribute { name, values }).collect(),
    };
    let identity = s.hub.map_assertion(&id, assertion).await?;
    let u = &identity.user;
    Ok(Json(json!({
        "user": {
            "external_id": u.external_id,
            "user_name": u.user_name,
            "given_name": u.given_name,
            "family_name": u.family_name,
            "display_name": u.display_name,
            "emails": u.emails.iter().map(|e| json!({"value": e.value, "type": e.kind, "primary": e.primary})).collect::<Vec<_>>(),
            "active": u.active,
            "groups": u.groups,
        },
        "groups": identity.groups,
    })))
}

/// Serve `router(hub)` on `listener` until `shutdown` resolves, then finish in-flight requests.
pub async fn serve(
    hub: Arc<Hub>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = app_state(hub);
    let app = router_with_state(state.clone())
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
        .layer(tower_http::trace::TraceLayer::new_for_http());
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    state.scim.flush_sync_log().await;
    Ok(())
}
