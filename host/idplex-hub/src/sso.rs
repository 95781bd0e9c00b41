//! The sso service: SAML 2.0 sign-in through a connection.
//!
//! The protocol is `idplex-saml`'s (pure: no HTTP, no storage); this module is the use case
//! around it, shared by the HTTP front end and the CLI:
//!
//! * **Setup** ([`Hub::set_saml`], [`Hub::import_saml_metadata`], [`Hub::set_sso_domains`]):
//!   the IdP a connection trusts (entity ID, SSO URL, signing certificates, several during a
//!   rollover), from the IdP's metadata or entered by hand, and its switches (enabled, IdP-
//!   initiated, response-only signing, just-in-time provisioning, session lifetime). Sign-in
//!   fails closed: it cannot be enabled without a certificate.
//! * **SP-initiated sign-in** ([`Hub::begin_sign_in`], [`Hub::begin_sign_in_by_email`]): an
//!   AuthnRequest over HTTP-Redirect whose ID is remembered in the database (so any replica can
//!   take the answer) for [`REQUEST_LIFETIME_MS`].
//! * **The ACS** ([`Hub::complete_sign_in`]): the response is verified entirely here before a
//!   connector sees anything (`idplex_saml::verify_response`), its assertion ID claimed in the
//!   replay cache (in the database, shared by replicas), its `InResponseTo` matched against an
//!   outstanding request and consumed (or, unsolicited, accepted only where the connection
//!   allows IdP-initiated sign-in); then the connection's connector maps the verified assertion
//!   (`map-assertion`) to a canonical identity; the directory user is found, or created just in
//!   time when the connection allows it, with its groups; a user that is inactive cannot sign
//!   in; and a session (`idplex_session`) is opened.
//!
//! Every refusal is an [`SsoError`] with a stable code and is recorded as an event of the
//! connection whose kind is `sso_` and the code (`sso_replayed`, `sso_signature_invalid`, …: the
//! event log coalesces repeats per kind, so each reason stays visible), at most
//! [`MAX_REFUSAL_EVENTS_PER_MINUTE`] a minute per connection, so a flood of forged posts costs
//! no more writes than that (the rest go to the process log only).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use idplex_runtime::{CanonicalUser, SamlAttribute, VerifiedAssertion};
use idplex_saml::cert::Certificate;
use idplex_saml::metadata::{check_endpoint_url, parse_idp_metadata, sp_metadata_with_slo};
use idplex_saml::{AcsPolicy, IdpConfig, SamlError, SpConfig};
use idplex_store::{
    DirectoryUser, EventKind, FinishSignIn, NewDirectoryGroup, NewDirectoryUser, NewEvent, SamlSettings, SignInFinished,
    StoreError, UserSession,
};
use serde::Serialize;

use crate::{Hub, HubError, now_ms};

/// How long an AuthnRequest may be answered (the user may take a while at the IdP: password,
/// MFA enrolment), in milliseconds.
pub const REQUEST_LIFETIME_MS: i64 = 10 * 60 * 1000;

/// Refusals recorded as events per connection and minute; more are only counted in the log.
pub const MAX_REFUSAL_EVENTS_PER_MINUTE: u32 = 60;

/// Longest return path kept for after sign-in (it rides in `RelayState`, which SAML bounds to
/// 80 bytes).
pub const MAX_RETURN_PATH_BYTES: usize = idplex_saml::authn_request::MAX_RELAY_STATE_BYTES;

/// Groups of one sign-in applied just in time, at most (an assertion listing more is an
/// IdP misconfiguration; the rest are ignored and the admin is told in an event).
pub const MAX_JIT_GROUPS: usize = 200;

/// The longest session a connection may open, in minutes (as for admin-opened sessions).
pub const MAX_SSO_SESSION_TTL_MINUTES: i64 = crate::MAX_SESSION_TTL_MINUTES as i64;

pub(crate) const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub(crate) const CORE_USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub(crate) const CORE_GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// Why a sign-in (or its start) was refused: a stable code, what the user may be shown, and a
/// detail for the admin (in the event, never in the browser).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct SsoError {
    /// `idplex-saml`'s codes (`signature_invalid`, `replayed`, …) or the service's own:
    /// `not_configured`, `sso_disabled`, `no_domain_route`, `busy`, `unknown_user`,
    /// `user_inactive`, `identity_invalid`, `connector_failed`, `internal`.
    pub code: &'static str,
    /// For the admin: what exactly was wrong (attacker-supplied values shortened and escaped).
    pub detail: String,
    /// Which class of answer it is.
    pub class: SsoErrorClass,
}

/// Coarse classes of [`SsoError`], for HTTP statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SsoErrorClass {
    /// The connection or route does not exist (404).
    NotFound,
    /// The message or the user was refused (403; 400 for a malformed message).
    Refused,
    /// The message is not a SAML response at all (400).
    BadRequest,
    /// Too many sign-ins started at once for the connection (503 with `Retry-After`).
    Busy,
    /// Our side failed (500).
    Internal,
}

impl SsoError {
    fn new(code: &'static str, class: SsoErrorClass, detail: impl Into<String>) -> Self {
        SsoError { code, detail: detail.into(), class }
    }

    fn refused(code: &'static str, detail: impl Into<String>) -> Self {
        SsoError::new(code, SsoErrorClass::Refused, detail)
    }

    fn internal(detail: impl Into<String>) -> Self {
        SsoError::new("internal", SsoErrorClass::Internal, detail)
    }

    fn from_saml(e: SamlError) -> Self {
        use idplex_saml::SamlErrorCode as C;
        let class = match e.code {
            C::Malformed | C::TooLarge => SsoErrorClass::BadRequest,
            _ => SsoErrorClass::Refused,
        };
        SsoError { code: e.code.as_str(), detail: e.detail, class }
    }

}

impl From<StoreError> for SsoError {
    fn from(e: StoreError) -> Self {
        SsoError::internal(format!("store: {e}"))
    }
}

