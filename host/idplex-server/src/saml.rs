//! SAML sign-in over HTTP: the browser-facing routes and the admin routes of a connection's
//! SAML setup. The use cases are the hub's sso service ([`idplex_hub::sso`]); this module only
//! decodes, encodes and sets the cookie.
//!
//! Browser-facing (no admin token):
//! * `GET /saml/{connection}/metadata` — the SP metadata to give the IdP.
//! * `GET /saml/{connection}/login?return_to=/path` — SP-initiated sign-in: 303 to the IdP.
//! * `GET /sso/login?email=ada@example.com&return_to=/path` — the same, routed by e-mail domain
//!   (without `email`: a form that asks for it).
//! * `POST /saml/{connection}/acs` — the ACS (HTTP-POST binding, form fields `SAMLResponse`,
//!   `RelayState`): on success 303 to the return path with the `idplex_session` cookie
//!   (HttpOnly, Secure, SameSite=Lax, Path=/, Max-Age of the session); refused: an HTML page
//!   with the refusal code only (the detail is in the connection's events, for the admin).
//! * `POST /logout` — ends the session of the cookie, clears the cookie; when the session came
//!   from an IdP that offers single logout, 303 to the IdP with a LogoutRequest.
//! * `GET /saml/{connection}/slo` — single logout (HTTP-Redirect): the IdP's signed
//!   LogoutRequest ends the subject's sessions and is answered with a LogoutResponse; the IdP's
//!   LogoutResponse to ours lands the browser on `/`.
//!
//! Admin (under `/admin/v1`, admin token): `GET|PATCH|DELETE /connections/{id}/saml`,
//! `POST /connections/{id}/saml/metadata` (the IdP's metadata XML as the body; `?entity_id=`
//! picks an IdP of an aggregate, `?enable=true` turns sign-in on), `PUT
//! /connections/{id}/saml/domains` (`{"domains": [...]}`), `GET|POST|PUT /saml/sp-key` (the
//! deployment's SP signing key: show, generate, import `{private_key_pem, certificate_pem}`).

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Form, Json, Router};
use idplex_hub::{SamlUpdate, SsoError, SsoErrorClass};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::lifecycle::SESSION_COOKIE;
use crate::{ApiError, ApiResult, AppState};

/// Largest ACS form body read: the verifier's 256 KiB response limit, form-encoded.
const MAX_ACS_BODY: usize = 1 << 20;
/// Largest IdP metadata document an admin uploads (the parser's own limit is 1 MiB).
const MAX_METADATA_BODY: usize = 2 << 20;

/// The browser-facing routes.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/saml/{id}/metadata", get(sp_metadata))
        .route("/saml/{id}/login", get(login))
        .route("/saml/{id}/acs", post(acs).layer(DefaultBodyLimit::max(MAX_ACS_BODY)))
        .route("/sso/login", get(login_by_email))
        .route("/saml/{id}/slo", get(single_logout))
        .route("/logout", post(logout))
}

/// The admin routes, relative to `/admin/v1`.
pub(crate) fn admin_routes() -> Router<AppState> {
    Router::new()
        .route("/connections/{id}/saml", get(get_saml).patch(patch_saml).delete(delete_saml))
        .route(
            "/connections/{id}/saml/metadata",
            post(import_metadata).layer(DefaultBodyLimit::max(MAX_METADATA_BODY)),
        )
        .route("/connections/{id}/saml/domains", put(put_domains))
        .route("/saml/sp-key", get(get_sp_key).post(generate_sp_key).put(import_sp_key))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// An HTML page saying `title`, `text` and the reference `code` (also in `x-idplex-error`),
/// never cached: what a browser sees when a sign-in or an app's request is refused.
pub(crate) fn html_refusal(status: StatusCode, title: &str, text: &str, code: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1><p>{}</p><p>Reference: <code>{}</code></p></body></html>\n",
        html_escape(text),
        html_escape(code),
        title = html_escape(title),
    );
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(code) {
        h.insert("x-idplex-error", v);
    }
    resp
}

