//! Outbound HTTP for connectors that call their IdP's API (`directory-pull`, `test-connection`),
//! over `wasi:http/outgoing-handler`.
//!
//! * [`get_json`] GETs a URL with `accept: application/json` and reads at most
//!   [`MAX_BODY_BYTES`] of the answer into a [`Response`] (status, lower-case headers, the body as
//!   JSON when it parses, else as bytes). It never sets `Authorization`: the host attaches the
//!   connection's credential to every request it lets through (a connector cannot even set that
//!   header), and only to hosts listed in `connector-info.egress-hosts` *and* allowed by the admin.
//!   It returns the response whatever its status; turn a non-2xx one into an error with
//!   [`check`] / [`upstream_error`].
//! * Transport failures (refused egress, DNS, TLS, timeouts) become `upstream` errors naming the
//!   host and path, never the query string (page tokens, filters) of the URL.
//! * The pure parts — [`Url::parse`], [`encode_query_value`], [`encode_path_segment`],
//!   [`with_query`], [`idp_error_message`], [`upstream_error`] — run anywhere and are tested
//!   natively. Outside the sandbox [`get_json`] never calls out: it answers from the
//!   [`crate::testing::FakeHttp`] of the [`crate::testing::MockHost`] installed on the test's
//!   thread (an `internal` error without one), so native tests can run a connector's `Guest`
//!   impls as they are. Pull logic written against a fetcher
//!   (`&mut dyn FnMut(&str) -> Result<Response, ConnectorError>`, see [`Fetch`]) can also be
//!   handed a `FakeHttp` directly: the `Guest` impl passes `&mut get_json`.
//!
//! The host answers `upstream` errors of a `directory-pull` call on 401, 429, 503 and 5xx by
//! retrying the same cursor (waiting as `Retry-After` asks, refreshing the credential after a
//! 401), so a connector just returns the error [`check`] builds.

use crate::ConnectorError;
use serde_json::Value;

/// The most bytes [`get_json`] reads of a response body; a larger body is an `upstream` error.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// Longest IdP error message [`idp_error_message`] keeps (in bytes, cut at a character boundary).
pub const MAX_MESSAGE_BYTES: usize = 400;

/// A connector's way of fetching a URL: [`get_json`] in the sandbox, a fake in native tests.
pub type Fetch<'a> = dyn FnMut(&str) -> Result<Response, ConnectorError> + 'a;

/// The body of a [`Response`].
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// The body parsed as JSON.
    Json(Value),
    /// A body that is empty or not JSON, as received.
    Bytes(Vec<u8>),
}

/// An HTTP response as [`get_json`] read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers in the order received, names in lower case, values as (lossy) UTF-8.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Body,
}

impl Response {
    /// A response with a JSON body and no headers (what native tests feed a connector).
    pub fn json(status: u16, body: Value) -> Response {
        Response { status, headers: Vec::new(), body: Body::Json(body) }
    }

    /// `self` with one more header (`name` is lower-cased).
    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The JSON body, if it was JSON.
    pub fn json_body(&self) -> Option<&Value> {
        match &self.body {
            Body::Json(v) => Some(v),
            Body::Bytes(_) => None,
        }
    }

    /// The JSON body, or an `upstream` error saying that `what` answered something else.
    pub fn into_json(self, what: &str) -> Result<Value, ConnectorError> {
        match self.body {
            Body::Json(v) => Ok(v),
            Body::Bytes(b) => Err(ConnectorError::upstream(format!(
                "{what} answered HTTP {} with a body that is not JSON ({} bytes)",
                self.status,
                b.len()
            ))),
        }
    }
}

/// A body as [`Body::Json`] when it parses as JSON, else as [`Body::Bytes`].
pub fn body_from_bytes(bytes: Vec<u8>) -> Body {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Body::Bytes(bytes);
    }
    match serde_json::from_slice(&bytes) {
        Ok(v) => Body::Json(v),
        Err(_) => Body::Bytes(bytes),
    }
}

