//! Outbound HTTP for connectors: `wasi:http/outgoing-handler`, with the host deciding per request.
//!
//! A request goes out only if its destination is allowed by the admin for the connection *and*
//! its host is among the connector's own `egress-hosts`. The host then attaches the connection's
//! credential itself; a connector can neither read nor set `Authorization`. What keeps the
//! credential away from the connector:
//!
//! * **https only.** A plain `http://` request is refused (`egress_denied`), credential or not.
//!   [`EgressPolicy::allow_plain_http_to_loopback`] relaxes that for loopback destinations only
//!   (tests, local development); the server never sets it.
//! * **Exact origin.** An allow-list entry is `host` or `host:port`; without a port it means the
//!   scheme's default port (443), never "any port". A connector's declared `egress-hosts` entry
//!   without a port covers the ports the admin lists for that host.
//! * **No echo.** Every occurrence of the credential's secret part (the value after
//!   `Bearer `/`Basic `…, or the whole value) in a response's headers, body or trailers is
//!   overwritten with `*` before the connector can read it (same length, so `content-length`
//!   stays true; the body is redacted as it streams, keeping only a credential's length of
//!   look-behind). The host asks for `accept-encoding: identity` (the connector cannot set that
//!   header), and a response that is compressed anyway is refused (compressed bytes could not
//!   be redacted). An endpoint that returns the credential transformed (re-encoded, hashed,
//!   split) is not covered: allow only the IdP's API.
//!
//! Per call: at most [`Limits::max_requests_per_call`](crate::Limits) requests and at most
//! [`Limits::max_requests_in_flight`](crate::Limits) at once (a request is in flight until its
//! response body has been read to the end, or it and its connection are dropped); response
//! header sections over [`Limits::max_header_bytes`](crate::Limits) are refused. Whatever a call
//! left open is dropped — sockets closed — when the call ends (see `call.rs`).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{ACCEPT_ENCODING, AUTHORIZATION, CONTENT_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame};
use wasmtime_wasi_http::{
    DEFAULT_FORBIDDEN_HEADERS, Error as HttpError, ForbiddenHeaderFilter, RequestOptions,
    WasiBody, WasiHttpHooks,
};

use crate::engine::Limits;

/// A secret the host adds to allowed egress requests, e.g. `Authorization: Bearer …`.
#[derive(Clone)]
pub struct Credential {
    /// Header name, e.g. `authorization`.
    pub header: HeaderName,
    /// Header value. Never logged, never shown to the connector.
    pub value: http::HeaderValue,
}

impl Credential {
    /// The bytes that must never reach the connector: the token after the auth scheme
    /// (`Bearer xyz` → `xyz`), or the whole value when it has no scheme.
    fn secret(&self) -> &[u8] {
        let v = self.value.as_bytes();
        match v.iter().position(|b| *b == b' ') {
            Some(i) if v[i + 1..].iter().any(|b| *b != b' ') => {
                let rest = &v[i + 1..];
                let start = rest.iter().position(|b| *b != b' ').unwrap_or(0);
                &rest[start..]
            }
            _ => v,
        }
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({}: <redacted>)", self.header)
    }
}

/// One allow-list entry: a host (lower case, IPv6 without brackets) and an optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Destination {
    host: String,
    port: Option<u16>,
}

impl Destination {
    /// `host`, `host:port`, `[v6]`, `[v6]:port` (surrounding spaces and case ignored). Anything
    /// else (a scheme, a path, user info, port 0) matches nothing and is dropped.
    fn parse(entry: &str) -> Option<Destination> {
        let entry = entry.trim().to_ascii_lowercase();
        let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (host, after) = rest.split_once(']')?;
            match after {
                "" => (host.to_string(), None),
                p => (host.to_string(), Some(p.strip_prefix(':')?)),
            }
        } else {
            match entry.matches(':').count() {
                0 => (entry.clone(), None),
                1 => {
                    let (h, p) = entry.split_once(':')?;
                    (h.to_string(), Some(p))
                }
                _ => (entry.clone(), None), // a bare IPv6 address
            }
        };
        let host = host.trim_end_matches('.').to_string();
        let valid_host = !host.is_empty()
            && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
        let port = match port {
            None => None,
            Some(p) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => {
                Some(p.parse::<u16>().ok().filter(|p| *p != 0)?)
            }
            Some(_) => return None,
        };
        valid_host.then_some(Destination { host, port })
    }

    fn display(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        match self.port {
            Some(p) => format!("{host}:{p}"),
            None => host,
        }
    }
}