/// What the browser sees when sign-in is refused: the code, never the detail.
fn refusal_page(e: &SsoError) -> Response {
    let status = match e.class {
        SsoErrorClass::NotFound => StatusCode::NOT_FOUND,
        SsoErrorClass::BadRequest => StatusCode::BAD_REQUEST,
        SsoErrorClass::Refused => StatusCode::FORBIDDEN,
        SsoErrorClass::Busy => StatusCode::SERVICE_UNAVAILABLE,
        SsoErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let advice = match e.code {
        "unknown_user" => "Your account is not provisioned for this organization yet. Ask your administrator for access.",
        "user_inactive" => "Your account is deactivated. Ask your administrator.",
        "no_domain_route" => "No organization signs in with this e-mail domain.",
        "not_configured" | "sso_disabled" => "Single sign-on is not set up for this organization.",
        "busy" => "Too many sign-ins are starting right now. Try again in a moment.",
        _ => "The sign-in could not be verified. Try again from the start; if it keeps failing, your administrator can see why in idplex's events.",
    };
    let mut resp = html_refusal(status, "Sign-in refused", advice, e.code);
    let h = resp.headers_mut();
    if e.class == SsoErrorClass::Busy {
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

fn see_other(location: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    match HeaderValue::from_str(location) {
        Ok(v) => {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => return (StatusCode::INTERNAL_SERVER_ERROR, "bad redirect").into_response(),
    }
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn sp_metadata(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let xml = s.hub.saml_sp_metadata(&id).await?;
    let mut resp = xml.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/samlmetadata+xml"));
    Ok(resp)
}

#[derive(Deserialize)]
struct LoginQuery {
    return_to: Option<String>,
}

async fn login(State(s): State<AppState>, Path(id): Path<String>, Query(q): Query<LoginQuery>) -> Response {
    match s.hub.begin_sign_in(&id, q.return_to.as_deref()).await {
        Ok(start) => see_other(&start.redirect_url),
        Err(e) => refusal_page(&e),
    }
}

#[derive(Deserialize)]
struct EmailQuery {
    email: Option<String>,
    return_to: Option<String>,
}

/// Without an e-mail: a form that asks for it (and keeps the return path).
fn email_form(return_to: Option<&str>) -> Response {
    let keep = return_to
        .and_then(idplex_hub::sso::safe_return_path)
        .map(|p| format!("<input type=\"hidden\" name=\"return_to\" value=\"{}\">", html_escape(p)))
        .unwrap_or_default();
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign in</title></head>\
         <body><h1>Sign in</h1><form method=\"get\" action=\"/sso/login\">\
         <label>Work e-mail <input type=\"email\" name=\"email\" required autofocus></label>{keep}\
         <button type=\"submit\">Continue</button></form></body></html>\n"
    );
    let mut resp = body.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn login_by_email(State(s): State<AppState>, Query(q): Query<EmailQuery>) -> Response {
    let Some(email) = q.email.as_deref().filter(|e| !e.trim().is_empty()) else {
        return email_form(q.return_to.as_deref());
    };
    match s.hub.begin_sign_in_by_email(email, q.return_to.as_deref()).await {
        Ok(start) => see_other(&start.redirect_url),
        Err(e) => refusal_page(&e),
    }
}

/// The ACS form (HTTP-POST binding).
#[derive(Deserialize)]
struct AcsForm {
    #[serde(rename = "SAMLResponse")]
    saml_response: String,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

/// The `Set-Cookie` value of the session cookie: `value` for `max_age` seconds (0 clears it).
fn session_cookie(value: &str, max_age: i64) -> String {
    format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age={}", max_age.max(0))
}

async fn acs(
    State(s): State<AppState>,
    Path(id): Path<String>,
    form: Result<Form<AcsForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        let e = SsoError {
            code: "malformed",
            detail: "the ACS expects a form post with a SAMLResponse field".into(),
            class: SsoErrorClass::BadRequest,
        };
        return refusal_page(&e);
    };
    match s.hub.complete_sign_in(&id, &form.saml_response, form.relay_state.as_deref()).await {
        Ok(done) => {
            let mut resp = see_other(&done.return_to);
            let max_age = (done.session.expires_at - done.session.created_at) / 1000;
            match HeaderValue::from_str(&session_cookie(&done.session_secret, max_age)) {
                Ok(v) => {
                    resp.headers_mut().insert(header::SET_COOKIE, v);
                }
                Err(_) => return (StatusCode::INTERNAL_SERVER_ERROR, "bad cookie").into_response(),
            }
            resp
        }
        Err(e) => refusal_page(&e),
    }
}

async fn logout(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let secret = crate::me::session_cookie(&headers).map(str::to_owned);
    let out = match secret {
        Some(secret) => s.hub.sign_out(&secret).await?,
        None => idplex_hub::SignedOut { ended: false, idp_logout_url: None },
    };
    // Single logout: the browser goes on to the IdP with the LogoutRequest.
    let mut resp = match &out.idp_logout_url {
        Some(url) => {
            let mut resp = (StatusCode::SEE_OTHER, Json(json!({ "ended": out.ended, "idp_logout_url": url }))).into_response();
            if let Ok(v) = HeaderValue::from_str(url) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp
        }
        None => Json(json!({ "ended": out.ended })).into_response(),
    };
    if let Ok(clear) = HeaderValue::from_str(&session_cookie("", 0)) {
        resp.headers_mut().insert(header::SET_COOKIE, clear);
    }
    Ok(resp)
}

/// The SP's single logout endpoint (HTTP-Redirect): the IdP's LogoutRequest (answered with a
/// LogoutResponse to the IdP) or its LogoutResponse to ours (then home).
async fn single_logout(State(s): State<AppState>, Path(id): Path<String>, uri: axum::http::Uri) -> Response {
    match s.hub.saml_logout(&id, uri.query().unwrap_or_default()).await {
        Ok(done) => {
            let mut resp = see_other(&done.location);
            // The IdP asked: this browser's cookie goes with the sessions it named. (Not for a
            // LogoutResponse, which anyone could send: the cookie went at POST /logout.)
            if done.idp_asked
                && let Ok(clear) = HeaderValue::from_str(&session_cookie("", 0))
            {
                resp.headers_mut().insert(header::SET_COOKIE, clear);
            }
            resp
        }
        Err(e) => refusal_page(&e),
    }
}

// -- admin ------------------------------------------------------------------------------------

async fn get_saml(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(serde_json::to_value(s.hub.saml(&id).await?).unwrap_or_default()))
}

async fn patch_saml(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<SamlUpdate>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(update) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.body_text()))?;
    Ok(Json(serde_json::to_value(s.hub.set_saml(&id, update).await?).unwrap_or_default()))
}

async fn delete_saml(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.hub.delete_saml(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct ImportQuery {
    entity_id: Option<String>,
    #[serde(default)]
    enable: bool,
}

async fn import_metadata(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ImportQuery>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let xml = std::str::from_utf8(&body)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", "the metadata must be UTF-8 XML"))?;
    if xml.trim().is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "empty_body", "send the IdP's metadata XML as the request body"));
    }
    let view = s.hub.import_saml_metadata(&id, xml, q.entity_id.as_deref(), q.enable).await?;
    Ok(Json(serde_json::to_value(view).unwrap_or_default()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Domains {
    domains: Vec<String>,
}

async fn put_domains(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<Domains>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(d) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.body_text()))?;
    let domains = s.hub.set_sso_domains(&id, &d.domains).await?;
    Ok(Json(json!({ "domains": domains })))
}

async fn get_sp_key(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    match s.hub.saml_sp_key().await? {
        Some(key) => Ok(Json(json!(key))),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "no SP signing key; POST to generate one")),
    }
}

async fn generate_sp_key(State(s): State<AppState>) -> ApiResult<(StatusCode, Json<Value>)> {
    Ok((StatusCode::CREATED, Json(json!(s.hub.generate_saml_sp_key().await?))))
}

/// The admin's own key and certificate, both PEM.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpKeyImport {
    private_key_pem: String,
    certificate_pem: String,
}

async fn import_sp_key(
    State(s): State<AppState>,
    body: Result<Json<SpKeyImport>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(body) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.body_text()))?;
    Ok(Json(json!(s.hub.import_saml_sp_key(body.private_key_pem.as_bytes(), &body.certificate_pem).await?)))
}
