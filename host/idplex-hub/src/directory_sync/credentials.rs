//! Credential providers: what the host attaches to a connector's egress on a directory pull.
//!
//! Configured per connection, in its config (non-secret keys under `credential.`, secrets under
//! `secret.`, sealed at rest like every `secret.*` value):
//!
//! | `credential.kind` | keys | what is attached |
//! |---|---|---|
//! | `static` (the default when `secret.authorization` is set) | `secret.authorization` | that header value as is (an Okta `SSWS …` token, a fixed `Bearer …`) |
//! | `oauth-client-credentials` | `credential.token_url`, `credential.client_id`, `secret.client_secret`, `credential.scopes` | `Bearer <token>` from the RFC 6749 §4.4 client credentials grant (the `oauth2` crate; client authentication by HTTP Basic) — Microsoft identity platform for Graph, Okta OAuth service apps |
//! | `google-service-account` | `secret.service_account_key` (the JSON key file), `credential.subject` (the admin to impersonate: domain-wide delegation), `credential.scopes`, optional `credential.token_url` | `Bearer <token>` from the RFC 7523 JWT bearer grant, the JWT signed RS256 with the key file's private key (`jsonwebtoken`) |
//!
//! Tokens are cached per connection until a minute before they expire, refreshed then, and
//! dropped at once when the IdP's API answered 401 ([`CredentialCache::invalidate`]). They
//! live only in this process: never stored, logged, or shown to the connector (the egress
//! policy attaches them and masks them in responses). A token endpoint must be https; plain
//! http only to loopback when the hub runs with `egress_plain_http_loopback` (tests).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use idplex_runtime::Credential;
use serde::Deserialize;

use crate::HubError;

/// The prefix of the host-owned, non-secret credential keys (never handed to the connector).
pub const CREDENTIAL_PREFIX: &str = "credential.";

/// How long before its expiry a cached token is replaced.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// How long a token request may take.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest token response read.
const MAX_TOKEN_RESPONSE: usize = 64 << 10;

/// How a connection's pull authenticates to its IdP's API.
#[derive(Clone)]
pub enum CredentialSpec {
    /// Nothing attached.
    None,
    /// A fixed header value (`secret.authorization`).
    Static(http::HeaderValue),
    /// OAuth 2.0 client credentials.
    ClientCredentials { token_url: String, client_id: String, client_secret: String, scopes: Vec<String> },
    /// A Google service account's JWT, exchanged for an access token.
    GoogleServiceAccount { key: ServiceAccountKey, token_url: String, subject: Option<String>, scopes: Vec<String> },
}

impl std::fmt::Debug for CredentialSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

/// The fields of a Google service account key file idplex uses.
#[derive(Clone, Deserialize)]
pub struct ServiceAccountKey {
    /// `service_account`.
    #[serde(rename = "type")]
    pub kind: String,
    pub client_email: String,
    pub private_key: String,
    #[serde(default)]
    pub private_key_id: Option<String>,
    #[serde(default)]
    pub token_uri: Option<String>,
}

