//! The OpenID Connect provider: downstream apps receive the identity a user signed in with
//! (SAML, [`crate::sso`]) through OAuth 2.0's authorization code flow with PKCE (RFC 6749,
//! RFC 7636) and OpenID Connect Core 1.0, so any OIDC client library integrates with idplex.
//!
//! * **Apps** ([`Hub::create_app`]): an organization's clients, each with exact redirect URIs
//!   (https, or http on a loopback host for development, RFC 8252) and a client secret shown
//!   once (only its sha256 is kept). Only users of the app's organization sign in to it.
//! * **Authorize** ([`Hub::authorize`]): `response_type=code`, scope `openid` required, PKCE
//!   `S256` required (plain refused). A client or redirect URI that does not check out is never
//!   redirected to (an error page instead, RFC 6749 §4.1.2.1). Without a session of the app's
//!   organization, the request is kept in the database ([`PENDING_LIFETIME_MS`]) and the browser
//!   sent to sign in, then back ([`Hub::resume_authorize`]). `prompt=none` without one answers
//!   `login_required`; `prompt=login` always signs in again.
//! * **Token** ([`Hub::token`]): the client authenticates (`client_secret_basic` or
//!   `client_secret_post`, compared in constant time), the code is redeemed once
//!   ([`CODE_LIFETIME_MS`]), bound to its client, redirect URI and PKCE verifier; a second
//!   redemption revokes the tokens issued for it. The answer carries an opaque access token
//!   (for userinfo, stored hashed, [`ACCESS_TOKEN_LIFETIME_MS`]) and an RS256 ID token.
//! * **Keys** ([`Hub::rotate_oidc_key`]): RSA-2048 keys generated here, the private half sealed
//!   with the deployment's secrets key; the newest signs, retired ones stay in the JWKS for
//!   [`RETIRED_KEY_PUBLISHED_MS`] so tokens they signed still verify, then are pruned.
//! * **Userinfo** ([`Hub::userinfo`]): the claims of the token's scopes; a deactivated user's
//!   tokens stop at once (checked with the token in one query).
//!
//! Refusals that matter to an admin (a wrong client secret, a code replayed, a PKCE or redirect
//! mismatch) are recorded as events (`oidc_<error>`, connector `oidc`), at most
//! [`crate::sso::MAX_REFUSAL_EVENTS_PER_MINUTE`] a minute per app.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use idplex_store::{CodeRedemption, DirectoryUser, EventKind, NewEvent, OidcClient, OidcCode, OidcSigningKey, OrgSessionPolicy};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::sso::random_hex;
use crate::{Hub, HubError, now_ms};

/// How long a code may be redeemed, in milliseconds.
pub const CODE_LIFETIME_MS: i64 = 60 * 1000;
/// How long an access token works, in milliseconds.
pub const ACCESS_TOKEN_LIFETIME_MS: i64 = 15 * 60 * 1000;
/// How long an ID token is valid, in milliseconds.
pub const ID_TOKEN_LIFETIME_MS: i64 = 15 * 60 * 1000;
/// How long an authorization request waits for its user to sign in, in milliseconds.
pub const PENDING_LIFETIME_MS: i64 = 10 * 60 * 1000;
/// How long a retired signing key stays in the JWKS (longer than any token it signed lives).
pub const RETIRED_KEY_PUBLISHED_MS: i64 = 24 * 60 * 60 * 1000;
/// Longest `state` and `nonce` accepted, in bytes.
pub const MAX_STATE_BYTES: usize = 1024;
/// The scopes idplex grants; others are ignored (OpenID Connect Core §5.4).
pub const SUPPORTED_SCOPES: [&str; 4] = ["openid", "profile", "email", "groups"];
/// Shortest idle timeout an organization may set, in minutes (sessions record their last use
/// to the minute).
pub const MIN_IDLE_TIMEOUT_MINUTES: i64 = 5;

const RSA_BITS: usize = 2048;
const SEALED_KEY_NAME: &str = "oidc.signing_key";

/// Why an OAuth request was refused: the OAuth error code (RFC 6749 §4.1.2.1, §5.2; OpenID
/// Connect Core §3.1.2.6) and a description safe to show the client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error}: {description}")]
pub struct OidcError {
    pub error: &'static str,
    pub description: String,
}

impl OidcError {
    fn new(error: &'static str, description: impl Into<String>) -> Self {
        OidcError { error, description: description.into() }
    }