/// A request's host as the allow-list spells it.
fn normalize_host(host: &str) -> String {
    host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase()
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A declared egress host that depends on the tenant: its leftmost label is a placeholder
/// `{key}` filled from the connection's config (`{org}.okta.com`, `{subdomain}.onelogin.com`).
/// What a pattern may be, checked at install: exactly one placeholder, the whole leftmost label,
/// naming a config key (`a-z`, `0-9`, `_`, `-`, `.`), followed by at least two fixed labels (a
/// pattern cannot reach "any host under `.com`"). The admin still allows the filled host by
/// name: a pattern only says which hosts the connector may ask for.
pub fn host_pattern_key(declared: &str) -> Option<&str> {
    let rest = declared.strip_prefix('{')?;
    let (key, suffix) = rest.split_once('}')?;
    let suffix = suffix.strip_prefix('.')?;
    let key_ok = !key.is_empty()
        && key.len() <= 64
        && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b));
    let fixed = suffix.split(':').next().unwrap_or_default();
    let suffix_ok = !suffix.contains(['{', '}'])
        && fixed.split('.').count() >= 2
        && fixed.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        && Destination::parse(suffix).is_some();
    (key_ok && suffix_ok).then_some(key)
}

/// The connector's declared egress hosts with their patterns filled from the connection's
/// config (`config(key)`); a pattern whose key is unset is left out (the connection does not
/// use that host). Errors name the key when its value is not one DNS label (`1`–`63` of
/// `A-Z a-z 0-9 -`, not starting or ending with `-`): a value such as `evil.example#` cannot
/// turn a pattern into another host.
pub fn fill_host_patterns(declared: &[String], config: impl Fn(&str) -> Option<String>) -> Result<Vec<String>, String> {
    let mut filled = Vec::with_capacity(declared.len());
    for host in declared {
        let Some(key) = host_pattern_key(host) else {
            filled.push(host.clone());
            continue;
        };
        let Some(value) = config(key) else { continue };
        let label = value.trim();
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "config key `{key}` fills the egress host `{host}` and must be one DNS label (letters, digits, \
                 `-`; at most 63), got {value:?}"
            ));
        }
        filled.push(host.replacen(&format!("{{{key}}}"), &label.to_ascii_lowercase(), 1));
    }
    Ok(filled)
}

/// What the host saw of the IdP's answers during one call, for the caller to act on after it
/// (the directory pull retries a page the IdP throttled, refreshes a credential it refused):
/// the connector only ever reports an `upstream` error, the host knows why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressSeen {
    /// Responses received.
    pub responses: u32,
    /// The longest `Retry-After` (seconds, or an HTTP date turned into seconds from now) of a
    /// 429 or 503 response; `Some(ZERO)` for a 429/503 without one.
    pub throttled: Option<Duration>,
    /// A 401 was received (an expired or revoked credential).
    pub unauthorized: bool,
    /// Responses with a 5xx status (503 included).
    pub server_errors: u32,
}

/// Collects [`EgressSeen`] for the calls made under a policy that carries it
/// ([`EgressPolicy::observed_by`]).
#[derive(Debug, Default)]
pub struct EgressObserver {
    seen: std::sync::Mutex<EgressSeen>,
}