/// A change to a connection's SAML settings; `None` keeps the current value. For a connection
/// without settings, `idp_entity_id` and `sso_url` are required.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamlUpdate {
    pub idp_entity_id: Option<String>,
    pub sso_url: Option<String>,
    /// The IdP signing certificates, each PEM or base64 DER; replaces the current ones.
    pub certificates: Option<Vec<String>>,
    pub enabled: Option<bool>,
    pub allow_idp_initiated: Option<bool>,
    pub allow_response_only_signing: Option<bool>,
    /// Sign AuthnRequests with the deployment's SP key (needs one: `generate_saml_sp_key`).
    pub sign_authn_requests: Option<bool>,
    /// The IdP's single logout URL (HTTP-Redirect); `""` removes it (sign-out stays local).
    pub slo_url: Option<String>,
    /// With JIT, also remove the user from the connection's groups the assertion does not name.
    pub jit_sync_groups: Option<bool>,
    pub jit: Option<bool>,
    /// Session lifetime in minutes; `Some(None)` (JSON `null`) goes back to the default.
    #[serde(default, deserialize_with = "double_option")]
    pub session_ttl_minutes: Option<Option<i64>>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Ok(Some(serde::Deserialize::deserialize(d)?))
}

/// A connection's SAML setup as admins see it.
#[derive(Debug, Clone, Serialize)]
pub struct SamlView {
    pub connection_id: String,
    /// What to enter at the IdP: our entity ID, ACS URL and metadata URL.
    pub sp_entity_id: String,
    pub acs_url: String,
    pub metadata_url: String,
    pub login_url: String,
    pub idp_entity_id: String,
    pub sso_url: String,
    pub certificates: Vec<CertificateView>,
    pub enabled: bool,
    pub allow_idp_initiated: bool,
    pub allow_response_only_signing: bool,
    pub sign_authn_requests: bool,
    /// The IdP's single logout URL, if it offers single logout.
    pub slo_url: Option<String>,
    /// Ours, where the IdP sends its LogoutRequests and LogoutResponses.
    pub sp_slo_url: String,
    pub jit: bool,
    pub jit_sync_groups: bool,
    pub session_ttl_minutes: Option<i64>,
    pub metadata_valid_until: Option<String>,
    pub domains: Vec<String>,
    pub updated_at: String,
}

/// One IdP signing certificate, as admins see it (never the key material itself).
#[derive(Debug, Clone, Serialize)]
pub struct CertificateView {
    pub subject: String,
    pub sha256_fingerprint: String,
    pub not_before: String,
    pub not_after: String,
    /// Whether it is past `not_after` (signatures still verify: SAML trusts the configured key,
    /// not the certificate's dates; shown so the admin rolls it over).
    pub expired: bool,
}

/// Where to send the browser to sign in.
#[derive(Debug, Clone)]
pub struct SignInStart {
    pub connection_id: String,
    pub request_id: String,
    /// The IdP's SSO URL with the deflated AuthnRequest and RelayState.
    pub redirect_url: String,
}

/// What signing out did: whether a session ended, and where to send the browser so that the
/// IdP ends its session too (single logout), if the session came from an IdP that offers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedOut {
    pub ended: bool,
    pub idp_logout_url: Option<String>,
}

/// Where the single logout endpoint sends the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SingleLogout {
    pub location: String,
    /// Whether the IdP asked (a signed LogoutRequest): then this browser's cookie goes too. A
    /// LogoutResponse (which anyone could post unsigned) changes nothing here.
    pub idp_asked: bool,
}

/// A completed sign-in.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub connection_id: String,
    pub user: DirectoryUser,
    /// Whether the user was created by this sign-in (just in time).
    pub created: bool,
    pub session: UserSession,
    /// The `idplex_session` cookie value; not stored.
    pub session_secret: String,
    /// Where to send the browser: a local path (`/` when none was asked for or it was unsafe).
    pub return_to: String,
}

/// Sign-ins one process starts per connection and second, sustained (each remembers a request
/// row for [`REQUEST_LIFETIME_MS`]: an unauthenticated `GET /login` must not be able to grow the
/// table without bound). Bursts up to [`SIGN_IN_START_BURST`] pass at once.
pub const SIGN_IN_STARTS_PER_SECOND: f64 = 100.0;

/// See [`SIGN_IN_STARTS_PER_SECOND`].
pub const SIGN_IN_START_BURST: f64 = 1000.0;

/// A token bucket per connection for sign-in starts.
pub(crate) struct StartBudget {
    rate: Mutex<(f64, f64)>,
    buckets: Mutex<HashMap<String, (f64, std::time::Instant)>>,
}

impl Default for StartBudget {
    fn default() -> Self {
        StartBudget { rate: Mutex::new((SIGN_IN_STARTS_PER_SECOND, SIGN_IN_START_BURST)), buckets: Mutex::default() }
    }
}

impl StartBudget {
    fn set(&self, per_second: f64, burst: f64) {
        *self.rate.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = (per_second, burst);
    }