/// An absolute `http(s)` URL split the way `wasi:http` wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `https` or `http`, lower case.
    pub scheme: String,
    /// `host` or `host:port` as written (lower-cased).
    pub authority: String,
    /// The path and query (`/v1/users?x=1`; `/` when the URL has none), without a fragment.
    pub path_and_query: String,
}

impl Url {
    /// Parses `https://host[:port][/path][?query][#fragment]` (or `http://`). Refuses other
    /// schemes, user info (`user@host`) and an empty host with a `config`-free `internal` error:
    /// connectors build their URLs themselves, so a bad one is a bug.
    pub fn parse(url: &str) -> Result<Url, ConnectorError> {
        let bad = |why: &str| ConnectorError::internal(format!("not a usable URL ({why}): `{}`", redact_query(url)));
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "https" && scheme != "http" {
            return Err(bad("only https and http"));
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = rest[..end].to_ascii_lowercase();
        if authority.is_empty() || authority.starts_with(':') {
            return Err(bad("no host"));
        }
        if authority.contains('@') {
            return Err(bad("user info"));
        }
        Ok(Url { scheme, authority, path_and_query: path_and_query_of(&rest[end..]) })
    }

    /// The host without the port.
    pub fn host(&self) -> &str {
        if let Some(v6) = self.authority.strip_prefix('[') {
            return v6.split(']').next().unwrap_or(v6);
        }
        self.authority.split(':').next().unwrap_or(&self.authority)
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.path_and_query.split('?').next().unwrap_or("/")
    }
}

/// `rest` (what follows the authority: `/path?query#fragment`, `?query`, or nothing) as a
/// path-and-query: the fragment dropped, a leading `/` ensured.
fn path_and_query_of(rest: &str) -> String {
    let rest = rest.split('#').next().unwrap_or("");
    if rest.starts_with('/') {
        rest.to_string()
    } else {
        format!("/{rest}")
    }
}

/// The path and query of a link an API returned (`@odata.nextLink`, a `Location`), whatever
/// its origin: `https://other.example:8443/v1.0/users?x=1` → `/v1.0/users?x=1`. A relative link
/// (`/v1.0/users?x=1`, `v1.0/users`) is taken as a path. The fragment is dropped. Pair it with
/// the connector's own fixed origin, so that a link never sends a request (and the credential the
/// host attaches) anywhere else.
pub fn link_path_and_query(link: &str) -> String {
    let link = link.trim();
    let after_origin = if let Some((scheme, rest)) = link.split_once("://")
        && !scheme.is_empty()
        && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        Some(rest)
    } else {
        link.strip_prefix("//")
    };
    match after_origin {
        Some(rest) => path_and_query_of(&rest[rest.find(['/', '?', '#']).unwrap_or(rest.len())..]),
        None => path_and_query_of(link),
    }
}

/// `url` with its query replaced by `?` (for messages: page tokens and filters stay out of logs).
pub fn redact_query(url: &str) -> String {
    match url.find('?') {
        Some(i) => format!("{}?…", &url[..i]),
        None => url.to_string(),
    }
}

