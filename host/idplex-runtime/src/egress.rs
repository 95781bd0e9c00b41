//! Outbound HTTP for connectors: `wasi:http/outgoing-handler`, with the host deciding per request.
//!
//! A request goes out only if its destination is listed both in the connector's own
//! `egress-hosts` and in the admin's allow-list for the connection. The host then attaches the
//! connection's credential itself; a connector can neither read nor set `Authorization`.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use http::header::AUTHORIZATION;
use http_body_util::BodyExt;
use wasmtime_wasi_http::{
    DEFAULT_FORBIDDEN_HEADERS, Error as HttpError, ForbiddenHeaderFilter, RequestOptions,
    WasiBody, WasiHttpHooks,
};

/// A secret the host adds to allowed egress requests, e.g. `Authorization: Bearer …`.
#[derive(Clone)]
pub struct Credential {
    /// Header name, e.g. `authorization`.
    pub header: HeaderName,
    /// Header value. Never logged, never shown to the connector.
    pub value: http::HeaderValue,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({}: <redacted>)", self.header)
    }
}

/// Where one connection's connector may send HTTP requests.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    /// Destinations allowed: the intersection of what the connector declared and what the admin
    /// allowed. Entries are `host` (any port) or `host:port`, lower case.
    allowed: Vec<String>,
    /// Attached to every allowed request.
    credential: Option<Credential>,
    /// Most requests one call may make.
    max_requests_per_call: u32,
}

impl EgressPolicy {
    /// No egress at all.
    pub fn deny_all() -> Self {
        EgressPolicy { allowed: Vec::new(), credential: None, max_requests_per_call: 0 }
    }

    /// Allow what both lists name; attach `credential` to those requests.
    pub fn new(declared: &[String], admin_allowed: &[String], credential: Option<Credential>) -> Self {
        let norm = |s: &String| s.trim().to_ascii_lowercase();
        let admin: Vec<String> = admin_allowed.iter().map(norm).collect();
        let allowed = declared
            .iter()
            .map(norm)
            .filter(|d| admin.iter().any(|a| a == d))
            .collect();
        EgressPolicy { allowed, credential, max_requests_per_call: 64 }
    }

    /// The effective allow-list, for error messages and the admin console.
    pub fn allowed(&self) -> &[String] {
        &self.allowed
    }

    /// Whether `host` (with `port`) may be reached.
    pub fn allows(&self, host: &str, port: Option<u16>) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        self.allowed.iter().any(|entry| match entry.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => {
                h.trim_start_matches('[').trim_end_matches(']') == host
                    && port.map(|port| port.to_string()) == Some(p.to_string())
            }
            _ => entry.trim_start_matches('[').trim_end_matches(']') == host,
        })
    }
}

/// Per-call egress state: the policy and what the connector tried.
pub(crate) struct EgressHooks {
    pub(crate) policy: Arc<EgressPolicy>,
    /// The first destination refused during this call; a refusal fails the whole call.
    pub(crate) denied: Option<String>,
    pub(crate) requests: u32,
    pub(crate) deadline: Duration,
}

impl WasiHttpHooks for EgressHooks {
    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        Arc::new(|name| *name == AUTHORIZATION || DEFAULT_FORBIDDEN_HEADERS.contains(name))
    }

    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                    ),
                    HttpError,
                >,
            > + Send,
    > {
        drop(fut);
        let uri = request.uri();
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri.port_u16();
        self.requests += 1;
        if self.requests > self.policy.max_requests_per_call {
            self.denied.get_or_insert_with(|| {
                format!("{host} (more than {} requests in one call)", self.policy.max_requests_per_call)
            });
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        if !self.policy.allows(&host, port) {
            let dest = match port {
                Some(p) => format!("{host}:{p}"),
                None => host,
            };
            self.denied.get_or_insert(dest);
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        if let Some(c) = &self.policy.credential {
            request.headers_mut().insert(c.header.clone(), c.value.clone());
        }
        let cap = |d: Option<Duration>| Some(d.map_or(self.deadline, |d| d.min(self.deadline)));
        let options = RequestOptions {
            connect_timeout: cap(options.as_ref().and_then(|o| o.connect_timeout)),
            first_byte_timeout: cap(options.as_ref().and_then(|o| o.first_byte_timeout)),
            between_bytes_timeout: cap(options.as_ref().and_then(|o| o.between_bytes_timeout)),
        };
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hosts_both_sides_name_are_allowed() {
        let p = EgressPolicy::new(
            &["api.okta.com".into(), "127.0.0.1:8080".into(), "evil.example".into()],
            &["API.okta.com".into(), "127.0.0.1:8080".into()],
            None,
        );
        assert!(p.allows("api.okta.com", Some(443)));
        assert!(p.allows("api.okta.com", None));
        assert!(p.allows("127.0.0.1", Some(8080)));
        assert!(!p.allows("127.0.0.1", Some(8081)));
        assert!(!p.allows("evil.example", None), "declared but not allowed by the admin");
        assert!(!p.allows("other.okta.com", None));
        assert!(!EgressPolicy::deny_all().allows("api.okta.com", None));
    }
}