impl EgressObserver {
    /// What was seen since the last [`EgressObserver::take`].
    pub fn take(&self) -> EgressSeen {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    fn record(&self, status: http::StatusCode, headers: &HeaderMap) {
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.responses += 1;
        if status == http::StatusCode::UNAUTHORIZED {
            seen.unauthorized = true;
        }
        if status.is_server_error() {
            seen.server_errors += 1;
        }
        if status == http::StatusCode::TOO_MANY_REQUESTS || status == http::StatusCode::SERVICE_UNAVAILABLE {
            let after = headers.get(http::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(retry_after).unwrap_or_default();
            seen.throttled = Some(seen.throttled.map_or(after, |t| t.max(after)));
        }
    }
}

/// A `Retry-After` value: delay-seconds, or an HTTP date (RFC 9110 §10.2.3) as the time from now.
fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or_default())
}

/// Where one connection's connector may send HTTP requests.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    /// The effective allow-list, as shown in messages.
    allowed: Vec<String>,
    destinations: Vec<Destination>,
    /// Attached to every allowed request.
    credential: Option<Credential>,
    /// Plain `http://` to loopback destinations (tests and local development only).
    plain_http_to_loopback: bool,
    /// Told of every response (status, `Retry-After`), when set.
    observer: Option<Arc<EgressObserver>>,
    /// Allowed destinations served by a loopback address over plain http instead (tests and
    /// local development only): `(destination, "127.0.0.1:port")`.
    redirects: Vec<(Destination, String)>,
}

impl EgressPolicy {
    /// No egress at all.
    pub fn deny_all() -> Self {
        EgressPolicy::default()
    }

    /// The admin's allow-list (`admin_allowed`), narrowed to the hosts the connector declared;
    /// attach `credential` to the allowed requests.
    ///
    /// An admin entry `host` allows `https://host` on port 443 only; `host:port` that port only.
    /// A declared entry `host` covers every admin entry of that host, `host:port` only that port.
    pub fn new(declared: &[String], admin_allowed: &[String], credential: Option<Credential>) -> Self {
        let declared: Vec<Destination> = declared.iter().filter_map(|d| Destination::parse(d)).collect();
        let mut destinations: Vec<Destination> = Vec::new();
        for a in admin_allowed.iter().filter_map(|a| Destination::parse(a)) {
            let covered = declared.iter().any(|d| d.host == a.host && (d.port.is_none() || d.port == a.port));
            if covered && !destinations.contains(&a) {
                destinations.push(a);
            }
        }
        let allowed = destinations.iter().map(Destination::display).collect();
        EgressPolicy { allowed, destinations, credential, plain_http_to_loopback: false, observer: None, redirects: Vec::new() }
    }

    /// Report every response of the calls under this policy to `observer`.
    pub fn observed_by(mut self, observer: Arc<EgressObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The same policy with another credential (a refreshed token).
    pub fn with_credential(mut self, credential: Option<Credential>) -> Self {
        self.credential = credential;
        self
    }

    /// **Tests and local development only.** Requests to `from` (`host` or `host:port`, an
    /// https destination the policy allows) go over plain http to `to`, which must be a
    /// loopback `ip:port`, the credential included: how a test points a connector that calls
    /// `https://graph.microsoft.com` at a local stand-in of that API without the connector
    /// knowing. Entries that are not of that shape are ignored (and reported by the caller).
    pub fn redirect(mut self, from: &str, to: &str) -> Self {
        let target_ok = to
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback() && a.port() != 0);
        if let (Some(dest), true) = (Destination::parse(from), target_ok) {
            self.redirects.push((dest, to.to_string()));
        }
        self
    }

    /// Where a request to `host[:port]` over https really goes, if redirected.
    fn redirected(&self, host: &str, port: Option<u16>) -> Option<&str> {
        let host = normalize_host(host);
        let port = port.unwrap_or(443);
        self.redirects
            .iter()
            .find(|(d, _)| d.host == host && d.port.unwrap_or(443) == port)
            .map(|(_, to)| to.as_str())
    }

    /// Also allow plain `http://` to the listed destinations when they are loopback addresses
    /// (`127.0.0.0/8`, `::1`, `localhost`), credential included — for tests and local
    /// development only. Off by default; a portless entry then means port 80 for `http`.
    pub fn allow_plain_http_to_loopback(mut self) -> Self {
        self.plain_http_to_loopback = true;
        self
    }