impl CredentialSpec {
    /// The `credential.kind` this is.
    pub fn kind(&self) -> &'static str {
        match self {
            CredentialSpec::None => "none",
            CredentialSpec::Static(_) => "static",
            CredentialSpec::ClientCredentials { .. } => "oauth-client-credentials",
            CredentialSpec::GoogleServiceAccount { .. } => "google-service-account",
        }
    }

    /// Reads the spec from a connection's config with its secrets opened (`opened`). Errors
    /// name the key, never a secret's value. `allow_http_loopback`: a token endpoint may be
    /// plain http on loopback (tests).
    pub fn from_config(opened: &serde_json::Value, allow_http_loopback: bool) -> Result<CredentialSpec, HubError> {
        let get = |key: &str| -> Option<String> {
            opened.get(key).map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        };
        let invalid = |what: &'static str, reason: String| HubError::Invalid { what, reason };
        let require = |key: &'static str, kind: &str| -> Result<String, HubError> {
            get(key).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                invalid(key, format!("`{key}` is required with credential.kind={kind}"))
            })
        };
        let scopes = get("credential.scopes")
            .map(|s| s.split([' ', ',']).filter(|x| !x.is_empty()).map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_default();
        let kind = get("credential.kind").unwrap_or_else(|| {
            if get("secret.authorization").is_some() { "static".into() } else { "none".into() }
        });
        match kind.as_str() {
            "none" => Ok(CredentialSpec::None),
            "static" => {
                let value = require("secret.authorization", "static")?;
                let mut value = http::HeaderValue::from_str(&value)
                    .map_err(|_| invalid("secret.authorization", "not a valid HTTP header value".into()))?;
                value.set_sensitive(true);
                Ok(CredentialSpec::Static(value))
            }
            "oauth-client-credentials" => {
                let token_url = require("credential.token_url", &kind)?;
                check_token_url("credential.token_url", &token_url, allow_http_loopback)?;
                Ok(CredentialSpec::ClientCredentials {
                    token_url,
                    client_id: require("credential.client_id", &kind)?,
                    client_secret: require("secret.client_secret", &kind)?,
                    scopes,
                })
            }
            "google-service-account" => {
                let text = require("secret.service_account_key", &kind)?;
                let key: ServiceAccountKey = serde_json::from_str(&text).map_err(|e| {
                    invalid(
                        "secret.service_account_key",
                        format!("not a Google service account key file (JSON with type, client_email, private_key): {:?} at line {} column {}", e.classify(), e.line(), e.column()),
                    )
                })?;
                if key.kind != "service_account" {
                    return Err(invalid("secret.service_account_key", format!("`type` is {:?}, expected \"service_account\"", key.kind)));
                }
                signing_key(&key.private_key)?;
                let token_url = get("credential.token_url")
                    .or_else(|| key.token_uri.clone())
                    .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into());
                check_token_url("credential.token_url", &token_url, allow_http_loopback)?;
                if scopes.is_empty() {
                    return Err(invalid("credential.scopes", "give the Directory API scopes the service account was granted".into()));
                }
                Ok(CredentialSpec::GoogleServiceAccount { key, token_url, subject: get("credential.subject"), scopes })
            }
            other => Err(invalid(
                "credential.kind",
                format!("{other:?} is not one of static, oauth-client-credentials, google-service-account"),
            )),
        }
    }

    /// A fingerprint of the spec (its secrets hashed), so a changed config drops cached tokens.
    fn fingerprint(&self) -> String {
        use sha2::Digest;
        let text = match self {
            CredentialSpec::None => "none".to_string(),
            CredentialSpec::Static(v) => format!("static\0{}", String::from_utf8_lossy(v.as_bytes())),
            CredentialSpec::ClientCredentials { token_url, client_id, client_secret, scopes } => {
                format!("cc\0{token_url}\0{client_id}\0{client_secret}\0{}", scopes.join(" "))
            }
            CredentialSpec::GoogleServiceAccount { key, token_url, subject, scopes } => format!(
                "gsa\0{}\0{}\0{token_url}\0{}\0{}",
                key.client_email,
                key.private_key,
                subject.as_deref().unwrap_or(""),
                scopes.join(" ")
            ),
        };
        hex::encode(sha2::Sha256::digest(text.as_bytes()))
    }
}

/// The RS256 signing key of a service account's `private_key` (PKCS#8 PEM, as Google issues
/// it; PKCS#1 accepted too).
fn signing_key(pem: &str) -> Result<jsonwebtoken::EncodingKey, HubError> {
    use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
    use rsa::pkcs8::DecodePrivateKey;
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem)
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(pem))
        .map_err(|_| HubError::Invalid {
            what: "secret.service_account_key",
            reason: "`private_key` is not an RSA private key in PEM".into(),
        })?;
    let der = key.to_pkcs1_der().map_err(|_| HubError::Invalid {
        what: "secret.service_account_key",
        reason: "`private_key` could not be encoded".into(),
    })?;
    Ok(jsonwebtoken::EncodingKey::from_rsa_der(der.as_bytes()))
}

fn check_token_url(key: &'static str, url: &str, allow_http_loopback: bool) -> Result<(), HubError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| HubError::Invalid { what: key, reason: format!("not a URL: {e}") })?;
    let loopback = parsed.host_str().is_some_and(|h| {
        h == "localhost" || h.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    });
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if allow_http_loopback && loopback => Ok(()),
        _ => Err(HubError::Invalid { what: key, reason: "must be an https URL".into() }),
    }
}

