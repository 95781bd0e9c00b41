//! OpenID Connect provider over HTTP: the endpoints downstream apps call, and the admin routes
//! for apps, signing keys and organizations' session policy. The use cases are the hub's
//! ([`idplex_hub::oidc`]); this module decodes, encodes and maps errors to OAuth's shapes.
//!
//! Public:
//! * `GET /.well-known/openid-configuration` — discovery; `GET /oauth2/jwks` — the keys.
//! * `GET|POST /oauth2/authorize` — 303 to the app with `code` (or `error`), or to sign in
//!   first; an untrusted client or redirect URI gets an HTML error page, never a redirect.
//! * `POST /oauth2/token` — form; `client_secret_basic` or `client_secret_post`; JSON answer
//!   with `Cache-Control: no-store`; errors as RFC 6749 §5.2 (`invalid_client` is 401 with
//!   `WWW-Authenticate`).
//! * `GET|POST /oauth2/userinfo` — `Authorization: Bearer`; errors as RFC 6750 §3.
//! * `POST /oauth2/revoke` — RFC 7009.
//!
//! Admin (under `/admin/v1`): `GET|POST /apps`, `GET|PATCH|DELETE /apps/{id}`,
//! `POST /apps/{id}/rotate-secret`, `GET /oidc/keys`, `POST /oidc/keys/rotate`,
//! `GET|PUT /orgs/{org}/session-policy`.

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use idplex_hub::store::OrgSessionPolicy;
use idplex_hub::{AppUpdate, AppView, AuthorizeOutcome, AuthorizeParams, BasicCredentials, NewApp, OidcError, TokenForm};
use idplex_scim::percent_decode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{ApiResult, AppState};

/// Largest form read by the token and revocation endpoints.
const MAX_FORM_BODY: usize = 16 * 1024;

/// The public routes.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/oauth2/jwks", get(jwks))
        .route("/oauth2/authorize", get(authorize_get).post(authorize_post))
        .route("/oauth2/token", post(token))
        .route("/oauth2/userinfo", get(userinfo).post(userinfo))
        .route("/oauth2/revoke", post(revoke))
        .layer(DefaultBodyLimit::max(MAX_FORM_BODY))
}

/// The admin routes, relative to `/admin/v1`.
pub(crate) fn admin_routes() -> Router<AppState> {
    Router::new()
        .route("/apps", get(list_apps).post(create_app))
        .route("/apps/{id}", get(get_app).patch(patch_app).delete(delete_app))
        .route("/apps/{id}/rotate-secret", post(rotate_secret))
        .route("/oidc/keys", get(list_keys))
        .route("/oidc/keys/rotate", post(rotate_key))
        .route("/orgs/{org}/session-policy", get(get_policy).put(put_policy))
}

fn no_store(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => no_store((StatusCode::SEE_OTHER, [(header::LOCATION, v)]).into_response()),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "bad redirect").into_response(),
    }
}