    fn plain_http_allowed(&self, host: &str) -> bool {
        self.plain_http_to_loopback && is_loopback(&normalize_host(host))
    }

    /// The effective allow-list, for error messages and the admin console.
    pub fn allowed(&self) -> &[String] {
        &self.allowed
    }

    /// Whether a request to `scheme://host[:port]` may go out.
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let host = normalize_host(host);
        let default_port = if scheme.eq_ignore_ascii_case("https") {
            443
        } else if scheme.eq_ignore_ascii_case("http") && self.plain_http_allowed(&host) {
            80
        } else {
            return false;
        };
        let port = port.unwrap_or(default_port);
        self.destinations.iter().any(|d| d.host == host && d.port.unwrap_or(default_port) == port)
    }
}

/// Per-call egress state: the policy, the call's limits and what the connector tried.
pub(crate) struct EgressHooks {
    pub(crate) policy: Arc<EgressPolicy>,
    /// The first destination refused during this call; a refusal fails the whole call.
    pub(crate) denied: Option<String>,
    requests: u32,
    max_requests: u32,
    max_in_flight: u32,
    /// Requests of this call in flight; a fresh counter per call (a request of an earlier call
    /// still being torn down counts against that call's counter, not this one).
    in_flight: Arc<AtomicU32>,
    max_header_bytes: usize,
    deadline: Duration,
}

impl EgressHooks {
    pub(crate) fn new(policy: Arc<EgressPolicy>, limits: &Limits) -> Self {
        let mut hooks = EgressHooks {
            policy,
            denied: None,
            requests: 0,
            max_requests: 0,
            max_in_flight: 0,
            in_flight: Arc::new(AtomicU32::new(0)),
            max_header_bytes: 0,
            deadline: Duration::ZERO,
        };
        hooks.start_call(limits);
        hooks
    }

    /// Reset the per-call state for a new call under `limits`.
    pub(crate) fn start_call(&mut self, limits: &Limits) {
        self.denied = None;
        self.requests = 0;
        self.max_requests = limits.max_requests_per_call;
        self.max_in_flight = limits.max_requests_in_flight;
        self.in_flight = Arc::new(AtomicU32::new(0));
        self.max_header_bytes = limits.max_header_bytes as usize;
        self.deadline = limits.deadline();
    }