/// A token obtained for a connection.
#[derive(Clone)]
struct CachedToken {
    fingerprint: String,
    value: http::HeaderValue,
    refresh_at: Instant,
}

/// Tokens per connection (see the module docs).
#[derive(Default)]
pub struct CredentialCache {
    tokens: Mutex<HashMap<String, CachedToken>>,
    /// Token requests made (for tests and status).
    requested: std::sync::atomic::AtomicU64,
}

impl CredentialCache {
    /// The credential to attach for `connection` now: cached, or obtained from the token
    /// endpoint. `None` when the spec attaches nothing.
    pub async fn credential(&self, connection: &str, spec: &CredentialSpec) -> Result<Option<Credential>, HubError> {
        let value = match spec {
            CredentialSpec::None => return Ok(None),
            CredentialSpec::Static(v) => v.clone(),
            _ => {
                let fingerprint = spec.fingerprint();
                let cached = self.lock().get(connection).cloned();
                match cached {
                    Some(t) if t.fingerprint == fingerprint && Instant::now() < t.refresh_at => t.value,
                    _ => {
                        self.requested.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let (token, lifetime) = fetch_token(spec).await?;
                        let mut value = http::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                            HubError::Invalid { what: "access token", reason: "the token endpoint returned a token that is not a valid header value".into() }
                        })?;
                        value.set_sensitive(true);
                        let refresh_at = Instant::now() + lifetime.saturating_sub(REFRESH_MARGIN).max(Duration::from_secs(1));
                        self.lock().insert(connection.to_string(), CachedToken { fingerprint, value: value.clone(), refresh_at });
                        value
                    }
                }
            }
        };
        Ok(Some(Credential { header: http::header::AUTHORIZATION, value }))
    }

    /// Drops `connection`'s cached token (its API answered 401).
    pub fn invalidate(&self, connection: &str) {
        self.lock().remove(connection);
    }

    /// Token requests made so far by this process.
    pub fn tokens_requested(&self) -> u64 {
        self.requested.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedToken>> {
        self.tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// An HTTP client for token endpoints: no redirects (a token request is never sent elsewhere),
/// bounded time.
fn token_client() -> Result<reqwest::Client, HubError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TOKEN_TIMEOUT)
        .build()
        .map_err(|e| HubError::Invalid { what: "token endpoint", reason: format!("HTTP client: {e}") })
}

/// Asks the spec's token endpoint for an access token: the token and its lifetime.
async fn fetch_token(spec: &CredentialSpec) -> Result<(String, Duration), HubError> {
    match spec {
        CredentialSpec::ClientCredentials { token_url, client_id, client_secret, scopes } => {
            use oauth2::{AuthType, ClientId, ClientSecret, Scope, TokenResponse, TokenUrl, basic::BasicClient};
            let client = BasicClient::new(ClientId::new(client_id.clone()))
                .set_client_secret(ClientSecret::new(client_secret.clone()))
                .set_auth_type(AuthType::BasicAuth)
                .set_token_uri(TokenUrl::new(token_url.clone()).map_err(|e| token_error(token_url, e.to_string()))?);
            let http = token_client()?;
            let mut request = client.exchange_client_credentials();
            for s in scopes {
                request = request.add_scope(Scope::new(s.clone()));
            }
            let token = request.request_async(&http).await.map_err(|e| token_error(token_url, describe_oauth_error(&e)))?;
            let lifetime = token.expires_in().unwrap_or(Duration::from_secs(3600));
            Ok((token.access_token().secret().clone(), lifetime))
        }
        CredentialSpec::GoogleServiceAccount { key, token_url, subject, scopes } => {
            #[derive(serde::Serialize)]
            struct Claims<'a> {
                iss: &'a str,
                scope: String,
                aud: &'a str,
                iat: u64,
                exp: u64,
                #[serde(skip_serializing_if = "Option::is_none")]
                sub: Option<&'a str>,
            }
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let claims = Claims {
                iss: &key.client_email,
                scope: scopes.join(" "),
                aud: token_url,
                iat: now,
                exp: now + 3600,
                sub: subject.as_deref(),
            };
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
            header.kid = key.private_key_id.clone();
            let signing = signing_key(&key.private_key)?;
            let assertion = jsonwebtoken::encode(&header, &claims, &signing)
                .map_err(|e| token_error(token_url, format!("signing the JWT failed: {e}")))?;
            let response = token_client()?
                .post(token_url)
                .form(&[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion.as_str())])
                .send()
                .await
                .map_err(|e| token_error(token_url, format!("unreachable: {}", e.without_url())))?;
            let status = response.status();
            let body = response.bytes().await.map_err(|e| token_error(token_url, format!("reading the answer: {}", e.without_url())))?;
            let body = &body[..body.len().min(MAX_TOKEN_RESPONSE)];
            #[derive(Deserialize)]
            struct Answer {
                access_token: Option<String>,
                expires_in: Option<u64>,
                error: Option<String>,
                error_description: Option<String>,
            }
            let answer: Answer = serde_json::from_slice(body)
                .map_err(|_| token_error(token_url, format!("HTTP {status}, not a JSON token response")))?;
            match (status.is_success(), answer.access_token) {
                (true, Some(token)) => Ok((token, Duration::from_secs(answer.expires_in.unwrap_or(3600)))),
                _ => Err(token_error(
                    token_url,
                    format!(
                        "HTTP {status}: {} {}",
                        answer.error.as_deref().unwrap_or("no token"),
                        answer.error_description.as_deref().map(|d| bounded(d, 300)).unwrap_or("")
                    ),
                )),
            }
        }
        CredentialSpec::None | CredentialSpec::Static(_) => unreachable!("no token endpoint"),
    }
}