    /// The HTTP status of this error at the token and userinfo endpoints.
    pub fn status(&self) -> u16 {
        match self.error {
            "invalid_client" | "invalid_token" => 401,
            "server_error" => 500,
            "temporarily_unavailable" => 503,
            _ => 400,
        }
    }
}

impl From<idplex_store::StoreError> for OidcError {
    fn from(e: idplex_store::StoreError) -> Self {
        tracing::error!(error = %e, "OIDC: store failed");
        OidcError::new("server_error", "the request could not be completed")
    }
}

/// A new app.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewApp {
    pub org_id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
}

/// A change to an app; `None` keeps the current value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppUpdate {
    pub name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
}

/// An app as admins see it: never its secret, except in the answer that issued it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppView {
    pub client_id: String,
    pub org_id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub secret_rotated_at: i64,
    /// Only right after registration or rotation: shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

impl AppView {
    fn new(app: OidcClient, client_secret: Option<String>) -> Self {
        AppView {
            client_id: app.id,
            org_id: app.org_id,
            name: app.name,
            redirect_uris: app.redirect_uris,
            created_at: app.created_at,
            updated_at: app.updated_at,
            secret_rotated_at: app.secret_rotated_at,
            client_secret,
        }
    }
}

/// A signing key as admins see it (never the private half).
#[derive(Debug, Clone, Serialize)]
pub struct SigningKeyView {
    pub kid: String,
    pub alg: String,
    pub created_at: i64,
    /// `None` for the key that signs.
    pub retired_at: Option<i64>,
}

/// The parameters of an authorization request (query string); unknown ones are ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuthorizeParams {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
    /// A request kept while its user signed in (idplex's own parameter).
    pub resume: Option<String>,
}

/// Where an authorization request sends the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeOutcome {
    /// Back to the app: its redirect URI with `code` (or `error`) and `state`.
    ToApp(String),
    /// To sign in first (a local path); the request continues afterwards.
    SignIn(String),
}

/// The token endpoint's form.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenForm {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

/// A client's credentials from `Authorization: Basic` (already split, still form-encoded).
#[derive(Debug, Clone)]
pub struct BasicCredentials {
    pub client_id: String,
    pub client_secret: String,
}

/// Whether `uri` may be registered as a redirect URI: absolute, `https` (or `http` on a
/// loopback host, RFC 8252 §7.3), no fragment, no user info, printable ASCII.
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    if uri.is_empty() || !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("{uri:?}: must be printable ASCII without spaces"));
    }
    if uri.contains('#') {
        return Err(format!("{uri}: must not have a fragment"));
    }
    let (scheme, rest) = uri.split_once("://").ok_or_else(|| format!("{uri}: must be an absolute URL"))?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("{uri}: must name a host and no user info"));
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    match scheme {
        "https" => Ok(()),
        "http" if matches!(host, "localhost" | "127.0.0.1" | "::1") => Ok(()),
        _ => Err(format!("{uri}: must be https (http only on localhost, 127.0.0.1 or [::1])")),
    }
}

fn invalid(what: &'static str, reason: impl Into<String>) -> HubError {
    HubError::Invalid { what, reason: reason.into() }
}

/// The RFC 7638 thumbprint of an RSA public key: the key's `kid`.
fn thumbprint(n: &str, e: &str) -> String {
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    B64URL.encode(Sha256::digest(canonical.as_bytes()))
}