    fn deny(&mut self, what: String) -> EgressFuture {
        self.denied.get_or_insert(what);
        Box::new(async { Err(HttpError::HttpRequestDenied) })
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
type EgressFuture = Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), HttpError>> + Send>;

impl WasiHttpHooks for EgressHooks {
    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        let credential = self.policy.credential.as_ref().map(|c| c.header.clone());
        Arc::new(move |name| {
            *name == AUTHORIZATION
                || *name == ACCEPT_ENCODING
                || credential.as_ref() == Some(name)
                || DEFAULT_FORBIDDEN_HEADERS.contains(name)
        })
    }

    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> EgressFuture {
        drop(fut);
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or_default().to_ascii_lowercase();
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri.port_u16();
        let dest = match port {
            Some(p) => format!("{scheme}://{host}:{p}"),
            None => format!("{scheme}://{host}"),
        };
        self.requests += 1;
        if self.requests > self.max_requests {
            return self.deny(format!("{dest} (more than {} requests in one call)", self.max_requests));
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return self.deny(format!("{dest} (user info in the URL is not allowed)"));
        }
        if !self.policy.allows(&scheme, &host, port) {
            let why = if scheme == "https" || self.policy.plain_http_allowed(&host) {
                ""
            } else {
                " (only https is allowed)"
            };
            return self.deny(format!("{dest}{why}"));
        }
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.max_in_flight {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return self.deny(format!("{dest} (more than {} requests in flight at once)", self.max_in_flight));
        }
        let slot = Arc::new(Slot { in_flight: self.in_flight.clone(), released: AtomicBool::new(false) });

        if scheme == "https" {
            if let Some(to) = self.policy.redirected(&host, port) {
                let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
                match http::Uri::try_from(format!("http://{to}{path}")) {
                    Ok(uri) => *request.uri_mut() = uri,
                    Err(_) => return self.deny(format!("{dest} (redirect to {to} failed)")),
                }
                if let Ok(value) = HeaderValue::from_str(&uri_authority(&host, port)) {
                    request.headers_mut().insert(http::header::HOST, value);
                }
            }
        }
        let observer = self.policy.observer.clone();
        let secret: Option<Arc<[u8]>> = self.policy.credential.as_ref().map(|c| {
            request.headers_mut().insert(c.header.clone(), c.value.clone());
            Arc::from(c.secret())
        });
        request.headers_mut().insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        let cap = |d: Option<Duration>| Some(d.map_or(self.deadline, |d| d.min(self.deadline)));
        let options = RequestOptions {
            connect_timeout: cap(options.as_ref().and_then(|o| o.connect_timeout)),
            first_byte_timeout: cap(options.as_ref().and_then(|o| o.first_byte_timeout)),
            between_bytes_timeout: cap(options.as_ref().and_then(|o| o.between_bytes_timeout)),
        };
        let max_header_bytes = self.max_header_bytes;
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            let (mut parts, body) = response.into_parts();
            if let Some(observer) = &observer {
                observer.record(parts.status, &parts.headers);
            }
            let head_size = header_bytes(&parts.headers);
            if head_size > max_header_bytes {
                return Err(HttpError::HttpResponseHeaderSectionSize(u32::try_from(head_size).ok()));
            }
            if let Some(secret) = &secret {
                let encoded = parts.headers.get_all(CONTENT_ENCODING).iter().any(|v| {
                    !v.as_bytes().eq_ignore_ascii_case(b"identity")
                });
                if encoded {
                    let coding = parts.headers.get(CONTENT_ENCODING).and_then(|v| v.to_str().ok()).map(str::to_string);
                    return Err(HttpError::HttpResponseContentCoding(coding));
                }
                redact_headers(&mut parts.headers, secret);
            }
            let body = GuardedBody {
                inner: body.boxed_unsync(),
                redact: secret.map(Redactor::new),
                pending_trailers: None,
                slot: slot.clone(),
            };
            let io: IoFuture = Box::new(async move {
                let _slot = slot;
                io.await
            });
            Ok((http::Response::from_parts(parts, body.boxed_unsync()), io))
        })
    }
}