/// An OAuth error as JSON (token, userinfo, revocation endpoints).
fn oauth_error(e: &OidcError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut resp = (status, Json(json!({ "error": e.error, "error_description": e.description }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        let challenge = if e.error == "invalid_token" {
            format!("Bearer realm=\"idplex\", error=\"invalid_token\", error_description=\"{}\"", e.description)
        } else {
            "Basic realm=\"idplex\"".to_owned()
        };
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
    }
    no_store(resp)
}

/// What the browser sees when the request cannot go back to the app.
fn error_page(e: &OidcError) -> Response {
    let status = match e.error {
        "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
        "temporarily_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    no_store(crate::saml::html_refusal(status, "Sign-in request refused", &e.description, e.error))
}

async fn discovery(State(s): State<AppState>) -> Json<Value> {
    Json(s.hub.oidc_discovery())
}

async fn jwks(State(s): State<AppState>) -> ApiResult<Response> {
    let mut resp = Json(s.hub.oidc_jwks().await?).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    Ok(resp)
}

async fn authorize(s: AppState, headers: HeaderMap, params: AuthorizeParams) -> Response {
    let session = crate::me::session_cookie(&headers);
    match s.hub.authorize(params, session).await {
        Ok(AuthorizeOutcome::ToApp(url) | AuthorizeOutcome::SignIn(url)) => see_other(&url),
        Err(e) => error_page(&e),
    }
}

async fn authorize_get(
    State(s): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<AuthorizeParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match params {
        Ok(Query(p)) => authorize(s, headers, p).await,
        Err(_) => error_page(&OidcError { error: "invalid_request", description: "unreadable query string".into() }),
    }
}

async fn authorize_post(
    State(s): State<AppState>,
    headers: HeaderMap,
    params: Result<Form<AuthorizeParams>, axum::extract::rejection::FormRejection>,
) -> Response {
    match params {
        Ok(Form(p)) => authorize(s, headers, p).await,
        Err(_) => error_page(&OidcError { error: "invalid_request", description: "unreadable form".into() }),
    }
}

/// `Authorization: Basic` client credentials; `Err` when the header is there but unreadable.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<BasicCredentials>, OidcError> {
    use base64::Engine as _;
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(encoded) = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")) else {
        return Ok(None);
    };
    let bad = || OidcError { error: "invalid_client", description: "unreadable Basic credentials".into() };
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    // RFC 6749 §2.3.1: both are form-encoded before they are joined.
    Ok(Some(BasicCredentials { client_id: percent_decode(id), client_secret: percent_decode(secret) }))
}

async fn token(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return oauth_error(&OidcError {
            error: "invalid_request",
            description: "the token endpoint takes an application/x-www-form-urlencoded body".into(),
        });
    };
    let basic = match basic_credentials(&headers) {
        Ok(b) => b,
        Err(e) => return oauth_error(&e),
    };
    match s.hub.token(basic, form).await {
        Ok(body) => no_store(Json(body).into_response()),
        Err(e) => oauth_error(&e),
    }
}

async fn userinfo(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    match s.hub.userinfo(bearer).await {
        Ok(claims) => no_store(Json(claims).into_response()),
        Err(e) => oauth_error(&e),
    }
}

#[derive(Deserialize)]
struct RevokeForm {
    token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

async fn revoke(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<RevokeForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return oauth_error(&OidcError { error: "invalid_request", description: "unreadable form".into() });
    };
    let basic = match basic_credentials(&headers) {
        Ok(b) => b,
        Err(e) => return oauth_error(&e),
    };
    let Some(token) = form.token else {
        return oauth_error(&OidcError { error: "invalid_request", description: "token is missing".into() });
    };
    let client = TokenForm { client_id: form.client_id, client_secret: form.client_secret, ..TokenForm::default() };
    match s.hub.revoke_token(basic, client, &token).await {
        Ok(()) => no_store(StatusCode::OK.into_response()),
        Err(e) => oauth_error(&e),
    }
}

// -- admin ------------------------------------------------------------------------------------

async fn list_apps(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "apps": s.hub.apps().await? })))
}

async fn create_app(State(s): State<AppState>, Json(new): Json<NewApp>) -> ApiResult<(StatusCode, Json<AppView>)> {
    Ok((StatusCode::CREATED, Json(s.hub.create_app(new).await?)))
}

async fn get_app(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<AppView>> {
    Ok(Json(s.hub.app(&id).await?))
}

async fn patch_app(State(s): State<AppState>, Path(id): Path<String>, Json(update): Json<AppUpdate>) -> ApiResult<Json<AppView>> {
    Ok(Json(s.hub.update_app(&id, update).await?))
}

async fn delete_app(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.hub.delete_app(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rotate_secret(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<AppView>> {
    Ok(Json(s.hub.rotate_app_secret(&id).await?))
}

async fn list_keys(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "keys": s.hub.oidc_keys().await? })))
}

async fn rotate_key(State(s): State<AppState>) -> ApiResult<(StatusCode, Json<Value>)> {
    Ok((StatusCode::CREATED, Json(json!(s.hub.rotate_oidc_key().await?))))
}

async fn get_policy(State(s): State<AppState>, Path(org): Path<String>) -> ApiResult<Json<OrgSessionPolicy>> {
    Ok(Json(s.hub.org_session_policy(&org).await?))
}

async fn put_policy(
    State(s): State<AppState>,
    Path(org): Path<String>,
    Json(policy): Json<OrgSessionPolicy>,
) -> ApiResult<Json<OrgSessionPolicy>> {
    Ok(Json(s.hub.set_org_session_policy(&org, policy).await?))
}