/// A fresh RSA signing key: its PKCS#1 DER private half and public JWK.
fn generate_rsa_key() -> Result<(Vec<u8>, Value, String), HubError> {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, RSA_BITS)
        .map_err(|e| invalid("signing key", format!("RSA key generation failed: {e}")))?;
    let der = key
        .to_pkcs1_der()
        .map_err(|e| invalid("signing key", format!("RSA key encoding failed: {e}")))?
        .as_bytes()
        .to_vec();
    let n = B64URL.encode(key.n().to_bytes_be());
    let e = B64URL.encode(key.e().to_bytes_be());
    let kid = thumbprint(&n, &e);
    let jwk = json!({ "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e });
    Ok((der, jwk, kid))
}

/// `BASE64URL(SHA256(verifier))` equals `challenge` (RFC 7636 §4.6), compared in constant time.
fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    use subtle::ConstantTimeEq;
    let computed = B64URL.encode(Sha256::digest(verifier.as_bytes()));
    bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

/// A PKCE verifier or challenge: 43 to 128 unreserved characters (RFC 7636 §4.1).
fn pkce_shaped(s: &str) -> bool {
    (43..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// `at_hash`: the left half of SHA-256 of the access token, base64url (OpenID Connect Core
/// §3.1.3.6).
fn at_hash(access_token: &str) -> String {
    let digest = Sha256::digest(access_token.as_bytes());
    B64URL.encode(&digest[..16])
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `redirect_uri` with the query parameters added (after its own).
fn with_query(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let mut url = redirect_uri.to_owned();
    let mut sep = if url.contains('?') { '&' } else { '?' };
    for (k, v) in params {
        url.push(sep);
        url.push_str(k);
        url.push('=');
        url.push_str(&percent_encode(v));
        sep = '&';
    }
    url
}

/// The granted scopes: the supported ones asked for, in our order.
fn granted_scopes(asked: &str) -> Vec<&'static str> {
    let asked: Vec<&str> = asked.split(' ').filter(|s| !s.is_empty()).collect();
    SUPPORTED_SCOPES.into_iter().filter(|s| asked.contains(s)).collect()
}

/// The claims of `user` for the scopes granted (`sub` always).
fn user_claims(user: &DirectoryUser, groups: &[String], scope: &str) -> Map<String, Value> {
    let r = &user.resource;
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(user.id));
    let scopes = granted_scopes(scope);
    if scopes.contains(&"profile") {
        claims.insert("preferred_username".into(), json!(user.user_name));
        let given = r.pointer("/name/givenName").and_then(Value::as_str);
        let family = r.pointer("/name/familyName").and_then(Value::as_str);
        if let Some(v) = given {
            claims.insert("given_name".into(), json!(v));
        }
        if let Some(v) = family {
            claims.insert("family_name".into(), json!(v));
        }
        let name = r
            .get("displayName")
            .and_then(Value::as_str)
            .or_else(|| r.pointer("/name/formatted").and_then(Value::as_str))
            .map(str::to_owned)
            .or_else(|| match (given, family) {
                (Some(g), Some(f)) => Some(format!("{g} {f}")),
                (Some(one), None) | (None, Some(one)) => Some(one.to_owned()),
                (None, None) => None,
            });
        if let Some(name) = name {
            claims.insert("name".into(), json!(name));
        }
        claims.insert("updated_at".into(), json!(user.updated_at / 1000));
        claims.insert("org_id".into(), json!(user.org_id));
    }
    if scopes.contains(&"email") {
        let emails = r.get("emails").and_then(Value::as_array);
        let pick = emails.and_then(|list| {
            list.iter()
                .find(|e| e.get("primary").and_then(Value::as_bool) == Some(true))
                .or_else(|| list.first())
                .and_then(|e| e.get("value"))
                .and_then(Value::as_str)
        });
        if let Some(email) = pick {
            claims.insert("email".into(), json!(email));
        }
    }
    if scopes.contains(&"groups") {
        claims.insert("groups".into(), json!(groups));
    }
    claims
}

impl Hub {
    // -- apps ----------------------------------------------------------------------------------

    /// Registers an app; the answer carries its client secret (shown once).
    pub async fn create_app(&self, new: NewApp) -> Result<AppView, HubError> {
        for uri in &new.redirect_uris {
            check_redirect_uri(uri).map_err(|e| invalid("redirect URI", e))?;
        }
        let (app, secret) = self.store.create_oidc_client(&new.org_id, &new.name, &new.redirect_uris).await?;
        tracing::info!(app = %app.id, org = %app.org_id, "OIDC app registered");
        Ok(AppView::new(app, Some(secret)))
    }

    /// Every app.
    pub async fn apps(&self) -> Result<Vec<AppView>, HubError> {
        Ok(self.store.list_oidc_clients().await?.into_iter().map(|a| AppView::new(a, None)).collect())
    }

    /// The app `id`.
    pub async fn app(&self, id: &str) -> Result<AppView, HubError> {
        let app = self.store.oidc_client(id).await?;
        let app = app.ok_or_else(|| idplex_store::StoreError::NotFound { what: "app", key: id.to_owned() })?;
        Ok(AppView::new(app, None))
    }

    /// Renames an app or replaces its redirect URIs.
    pub async fn update_app(&self, id: &str, update: AppUpdate) -> Result<AppView, HubError> {
        if let Some(uris) = &update.redirect_uris {
            for uri in uris {
                check_redirect_uri(uri).map_err(|e| invalid("redirect URI", e))?;
            }
        }
        let app = self.store.update_oidc_client(id, update.name.as_deref(), update.redirect_uris.as_deref()).await?;
        Ok(AppView::new(app, None))
    }

    /// Issues the app a new client secret (in the answer, shown once); the old one stops at once.
    pub async fn rotate_app_secret(&self, id: &str) -> Result<AppView, HubError> {
        let (app, secret) = self.store.rotate_oidc_client_secret(id).await?;
        tracing::info!(app = %id, "OIDC app secret rotated");
        Ok(AppView::new(app, Some(secret)))
    }

    /// Deletes the app and everything issued to it.
    pub async fn delete_app(&self, id: &str) -> Result<(), HubError> {
        self.store.delete_oidc_client(id).await?;
        tracing::info!(app = %id, "OIDC app deleted");
        Ok(())
    }

    // -- organization session policy ----------------------------------------------------------

    /// The session policy of an organization.
    pub async fn org_session_policy(&self, org_id: &str) -> Result<OrgSessionPolicy, HubError> {
        Ok(self.store.org_session_policy(org_id).await?)
    }

    /// Sets an organization's idle and absolute session timeouts (minutes; `None` turns one
    /// off). Open sessions are held to them from the next request on.
    pub async fn set_org_session_policy(&self, org_id: &str, policy: OrgSessionPolicy) -> Result<OrgSessionPolicy, HubError> {
        let max = crate::MAX_SESSION_TTL_MINUTES as i64;
        if let Some(idle) = policy.session_idle_minutes
            && !(MIN_IDLE_TIMEOUT_MINUTES..=max).contains(&idle)
        {
            return Err(invalid("idle timeout", format!("{idle} minutes; give {MIN_IDLE_TIMEOUT_MINUTES} to {max}")));
        }
        if let Some(absolute) = policy.session_absolute_minutes
            && !(1..=max).contains(&absolute)
        {
            return Err(invalid("absolute timeout", format!("{absolute} minutes; give 1 to {max}")));
        }
        self.store.set_org_session_policy(org_id, &policy).await?;
        Ok(policy)
    }

    // -- keys and discovery -------------------------------------------------------------------

    /// Generates a new signing key and makes it the one that signs; the previous one stays
    /// published for [`RETIRED_KEY_PUBLISHED_MS`].
    pub async fn rotate_oidc_key(&self) -> Result<SigningKeyView, HubError> {
        let (der, jwk, kid) = tokio::task::spawn_blocking(generate_rsa_key)
            .await
            .map_err(|e| invalid("signing key", format!("key generation stopped: {e}")))??;
        let key = OidcSigningKey {
            kid: kid.clone(),
            alg: "RS256".into(),
            private_key_sealed: self.secrets.seal(SEALED_KEY_NAME, &B64URL.encode(&der)),
            public_jwk_json: jwk.to_string(),
            created_at: now_ms(),
            retired_at: None,
        };
        self.store.add_oidc_signing_key(&key).await?;
        tracing::info!(kid = %kid, "OIDC signing key rotated");
        Ok(SigningKeyView { kid, alg: key.alg, created_at: key.created_at, retired_at: None })
    }

    /// The signing keys kept (the one that signs first).
    pub async fn oidc_keys(&self) -> Result<Vec<SigningKeyView>, HubError> {
        Ok(self
            .store
            .oidc_signing_keys()
            .await?
            .into_iter()
            .map(|k| SigningKeyView { kid: k.kid, alg: k.alg, created_at: k.created_at, retired_at: k.retired_at })
            .collect())
    }

    /// The signing keys kept, after making one if none signs: a client that reads the JWKS
    /// before the first sign-in must find the key its first ID token will carry.
    async fn current_keys(&self) -> Result<Vec<OidcSigningKey>, HubError> {
        let keys = self.store.oidc_signing_keys().await?;
        if keys.iter().any(|k| k.retired_at.is_none()) {
            return Ok(keys);
        }
        self.rotate_oidc_key().await?;
        Ok(self.store.oidc_signing_keys().await?)
    }

    /// The key that signs.
    async fn signing_key(&self) -> Result<(String, jsonwebtoken::EncodingKey), OidcError> {
        let fail = |e: String| {
            tracing::error!(error = %e, "OIDC: no usable signing key");
            OidcError::new("server_error", "the identity could not be signed")
        };
        let keys = self.current_keys().await.map_err(|e| fail(e.to_string()))?;
        let key = keys.into_iter().find(|k| k.retired_at.is_none()).ok_or_else(|| fail("no current key".into()))?;
        let der = self
            .secrets
            .open(SEALED_KEY_NAME, &key.private_key_sealed)
            .map_err(|e| fail(format!("{e} (is this process using the deployment's secrets key file?)")))?;
        let der = B64URL.decode(der).map_err(|e| fail(e.to_string()))?;
        Ok((key.kid, jsonwebtoken::EncodingKey::from_rsa_der(&der)))
    }

    /// The issuer: the public URL.
    pub fn oidc_issuer(&self) -> String {
        self.public_url()
    }

    /// The discovery document (`/.well-known/openid-configuration`).
    pub fn oidc_discovery(&self) -> Value {
        let issuer = self.oidc_issuer();
        json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/oauth2/authorize"),
            "token_endpoint": format!("{issuer}/oauth2/token"),
            "userinfo_endpoint": format!("{issuer}/oauth2/userinfo"),
            "jwks_uri": format!("{issuer}/oauth2/jwks"),
            "revocation_endpoint": format!("{issuer}/oauth2/revoke"),
            "end_session_endpoint": format!("{issuer}/logout"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": SUPPORTED_SCOPES,
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash",
                "name", "given_name", "family_name", "preferred_username", "updated_at", "email", "groups", "org_id"],
            "prompt_values_supported": ["none", "login"],
            "request_parameter_supported": false,
            "request_uri_parameter_supported": false,
            "claims_parameter_supported": false,
        })
    }

    /// The JWKS (`jwks_uri`): the key that signs (made now if there is none yet) and the retired
    /// ones still published.
    pub async fn oidc_jwks(&self) -> Result<Value, HubError> {
        let cutoff = now_ms() - RETIRED_KEY_PUBLISHED_MS;
        let keys: Vec<Value> = self
            .current_keys()
            .await?
            .into_iter()
            .filter(|k| k.retired_at.is_none_or(|at| at > cutoff))
            .filter_map(|k| serde_json::from_str(&k.public_jwk_json).ok())
            .collect();
        Ok(json!({ "keys": keys }))
    }

    // -- authorize ----------------------------------------------------------------------------

    /// An authorization request. `session_secret` is the browser's `idplex_session` cookie.
    /// `Err` means the client or redirect URI is not trusted: show the error, never redirect.
    pub async fn authorize(&self, params: AuthorizeParams, session_secret: Option<&str>) -> Result<AuthorizeOutcome, OidcError> {
        if let Some(pending) = params.resume.as_deref() {
            return self.resume_authorize(pending, session_secret).await;
        }
        let client_id = params.client_id.as_deref().ok_or_else(|| OidcError::new("invalid_request", "client_id is missing"))?;
        let Some(app) = self.store.oidc_client(client_id).await? else {
            self.record_oidc_refusal(None, "invalid_client", &format!("authorize: unknown client_id {:?}", short(client_id))).await;
            return Err(OidcError::new("invalid_client", "unknown client_id"));
        };
        let redirect_uri = params.redirect_uri.as_deref().ok_or_else(|| OidcError::new("invalid_request", "redirect_uri is missing"))?;
        if !app.redirect_uris.iter().any(|u| u == redirect_uri) {
            self.record_oidc_refusal(Some(&app.id), "invalid_redirect_uri", &format!("authorize: redirect_uri {:?} is not registered", short(redirect_uri))).await;
            return Err(OidcError::new("invalid_request", "redirect_uri is not registered for this client"));
        }
        // From here on, errors go back to the app.
        let state = params.state.as_deref();
        let back = |error: &str, description: &str| {
            let mut q = vec![("error", error), ("error_description", description)];
            if let Some(s) = state {
                q.push(("state", s));
            }
            Ok(AuthorizeOutcome::ToApp(with_query(redirect_uri, &q)))
        };
        if params.response_type.as_deref() != Some("code") {
            return back("unsupported_response_type", "only response_type=code is supported");
        }
        if state.is_some_and(|s| s.len() > MAX_STATE_BYTES) || params.nonce.as_deref().is_some_and(|s| s.len() > MAX_STATE_BYTES) {
            return back("invalid_request", "state or nonce is too long");
        }
        let scope = params.scope.as_deref().unwrap_or_default();
        if !granted_scopes(scope).contains(&"openid") {
            return back("invalid_scope", "the openid scope is required");
        }
        let Some(challenge) = params.code_challenge.as_deref() else {
            return back("invalid_request", "PKCE is required: send code_challenge with code_challenge_method=S256");
        };
        if params.code_challenge_method.as_deref() != Some("S256") {
            return back("invalid_request", "only code_challenge_method=S256 is supported");
        }
        if !pkce_shaped(challenge) {
            return back("invalid_request", "code_challenge must be 43 to 128 unreserved characters");
        }
        let prompt: Vec<&str> = params.prompt.as_deref().unwrap_or_default().split(' ').collect();
        let user = match session_secret {
            Some(secret) if !prompt.contains(&"login") => self.store.verify_user_session(secret).await?,
            _ => None,
        };
        let user = user.filter(|(_, u)| u.org_id == app.org_id);
        let Some((session, user)) = user else {
            if prompt.contains(&"none") {
                return back("login_required", "the user is not signed in");
            }
            return self.send_to_sign_in(&app, &params).await;
        };
        let granted = granted_scopes(scope).join(" ");
        let now = now_ms();
        let code = OidcCode {
            id: format!("occ_{}", random_hex(16)),
            client_id: app.id.clone(),
            user_id: user.id.clone(),
            redirect_uri: redirect_uri.to_owned(),
            code_challenge: challenge.to_owned(),
            scope: granted,
            nonce: params.nonce.clone(),
            auth_time: session.created_at,
            created_at: now,
            expires_at: now + CODE_LIFETIME_MS,
        };
        let secret = self.store.create_oidc_code(&code).await?;
        tracing::info!(app = %app.id, user = %user.id, "OIDC authorization code issued");
        // RFC 9207: the issuer rides along, so a client talking to several can tell them apart.
        let issuer = self.oidc_issuer();
        let mut q = vec![("code", secret.as_str())];
        if let Some(s) = state {
            q.push(("state", s));
        }
        q.push(("iss", issuer.as_str()));
        Ok(AuthorizeOutcome::ToApp(with_query(redirect_uri, &q)))
    }

    /// Continues a request kept while its user signed in.
    pub async fn resume_authorize(&self, pending: &str, session_secret: Option<&str>) -> Result<AuthorizeOutcome, OidcError> {
        let Some((_, params)) = self.store.take_oidc_request(pending, now_ms()).await? else {
            return Err(OidcError::new("invalid_request", "the sign-in took too long or was already used; start again from the app"));
        };
        let mut params: AuthorizeParams =
            serde_json::from_str(&params).map_err(|_| OidcError::new("server_error", "the kept request is unreadable"))?;
        params.resume = None;
        // The user has just signed in: never loop back to sign-in for `prompt=login`.
        if let Some(p) = &params.prompt {
            params.prompt = Some(p.split(' ').filter(|v| *v != "login").collect::<Vec<_>>().join(" "));
        }
        let outcome = Box::pin(self.authorize(params, session_secret)).await?;
        match outcome {
            // Still no session of the app's organization (sign-in refused, or another
            // organization's account): do not loop.
            AuthorizeOutcome::SignIn(_) => Err(OidcError::new("access_denied", "sign-in did not complete for this app's organization")),
            done => Ok(done),
        }
    }

    /// Keeps the request and sends the browser to sign in through the app's organization.
    async fn send_to_sign_in(&self, app: &OidcClient, params: &AuthorizeParams) -> Result<AuthorizeOutcome, OidcError> {
        if !self.sso_starts.admit(&format!("oidc:{}", app.id), std::time::Instant::now()) {
            return Err(OidcError::new("temporarily_unavailable", "too many sign-ins are starting; try again shortly"));
        }
        let params_json = serde_json::to_string(params).map_err(|_| OidcError::new("invalid_request", "unreadable parameters"))?;
        let id = self.store.remember_oidc_request(&app.id, &params_json, now_ms() + PENDING_LIFETIME_MS).await.map_err(|e| match e {
            idplex_store::StoreError::InvalidInput { reason, .. } => OidcError::new("invalid_request", reason),
            other => other.into(),
        })?;
        let return_to = format!("/oauth2/authorize?resume={id}");
        // One SAML connection in the organization: straight to it; otherwise ask for the e-mail.
        let enabled = self.store.saml_enabled_connections(&app.org_id).await?;
        let to = match enabled.as_slice() {
            [only] => format!("/saml/{}/login?return_to={}", percent_encode(only), percent_encode(&return_to)),
            _ => format!("/sso/login?return_to={}", percent_encode(&return_to)),
        };
        Ok(AuthorizeOutcome::SignIn(to))
    }

    // -- token --------------------------------------------------------------------------------

    /// The token endpoint: authenticates the client, redeems the code, answers the token
    /// response (JSON).
    pub async fn token(&self, basic: Option<BasicCredentials>, form: TokenForm) -> Result<Value, OidcError> {
        let (client_id, client_secret) = match (basic, form.client_secret.as_deref()) {
            (Some(_), Some(_)) => {
                return Err(OidcError::new("invalid_request", "use one client authentication method, not two"));
            }
            (Some(b), None) => {
                if form.client_id.as_deref().is_some_and(|id| id != b.client_id) {
                    return Err(OidcError::new("invalid_request", "client_id differs from the authenticated client"));
                }
                (b.client_id, b.client_secret)
            }
            (None, Some(secret)) => {
                let id = form.client_id.clone().ok_or_else(|| OidcError::new("invalid_request", "client_id is missing"))?;
                (id, secret.to_owned())
            }
            (None, None) => return Err(OidcError::new("invalid_client", "client authentication is required")),
        };
        let Some(app) = self.store.verify_oidc_client(&client_id, &client_secret).await? else {
            self.record_oidc_refusal(None, "invalid_client", &format!("token: wrong credentials for client_id {:?}", short(&client_id))).await;
            return Err(OidcError::new("invalid_client", "client authentication failed"));
        };
        if form.grant_type.as_deref() != Some("authorization_code") {
            return Err(OidcError::new("unsupported_grant_type", "only grant_type=authorization_code is supported"));
        }
        let code = form.code.as_deref().ok_or_else(|| OidcError::new("invalid_request", "code is missing"))?;
        let now = now_ms();
        let code = match self.store.redeem_oidc_code(code, now).await? {
            CodeRedemption::Redeemed(code) => code,
            CodeRedemption::Reused { client_id, code_id, revoked_tokens } => {
                self.record_oidc_refusal(
                    Some(&client_id),
                    "code_reused",
                    &format!("code {code_id} was presented again; {revoked_tokens} access token(s) issued for it revoked"),
                )
                .await;
                return Err(OidcError::new("invalid_grant", "the code was already used"));
            }
            CodeRedemption::Invalid => return Err(OidcError::new("invalid_grant", "the code is unknown or expired")),
        };
        let refuse = |why: &str| (app.id.clone(), why.to_owned());
        let problem = if code.client_id != app.id {
            Some(refuse("the code was issued to another client"))
        } else if form.redirect_uri.as_deref() != Some(code.redirect_uri.as_str()) {
            Some(refuse("redirect_uri differs from the authorization request's"))
        } else {
            match form.code_verifier.as_deref() {
                None => Some(refuse("code_verifier is missing")),
                Some(v) if !pkce_shaped(v) || !pkce_matches(v, &code.code_challenge) => {
                    Some(refuse("code_verifier does not match the code_challenge"))
                }
                Some(_) => None,
            }
        };
        if let Some((app_id, why)) = problem {
            self.record_oidc_refusal(Some(&app_id), "invalid_grant", &format!("token: {why}")).await;
            return Err(OidcError::new("invalid_grant", why));
        }
        let user = match self.store.get_user_for_admin(&code.user_id).await {
            Ok(u) if u.active && u.scim_deleted_at.is_none() && u.org_id == app.org_id => u,
            Ok(_) | Err(idplex_store::StoreError::NotFound { .. }) => {
                return Err(OidcError::new("invalid_grant", "the user can no longer sign in"));
            }
            Err(e) => return Err(e.into()),
        };
        let Some((token, access_token)) = self.store.issue_oidc_access_token(&code, now + ACCESS_TOKEN_LIFETIME_MS).await? else {
            return Err(OidcError::new("invalid_grant", "the code was already used"));
        };
        let groups = self.group_names(&user).await?;
        let mut claims = user_claims(&user, &groups, &code.scope);
        claims.insert("iss".into(), json!(self.oidc_issuer()));
        claims.insert("aud".into(), json!(app.id));
        claims.insert("iat".into(), json!(now / 1000));
        claims.insert("exp".into(), json!((now + ID_TOKEN_LIFETIME_MS) / 1000));
        claims.insert("auth_time".into(), json!(code.auth_time / 1000));
        claims.insert("at_hash".into(), json!(at_hash(&access_token)));
        if let Some(nonce) = &code.nonce {
            claims.insert("nonce".into(), json!(nonce));
        }
        let (kid, key) = self.signing_key().await?;
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(kid);
        let id_token = jsonwebtoken::encode(&header, &claims, &key).map_err(|e| {
            tracing::error!(error = %e, "OIDC: signing the ID token failed");
            OidcError::new("server_error", "the identity could not be signed")
        })?;
        tracing::info!(app = %app.id, user = %user.id, token = %token.id, "OIDC tokens issued");
        Ok(json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_LIFETIME_MS / 1000,
            "id_token": id_token,
            "scope": code.scope,
        }))
    }

    /// The userinfo endpoint: the claims of the access token's scopes.
    pub async fn userinfo(&self, bearer: Option<&str>) -> Result<Value, OidcError> {
        let bearer = bearer.ok_or_else(|| OidcError::new("invalid_token", "a Bearer access token is required"))?;
        let Some((token, user)) = self.store.verify_oidc_access_token(bearer, now_ms()).await? else {
            return Err(OidcError::new("invalid_token", "the access token is invalid, expired or revoked"));
        };
        let groups = self.group_names(&user).await?;
        Ok(Value::Object(user_claims(&user, &groups, &token.scope)))
    }

    /// RFC 7009 revocation of an access token by its client. Unknown tokens are not an error.
    pub async fn revoke_token(&self, basic: Option<BasicCredentials>, form: TokenForm, token: &str) -> Result<(), OidcError> {
        let (id, secret) = match (basic, form.client_id, form.client_secret) {
            (Some(b), _, None) => (b.client_id, b.client_secret),
            (None, Some(id), Some(secret)) => (id, secret),
            _ => return Err(OidcError::new("invalid_client", "client authentication is required")),
        };
        let Some(app) = self.store.verify_oidc_client(&id, &secret).await? else {
            self.record_oidc_refusal(None, "invalid_client", &format!("revoke: wrong credentials for client_id {:?}", short(&id))).await;
            return Err(OidcError::new("invalid_client", "client authentication failed"));
        };
        self.store.revoke_oidc_access_token(token, &app.id, now_ms()).await?;
        Ok(())
    }

    async fn group_names(&self, user: &DirectoryUser) -> Result<Vec<String>, OidcError> {
        match self.store.groups_of_user(&user.connection_id, &user.id).await {
            Ok(groups) => Ok(groups.into_iter().map(|g| g.display_name).collect()),
            Err(idplex_store::StoreError::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    async fn record_oidc_refusal(&self, app_id: Option<&str>, code: &str, detail: &str) {
        tracing::warn!(app = app_id.unwrap_or("-"), code, detail, "OIDC request refused");
        let budget_key = format!("oidc:{}", app_id.unwrap_or("unknown"));
        let event = NewEvent {
            at: None,
            connection_id: None,
            connector: "oidc".to_owned(),
            kind: EventKind::Other(format!("oidc_{code}")),
            message: match app_id {
                Some(app) => format!("app {app}: {detail}"),
                None => detail.to_owned(),
            },
        };
        self.record_refusal_event(&budget_key, event).await;
    }
}

/// An attacker-supplied value shortened for a log line or event.
fn short(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris() {
        for ok in ["https://app.example.com/cb", "http://localhost:3000/cb", "http://127.0.0.1/cb?x=1", "http://[::1]:8080/cb"] {
            assert!(check_redirect_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://app.example.com/cb",
            "https://app.example.com/cb#frag",
            "app.example.com/cb",
            "https://user@app.example.com/cb",
            "javascript://x",
            "https:///cb",
            "https://a b/cb",
            "http://localhost.evil.com/cb",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pkce_s256_from_rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(pkce_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!pkce_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"));
        assert!(pkce_shaped(verifier));
        assert!(!pkce_shaped("short"));
        assert!(!pkce_shaped(&"a".repeat(129)));
        assert!(!pkce_shaped(&format!("{}+", "a".repeat(43))));
    }

    #[test]
    fn scopes_are_the_supported_ones_asked_for() {
        assert_eq!(granted_scopes("email openid  custom groups"), ["openid", "email", "groups"]);
        assert!(granted_scopes("profile").iter().all(|s| *s != "openid"));
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            with_query("https://a.example/cb?x=1", &[("code", "c d"), ("state", "s&t=u")]),
            "https://a.example/cb?x=1&code=c%20d&state=s%26t%3Du"
        );
    }
}
