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
//! | `steal`  | `normalize` answers a GET with query parameter `victim=ID` with `delete(ID)` (other requests as `ok`): the host must refuse an operation the request's method does not allow |
//! | `forge`  | `render` answers the resource with forged host-owned fields (`id` kept): `meta`, `schemas`, `userName`, `displayName`, `active`, `externalId`, `groups`, `members` |
//! | `egress` | GETs config `url` through `wasi:http/outgoing-handler` and answers with `{"status":..,"body":..,"headers":{..}}`; an outgoing-handler error becomes connector-error `upstream` with its Debug text |
//! | `leak`   | starts config `requests` (default 8) GETs of `url` at once, waits for every response head, then leaks the responses and their unread bodies (never drops them) and answers `{"leaked":N}` |
//! | `fields` | creates config `fields` (default 1000) `wasi:http` fields, each with one header of `header_bytes` (default 1024) bytes, and never drops them; answers `{"created":N}` |
//! | `ops`    | `normalize` answers one PATCH of config `ops` (default 900000) empty patch operations; other exports behave as `ok` |
//! | `log`    | writes config `message` to the host log `log_lines` (default 1) times, then behaves as `ok` |
//! | `error`  | `normalize` returns the connector-error of config `kind` (`invalid-request`, `unsupported`, `upstream`, `config`, `internal`; default `internal`) with message `hostile: <kind>` and the optional `scimType` config `scim_type`; other exports behave as `ok` |
//! | `render_fail` | `normalize` behaves as `ok`; `render` traps (a write must then not be committed) |
//! | `small`  | behaves as `ok`, except that `render` of a resource longer than config `max_bytes` (default 4096) bytes fails with an `internal` error naming the size: shows what crossed the sandbox |
//!
//! | `schemas_trap` | `schemas.extensions` panics (every other export behaves as `ok`): binding the connection must fail, naming the trap |
//! | `schemas_bad` | `schemas.extensions` declares a user extension whose attribute has an unknown type `colour` |
//!
//! `directory-pull.pull` behaves as `directory-sync.pull`: an empty `full` page that ends the
//! pass, or the mode's payload as its `next` cursor.
//!
//! `schemas.extensions` misbehaves only in the two `schemas_*` modes (it runs when a connection
//! is bound, before any other call), answering no extensions otherwise;
//! `diagnostics.test-connection` goes through [`misbehave`] like the other exports and answers
//! one `config` check, failed when config `check` is `fail`.
//!
//! Any other `mode` is a `config` error. `describe` is unaffected by `mode` and declares
//! `egress-hosts = ["127.0.0.1", "localhost"]`.

use idplex_connector_sdk::provisioning::{ListQuery, Operation, ScimRequest};
use idplex_connector_sdk::serde_json::json;
use idplex_connector_sdk::{
    CanonicalUser, ConnectorError, Json, ResourceKind, config, diagnostics, directory_pull, directory_sync,
    export_connector, metadata, provisioning, schemas, scim_reads, sso,
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
        "ok" | "schemas_trap" | "schemas_bad" => Ok(Outcome::Normal),
        "count" => Ok(Outcome::Payload(count_call())),
        "trap" => panic!("hostile connector: mode=trap"),
        "loop" => spin_forever(),
        "oom" => exhaust_memory(),
        "huge" => Ok(Outcome::Payload(huge_json()?)),
        "egress" => Ok(Outcome::Payload(egress()?)),
        "steal" | "forge" => Ok(Outcome::Normal),
        "leak" => Ok(Outcome::Payload(sandbox::leak()?)),
        "fields" => Ok(Outcome::Payload(sandbox::fields()?)),
        "ops" | "render_fail" | "small" => Ok(Outcome::Normal),
        "error" => Err(chosen_error()),
        "log" => {
            sandbox::log_lines()?;
            Ok(Outcome::Normal)
        }
        other => Err(ConnectorError::config(format!(
            "config key `mode` must be one of ok, count, trap, loop, oom, huge, egress, leak, fields, ops, log, steal, forge, error, render_fail, small; got `{other}`"
        ))),
    }
}