fn encode(text: &str, keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || keep(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a query parameter value: RFC 3986 unreserved characters and `,` `:` `@`
/// `/` `$` `!` `*` `'` `(` `)` stay as they are; everything else (`&`, `=`, `+`, `#`, `%`, `?`,
/// blanks, non-ASCII) is encoded.
pub fn encode_query_value(value: &str) -> String {
    encode(value, |b| matches!(b, b',' | b':' | b'@' | b'/' | b'$' | b'!' | b'*' | b'\'' | b'(' | b')'))
}

/// Percent-encodes one path segment: only RFC 3986 unreserved characters stay as they are.
pub fn encode_path_segment(segment: &str) -> String {
    encode(segment, |_| false)
}

/// `base` followed by `?` and the `params` (`key=value`, joined by `&`), values encoded with
/// [`encode_query_value`]; keys are written as given (they are the connector's own constants).
/// Pairs whose value is `None` are left out.
pub fn with_query(base: &str, params: &[(&str, Option<&str>)]) -> String {
    let mut url = base.to_string();
    let mut sep = if base.contains('?') { '&' } else { '?' };
    for (k, v) in params {
        if let Some(v) = v {
            url.push(sep);
            url.push_str(k);
            url.push('=');
            url.push_str(&encode_query_value(v));
            sep = '&';
        }
    }
    url
}

/// `text` cut to at most `max` bytes at a character boundary, with `…` when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The error message an IdP put in a JSON error body, in the shapes IdP APIs use:
/// `{"error": {"code": …, "status": …, "message": …}}` (Google, Microsoft Graph),
/// `{"error": "…", "error_description": "…"}` (OAuth), `{"errorSummary": …}` (Okta),
/// `{"message": …}`, `{"detail": …}` (SCIM). Prefixed with the error's code or status when it
/// has a textual one; at most [`MAX_MESSAGE_BYTES`].
pub fn idp_error_message(body: &Value) -> Option<String> {
    let text = |v: &Value| v.as_str().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
    let with_code = |code: Option<String>, message: Option<String>| match (code, message) {
        (Some(c), Some(m)) => Some(format!("{c}: {m}")),
        (c, m) => m.or(c),
    };
    let found = match body.get("error") {
        Some(e @ Value::Object(_)) => with_code(
            text(&e["status"]).or_else(|| text(&e["code"])),
            text(&e["message"]).or_else(|| text(&e["error_description"])),
        ),
        Some(Value::String(code)) => with_code(text(&Value::String(code.clone())), text(&body["error_description"])),
        _ => None,
    };
    found
        .or_else(|| text(&body["errorSummary"]))
        .or_else(|| text(&body["message"]))
        .or_else(|| text(&body["detail"]))
        .map(|m| truncate(&m, MAX_MESSAGE_BYTES))
}

/// The `upstream` error for a response that is not 2xx: `what` (e.g. `Admin SDK users.list`)
/// answered HTTP `status`, with the IdP's own message when the body carries one, the
/// `Retry-After` value on a 429 or 503, and a hint of what the status usually means.
pub fn upstream_error(what: &str, response: &Response) -> ConnectorError {
    let mut message = format!("{what} answered HTTP {}", response.status);
    match response.json_body().and_then(idp_error_message) {
        Some(m) => message.push_str(&format!(": {m}")),
        None => {
            if let Body::Bytes(b) = &response.body {
                let t = String::from_utf8_lossy(b);
                let t = t.trim();
                if !t.is_empty() && !t.starts_with('<') {
                    message.push_str(&format!(": {}", truncate(t, 200)));
                }
            }
        }
    }
    let hint = match response.status {
        401 => Some("the IdP refused the credential (the host refreshes it and retries); if it persists, check the connection's credential".to_string()),
        403 => Some("the credential lacks a permission or scope this call needs".to_string()),
        404 => Some("not found: check the connection's config".to_string()),
        410 => Some("gone: a sync token expired".to_string()),
        429 | 503 => Some(match response.header("retry-after") {
            Some(after) => format!("throttled; Retry-After: {}", after.trim()),
            None => "throttled (no Retry-After)".to_string(),
        }),
        s if s >= 500 => Some("the IdP's API failed; the host retries".to_string()),
        _ => None,
    };
    if let Some(hint) = hint {
        message.push_str(&format!(" ({hint})"));
    }
    ConnectorError::upstream(message)
}

/// `response` when it is 2xx, else its [`upstream_error`].
pub fn check(what: &str, response: Response) -> Result<Response, ConnectorError> {
    if response.is_success() { Ok(response) } else { Err(upstream_error(what, &response)) }
}

/// GETs `url` through `wasi:http/outgoing-handler` with `accept: application/json` and reads the
/// response (any status) into a [`Response`]: at most [`MAX_BODY_BYTES`] of body, more is an
/// `upstream` error. Never sets `Authorization`: the host attaches the credential. A request the
/// host refuses (a host not allowed, too many requests) or that fails in transit is an
/// `upstream` error naming the host and path (not the query).
///
/// Outside the sandbox (native tests) it calls nothing: it answers from the egress
/// ([`crate::testing::FakeHttp`]) of the [`crate::testing::MockHost`] installed on the current
/// thread, matching `url` exactly as given; without one, an `internal` error.
pub fn get_json(url: &str) -> Result<Response, ConnectorError> {
    let parsed = Url::parse(url)?;
    imp::get(url, &parsed)
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::{Response, Url};
    use crate::ConnectorError;

    pub fn get(url: &str, parsed: &Url) -> Result<Response, ConnectorError> {
        crate::mock_host::fetch(url).unwrap_or_else(|| {
            Err(ConnectorError::internal(format!(
                "no egress outside the sandbox (GET {}{}): install a testing::MockHost with .egress(FakeHttp) in native tests",
                parsed.authority,
                parsed.path()
            )))
        })
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::{MAX_BODY_BYTES, Response, Url, body_from_bytes};
    use crate::ConnectorError;
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{Fields, IncomingBody, Method, OutgoingRequest, Scheme};
    use wasip2::io::streams::StreamError;

    pub fn get(_: &str, url: &Url) -> Result<Response, ConnectorError> {
        let target = format!("{}://{}{}", url.scheme, url.authority, url.path());
        let fail = |what: &str, detail: &dyn std::fmt::Debug| {
            ConnectorError::upstream(format!("GET {target}: {what}: {detail:?}"))
        };
        let headers = Fields::from_list(&[("accept".to_string(), b"application/json".to_vec())])
            .map_err(|e| fail("request headers", &e))?;
        let request = OutgoingRequest::new(headers);
        request.set_method(&Method::Get).map_err(|e| fail("method", &e))?;
        let scheme = if url.scheme == "http" { Scheme::Http } else { Scheme::Https };
        request.set_scheme(Some(&scheme)).map_err(|e| fail("scheme", &e))?;
        request.set_authority(Some(&url.authority)).map_err(|e| fail("invalid host", &e))?;
        request.set_path_with_query(Some(&url.path_and_query)).map_err(|e| fail("invalid path", &e))?;

        let pending = outgoing_handler::handle(request, None).map_err(|e| fail("request refused", &e))?;
        let response = loop {
            match pending.get() {
                Some(Ok(Ok(response))) => break response,
                Some(Ok(Err(code))) => return Err(fail("no response", &code)),
                Some(Err(())) => return Err(ConnectorError::internal("wasi:http response taken twice")),
                None => pending.subscribe().block(),
            }
        };
        drop(pending);
        let status = response.status();
        let headers: Vec<(String, String)> = {
            let fields = response.headers();
            let entries = fields.entries();
            drop(fields);
            entries
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), String::from_utf8_lossy(&v).into_owned()))
                .collect()
        };
        let announced = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.trim().parse::<u64>().ok());
        let too_big = || {
            ConnectorError::upstream(format!(
                "GET {target} answered HTTP {status} with a body over {} MiB; the connector reads at most that",
                MAX_BODY_BYTES >> 20
            ))
        };
        if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(too_big());
        }
        let mut body = Vec::new();
        {
            let incoming = response.consume().map_err(|e| fail("response body", &e))?;
            {
                let stream = incoming.stream().map_err(|e| fail("response body", &e))?;
                loop {
                    match stream.blocking_read(64 * 1024) {
                        Ok(chunk) => {
                            if body.len() + chunk.len() > MAX_BODY_BYTES {
                                return Err(too_big());
                            }
                            body.extend_from_slice(&chunk);
                        }
                        Err(StreamError::Closed) => break,
                        Err(e) => return Err(fail("reading the response body", &e)),
                    }
                }
            }
            drop(IncomingBody::finish(incoming));
        }
        drop(response);
        Ok(Response { status, headers, body: body_from_bytes(body) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use serde_json::json;

    #[test]
    fn urls_split_into_what_wasi_http_wants() {
        let u = Url::parse("https://Admin.GoogleApis.com/admin/directory/v1/users?customer=my_customer#x").unwrap();
        assert_eq!(
            (u.scheme.as_str(), u.authority.as_str(), u.path_and_query.as_str()),
            ("https", "admin.googleapis.com", "/admin/directory/v1/users?customer=my_customer")
        );
        assert_eq!((u.host(), u.path()), ("admin.googleapis.com", "/admin/directory/v1/users"));
        let u = Url::parse("http://127.0.0.1:8080?x=1").unwrap();
        assert_eq!((u.host(), u.authority.as_str(), u.path_and_query.as_str()), ("127.0.0.1", "127.0.0.1:8080", "/?x=1"));
        assert_eq!(Url::parse("https://[::1]:9/a").unwrap().host(), "::1");
        for bad in ["ftp://x/y", "admin.googleapis.com/users", "https:///path", "https://user@evil.example/", "https://:443/"] {
            let e = Url::parse(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Internal, "{bad}");
        }
        let e = Url::parse("gopher://h/p?token=secret").unwrap_err();
        assert!(!e.message.contains("secret"), "{}", e.message);
    }

    #[test]
    fn links_keep_only_their_path_and_query() {
        for (link, want) in [
            ("https://graph.microsoft.com/v1.0/users/delta?$skiptoken=abc", "/v1.0/users/delta?$skiptoken=abc"),
            ("http://127.0.0.1:4567/v1.0/users/delta?$deltatoken=x#frag", "/v1.0/users/delta?$deltatoken=x"),
            ("https://evil.example/steal?x=1", "/steal?x=1"),
            ("https://user:pw@evil.example:8443/v1.0/groups", "/v1.0/groups"),
            ("//evil.example/v1.0/groups?a=b", "/v1.0/groups?a=b"),
            ("/v1.0/groups?a=b", "/v1.0/groups?a=b"),
            ("v1.0/groups", "/v1.0/groups"),
            ("https://graph.microsoft.com?x=1", "/?x=1"),
            ("https://graph.microsoft.com", "/"),
        ] {
            assert_eq!(link_path_and_query(link), want, "{link}");
        }
    }

    #[test]
    fn query_values_are_encoded_and_keys_kept() {
        assert_eq!(encode_query_value("a b&c=d+e/f,g:h@i$j%k?l#m"), "a%20b%26c%3Dd%2Be/f,g:h@i$j%25k%3Fl%23m");
        assert_eq!(encode_query_value("é"), "%C3%A9");
        assert_eq!(encode_path_segment("03cq/x y@z"), "03cq%2Fx%20y%40z");
        assert_eq!(
            with_query("https://h/p", &[("customer", Some("my_customer")), ("pageToken", None), ("maxResults", Some("500"))]),
            "https://h/p?customer=my_customer&maxResults=500"
        );
        assert_eq!(with_query("https://h/p?a=1", &[("$select", Some("id,mail"))]), "https://h/p?a=1&$select=id,mail");
        assert_eq!(redact_query("https://h/p?token=s"), "https://h/p?…");
    }

    #[test]
    fn bodies_are_json_when_they_parse() {
        assert_eq!(body_from_bytes(br#"{"a":1}"#.to_vec()), Body::Json(json!({"a": 1})));
        assert_eq!(body_from_bytes(b"<html>".to_vec()), Body::Bytes(b"<html>".to_vec()));
        assert_eq!(body_from_bytes(b"  ".to_vec()), Body::Bytes(b"  ".to_vec()));
        let r = Response { status: 200, headers: vec![], body: Body::Bytes(b"oops".to_vec()) };
        let e = r.into_json("Graph users.delta").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Upstream);
        assert!(e.message.contains("Graph users.delta answered HTTP 200 with a body that is not JSON"), "{}", e.message);
        let r = Response::json(200, json!([])).with_header("Retry-After", "5");
        assert_eq!((r.header("retry-after"), r.header("RETRY-AFTER"), r.header("x")), (Some("5"), Some("5"), None));
    }

    #[test]
    fn idp_error_messages_in_every_known_shape() {
        let google = json!({"error": {"code": 403, "message": "Not Authorized to access this resource/api", "status": "PERMISSION_DENIED", "errors": [{"reason": "forbidden"}]}});
        assert_eq!(idp_error_message(&google).unwrap(), "PERMISSION_DENIED: Not Authorized to access this resource/api");
        let graph = json!({"error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges to complete the operation.", "innerError": {}}});
        assert_eq!(idp_error_message(&graph).unwrap(), "Authorization_RequestDenied: Insufficient privileges to complete the operation.");
        let google_numeric_only = json!({"error": {"code": 400, "message": "Invalid Input"}});
        assert_eq!(idp_error_message(&google_numeric_only).unwrap(), "Invalid Input");
        let oauth = json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."});
        assert_eq!(idp_error_message(&oauth).unwrap(), "invalid_grant: Invalid JWT Signature.");
        assert_eq!(idp_error_message(&json!({"error": "unauthorized_client"})).unwrap(), "unauthorized_client");
        assert_eq!(idp_error_message(&json!({"errorSummary": "Not found"})).unwrap(), "Not found");
        assert_eq!(idp_error_message(&json!({"message": "m"})).unwrap(), "m");
        assert_eq!(idp_error_message(&json!({"detail": "d", "status": "400"})).unwrap(), "d");
        assert_eq!(idp_error_message(&json!({"users": []})), None);
        assert_eq!(idp_error_message(&json!([1])), None);
        let long = json!({"message": "é".repeat(400)});
        let m = idp_error_message(&long).unwrap();
        assert!(m.len() <= MAX_MESSAGE_BYTES + '…'.len_utf8() && m.ends_with('…'), "{}", m.len());
    }

    #[test]
    fn non_2xx_answers_become_upstream_errors_with_what_the_admin_needs() {
        let throttled = Response::json(429, json!({"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}))
            .with_header("retry-after", "30");
        let e = check("Admin SDK users.list", throttled).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Upstream);
        assert_eq!(e.message, "Admin SDK users.list answered HTTP 429: RESOURCE_EXHAUSTED: Quota exceeded (throttled; Retry-After: 30)");
        let unavailable = Response { status: 503, headers: vec![], body: Body::Bytes(b"Service Unavailable".to_vec()) };
        let e = upstream_error("Graph", &unavailable);
        assert_eq!(e.message, "Graph answered HTTP 503: Service Unavailable (throttled (no Retry-After))");
        let html = Response { status: 502, headers: vec![], body: Body::Bytes(b"<html>bad gateway</html>".to_vec()) };
        assert_eq!(upstream_error("Graph", &html).message, "Graph answered HTTP 502 (the IdP's API failed; the host retries)");
        let e = upstream_error("Graph", &Response::json(401, json!({"error": {"code": "InvalidAuthenticationToken", "message": "Access token has expired."}})));
        assert!(e.message.contains("HTTP 401: InvalidAuthenticationToken: Access token has expired. (the IdP refused the credential"), "{}", e.message);
        assert!(upstream_error("x", &Response::json(403, json!({}))).message.contains("lacks a permission or scope"));
        let ok = check("x", Response::json(204, json!(null))).unwrap();
        assert_eq!(ok.status, 204);
    }

    #[test]
    fn get_json_refuses_to_call_out_natively() {
        let e = get_json("https://graph.microsoft.com/v1.0/users?$skiptoken=secret").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Internal);
        assert!(e.message.contains("graph.microsoft.com/v1.0/users") && !e.message.contains("secret"), "{}", e.message);
        assert_eq!(get_json("nope").unwrap_err().kind, ErrorKind::Internal);
    }
}
