//! `hostile`: a **test fixture**, not a connector. It exists so the host's test suite can prove
//! that the sandbox contains a misbehaving guest. It is never bundled as first-party and must
//! never be installed in a real deployment.
//!
//! Every export except `describe` first calls [`misbehave`], which reads the config key `mode`
//! *at call time* and:
//!
//! | `mode`   | effect |
//! |----------|--------|
//! | `ok` (or unset) | nothing: the export answers with a trivial passthrough result |
//! | `count`  | answers `{"calls":N}`, N the calls this instance served (shows instance reuse); `render` of the JSON string `"trap"` then traps, of `"garbage"` answers invalid JSON |
//! | `trap`   | panics; with `panic = "abort"` that is a Wasm trap |
//! | `loop`   | spins forever (a `black_box` counter the optimizer cannot remove) → deadline |
//! | `oom`    | allocates and touches 1 MiB chunks forever → memory cap (or trap at 4 GiB) |
//! | `huge`   | answers with a JSON string of `huge_bytes` bytes (default 100 MiB) → output cap |
//! | `egress` | GETs config `url` through `wasi:http/outgoing-handler` and answers with `{"status":..,"body":..}`; an outgoing-handler error becomes connector-error `upstream` with its Debug text |
//!
//! Any other `mode` is a `config` error. `describe` is unaffected by `mode` and declares
//! `egress-hosts = ["127.0.0.1", "localhost"]`.

use idplex_connector_sdk::provisioning::{ListQuery, Operation, ScimRequest};
use idplex_connector_sdk::serde_json::json;
use idplex_connector_sdk::{
    CanonicalUser, ConnectorError, Json, ResourceKind, config, directory_sync, export_connector,
    metadata, provisioning, sso,
};

/// Hosts declared in `describe().egress_hosts` (fixed at compile time).
const EGRESS_HOSTS: &[&str] = &["127.0.0.1", "localhost"];

/// Default size of the `huge` answer: 100 MiB of payload.
const HUGE_DEFAULT: usize = 100 * 1024 * 1024;

/// What an export should do after [`misbehave`] returned.
enum Outcome {
    /// `mode=ok`: produce the export's normal (trivial) result.
    Normal,
    /// `mode=huge`/`egress`: answer with this JSON text wherever the export can carry it.
    Payload(Json),
}

/// The single mode dispatch used by every export.
fn misbehave() -> Result<Outcome, ConnectorError> {
    let mode = config::get("mode").unwrap_or_else(|| "ok".to_string());
    match mode.as_str() {
        "ok" => Ok(Outcome::Normal),
        "count" => Ok(Outcome::Payload(count_call())),
        "trap" => panic!("hostile connector: mode=trap"),
        "loop" => spin_forever(),
        "oom" => exhaust_memory(),
        "huge" => Ok(Outcome::Payload(huge_json()?)),
        "egress" => Ok(Outcome::Payload(egress()?)),
        other => Err(ConnectorError::config(format!(
            "config key `mode` must be one of ok, count, trap, loop, oom, huge, egress; got `{other}`"
        ))),
    }
}

/// `{"calls":N}`: how many calls this instance has served, this one included. Shows the host
/// whether calls share an instance (guest state lives exactly as long as its instance).
fn count_call() -> Json {
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
    format!("{{\"calls\":{n}}}")
}

/// Never returns; the counter goes through `black_box` so the loop has an observable effect.
fn spin_forever() -> ! {
    let mut counter: u64 = 0;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

/// Allocates 1 MiB chunks, writing to every page so the memory is really used, until the
/// allocator fails (which aborts = traps) or the host stops the instance.
fn exhaust_memory() -> ! {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = Vec::<u8>::with_capacity(1 << 20);
        for i in (0..chunk.capacity()).step_by(4096) {
            chunk.push((i & 0xff) as u8);
        }
        chunk.resize(1 << 20, 1);
        chunks.push(std::hint::black_box(chunk));
    }
}

/// A JSON string literal of `huge_bytes` (config, default 100 MiB) `a`s: valid JSON, far too big.
fn huge_json() -> Result<Json, ConnectorError> {
    let n = match config::get("huge_bytes") {
        None => HUGE_DEFAULT,
        Some(v) => v.trim().parse().map_err(|_| {
            ConnectorError::config(format!("config key `huge_bytes` must be an integer, got `{v}`"))
        })?,
    };
    let mut s = String::with_capacity(n + 2);
    s.push('"');
    s.extend(std::iter::repeat_n('a', n));
    s.push('"');
    Ok(s)
}