/// `error`: the connector-error config `kind` names, with config `scim_type` as its `scimType`.
fn chosen_error() -> ConnectorError {
    use idplex_connector_sdk::ErrorKind;
    let kind = config::get("kind").unwrap_or_else(|| "internal".to_string());
    let error_kind = match kind.as_str() {
        "invalid-request" => ErrorKind::InvalidRequest,
        "unsupported" => ErrorKind::Unsupported,
        "upstream" => ErrorKind::Upstream,
        "config" => ErrorKind::Config,
        "internal" => ErrorKind::Internal,
        other => return ConnectorError::config(format!("config key `kind` names no error kind: `{other}`")),
    };
    let error = ConnectorError::new(error_kind, format!("hostile: {kind}"));
    match config::get("scim_type") {
        Some(t) => error.with_scim_type(t),
        None => error,
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
    let headers: idplex_connector_sdk::serde_json::Map<String, idplex_connector_sdk::serde_json::Value> = response
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned().into()))
        .collect();
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
    Ok(json!({ "status": status, "body": String::from_utf8_lossy(&body), "headers": headers }).to_string())
}

/// `resource` with every host-owned field forged (its `id` kept, so the host cannot tell by id).
fn forged(resource: &str) -> Json {
    let mut v: idplex_connector_sdk::serde_json::Value =
        idplex_connector_sdk::serde_json::from_str(resource).unwrap_or_else(|_| json!({}));
    let id = v.get("id").cloned();
    v["schemas"] = json!(["urn:forged"]);
    v["meta"] = json!({"resourceType": "Forged", "version": "W/\"999999\"", "location": "https://attacker.example/x", "created": "1970-01-01T00:00:00Z", "lastModified": "1970-01-01T00:00:00Z"});
    v["userName"] = json!("root@forged");
    v["displayName"] = json!("Forged");
    v["active"] = json!(true);
    v["externalId"] = json!("forged");
    v["groups"] = json!([{"value": "admins", "display": "Administrators"}]);
    v["members"] = json!([{"value": "intruder"}]);
    if let Some(id) = id {
        v["id"] = id;
    }
    v.to_string()
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
                    "mode": { "enum": ["ok", "count", "trap", "loop", "oom", "huge", "egress", "leak", "fields", "ops", "log", "steal", "forge", "error", "render_fail", "small", "schemas_trap", "schemas_bad"] },
                    "kind": { "enum": ["invalid-request", "unsupported", "upstream", "config", "internal"] },
                    "scim_type": { "type": "string" },
                    "max_bytes": { "type": "string", "pattern": "^[0-9]+$" },
                    "url": { "type": "string" },
                    "huge_bytes": { "type": "string", "pattern": "^[0-9]+$" },
                    "check": { "enum": ["pass", "fail"] }
                }
            })
            .to_string(),
            egress_hosts: EGRESS_HOSTS.iter().map(|h| h.to_string()).collect(),
        }
    }
}