    /// Whether the connection may start one more sign-in at `now`.
    pub(crate) fn admit(&self, connection_id: &str, now: std::time::Instant) -> bool {
        let (rate, burst) = *self.rate.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() > 10_000 {
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = buckets.entry(connection_id.to_owned()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Per-connection rate of refusal events ([`MAX_REFUSAL_EVENTS_PER_MINUTE`]).
#[derive(Default)]
pub(crate) struct RefusalBudget {
    windows: Mutex<HashMap<String, (i64, u32)>>,
}

impl RefusalBudget {
    /// Whether another event may be recorded for the connection now.
    pub(crate) fn admit(&self, connection_id: &str, now: i64) -> bool {
        let mut windows = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if windows.len() > 10_000 {
            windows.retain(|_, (start, _)| now - *start < 60_000);
        }
        let entry = windows.entry(connection_id.to_owned()).or_insert((now, 0));
        if now - entry.0 >= 60_000 {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= MAX_REFUSAL_EVENTS_PER_MINUTE
    }
}

/// A return path that cannot leave this site: `/`, then no second `/` or `\` (no
/// protocol-relative `//host`), printable ASCII, at most [`MAX_RETURN_PATH_BYTES`].
pub fn safe_return_path(path: &str) -> Option<&str> {
    let ok = path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && path.len() <= MAX_RETURN_PATH_BYTES
        && path.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    ok.then_some(path)
}

/// The certificates, each PEM or base64 DER, parsed and checked usable; de-duplicated.
fn parse_certificates(texts: &[String]) -> Result<Vec<Certificate>, HubError> {
    if texts.len() > idplex_saml::metadata::MAX_CERTIFICATES {
        return Err(HubError::Invalid {
            what: "SAML certificates",
            reason: format!("at most {} certificates", idplex_saml::metadata::MAX_CERTIFICATES),
        });
    }
    let mut out: Vec<Certificate> = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let cert = Certificate::from_text(text).map_err(|e| HubError::Invalid {
            what: "SAML certificate",
            reason: format!("certificate {}: {}", i + 1, e.detail),
        })?;
        if !out.iter().any(|c| c.der() == cert.der()) {
            out.push(cert);
        }
    }
    Ok(out)
}

/// Settings of a connection just being set up: disabled, no certificate, SP-initiated only,
/// response-only signing refused, JIT on, the store's session lifetime.
fn new_settings(connection_id: &str, idp_entity_id: String, sso_url: String, now: i64) -> SamlSettings {
    SamlSettings {
        connection_id: connection_id.to_owned(),
        idp_entity_id,
        sso_url,
        certificates: Vec::new(),
        enabled: false,
        allow_idp_initiated: false,
        allow_response_only_signing: false,
        sign_authn_requests: false,
        slo_url: None,
        jit_sync_groups: false,
        jit: true,
        session_ttl_minutes: None,
        metadata_valid_until: None,
        created_at: now,
        updated_at: now,
    }
}

fn replayed(assertion_id: &str) -> SsoError {
    SsoError::refused("replayed", format!("assertion {} was accepted before", SamlError::shown(assertion_id)))
}

fn no_request(id: &str) -> SsoError {
    SsoError::refused(
        "in_response_to_mismatch",
        format!(
            "InResponseTo {} names no outstanding request of this connection (never sent, answered already, or expired)",
            SamlError::shown(id)
        ),
    )
}

fn invalid(reason: impl Into<String>) -> HubError {
    HubError::Invalid { what: "SAML settings", reason: reason.into() }
}

fn check_entity_id(entity_id: &str) -> Result<(), HubError> {
    if entity_id.trim().is_empty() || entity_id.len() > idplex_saml::metadata::MAX_ENTITY_ID_CHARS {
        return Err(invalid(format!(
            "the IdP entity ID must be 1 to {} characters",
            idplex_saml::metadata::MAX_ENTITY_ID_CHARS
        )));
    }
    if entity_id.chars().any(char::is_control) {
        return Err(invalid("the IdP entity ID has control characters"));
    }
    Ok(())
}

impl Hub {
    // -- setup -------------------------------------------------------------------------------

    /// The SP side of the connection: entity ID `{public_url}/saml/{id}`, ACS
    /// `{public_url}/saml/{id}/acs`.
    pub fn sp_config(&self, connection_id: &str) -> SpConfig {
        let base = self.public_url();
        SpConfig {
            entity_id: format!("{base}/saml/{connection_id}"),
            acs_url: format!("{base}/saml/{connection_id}/acs"),
        }
    }

    /// The SP metadata of the connection (for the IdP admin to import). [`StoreError::NotFound`]
    /// if the connection does not exist.
    /// With an SP signing key, the metadata carries its certificate; `AuthnRequestsSigned` says
    /// whether this connection signs.
    pub async fn saml_sp_metadata(&self, connection_id: &str) -> Result<String, HubError> {
        self.store.get_connection(connection_id).await?;
        let signs = self.store.saml_settings(connection_id).await?.is_some_and(|s| s.sign_authn_requests);
        let cert = self.sp_signer().await?.map(|(_, cert)| cert);
        let sp = self.sp_config(connection_id);
        let slo = format!("{}/slo", sp.entity_id);
        Ok(sp_metadata_with_slo(&sp, Some(&slo), cert.as_deref(), true, signs))
    }

    /// The connection's SAML setup; not found when it has none.
    pub async fn saml(&self, connection_id: &str) -> Result<SamlView, HubError> {
        let settings = self
            .store
            .saml_settings(connection_id)
            .await?
            .ok_or_else(|| StoreError::NotFound { what: "SAML settings of connection", key: connection_id.to_owned() })?;
        self.saml_view(settings).await
    }

    async fn saml_view(&self, s: SamlSettings) -> Result<SamlView, HubError> {
        let sp = self.sp_config(&s.connection_id);
        let now = now_ms();
        let certificates = s
            .certificates
            .iter()
            .map(|b64| match Certificate::from_text(b64) {
                Ok(c) => CertificateView {
                    subject: c.subject().to_owned(),
                    sha256_fingerprint: c.fingerprint_sha256().to_owned(),
                    not_before: crate::rfc3339(c.not_before().saturating_mul(1000)),
                    not_after: crate::rfc3339(c.not_after().saturating_mul(1000)),
                    expired: c.not_after().saturating_mul(1000) < now,
                },
                Err(e) => CertificateView {
                    subject: format!("(unreadable: {})", e.detail),
                    sha256_fingerprint: String::new(),
                    not_before: String::new(),
                    not_after: String::new(),
                    expired: true,
                },
            })
            .collect();
        let domains = self.store.sso_domains(&s.connection_id).await?;
        let base = self.public_url();
        let sp_slo_url = format!("{}/slo", sp.entity_id);
        Ok(SamlView {
            metadata_url: format!("{}/metadata", sp.entity_id),
            login_url: format!("{base}/saml/{}/login", s.connection_id),
            sp_entity_id: sp.entity_id,
            acs_url: sp.acs_url,
            connection_id: s.connection_id,
            idp_entity_id: s.idp_entity_id,
            sso_url: s.sso_url,
            certificates,
            enabled: s.enabled,
            allow_idp_initiated: s.allow_idp_initiated,
            allow_response_only_signing: s.allow_response_only_signing,
            sign_authn_requests: s.sign_authn_requests,
            slo_url: s.slo_url,
            sp_slo_url,
            jit: s.jit,
            jit_sync_groups: s.jit_sync_groups,
            session_ttl_minutes: s.session_ttl_minutes,
            metadata_valid_until: s.metadata_valid_until.map(crate::rfc3339),
            domains,
            updated_at: crate::rfc3339(s.updated_at),
        })
    }

    /// Changes the connection's SAML settings (creating them: entity ID and SSO URL required).
    /// Refused with a message naming the field: an SSO URL that is not https (loopback http
    /// aside), a certificate that cannot be parsed or whose key is too weak, a session lifetime
    /// out of bounds, and enabling without a certificate.
    pub async fn set_saml(&self, connection_id: &str, update: SamlUpdate) -> Result<SamlView, HubError> {
        self.store.get_connection(connection_id).await?;
        let current = self.store.saml_settings(connection_id).await?;
        let now = now_ms();
        let mut s = match current {
            Some(s) => s,
            None => new_settings(
                connection_id,
                update.idp_entity_id.clone().ok_or_else(|| {
                    invalid("idp_entity_id is required for a connection without SAML settings (or import the IdP's metadata)")
                })?,
                update
                    .sso_url
                    .clone()
                    .ok_or_else(|| invalid("sso_url is required for a connection without SAML settings"))?,
                now,
            ),
        };
        if let Some(v) = update.idp_entity_id {
            s.idp_entity_id = v;
        }
        if let Some(v) = update.sso_url {
            s.sso_url = v;
        }
        if let Some(texts) = update.certificates {
            s.certificates = parse_certificates(&texts)?.iter().map(Certificate::to_base64).collect();
            // Certificates entered by hand: whatever the metadata said about its validity is moot.
            s.metadata_valid_until = None;
        }
        if let Some(v) = update.enabled {
            s.enabled = v;
        }
        if let Some(v) = update.allow_idp_initiated {
            s.allow_idp_initiated = v;
        }
        if let Some(v) = update.allow_response_only_signing {
            s.allow_response_only_signing = v;
        }
        if let Some(v) = update.sign_authn_requests {
            s.sign_authn_requests = v;
        }
        if let Some(v) = update.slo_url {
            s.slo_url = (!v.is_empty()).then_some(v);
        }
        if let Some(v) = update.jit_sync_groups {
            s.jit_sync_groups = v;
        }
        if let Some(v) = update.jit {
            s.jit = v;
        }
        if let Some(v) = update.session_ttl_minutes {
            s.session_ttl_minutes = v;
        }
        self.check_and_store(s).await
    }

    /// Takes the IdP entity ID, SSO URL (HTTP-Redirect) and signing certificates from the IdP's
    /// metadata (`entity_id` picks one IdP of an aggregate), keeping the connection's switches
    /// (new settings start disabled unless `enable`). The metadata is a document the admin
    /// fetched: idplex fetches nothing itself.
    pub async fn import_saml_metadata(
        &self,
        connection_id: &str,
        xml: &str,
        entity_id: Option<&str>,
        enable: bool,
    ) -> Result<SamlView, HubError> {
        self.store.get_connection(connection_id).await?;
        let now = now_ms();
        let md = parse_idp_metadata(xml, entity_id, now / 1000).map_err(|e| HubError::Invalid {
            what: "IdP metadata",
            reason: format!("{}: {}", e.code, e.detail),
        })?;
        let current = self.store.saml_settings(connection_id).await?;
        let mut s = current.unwrap_or_else(|| new_settings(connection_id, String::new(), String::new(), now));
        s.idp_entity_id = md.entity_id;
        s.sso_url = md.sso_redirect_url;
        s.slo_url = md.slo_redirect_url;
        s.certificates = md.certificates.iter().map(Certificate::to_base64).collect();
        s.metadata_valid_until = md.valid_until.map(|secs| secs.saturating_mul(1000));
        s.enabled |= enable;
        self.check_and_store(s).await
    }

    async fn check_and_store(&self, s: SamlSettings) -> Result<SamlView, HubError> {
        check_entity_id(&s.idp_entity_id)?;
        check_endpoint_url(&s.sso_url).map_err(|e| invalid(format!("sso_url: {}", e.detail)))?;
        if let Some(slo) = &s.slo_url {
            check_endpoint_url(slo).map_err(|e| invalid(format!("slo_url: {}", e.detail)))?;
        }
        if s.enabled && s.certificates.is_empty() {
            return Err(invalid(
                "sign-in cannot be enabled without an IdP signing certificate: give certificates or import the IdP's metadata",
            ));
        }
        if s.sign_authn_requests && self.store.saml_sp_key().await?.is_none() {
            return Err(invalid(
                "AuthnRequests cannot be signed without an SP signing key: generate one (idplex saml sp-key generate) or import yours",
            ));
        }
        if let Some(m) = s.session_ttl_minutes
            && !(1..=MAX_SSO_SESSION_TTL_MINUTES).contains(&m)
        {
            return Err(invalid(format!("session_ttl_minutes must be 1 to {MAX_SSO_SESSION_TTL_MINUTES}")));
        }
        let stored = self.store.put_saml_settings(&s).await?;
        self.forget_idp(&stored.connection_id);
        tracing::info!(connection = %stored.connection_id, enabled = stored.enabled, "SAML settings changed");
        self.saml_view(stored).await
    }

    /// Removes the connection's SAML settings and domain routes: sign-in through it stops.
    pub async fn delete_saml(&self, connection_id: &str) -> Result<(), HubError> {
        self.store.get_connection(connection_id).await?;
        self.store.set_sso_domains(connection_id, &[]).await?;
        if !self.store.delete_saml_settings(connection_id).await? {
            return Err(StoreError::NotFound { what: "SAML settings of connection", key: connection_id.to_owned() }.into());
        }
        self.forget_idp(connection_id);
        Ok(())
    }

    /// Routes exactly these e-mail domains (any case) to the connection's sign-in, replacing its
    /// routes. A domain routed to another connection is a conflict.
    pub async fn set_sso_domains(&self, connection_id: &str, domains: &[String]) -> Result<Vec<String>, HubError> {
        self.store.get_connection(connection_id).await?;
        let lower: Vec<String> = domains.iter().map(|d| d.trim().to_ascii_lowercase()).collect();
        Ok(self.store.set_sso_domains(connection_id, &lower).await?)
    }

    // -- sign-in -----------------------------------------------------------------------------

    /// The IdP a connection trusts, parsed once per settings change (keyed by `updated_at`).
    fn idp_config(&self, s: &SamlSettings) -> Result<Arc<IdpConfig>, SsoError> {
        let key = (s.connection_id.clone(), s.updated_at);
        if let Some(found) = self.lock_idps().get(&key.0).filter(|(at, _)| *at == key.1).map(|(_, c)| c.clone()) {
            return Ok(found);
        }
        let certificates = s
            .certificates
            .iter()
            .map(|b64| Certificate::from_text(b64))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SsoError::refused("certificate_invalid", format!("a configured IdP certificate: {}", e.detail)))?;
        let config = Arc::new(IdpConfig {
            entity_id: s.idp_entity_id.clone(),
            sso_url: s.sso_url.clone(),
            certificates,
            allow_response_only_signing: s.allow_response_only_signing,
        });
        self.lock_idps().insert(key.0, (key.1, config.clone()));
        Ok(config)
    }

    fn lock_idps(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i64, Arc<IdpConfig>)>> {
        self.sso_idps.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn forget_idp(&self, connection_id: &str) {
        self.lock_idps().remove(connection_id);
    }

    /// The enabled settings of a connection, or why sign-in through it is refused.
    async fn sso_settings(&self, connection_id: &str) -> Result<SamlSettings, SsoError> {
        let settings = self.store.saml_settings(connection_id).await?;
        let s = settings.ok_or_else(|| {
            SsoError::new("not_configured", SsoErrorClass::NotFound, format!("connection {connection_id} has no SAML sign-in"))
        })?;
        if !s.enabled {
            return Err(SsoError::refused("sso_disabled", "SAML sign-in is disabled for this connection"));
        }
        if s.certificates.is_empty() {
            return Err(SsoError::refused("no_certificate", "the connection has no IdP signing certificate"));
        }
        Ok(s)
    }

    /// Starts an SP-initiated sign-in through the connection: a fresh AuthnRequest (its ID
    /// remembered for [`REQUEST_LIFETIME_MS`]) and the URL that carries it to the IdP.
    /// `return_to` is where to go afterwards: a local path ([`safe_return_path`]), else `/`.
    pub async fn begin_sign_in(&self, connection_id: &str, return_to: Option<&str>) -> Result<SignInStart, SsoError> {
        let out = self.begin_sign_in_inner(connection_id, return_to).await;
        if let Err(e) = &out {
            self.record_refusal(connection_id, e).await;
        }
        out
    }

    async fn begin_sign_in_inner(&self, connection_id: &str, return_to: Option<&str>) -> Result<SignInStart, SsoError> {
        let s = self.sso_settings(connection_id).await?;
        if !self.sso_starts.admit(connection_id, std::time::Instant::now()) {
            return Err(SsoError::new(
                "busy",
                SsoErrorClass::Busy,
                format!("over {SIGN_IN_STARTS_PER_SECOND} sign-in starts a second for this connection; try again shortly"),
            ));
        }
        let sp = self.sp_config(connection_id);
        let request_id = format!("_{}", random_hex(16));
        let now = now_ms();
        let request = idplex_saml::authn_request::AuthnRequest::new(&request_id, now / 1000, &sp, &s.sso_url)
            .map_err(SsoError::from_saml)?;
        let relay = return_to.and_then(safe_return_path);
        self.store.remember_saml_request(&request_id, connection_id, relay, now + REQUEST_LIFETIME_MS).await?;
        let signer = if s.sign_authn_requests {
            match self.sp_signer().await {
                Ok(Some((signer, _))) => Some(signer),
                Ok(None) => return Err(SsoError::internal("the connection signs AuthnRequests but there is no SP key")),
                Err(e) => return Err(SsoError::internal(format!("SP key: {e}"))),
            }
        } else {
            None
        };
        let redirect_url = request.redirect_url(relay, signer.as_deref()).map_err(SsoError::from_saml)?;
        Ok(SignInStart { connection_id: connection_id.to_owned(), request_id, redirect_url })
    }

    /// [`Hub::begin_sign_in`] through the connection the e-mail's domain is routed to.
    pub async fn begin_sign_in_by_email(&self, email: &str, return_to: Option<&str>) -> Result<SignInStart, SsoError> {
        let domain = email.trim().rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        let connection = if domain.is_empty() { None } else { self.store.connection_for_domain(domain).await? };
        let Some(connection) = connection else {
            return Err(SsoError::new(
                "no_domain_route",
                SsoErrorClass::NotFound,
                "no organization signs in with this e-mail domain",
            ));
        };
        self.begin_sign_in(&connection, return_to).await
    }

    /// The ACS: verifies a posted `SAMLResponse`, maps it through the connection's connector,
    /// finds or provisions the user and opens a session (see the module docs). Refusals are
    /// recorded as events.
    pub async fn complete_sign_in(
        &self,
        connection_id: &str,
        saml_response: &str,
        relay_state: Option<&str>,
    ) -> Result<SignedIn, SsoError> {
        let out = self.complete_sign_in_inner(connection_id, saml_response, relay_state).await;
        match &out {
            Ok(done) => tracing::info!(
                connection = %connection_id, user = %done.user.id, session = %done.session.id, created = done.created,
                "SAML sign-in"
            ),
            Err(e) => self.record_refusal(connection_id, e).await,
        }
        out
    }

    async fn complete_sign_in_inner(
        &self,
        connection_id: &str,
        saml_response: &str,
        relay_state: Option<&str>,
    ) -> Result<SignedIn, SsoError> {
        let s = self.sso_settings(connection_id).await?;
        let idp = self.idp_config(&s)?;
        let sp = self.sp_config(connection_id);
        let now = now_ms();
        let verified = idplex_saml::verify_response(saml_response, &sp, &idp, &AcsPolicy::default(), now / 1000)
            .map_err(SsoError::from_saml)?;

        // Reads first, so a replay or a stray response is refused before the connector runs or
        // anyone is provisioned; the unit of writes at the end decides (two replicas racing for
        // one assertion or one request cannot both win).
        if self.store.saml_assertion_seen(connection_id, &verified.assertion_id).await? {
            return Err(replayed(&verified.assertion_id));
        }
        match &verified.in_response_to {
            Some(id) => {
                if !self.store.saml_request_pending(id, connection_id, now).await? {
                    return Err(no_request(id));
                }
            }
            None if s.allow_idp_initiated => {}
            None => {
                return Err(SsoError::refused(
                    "unsolicited_refused",
                    "an IdP-initiated (unsolicited) response, and the connection accepts only responses to its own requests",
                ));
            }
        }

        let assertion = VerifiedAssertion {
            issuer: verified.issuer.clone(),
            name_id: verified.name_id.clone(),
            name_id_format: verified.name_id_format.clone(),
            session_index: verified.session_index.clone(),
            authn_context: None,
            attributes: verified
                .attributes
                .iter()
                .map(|a| SamlAttribute { name: a.name.clone(), values: a.values.clone() })
                .collect(),
        };
        let identity = self.map_assertion(connection_id, assertion).await.map_err(|e| {
            SsoError::refused("connector_failed", format!("the connector could not map the assertion: {e}"))
        })?;
        let user = &identity.user;
        if user.user_name.trim().is_empty() {
            return Err(SsoError::refused("identity_invalid", "the connector mapped the assertion to an empty userName"));
        }
        if !user.active {
            return Err(SsoError::refused("user_inactive", "the connector mapped the assertion to an inactive user"));
        }
        let (dir_user, created) = self.provision_signed_in(&s, user, &identity.groups).await?;
        // One unit of writes: the replay claim, the request consumed, the session (and its link
        // to the IdP's session where the IdP offers single logout).
        let finished = self
            .store
            .finish_sign_in(FinishSignIn {
                connection_id: connection_id.to_owned(),
                assertion_id: verified.assertion_id.clone(),
                assertion_expires_at: verified.expires_at.saturating_mul(1000),
                request_id: verified.in_response_to.clone(),
                user_id: dir_user.id.clone(),
                session_ttl_ms: s.session_ttl_minutes.map(|m| m.saturating_mul(60_000)),
                idp_session: s.slo_url.is_some().then(|| {
                    (verified.name_id.clone(), verified.name_id_format.clone(), verified.session_index.clone())
                }),
            })
            .await?;
        let (session, session_secret, stored_return) = match finished {
            SignInFinished::Done { session, secret, relay_state } => (session, secret, relay_state),
            SignInFinished::Replayed => return Err(replayed(&verified.assertion_id)),
            SignInFinished::NoRequest => return Err(no_request(verified.in_response_to.as_deref().unwrap_or_default())),
            // Deactivated between the lookup and now (by SCIM): no session.
            SignInFinished::UserInactive => {
                return Err(SsoError::refused("user_inactive", format!("user {} is not active", dir_user.user_name)));
            }
        };
        // Solicited: ours, from when the request was sent (what was posted beside it is
        // ignored); unsolicited: the posted RelayState, if it is a local path.
        let return_to = match &verified.in_response_to {
            Some(_) => stored_return,
            None => relay_state.and_then(safe_return_path).map(str::to_owned),
        };
        Ok(SignedIn {
            connection_id: connection_id.to_owned(),
            user: dir_user,
            created,
            session,
            session_secret,
            return_to: return_to.unwrap_or_else(|| "/".to_owned()),
        })
    }

    /// The directory user the identity names (by `userName`, ignoring case): refused when
    /// inactive; created when unknown and the connection provisions just in time, refused
    /// otherwise. With JIT, an existing user's profile follows the assertion and the user joins
    /// the groups it names (created if missing); memberships are only added.
    async fn provision_signed_in(
        &self,
        s: &SamlSettings,
        user: &CanonicalUser,
        groups: &[String],
    ) -> Result<(DirectoryUser, bool), SsoError> {
        let conn = &s.connection_id;
        let found = self.store.find_users_by_user_name(conn, &user.user_name).await?.into_iter().next();
        let (dir_user, created) = match found {
            Some(u) if !u.active => {
                return Err(SsoError::refused("user_inactive", format!("user {} is deactivated", u.user_name)));
            }
            Some(u) if s.jit => {
                let wanted = merged_resource(&u.resource, user)?;
                let external_id = user.external_id.as_deref().or(u.external_id.as_deref());
                if wanted == u.resource && external_id == u.external_id.as_deref() {
                    (u, false)
                } else {
                    match self
                        .store
                        .replace_user(conn, &u.id, Some(u.version), &u.user_name, external_id, true, &wanted)
                        .await
                    {
                        Ok(updated) => (updated, false),
                        // Changed meanwhile (SCIM): that write stands; sign in as it is.
                        Err(e) if e.is_precondition_failed() || e.is_conflict() => (u, false),
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Some(u) => (u, false),
            None if s.jit => {
                let resource = merged_resource(&serde_json::json!({"schemas": [CORE_USER]}), user)?;
                let new = NewDirectoryUser {
                    connection_id: conn.clone(),
                    user_name: user.user_name.clone(),
                    external_id: user.external_id.clone(),
                    active: true,
                    resource,
                };
                match self.store.create_user(&new).await {
                    Ok(u) => (u, true),
                    Err(e) if e.is_conflict() => {
                        return Err(SsoError::refused(
                            "unknown_user",
                            format!(
                                "userName {} belongs to a user of another directory of the organization",
                                SamlError::shown(&user.user_name)
                            ),
                        ));
                    }
                    Err(e) if e.is_invalid_input() => {
                        return Err(SsoError::refused("identity_invalid", format!("the mapped identity: {e}")));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            None => {
                return Err(SsoError::refused(
                    "unknown_user",
                    format!(
                        "{} is not a user of this directory, and the connection does not provision users at sign-in",
                        SamlError::shown(&user.user_name)
                    ),
                ));
            }
        };
        if s.jit {
            self.join_groups(conn, &dir_user, groups, s.jit_sync_groups).await?;
        }
        Ok((dir_user, created))
    }

    /// Adds the user to the groups the assertion names (created if missing); with `sync`, also
    /// removes it from the connection's groups the assertion does not name.
    async fn join_groups(&self, conn: &str, user: &DirectoryUser, groups: &[String], sync: bool) -> Result<(), SsoError> {
        let mut names: Vec<&str> = groups.iter().map(|g| g.trim()).filter(|g| !g.is_empty()).collect();
        names.sort_unstable();
        names.dedup();
        if names.len() > MAX_JIT_GROUPS {
            tracing::warn!(connection = %conn, groups = names.len(), "assertion names more groups than are applied at sign-in");
            names.truncate(MAX_JIT_GROUPS);
        }
        if names.is_empty() && !sync {
            return Ok(());
        }
        let memberships = self.store.groups_of_user(conn, &user.id).await?;
        if sync {
            let asserted: std::collections::HashSet<String> = names.iter().map(|n| n.to_lowercase()).collect();
            for group in memberships.iter().filter(|g| !asserted.contains(&g.display_name.to_lowercase())) {
                match self.store.remove_group_members(conn, &group.id, std::slice::from_ref(&user.id)).await {
                    Ok(_) => {}
                    // Deleted meanwhile: nothing to leave.
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let current: std::collections::HashSet<String> =
            memberships.into_iter().map(|g| g.display_name.to_lowercase()).collect();
        for name in names {
            if current.contains(&name.to_lowercase()) {
                continue;
            }
            let existing = self
                .store
                .find_groups_by_display_name(conn, name, false)
                .await?
                .into_iter()
                .find(|g| g.display_name.to_lowercase() == name.to_lowercase());
            let done = match existing {
                Some(g) => self.store.add_group_members(conn, &g.id, std::slice::from_ref(&user.id)).await.map(drop),
                None => self
                    .store
                    .create_group(&NewDirectoryGroup {
                        connection_id: conn.to_owned(),
                        display_name: name.to_owned(),
                        external_id: None,
                        resource: serde_json::json!({"schemas": [CORE_GROUP], "displayName": name}),
                        members: vec![user.id.clone()],
                    })
                    .await
                    .map(drop),
            };
            match done {
                Ok(()) => {}
                // Removed or renamed meanwhile, or a name the store refuses: the sign-in stands.
                Err(e) if e.is_not_found() || e.is_invalid_input() || e.is_conflict() => {
                    tracing::warn!(connection = %conn, group = %name, error = %e, "group not joined at sign-in");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Ends the session whose cookie value this is (local logout); `ended` is false when it was
    /// not a valid session. When the session came from SAML sign-in through an IdP that offers
    /// single logout, `idp_logout_url` carries a LogoutRequest (signed with the SP key when
    /// there is one) for the browser to take to the IdP.
    pub async fn sign_out(&self, session_secret: &str) -> Result<SignedOut, HubError> {
        let Some((session, _)) = self.store.verify_user_session(session_secret).await? else {
            return Ok(SignedOut { ended: false, idp_logout_url: None });
        };
        let ended = match self.store.end_user_session(&session.id).await {
            Ok(_) => true,
            Err(e) if e.is_not_found() || e.is_conflict() => false,
            Err(e) => return Err(e.into()),
        };
        // Signed in through an IdP that offers single logout: ask it to end its session too.
        let Some(link) = self.store.saml_session(&session.id).await? else {
            return Ok(SignedOut { ended, idp_logout_url: None });
        };
        let Some(settings) = self.store.saml_settings(&link.connection_id).await? else {
            return Ok(SignedOut { ended, idp_logout_url: None });
        };
        let Some(slo_url) = settings.slo_url.as_deref() else {
            return Ok(SignedOut { ended, idp_logout_url: None });
        };
        let sp = self.sp_config(&link.connection_id);
        let id = format!("_lo{}", random_hex(16));
        let xml = idplex_saml::logout::logout_request_xml(
            &id,
            now_ms() / 1000,
            slo_url,
            &sp.entity_id,
            &link.name_id,
            link.name_id_format.as_deref(),
            link.session_index.as_deref(),
        )
        .map_err(|e| invalid(format!("LogoutRequest: {}", e.detail)))?;
        let signer = self.sp_signer().await?.map(|(signer, _)| signer);
        let url = idplex_saml::authn_request::redirect_url(slo_url, &xml, None, signer.as_deref())
            .map_err(|e| invalid(format!("LogoutRequest: {}", e.detail)))?;
        tracing::info!(connection = %link.connection_id, session = %session.id, "single logout sent to the IdP");
        Ok(SignedOut { ended, idp_logout_url: Some(url) })
    }

    /// The SP's single logout endpoint (HTTP-Redirect; `query` is the raw query string as
    /// received). A `LogoutRequest` from the IdP must be signed by one of its certificates; its
    /// subject's sessions (those of the `SessionIndex`es named, or all) end, and the answer is
    /// the URL of a `LogoutResponse` to the IdP. A `LogoutResponse` (to our request) is checked
    /// (signature, when it has one; Issuer; Destination) and answers the local path to land on.
    pub async fn saml_logout(&self, connection_id: &str, query: &str) -> Result<SingleLogout, SsoError> {
        let out = self.saml_logout_inner(connection_id, query).await;
        if let Err(e) = &out {
            self.record_refusal(connection_id, e).await;
        }
        out
    }

    async fn saml_logout_inner(&self, connection_id: &str, query: &str) -> Result<SingleLogout, SsoError> {
        use idplex_saml::authn_request::{RedirectMessageKind, RedirectQuery, decode_redirect, verify_redirect_signature};
        let s = self.store.saml_settings(connection_id).await?.ok_or_else(|| {
            SsoError::new("not_configured", SsoErrorClass::NotFound, "the connection has no SAML settings")
        })?;
        let parsed = RedirectQuery::parse(query).map_err(SsoError::from_saml)?;
        let verified_by_idp = |q: &str| -> Result<bool, SsoError> {
            let mut last = None;
            for text in &s.certificates {
                let cert = Certificate::from_text(text).map_err(SsoError::from_saml)?;
                match verify_redirect_signature(q, &cert) {
                    Ok(_) => return Ok(true),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.map_or_else(|| SsoError::refused("no_certificate", "no IdP certificate"), SsoError::from_saml))
        };
        let sp = self.sp_config(connection_id);
        let sp_slo = format!("{}/slo", sp.entity_id);
        let now = now_ms() / 1000;
        let skew = AcsPolicy::default().clock_skew_secs;
        let xml = decode_redirect(&parsed.message).map_err(SsoError::from_saml)?;
        match parsed.kind {
            RedirectMessageKind::Request => {
                // Anyone can send a browser here: only a request the IdP signed is obeyed.
                verified_by_idp(query)?;
                let request = idplex_saml::logout::read_logout_request(&xml, &s.idp_entity_id, &sp_slo, now, skew)
                    .map_err(SsoError::from_saml)?;
                let ended = self.store.end_saml_sessions(connection_id, &request.name_id, &request.session_indexes).await?;
                tracing::info!(connection = %connection_id, sessions = ended.len(), "single logout asked by the IdP");
                let Some(slo_url) = s.slo_url.as_deref() else {
                    return Ok(SingleLogout { location: "/".to_owned(), idp_asked: true });
                };
                let response = idplex_saml::logout::logout_response_xml(
                    &format!("_lr{}", random_hex(16)),
                    now,
                    slo_url,
                    &sp.entity_id,
                    &request.id,
                    idplex_saml::logout::STATUS_SUCCESS,
                )
                .map_err(SsoError::from_saml)?;
                let signer = self.sp_signer().await.map_err(|e| SsoError::internal(e.to_string()))?.map(|(signer, _)| signer);
                let relay = parsed.relay_state.as_deref();
                let location = idplex_saml::authn_request::redirect_url_for(
                    RedirectMessageKind::Response,
                    slo_url,
                    &response,
                    relay,
                    signer.as_deref(),
                )
                .map_err(SsoError::from_saml)?;
                Ok(SingleLogout { location, idp_asked: true })
            }
            RedirectMessageKind::Response => {
                if parsed.sig_alg.is_some() || parsed.signature.is_some() {
                    verified_by_idp(query)?;
                }
                let response = idplex_saml::logout::read_logout_response(&xml, &s.idp_entity_id, &sp_slo, now, skew)
                    .map_err(SsoError::from_saml)?;
                if response.status != idplex_saml::logout::STATUS_SUCCESS {
                    tracing::warn!(connection = %connection_id, status = %response.status, "the IdP did not complete single logout");
                }
                Ok(SingleLogout { location: "/".to_owned(), idp_asked: false })
            }
        }
    }

    /// Records a refusal as an event of the connection (within the budget) and in the log.
    async fn record_refusal(&self, connection_id: &str, e: &SsoError) {
        tracing::warn!(connection = %connection_id, code = e.code, detail = %e.detail, "SAML sign-in refused");
        if e.class == SsoErrorClass::NotFound {
            return;
        }
        let event = NewEvent {
            at: None,
            connection_id: Some(connection_id.to_owned()),
            connector: "sso".to_owned(),
            kind: EventKind::Other(format!("sso_{}", e.code)),
            message: format!("{}: {}", e.code, e.detail),
        };
        self.record_refusal_event(connection_id, event).await;
    }

    /// Records a refusal event, at most [`MAX_REFUSAL_EVENTS_PER_MINUTE`] a minute per
    /// `budget_key` (a connection, or an OIDC app); over it, the process log has it alone.
    pub(crate) async fn record_refusal_event(&self, budget_key: &str, event: NewEvent) {
        if !self.sso_refusals.admit(budget_key, now_ms()) {
            return;
        }
        if let Err(e) = self.store.record_event(&event).await {
            tracing::error!(error = %e, kind = %event.kind, "could not record a refusal event");
        }
    }

    /// Sets how many sign-ins this process starts per connection and second, and the burst
    /// (defaults [`SIGN_IN_STARTS_PER_SECOND`], [`SIGN_IN_START_BURST`]).
    pub fn set_sign_in_start_rate(&self, per_second: f64, burst: f64) {
        self.sso_starts.set(per_second.max(0.0), burst.max(1.0));
    }

    /// Deletes expired sign-in state every `every`: SAML outstanding requests and replay-cache
    /// entries (the replay cache must outlive each assertion, not more), and OIDC pending
    /// requests, codes, tokens and long-retired signing keys.
    pub fn spawn_sign_in_pruner(self: &Arc<Self>, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let hub = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(hub) = hub.upgrade() else { return };
                let now = now_ms();
                let saml = hub.store.prune_saml(now).await;
                let oidc = hub.store.prune_oidc(now, now - crate::oidc::RETIRED_KEY_PUBLISHED_MS).await;
                match saml.and_then(|a| oidc.map(|b| a + b)) {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(rows = n, "pruned expired SAML and OIDC sign-in state"),
                    Err(e) => tracing::warn!(error = %e, "could not prune sign-in state"),
                }
            }
        })
    }
}

/// `base` with the identity's profile: userName, externalId, name, displayName, emails, and
/// enterprise-extension attributes. Other attributes the connector returns are not stored
/// (they would need a declared schema).
pub(crate) fn merged_resource(base: &serde_json::Value, user: &CanonicalUser) -> Result<serde_json::Value, SsoError> {
    use serde_json::{Value, json};
    let mut r = base.clone();
    let Some(obj) = r.as_object_mut() else {
        return Err(SsoError::internal("stored user resource is not an object"));
    };
    obj.insert("userName".into(), json!(user.user_name));
    if let Some(x) = &user.external_id {
        obj.insert("externalId".into(), json!(x));
    }
    let mut name = obj.get("name").and_then(Value::as_object).cloned().unwrap_or_default();
    if let Some(v) = &user.given_name {
        name.insert("givenName".into(), json!(v));
    }
    if let Some(v) = &user.family_name {
        name.insert("familyName".into(), json!(v));
    }
    if !name.is_empty() {
        obj.insert("name".into(), Value::Object(name));
    }
    if let Some(v) = &user.display_name {
        obj.insert("displayName".into(), json!(v));
    }
    if !user.emails.is_empty() {
        let emails: Vec<Value> = user
            .emails
            .iter()
            .map(|e| {
                let mut m = serde_json::Map::new();
                m.insert("value".into(), json!(e.value));
                if let Some(k) = &e.kind {
                    m.insert("type".into(), json!(k));
                }
                if e.primary {
                    m.insert("primary".into(), json!(true));
                }
                Value::Object(m)
            })
            .collect();
        obj.insert("emails".into(), Value::Array(emails));
    }
    obj.insert("active".into(), json!(true));
    let prefix = format!("{ENTERPRISE_USER}:");
    for (path, value) in &user.attributes {
        let Some(attr) = path.strip_prefix(&prefix) else { continue };
        if attr.is_empty() || attr.contains(['.', ':', '[']) {
            continue;
        }
        let value: Value = serde_json::from_str(value).map_err(|e| {
            SsoError::refused("identity_invalid", format!("attribute {path}: not JSON ({e})"))
        })?;
        let ext = obj.entry(ENTERPRISE_USER.to_owned()).or_insert_with(|| json!({}));
        if let Some(ext) = ext.as_object_mut() {
            ext.insert(attr.to_owned(), value);
        }
    }
    if obj.contains_key(ENTERPRISE_USER) {
        let schemas = obj.entry("schemas".to_owned()).or_insert_with(|| json!([CORE_USER]));
        if let Some(list) = schemas.as_array_mut()
            && !list.iter().any(|s| s == ENTERPRISE_USER)
        {
            list.push(json!(ENTERPRISE_USER));
        }
    }
    Ok(r)
}

/// `bytes` random bytes from the system's source, in hex (request IDs, code IDs).
pub(crate) fn random_hex(bytes: usize) -> String {
    use ring::rand::SecureRandom;
    let mut buf = vec![0u8; bytes];
    ring::rand::SystemRandom::new().fill(&mut buf).expect("the system's random source");
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_paths_stay_on_this_site() {
        for ok in ["/", "/apps/wiki?x=1", "/a/b#frag"] {
            assert_eq!(safe_return_path(ok), Some(ok));
        }
        let long = format!("/{}", "a".repeat(MAX_RETURN_PATH_BYTES));
        for bad in ["", "https://evil.example", "//evil.example", "/\\evil.example", "/a\\b", "/a b", "evil", long.as_str()] {
            assert_eq!(safe_return_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn sign_in_starts_are_a_token_bucket_per_connection() {
        let b = StartBudget::default();
        b.set(10.0, 5.0);
        let t0 = std::time::Instant::now();
        for _ in 0..5 {
            assert!(b.admit("a", t0));
        }
        assert!(!b.admit("a", t0), "the burst is spent");
        assert!(b.admit("b", t0), "another connection has its own bucket");
        assert!(!b.admit("a", t0 + std::time::Duration::from_millis(50)), "half a token back");
        assert!(b.admit("a", t0 + std::time::Duration::from_millis(150)), "one token back after 0.1 s");
        assert!(!b.admit("a", t0 + std::time::Duration::from_millis(150)));
    }

    #[test]
    fn refusal_events_are_budgeted_per_connection_and_minute() {
        let b = RefusalBudget::default();
        for _ in 0..MAX_REFUSAL_EVENTS_PER_MINUTE {
            assert!(b.admit("a", 1_000));
        }
        assert!(!b.admit("a", 1_000));
        assert!(b.admit("b", 1_000), "another connection has its own budget");
        assert!(b.admit("a", 61_000), "a new minute");
    }
}