/// `host` or `host:port` as a `Host` header spells it.
fn uri_authority(host: &str, port: Option<u16>) -> String {
    match port {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// Wire size of a header section (names and values).
fn header_bytes(headers: &HeaderMap) -> usize {
    headers.iter().map(|(n, v)| n.as_str().len() + v.len()).sum()
}

/// Overwrite every occurrence of `secret` in `headers`' values.
fn redact_headers(headers: &mut HeaderMap, secret: &[u8]) {
    if secret.is_empty() {
        return;
    }
    for value in headers.values_mut() {
        if find(value.as_bytes(), secret).is_some() {
            let mut bytes = value.as_bytes().to_vec();
            redact_all(&mut bytes, secret);
            // `*` is a valid header value byte, so this cannot fail; drop the value if it did.
            *value = HeaderValue::from_bytes(&bytes).unwrap_or_else(|_| HeaderValue::from_static("*"));
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Overwrite every occurrence of `secret` in `bytes` with `*`.
fn redact_all(bytes: &mut [u8], secret: &[u8]) {
    let mut from = 0;
    while let Some(i) = find(&bytes[from..], secret) {
        let start = from + i;
        bytes[start..start + secret.len()].fill(b'*');
        from = start + secret.len();
    }
}

/// Redacts a secret from a byte stream that arrives in chunks: it holds back the longest tail
/// of what it has seen that could still be the start of the secret.
struct Redactor {
    secret: Arc<[u8]>,
    held: Vec<u8>,
}

impl Redactor {
    fn new(secret: Arc<[u8]>) -> Self {
        Redactor { secret, held: Vec::new() }
    }

    /// Feed a chunk; returns what can be passed on now.
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.secret.is_empty() {
            return chunk.to_vec();
        }
        let mut buf = std::mem::take(&mut self.held);
        buf.extend_from_slice(chunk);
        redact_all(&mut buf, &self.secret);
        // Keep the longest suffix that is a proper prefix of the secret.
        let max = (self.secret.len() - 1).min(buf.len());
        let keep = (1..=max).rev().find(|&k| buf[buf.len() - k..] == self.secret[..k]).unwrap_or(0);
        self.held = buf.split_off(buf.len() - keep);
        buf
    }

    /// The held-back tail, at the end of the stream.
    fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }
}

/// Marks one request of a call as in flight; released once (see [`Slot::release`]).
struct Slot {
    in_flight: Arc<AtomicU32>,
    released: AtomicBool,
}

impl Slot {
    fn release(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.release();
    }
}

/// A response body as the connector sees it: the credential redacted, and the request's
/// in-flight slot released at its end.
struct GuardedBody {
    inner: WasiBody,
    redact: Option<Redactor>,
    pending_trailers: Option<HeaderMap>,
    slot: Arc<Slot>,
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        if let Some(trailers) = this.pending_trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.slot.release();
                    let rest = this.redact.as_mut().map(Redactor::finish).unwrap_or_default();
                    if !rest.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(rest)))));
                    }
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(e))) => {
                    this.slot.release();
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    let Some(redactor) = this.redact.as_mut() else {
                        return Poll::Ready(Some(Ok(frame)));
                    };
                    match frame.into_data() {
                        Ok(data) => {
                            let out = redactor.feed(&data);
                            if out.is_empty() {
                                continue;
                            }
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                        }
                        Err(frame) => {
                            let Ok(mut trailers) = frame.into_trailers() else { continue };
                            redact_headers(&mut trailers, &redactor.secret);
                            let rest = redactor.finish();
                            if rest.is_empty() {
                                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                            }
                            this.pending_trailers = Some(trailers);
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(rest)))));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns_are_one_leading_placeholder_under_a_fixed_domain() {
        assert_eq!(host_pattern_key("{org}.okta.com"), Some("org"));
        assert_eq!(host_pattern_key("{subdomain}.onelogin.com:8443"), Some("subdomain"));
        for bad in ["{org}.com", "{org}", "api.{org}.okta.com", "{org}{x}.okta.com", "{}.okta.com",
                    "{Org}.okta.com", "{org}.okta.com/path", "{org}.ok ta.com", "{org}x.okta.com", "okta.com"] {
            assert_eq!(host_pattern_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn patterns_are_filled_from_config_and_the_admin_still_allows_the_host() {
        let declared = vec!["{org}.okta.com".to_string(), "api.example.com".to_string(), "{sub}.onelogin.com".to_string()];
        let config = |k: &str| (k == "org").then(|| "Acme-Corp".to_string());
        let filled = fill_host_patterns(&declared, config).unwrap();
        assert_eq!(filled, ["acme-corp.okta.com", "api.example.com"], "an unset key leaves its pattern out");
        let p = EgressPolicy::new(&filled, &["acme-corp.okta.com".into(), "other.okta.com".into()], None);
        assert!(p.allows("https", "acme-corp.okta.com", None));
        assert!(!p.allows("https", "other.okta.com", None), "not what the config names");
        assert!(!p.allows("https", "api.example.com", None), "declared but not allowed by the admin");
        for value in ["evil.example#", "a.b", "-x", "x-", "", "ü", &"a".repeat(64)] {
            let err = fill_host_patterns(&declared, |k: &str| (k == "org").then(|| value.to_string())).unwrap_err();
            assert!(err.contains("`org`") && err.contains("{org}.okta.com"), "{value:?}: {err}");
        }
    }

    fn policy(declared: &[&str], admin: &[&str]) -> EgressPolicy {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        EgressPolicy::new(&s(declared), &s(admin), None)
    }

    #[test]
    fn only_destinations_both_sides_name_are_allowed() {
        let p = policy(&["api.okta.com", "127.0.0.1:8080", "evil.example"], &["API.okta.com", "127.0.0.1:8080"]);
        assert!(p.allows("https", "api.okta.com", Some(443)));
        assert!(p.allows("https", "api.okta.com", None));
        assert!(p.allows("https", "127.0.0.1", Some(8080)));
        assert!(!p.allows("https", "127.0.0.1", Some(8081)));
        assert!(!p.allows("https", "evil.example", None), "declared but not allowed by the admin");
        assert!(!p.allows("https", "other.okta.com", None));
        assert!(!EgressPolicy::deny_all().allows("https", "api.okta.com", None));
        assert_eq!(p.allowed(), ["api.okta.com", "127.0.0.1:8080"]);
    }

    #[test]
    fn an_entry_without_a_port_is_the_default_port_only_and_https_only() {
        let p = policy(&["api.okta.com", "127.0.0.1"], &["api.okta.com", "127.0.0.1"]);
        assert!(p.allows("https", "api.okta.com", Some(443)));
        assert!(!p.allows("https", "api.okta.com", Some(8443)), "a portless entry is not every port");
        assert!(!p.allows("https", "127.0.0.1", Some(8080)), "the admin port on loopback stays closed");
        assert!(!p.allows("http", "api.okta.com", None), "plain http is refused");
        assert!(!p.allows("http", "api.okta.com", Some(80)));
        assert!(!p.allows("ftp", "api.okta.com", None));
        // The test switch opens plain http to loopback only, still on the listed ports.
        let p = p.allow_plain_http_to_loopback();
        assert!(p.allows("http", "127.0.0.1", None));
        assert!(p.allows("http", "127.0.0.1", Some(80)));
        assert!(!p.allows("http", "127.0.0.1", Some(8080)));
        assert!(!p.allows("http", "api.okta.com", None), "never in clear text over a network");
        // A declared host covers the admin's ports for it; a declared port only that port.
        let p = policy(&["127.0.0.1", "api.x.com:8443"], &["127.0.0.1:9000", "api.x.com", "api.x.com:8443"]);
        assert!(p.allows("https", "127.0.0.1", Some(9000)));
        assert!(!p.allows("https", "api.x.com", None));
        assert!(p.allows("https", "api.x.com", Some(8443)));
    }

    #[test]
    fn malformed_entries_match_nothing() {
        for bad in ["", "https://api.x.com", "api.x.com/path", "user@api.x.com", "api.x.com:0", "api.x.com:99999", "api.x.com:"] {
            assert!(Destination::parse(bad).is_none(), "{bad:?}");
        }
        assert_eq!(Destination::parse("[::1]:8080"), Some(Destination { host: "::1".into(), port: Some(8080) }));
        assert_eq!(Destination::parse(" API.X.com. "), Some(Destination { host: "api.x.com".into(), port: None }));
    }

    #[test]
    fn the_secret_is_the_token_after_the_scheme() {
        let c = |v: &'static str| Credential { header: AUTHORIZATION, value: HeaderValue::from_static(v) };
        assert_eq!(c("Bearer abc.def").secret(), b"abc.def");
        assert_eq!(c("SSWS  tok").secret(), b"tok");
        assert_eq!(c("rawtoken").secret(), b"rawtoken");
    }

    #[test]
    fn a_streamed_secret_is_redacted_across_chunk_boundaries() {
        let secret: Arc<[u8]> = Arc::from(&b"s3cr3t-token"[..]);
        let text = b"head s3cr3t-token mid s3cr3t-tok s3cr3t-token tail s3cr3";
        for chunk in 1..text.len() {
            let mut r = Redactor::new(secret.clone());
            let mut out = Vec::new();
            for part in text.chunks(chunk) {
                out.extend(r.feed(part));
            }
            out.extend(r.finish());
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "head ************ mid s3cr3t-tok ************ tail s3cr3",
                "chunks of {chunk}"
            );
        }
        let mut headers = HeaderMap::new();
        headers.insert("x-echo", HeaderValue::from_static("Bearer s3cr3t-token"));
        headers.insert("x-other", HeaderValue::from_static("fine"));
        redact_headers(&mut headers, &secret);
        assert_eq!(headers["x-echo"], "Bearer ************");
        assert_eq!(headers["x-other"], "fine");
    }
}