fn describe_oauth_error<RE: std::error::Error + 'static>(
    e: &oauth2::RequestTokenError<RE, oauth2::StandardErrorResponse<oauth2::basic::BasicErrorResponseType>>,
) -> String {
    match e {
        oauth2::RequestTokenError::ServerResponse(r) => format!(
            "{} {}",
            r.error(),
            r.error_description().map(|d| bounded(d, 300)).unwrap_or("")
        ),
        oauth2::RequestTokenError::Request(e) => format!("request failed: {e}"),
        oauth2::RequestTokenError::Parse(e, _) => format!("not a token response: {e}"),
        oauth2::RequestTokenError::Other(e) => e.clone(),
    }
}

fn token_error(token_url: &str, reason: String) -> HubError {
    let origin = reqwest::Url::parse(token_url)
        .map(|u| format!("{}://{}{}", u.scheme(), u.host_str().unwrap_or(""), u.port().map(|p| format!(":{p}")).unwrap_or_default()))
        .unwrap_or_else(|_| "the token endpoint".into());
    HubError::Invalid { what: "credential", reason: format!("the token endpoint {origin} refused or failed: {reason}") }
}

fn bounded(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_read_from_config_and_errors_name_the_key() {
        let spec = CredentialSpec::from_config(&serde_json::json!({"secret.authorization": "SSWS abc"}), false).unwrap();
        assert_eq!(spec.kind(), "static");
        assert_eq!(CredentialSpec::from_config(&serde_json::json!({}), false).unwrap().kind(), "none");
        let e = CredentialSpec::from_config(&serde_json::json!({"credential.kind": "oauth-client-credentials"}), false).unwrap_err();
        assert!(e.to_string().contains("credential.token_url"), "{e}");
        let e = CredentialSpec::from_config(
            &serde_json::json!({"credential.kind": "oauth-client-credentials", "credential.token_url": "http://login.example/token",
                                "credential.client_id": "c", "secret.client_secret": "s"}),
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("https"), "{e}");
        let ok = CredentialSpec::from_config(
            &serde_json::json!({"credential.kind": "oauth-client-credentials", "credential.token_url": "http://127.0.0.1:9/token",
                                "credential.client_id": "c", "secret.client_secret": "s"}),
            true,
        )
        .unwrap();
        assert_eq!(ok.kind(), "oauth-client-credentials");
        let e = CredentialSpec::from_config(
            &serde_json::json!({"credential.kind": "google-service-account", "secret.service_account_key": "{\"type\":\"user\"}"}),
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("secret.service_account_key"), "{e}");
        assert!(!e.to_string().contains("\"user\"}"), "the secret's text is not echoed whole: {e}");
        let e = CredentialSpec::from_config(&serde_json::json!({"credential.kind": "kerberos"}), false).unwrap_err();
        assert!(e.to_string().contains("credential.kind"), "{e}");
    }
}