impl provisioning::Guest for Hostile {
    fn normalize(request: ScimRequest) -> Result<Vec<Operation>, ConnectorError> {
        if config::get("mode").as_deref() == Some("ops") {
            return Ok(vec![sandbox::many_ops()?]);
        }
        if let Outcome::Payload(p) = misbehave()? {
            return Ok(vec![Operation::Create(p)]);
        }
        if config::get("mode").as_deref() == Some("steal")
            && request.method == "GET"
            && let Some((_, victim)) = request.query.iter().find(|(k, _)| k == "victim")
        {
            return Ok(vec![Operation::Delete(victim.clone())]);
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
        match config::get("mode").as_deref() {
            Some("forge") => return Ok(forged(&resource)),
            Some("render_fail") => panic!("hostile connector: mode=render_fail"),
            Some("small") => {
                let max = match config::get("max_bytes") {
                    None => 4096,
                    Some(v) => v.trim().parse().map_err(|_| {
                        ConnectorError::config(format!("config key `max_bytes` must be an integer, got `{v}`"))
                    })?,
                };
                if resource.len() > max {
                    return Err(ConnectorError::internal(format!(
                        "render received {} bytes, more than max_bytes {max}",
                        resource.len()
                    )));
                }
            }
            _ => {}
        }
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

impl directory_pull::Guest for Hostile {
    /// As `directory_sync::pull`: an empty full page ending the pass, or the mode's payload as
    /// its `next` cursor.
    fn pull(_request: directory_pull::PullRequest) -> Result<directory_pull::PullPage, ConnectorError> {
        let mut page = directory_pull::PullPage::new(directory_pull::PassKind::Full);
        if let Outcome::Payload(p) = misbehave()? {
            page.next = Some(p);
        }
        Ok(page)
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

impl schemas::Guest for Hostile {
    fn extensions() -> Result<Vec<schemas::SchemaExtension>, ConnectorError> {
        match config::get("mode").as_deref() {
            Some("schemas_trap") => panic!("hostile connector: mode=schemas_trap"),
            Some("schemas_bad") => Ok(vec![schemas::SchemaExtension {
                id: "urn:example:hostile:2.0:User".to_string(),
                resource: ResourceKind::User,
                required: false,
                definition: json!({"attributes": [{"name": "hue", "type": "colour"}]}).to_string(),
            }]),
            _ => Ok(Vec::new()),
        }
    }
}

impl diagnostics::Guest for Hostile {
    fn test_connection() -> Result<Vec<diagnostics::Check>, ConnectorError> {
        misbehave()?;
        let outcome = match config::get("check").as_deref() {
            Some("fail") => Err(ConnectorError::config("hostile: asked to fail")),
            _ => Ok("hostile: mode is usable".to_string()),
        };
        Ok(vec![diagnostics::check("config", outcome)])
    }
}

impl scim_reads::Guest for Hostile {
    /// None: every `GET` goes through `normalize`, where the modes misbehave.
    fn as_sent() -> Vec<ResourceKind> {
        Vec::new()
    }
}

export_connector!(Hostile);

/// The modes that attack the host's per-call sandbox state (host resources, sockets, output
/// accounting, the log).
mod sandbox {
    use idplex_connector_sdk::provisioning::{Operation, PatchOpKind, PatchOperation};
    use idplex_connector_sdk::{ConnectorError, Json, config, log};

    fn number(key: &str, default: usize) -> Result<usize, ConnectorError> {
        match config::get(key) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|_| {
                ConnectorError::config(format!("config key `{key}` must be an integer, got `{v}`"))
            }),
        }
    }

    /// `leak`: N requests in flight at once, their responses and bodies never dropped.
    pub fn leak() -> Result<Json, ConnectorError> {
        use wasip2::http::outgoing_handler;
        use wasip2::http::types::{Fields, Method, OutgoingRequest, Scheme};

        let url = config::require("url")?;
        let n = number("requests", 8)?;
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| ConnectorError::config("config key `url` must start with http://"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let upstream = |e: &dyn std::fmt::Debug| ConnectorError::upstream(format!("{e:?}"));
        let mut pending = Vec::new();
        for _ in 0..n {
            let request = OutgoingRequest::new(Fields::new());
            let _ = request.set_method(&Method::Get);
            let _ = request.set_scheme(Some(&Scheme::Http));
            let _ = request.set_authority(Some(authority));
            let _ = request.set_path_with_query(Some(path));
            pending.push(outgoing_handler::handle(request, None).map_err(|e| upstream(&e))?);
        }
        for future in &pending {
            let response = loop {
                match future.get() {
                    Some(Ok(Ok(response))) => break response,
                    Some(Ok(Err(code))) => return Err(upstream(&code)),
                    Some(Err(())) => return Err(ConnectorError::internal("response already taken")),
                    None => future.subscribe().block(),
                }
            };
            let body = response.consume().map_err(|e| upstream(&e))?;
            let stream = body.stream().map_err(|e| upstream(&e))?;
            // Never dropped: the host must close these when the call ends.
            std::mem::forget(stream);
            std::mem::forget(body);
            std::mem::forget(response);
        }
        std::mem::forget(pending);
        Ok(format!("{{\"leaked\":{n}}}"))
    }

    /// `fields`: many header maps, each with one large header, never dropped.
    pub fn fields() -> Result<Json, ConnectorError> {
        use wasip2::http::types::Fields;
        let n = number("fields", 1000)?;
        let value = vec![b'a'; number("header_bytes", 1024)?];
        for i in 0..n {
            let fields = Fields::new();
            fields
                .append("x-pad", &value)
                .map_err(|e| ConnectorError::upstream(format!("fields #{i}: {e:?}")))?;
            std::mem::forget(fields);
        }
        Ok(format!("{{\"created\":{n}}}"))
    }

    /// `ops`: one PATCH with many empty operations.
    pub fn many_ops() -> Result<Operation, ConnectorError> {
        let n = number("ops", 900_000)?;
        let op = PatchOperation { op: PatchOpKind::Remove, path: None, value: None };
        Ok(Operation::Patch(("u1".to_string(), vec![op; n])))
    }

    /// `log`: config `message`, `log_lines` times.
    pub fn log_lines() -> Result<(), ConnectorError> {
        let message = config::get("message").unwrap_or_default();
        for _ in 0..number("log_lines", 1)? {
            log::warn(&message);
        }
        Ok(())
    }
}