/// GETs config `url` via `wasi:http/outgoing-handler`; answers `{"status":N,"body":"..."}`.
fn egress() -> Result<Json, ConnectorError> {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{Fields, Method, OutgoingRequest, Scheme};
    use wasip2::io::streams::StreamError;

    let url = config::require("url")?;
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| ConnectorError::config(format!("config key `url` is not a URL: `{url}`")))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_string()),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    let upstream = |what: &str, e: &dyn std::fmt::Debug| {
        ConnectorError::upstream(format!("{what}: {e:?}"))
    };

    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_method(&Method::Get);
    let _ = request.set_scheme(Some(&scheme));
    request
        .set_authority(Some(authority))
        .map_err(|e| upstream("invalid authority", &e))?;
    request
        .set_path_with_query(Some(&path))
        .map_err(|e| upstream("invalid path", &e))?;

    let pending = outgoing_handler::handle(request, None).map_err(|e| upstream("outgoing-handler", &e))?;
    let response = loop {
        match pending.get() {
            Some(Ok(Ok(response))) => break response,
            Some(Ok(Err(code))) => return Err(upstream("outgoing-handler", &code)),
            Some(Err(())) => return Err(ConnectorError::internal("response already taken")),
            None => pending.subscribe().block(),
        }
    };
    let status = response.status();
    let mut body = Vec::new();
    {
        let incoming = response
            .consume()
            .map_err(|e| upstream("response body", &e))?;
        {
            let stream = incoming.stream().map_err(|e| upstream("response body", &e))?;
            loop {
                match stream.blocking_read(64 * 1024) {
                    Ok(chunk) => body.extend_from_slice(&chunk),
                    Err(StreamError::Closed) => break,
                    Err(e) => return Err(upstream("reading response body", &e)),
                }
            }
        }
        drop(wasip2::http::types::IncomingBody::finish(incoming));
    }
    Ok(json!({ "status": status, "body": String::from_utf8_lossy(&body) }).to_string())
}

/// The fixture; every export goes through [`misbehave`] except `describe`.
struct Hostile;

impl metadata::Guest for Hostile {
    fn describe() -> metadata::ConnectorInfo {
        metadata::ConnectorInfo {
            name: "hostile".to_string(),
            vendor: "idplex".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "TEST FIXTURE: misbehaves on purpose according to config `mode`."
                .to_string(),
            capabilities: vec![
                metadata::Capability::Provisioning,
                metadata::Capability::DirectorySync,
                metadata::Capability::Sso,
            ],
            config_schema: json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "properties": {
                    // Any string: an unknown mode is the connector's own `config` error.
                    "mode": { "type": "string" },
                    "url": { "type": "string" },
                    "huge_bytes": { "type": "string", "pattern": "^[0-9]+$" }
                }
            })
            .to_string(),
            egress_hosts: EGRESS_HOSTS.iter().map(|h| h.to_string()).collect(),
        }
    }
}

impl provisioning::Guest for Hostile {
    fn normalize(request: ScimRequest) -> Result<Vec<Operation>, ConnectorError> {
        if let Outcome::Payload(p) = misbehave()? {
            return Ok(vec![Operation::Create(p)]);
        }
        let op = match (request.method.as_str(), request.id) {
            ("POST", _) => Operation::Create(request.body.unwrap_or_else(|| "{}".into())),
            ("PUT", Some(id)) => Operation::Replace((id, request.body.unwrap_or_else(|| "{}".into()))),
            ("PATCH", Some(id)) => Operation::Patch((id, Vec::new())),
            ("DELETE", Some(id)) => Operation::Delete(id),
            ("GET", Some(id)) => Operation::Get(id),
            ("GET", None) => Operation::Query(ListQuery {
                filter: None,
                start_index: None,
                count: None,
                sort_by: None,
                sort_descending: false,
                attributes: Vec::new(),
                excluded_attributes: Vec::new(),
            }),
            (m, _) => return Err(ConnectorError::unsupported(format!("hostile: {m} not handled"))),
        };
        Ok(vec![op])
    }

    fn render(_kind: ResourceKind, resource: Json) -> Result<Json, ConnectorError> {
        // In `count` mode, rendering the JSON string "trap" traps, and "garbage" answers text
        // that is not JSON (after counting the call).
        let trap = resource == "\"trap\"";
        let garbage = resource == "\"garbage\"";
        Ok(match misbehave()? {
            Outcome::Payload(_) if trap => panic!("hostile connector: asked to trap"),
            Outcome::Payload(_) if garbage => "{not json".to_string(),
            Outcome::Payload(p) => p,
            Outcome::Normal => resource,
        })
    }
}

impl directory_sync::Guest for Hostile {
    fn pull(_cursor: Option<String>) -> Result<directory_sync::SyncPage, ConnectorError> {
        let payload = match misbehave()? {
            Outcome::Payload(p) => Some(p),
            Outcome::Normal => None,
        };
        Ok(directory_sync::SyncPage {
            users: Vec::new(),
            groups: Vec::new(),
            removed_users: Vec::new(),
            removed_groups: Vec::new(),
            next_cursor: payload,
        })
    }
}

impl sso::Guest for Hostile {
    fn map_assertion(assertion: sso::VerifiedAssertion) -> Result<sso::SsoIdentity, ConnectorError> {
        let display_name = match misbehave()? {
            Outcome::Payload(p) => Some(p),
            Outcome::Normal => None,
        };
        Ok(sso::SsoIdentity {
            user: CanonicalUser {
                external_id: None,
                user_name: assertion.name_id,
                given_name: None,
                family_name: None,
                display_name,
                emails: Vec::new(),
                active: true,
                groups: Vec::new(),
                attributes: Vec::new(),
            },
            groups: Vec::new(),
        })
    }
}

export_connector!(Hostile);
