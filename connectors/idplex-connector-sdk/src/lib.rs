//! # idplex connector SDK
//!
//! Everything a Rust crate needs to become an idplex *connector*: the bindings of the WIT world
//! `idplex:connector/connector@1.3.0` (generated once, here, from the copy of the contract this
//! crate carries, `wit/connector.wit`, so it builds as a `path` or `git` dependency from
//! anywhere), the
//! [`export_connector!`] macro that wires a type implementing the export traits into the
//! component's exports, and a few helpers for the chores every connector repeats (logging,
//! reading config, building [`ConnectorError`]s, parsing JSON), plus the generic RFC 7644 SCIM
//! dialect as building blocks ([`scim_dialect`]) and the config-driven SAML claim mapping
//! ([`saml_mapping`]) that the first-party connectors compose with their IdP's quirks, outbound
//! HTTP for connectors that call their IdP's API ([`http`], used by [`directory_pull`]), and
//! helpers for their native unit tests ([`testing`]).
//!
//! A connector is a `cdylib` crate that depends on this SDK and does:
//!
//! ```ignore
//! use idplex_connector_sdk::{export_connector, metadata, provisioning, directory_sync, sso};
//!
//! struct MyConnector;
//! impl metadata::Guest for MyConnector { /* describe() */ }
//! impl provisioning::Guest for MyConnector { /* normalize(), render() */ }
//! impl directory_sync::Guest for MyConnector { /* pull(): the 1.0 form */ }
//! impl sso::Guest for MyConnector { /* map_assertion() */ }
//! impl schemas::Guest for MyConnector { /* extensions(): Ok(vec![]) if none (contract 1.1) */ }
//! impl diagnostics::Guest for MyConnector { /* test_connection() (contract 1.1) */ }
//! impl directory_pull::Guest for MyConnector { /* pull(request): passes (contract 1.2) */ }
//! impl scim_reads::Guest for MyConnector { /* as_sent(): GETs the host decodes (contract 1.3) */ }
//!
//! export_connector!(MyConnector);
//! ```
//!
//! then builds with `cargo build --release --target wasm32-unknown-unknown` and turns the core
//! module into a component (see the crate's `README.md`).
//!
//! Native tests (`cargo test`) call the same `Guest` functions under a [`testing::MockHost`],
//! which answers the host imports (config, log, clock, egress) for the test's thread. In the
//! sandbox a panic is logged to the host, with its message and location, by the
//! [`panic_hook`] that [`export_connector!`] installs, before the instance traps.
//!
//! A connector that does not pull answers `directory_pull::pull` with
//! `Err(ConnectorError::unsupported_capability("my-idp", "directory-sync"))`, like
//! `directory_sync::pull`, and leaves `directory-sync` out of its capabilities.
#![warn(missing_docs)]

/// Raw output of `wit_bindgen::generate!` for the `connector` world. Prefer the re-exports at
/// the crate root ([`types`], [`metadata`], [`provisioning`], ...); this module exists because
/// the generated export macro refers to it by path.
#[doc(hidden)]
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "connector",
        // The copy of the contract inside this crate (`wit/connector.wit`), so the SDK builds
        // wherever it is checked out; the host's `sdk_wit` test keeps it equal to `wit/`.
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "export_connector",
        default_bindings_module: "idplex_connector_sdk::bindings",
        generate_all,
    });
}

/// Exports a connector type to the host.
///
/// `export_connector!(MyConnector);` generates the component's export functions for every
/// interface the `connector` world exports (`metadata`, `provisioning`, `directory-sync`, `sso`,
/// `schemas`, `diagnostics`, `directory-pull`) and forwards them to the `Guest` trait impls of
/// `MyConnector`. Invoke it exactly once, in the `cdylib` crate.
///
/// Every export first installs the SDK's [`panic_hook`] (once per instance), so a panic in the
/// connector reaches the host's log, and the error the admin sees, with its message and location
/// before the instance traps.
///
/// Native tests call the `Guest` impls directly (`<MyConnector as provisioning::Guest>::normalize(..)`),
/// under a [`testing::MockHost`] for the imports; the export functions only run in the sandbox.
#[macro_export]
macro_rules! export_connector {
    ($ty:ty) => {
        const _: () = {
            /// The type the component exports: it forwards every call to the connector type's
            /// `Guest` impls, after installing the SDK's panic hook.
            struct __IdplexConnectorExports;

            impl $crate::metadata::Guest for __IdplexConnectorExports {
                fn describe() -> $crate::metadata::ConnectorInfo {
                    $crate::panic_hook::install();
                    <$ty as $crate::metadata::Guest>::describe()
                }
            }
            impl $crate::provisioning::Guest for __IdplexConnectorExports {
                fn normalize(
                    request: $crate::provisioning::ScimRequest,
                ) -> ::core::result::Result<$crate::__private::Vec<$crate::provisioning::Operation>, $crate::ConnectorError> {
                    $crate::panic_hook::install();
                    <$ty as $crate::provisioning::Guest>::normalize(request)
                }
                fn render(
                    kind: $crate::ResourceKind,
                    resource: $crate::Json,
                ) -> ::core::result::Result<$crate::Json, $crate::ConnectorError> {
                    $crate::panic_hook::install();
                    <$ty as $crate::provisioning::Guest>::render(kind, resource)
                }
            }
            impl $crate::directory_sync::Guest for __IdplexConnectorExports {
                fn pull(
                    cursor: ::core::option::Option<$crate::__private::String>,
                ) -> ::core::result::Result<$crate::directory_sync::SyncPage, $crate::ConnectorError> {
                    $crate::panic_hook::install();
                    <$ty as $crate::directory_sync::Guest>::pull(cursor)
                }
            }
            impl $crate::sso::Guest for __IdplexConnectorExports {
                fn map_assertion(
                    assertion: $crate::sso::VerifiedAssertion,
                ) -> ::core::result::Result<$crate::sso::SsoIdentity, $crate::ConnectorError> {
                    $crate::panic_hook::install();
                    <$ty as $crate::sso::Guest>::map_assertion(assertion)
                }
            }
            impl $crate::schemas::Guest for __IdplexConnectorExports {
                fn extensions(
                ) -> ::core::result::Result<$crate::__private::Vec<$crate::schemas::SchemaExtension>, $crate::ConnectorError> {
                    $crate::panic_hook::install();
                    <$ty as $crate::schemas::Guest>::extensions()
                }
            }
            impl $crate::diagnostics::Guest for __IdplexConnectorExports {
                fn test_connection(
                ) -> ::core::result::Result<$crate::__private::Vec<$crate::diagnostics::Check>, $crate::ConnectorError> {
                    $crate::panic_hook::install();
                    <$ty as $crate::diagnostics::Guest>::test_connection()
                }
            }
            impl $crate::directory_pull::Guest for __IdplexConnectorExports {
                fn pull(
                    request: $crate::directory_pull::PullRequest,
                ) -> ::core::result::Result<$crate::directory_pull::PullPage, $crate::ConnectorError> {
                    $crate::panic_hook::install();
                    <$ty as $crate::directory_pull::Guest>::pull(request)
                }
            }
            impl $crate::scim_reads::Guest for __IdplexConnectorExports {
                fn as_sent() -> $crate::__private::Vec<$crate::ResourceKind> {
                    $crate::panic_hook::install();
                    <$ty as $crate::scim_reads::Guest>::as_sent()
                }
            }

            $crate::bindings::export_connector!(__IdplexConnectorExports with_types_in $crate::bindings);
        };
    };
}

/// What [`export_connector!`] expands to refers to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use std::string::String;
    pub use std::vec::Vec;
}

/// Re-export of `serde_json`, so connectors build JSON with the same version the SDK helpers use.
pub use serde_json;

/// Shared data types of the contract (`idplex:connector/types`).
pub mod types {
    pub use crate::bindings::idplex::connector::types::*;
}
pub use types::{
    CanonicalGroup, CanonicalUser, ConnectorError, Email, ErrorKind, Json, ResourceKind,
};

/// The `metadata` export: implement [`metadata::Guest`] to describe the connector.
pub mod metadata {
    pub use crate::bindings::exports::idplex::connector::metadata::*;

    /// `schema` (a connector's closed config schema, JSON text) that also admits the keys with
    /// which an admin configures the host's credential for the connection's egress: `secret.*`
    /// (never shown to the connector) and `credential.*` (the credential provider's settings,
    /// e.g. `credential.kind`), as `patternProperties`. For a connector that calls its IdP's API
    /// and keeps `additionalProperties: false`. Text that is not a JSON object is returned as is.
    pub fn with_credential_keys(schema: &str) -> String {
        let mut value: crate::serde_json::Value = match crate::serde_json::from_str(schema) {
            Ok(v @ crate::serde_json::Value::Object(_)) => v,
            _ => return schema.to_string(),
        };
        value["patternProperties"] = crate::serde_json::json!({
            "^secret\\.": {"type": "string", "description": "a secret of the host's credential for egress; never shown to the connector"},
            "^credential\\.": {"type": "string", "description": "a setting of the host's credential provider for egress"},
        });
        value.to_string()
    }
}

/// The `provisioning` export: implement [`provisioning::Guest`] to normalize inbound SCIM.
pub mod provisioning {
    pub use crate::bindings::exports::idplex::connector::provisioning::*;
}

/// The `scim-reads` export (contract 1.3): implement [`scim_reads::Guest`] to list the resource
/// kinds whose SCIM `GET` requests your IdP sends in plain RFC 7644. The host decodes those
/// itself (as [`scim_dialect::parse`] would) and does not call `normalize` for them: a sandbox
/// call saved on every lookup. Answer [`scim_reads::BOTH`] if your `normalize` hands `GET`s to
/// the generic dialect unchanged, `Vec::new()` if it rewrites anything in them (or has no
/// provisioning).
pub mod scim_reads {
    pub use crate::bindings::exports::idplex::connector::scim_reads::*;

    /// Both resource kinds: what a connector answers whose reads are all plain RFC 7644.
    pub const BOTH: [crate::ResourceKind; 2] = [crate::ResourceKind::User, crate::ResourceKind::Group];
}

/// The `directory-sync` export: implement [`directory_sync::Guest`] to pull from an IdP API.
pub mod directory_sync {
    pub use crate::bindings::exports::idplex::connector::directory_sync::*;
}

/// The `directory-pull` export (contract 1.2): implement [`directory_pull::Guest`] to pull
/// users, groups and memberships from the IdP's API in *passes* (full or delta), each page with a
/// cursor to the next and, on the last, the cursor the next pass resumes from.
///
/// Keep the logic in a plain function taking the cursor, an [`http::Fetch`]
/// and a config lookup, so native tests can feed it recorded pages
/// ([`crate::testing::FakeHttp`], [`crate::testing::run_pass`]); the `Guest` impl passes
/// `&mut http::get_json` and `&config::get`. All state lives in the cursor (an instance may be
/// fresh on every call): encode it compactly and check it with [`directory_pull::cursor`].
pub mod directory_pull {
    pub use crate::bindings::exports::idplex::connector::directory_pull::*;

    /// The largest cursor the host accepts (`pull-request.cursor`: "at most 8 KiB").
    pub const MAX_CURSOR_BYTES: usize = 8 * 1024;

    /// `cursor` if it fits in [`MAX_CURSOR_BYTES`], else an `upstream` error naming its size:
    /// the cursors of API-driven pulls carry the IdP's page tokens, whose size the IdP decides.
    pub fn cursor(cursor: String) -> Result<String, ConnectorError> {
        if cursor.len() <= MAX_CURSOR_BYTES {
            Ok(cursor)
        } else {
            Err(ConnectorError::upstream(format!(
                "the next cursor would be {} bytes, more than the {MAX_CURSOR_BYTES} bytes a cursor may have (the IdP's page or sync tokens are too long)",
                cursor.len()
            )))
        }
    }

    impl PullPage {
        /// An empty page of a pass of `kind` that ends the pass without a resume cursor.
        pub fn new(kind: PassKind) -> PullPage {
            PullPage {
                kind,
                users: Vec::new(),
                groups: Vec::new(),
                members: Vec::new(),
                removed_users: Vec::new(),
                removed_groups: Vec::new(),
                next: None,
                resume: None,
            }
        }

        /// The `group-members` entry of `group` on this page, added (empty) if there is none yet:
        /// one entry per group and page, whatever order the IdP sends members in.
        pub fn members_of(&mut self, group: &str) -> &mut GroupMembers {
            let i = match self.members.iter().position(|m| m.group == group) {
                Some(i) => i,
                None => {
                    self.members.push(GroupMembers { group: group.to_string(), added: Vec::new(), removed: Vec::new() });
                    self.members.len() - 1
                }
            };
            &mut self.members[i]
        }
    }

    impl Member {
        /// The member's external id.
        pub fn id(&self) -> &str {
            match self {
                Member::User(id) | Member::Group(id) => id,
            }
        }
    }
}

/// The `sso` export: implement [`sso::Guest`] to map verified SAML assertions.
pub mod sso {
    pub use crate::bindings::exports::idplex::connector::sso::*;
}

/// The `schemas` export (contract 1.1): implement [`schemas::Guest`] to declare the SCIM schema
/// extensions your IdP sends. [`schemas::from_config`] builds the common case, an app's custom
/// attributes configured per connection.
pub mod schemas {
    pub use crate::bindings::exports::idplex::connector::schemas::*;
    use crate::serde_json::{Map, Value, json};

    /// Config key: the URN the IdP sends an app's custom user attributes under.
    pub const EXTENSION_URN: &str = "scim_extension_urn";
    /// Config key: those attributes, comma-separated, each `name` (a string) or `name:type`
    /// with `type` one of `string`, `boolean`, `integer`, `decimal`, `dateTime`, `reference`.
    pub const EXTENSION_ATTRIBUTES: &str = "scim_extension_attributes";

    /// The JSON Schema properties of [`EXTENSION_URN`] and [`EXTENSION_ATTRIBUTES`], to merge
    /// into a connector's `config-schema`.
    pub fn config_properties() -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(
            EXTENSION_URN.into(),
            json!({"type": "string", "pattern": "^urn:[^\\s]{2,250}$",
                   "description": "URN of the SCIM extension the IdP sends the app's custom user attributes under"}),
        );
        m.insert(
            EXTENSION_ATTRIBUTES.into(),
            json!({"type": "string", "maxLength": 4096,
                   "pattern": "^\\s*[A-Za-z][A-Za-z0-9_-]*(:[A-Za-z]+)?(\\s*,\\s*[A-Za-z][A-Za-z0-9_-]*(:[A-Za-z]+)?)*\\s*$",
                   "description": "the custom attributes, comma-separated: `name` or `name:type` (string, boolean, integer, decimal, dateTime, reference)"}),
        );
        m
    }

    /// The user extension configured through `get` with [`EXTENSION_URN`] and
    /// [`EXTENSION_ATTRIBUTES`]: none when neither is set; a `config` error naming the key when
    /// only one is, or a type is unknown.
    pub fn from_config(get: &dyn Fn(&str) -> Option<String>) -> Result<Vec<SchemaExtension>, ConnectorError> {
        let urn = get(EXTENSION_URN).filter(|v| !v.trim().is_empty());
        let attrs = get(EXTENSION_ATTRIBUTES).filter(|v| !v.trim().is_empty());
        let (urn, attrs) = match (urn, attrs) {
            (None, None) => return Ok(Vec::new()),
            (Some(u), Some(a)) => (u.trim().to_string(), a),
            (Some(_), None) => {
                return Err(ConnectorError::config(format!("config key `{EXTENSION_URN}` is set but `{EXTENSION_ATTRIBUTES}` is not: list the attributes")));
            }
            (None, Some(_)) => {
                return Err(ConnectorError::config(format!("config key `{EXTENSION_ATTRIBUTES}` is set but `{EXTENSION_URN}` is not: give the extension's URN")));
            }
        };
        let mut attributes = Vec::new();
        for item in attrs.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, ty) = item.split_once(':').unwrap_or((item, "string"));
            let ty = match ty.trim() {
                t @ ("string" | "boolean" | "integer" | "decimal" | "dateTime" | "reference") => t,
                other => {
                    return Err(ConnectorError::config(format!(
                        "config key `{EXTENSION_ATTRIBUTES}`: attribute `{}` has type `{other}`; use string, boolean, integer, decimal, dateTime or reference",
                        name.trim()
                    )));
                }
            };
            let mut a = json!({"name": name.trim(), "type": ty, "description": "custom attribute configured on the connection"});
            if ty == "reference" {
                a["referenceTypes"] = json!(["external"]);
            }
            attributes.push(a);
        }
        let definition = json!({
            "name": "CustomUserAttributes",
            "description": "The app's custom user attributes, as configured on this connection",
            "attributes": attributes,
        });
        Ok(vec![SchemaExtension { id: urn, resource: ResourceKind::User, required: false, definition: definition.to_string() }])
    }
}

/// The `diagnostics` export (contract 1.1): implement [`diagnostics::Guest`] to answer an
/// admin's *test connection*.
pub mod diagnostics {
    pub use crate::bindings::exports::idplex::connector::diagnostics::*;
    use crate::ErrorKind;

    /// A check from its outcome: `Ok(detail)` passed, `Err` failed with the error's message.
    pub fn check(name: &str, outcome: Result<String, ConnectorError>) -> Check {
        match outcome {
            Ok(detail) => Check { name: name.to_string(), ok: true, detail },
            Err(e) => Check { name: name.to_string(), ok: false, detail: e.message },
        }
    }

    /// The `config` check of a connector whose config is read where it is used: runs `probe`
    /// (a call of the connector's own code over the connection's config, e.g. its assertion
    /// mapping on a probe assertion) and fails only on a `config` error, whose message names
    /// the key. Other errors (the probe input lacking what a real one carries) pass.
    pub fn config_check<T>(probe: impl FnOnce() -> Result<T, ConnectorError>) -> Check {
        check(
            "config",
            match probe() {
                Err(e) if e.kind == ErrorKind::Config => Err(e),
                _ => Ok("the connection's config is usable".to_string()),
            },
        )
    }

    /// The checks of a connector that calls no IdP API (its IdP pushes SCIM; sign-in comes
    /// as assertions): `config` through `probe` ([`config_check`]), the SDK's configured
    /// `scim extension` when `extensions` ([`crate::schemas::from_config`]), and
    /// [`push_only`] reachability.
    pub fn push_connector_checks<T>(probe: impl FnOnce() -> Result<T, ConnectorError>, extensions: bool) -> Vec<Check> {
        let mut checks = vec![config_check(probe)];
        if extensions {
            checks.push(check(
                "scim extension",
                crate::schemas::from_config(&crate::config::get).map(|e| match e.first() {
                    Some(ext) => format!("custom user attributes are accepted under {}", ext.id),
                    None => "no custom attributes configured".to_string(),
                }),
            ));
        }
        checks.push(push_only());
        checks
    }

    /// The checks of one request to the IdP's API made with the credential the host attaches
    /// (e.g. the first page of users): `reachability <host>` (did the API answer at all: egress
    /// allowed, DNS, TLS) and `credentials` (did it answer 2xx to `what`; otherwise the IdP's
    /// message, [`crate::http::upstream_error`]).
    pub fn api_checks(host: &str, what: &str, outcome: Result<crate::http::Response, ConnectorError>) -> Vec<Check> {
        let reachability = format!("reachability {host}");
        match outcome {
            Err(e) => vec![
                Check { name: reachability, ok: false, detail: e.message },
                Check {
                    name: "credentials".to_string(),
                    ok: false,
                    detail: format!("not checked: {host} could not be reached"),
                },
            ],
            Ok(response) => {
                let reached = Check {
                    name: reachability,
                    ok: true,
                    detail: format!("{host} answered HTTP {}", response.status),
                };
                let credentials = check(
                    "credentials",
                    crate::http::check(what, response)
                        .map(|r| format!("{what} answered HTTP {} with the connection's credential", r.status)),
                );
                vec![reached, credentials]
            }
        }
    }

    /// A minimal assertion to run a connector's SSO mapping on in [`config_check`]: an e-mail
    /// `NameID`, no attributes.
    pub fn probe_assertion() -> crate::sso::VerifiedAssertion {
        crate::sso::VerifiedAssertion {
            issuer: "https://idplex.invalid/test-connection".to_string(),
            name_id: "probe@idplex.invalid".to_string(),
            name_id_format: Some("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress".to_string()),
            session_index: None,
            authn_context: None,
            attributes: Vec::new(),
        }
    }

    /// The check a push-only connector reports for reachability: it makes no API calls, so
    /// there is nothing to reach; the IdP's side is checked by its own *test connection*.
    pub fn push_only() -> Check {
        Check {
            name: "reachability".to_string(),
            ok: true,
            detail: "nothing to reach: this connector calls no IdP API (the IdP pushes to idplex)".to_string(),
        }
    }
}

/// Structured logging through the host (`idplex:connector/log`).
///
/// Lines land in the host's log tagged with the connector and the directory it serves; the host
/// rate-limits and truncates them. Never log secrets or whole request bodies.
pub mod log {
    pub use crate::bindings::idplex::connector::log::Level;

    /// Writes one line at `level` to the host's log (`idplex:connector/log`).
    ///
    /// Outside the sandbox (native tests) the line goes to the [`crate::testing::MockHost`]
    /// installed on the current thread, which keeps it for the test to read; without one, to
    /// standard error (which the test harness captures).
    pub fn log(level: Level, message: &str) {
        #[cfg(target_arch = "wasm32")]
        crate::bindings::idplex::connector::log::log(level, message);
        #[cfg(not(target_arch = "wasm32"))]
        crate::mock_host::log(level, message);
    }

    /// Logs `message` at trace level (very chatty diagnostics; usually filtered out).
    pub fn trace(message: &str) {
        log(Level::Trace, message);
    }
    /// Logs `message` at debug level (diagnostics useful while developing a connector).
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }
    /// Logs `message` at info level (noteworthy, expected events).
    pub fn info(message: &str) {
        log(Level::Info, message);
    }
    /// Logs `message` at warn level (something odd the admin may want to look at).
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }
    /// Logs `message` at error level (a failure; usually also returned as a [`crate::ConnectorError`]).
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// The connection's configuration values (`idplex:connector/config`), with typed getters.
///
/// Values were validated by the host against the connector's config schema, but are always
/// strings on the wire; the getters here parse them and name the key in their errors.
pub mod config {
    use crate::ConnectorError;

    /// The value the admin set for `key` on the connection, `None` if unset
    /// (`idplex:connector/config.get`).
    ///
    /// Outside the sandbox: the config of the [`crate::testing::MockHost`] installed on the
    /// current thread; without one, `None` for every key.
    pub fn get(key: &str) -> Option<String> {
        #[cfg(target_arch = "wasm32")]
        return crate::bindings::idplex::connector::config::get(key);
        #[cfg(not(target_arch = "wasm32"))]
        return crate::mock_host::config_get(key);
    }

    /// Every key and value of the connection's config, sorted by key
    /// (`idplex:connector/config.entries`).
    ///
    /// Outside the sandbox: the config of the [`crate::testing::MockHost`] installed on the
    /// current thread (sorted by key, as the host sorts it); without one, empty.
    pub fn entries() -> Vec<(String, String)> {
        #[cfg(target_arch = "wasm32")]
        return crate::bindings::idplex::connector::config::entries();
        #[cfg(not(target_arch = "wasm32"))]
        return crate::mock_host::config_entries();
    }

    /// The connection's config read once, with one call into the host (`config.entries`),
    /// for an export that looks up many keys: each [`Snapshot::get`] is then a lookup in the
    /// guest, where each [`get`] is a call into the host. An SSO mapping reads a key per claim
    /// (most of them unset), so `map-assertion` exports read a snapshot and pass
    /// `&|key| config.get(key)` where a function takes `&config::get`.
    #[derive(Debug, Clone, Default)]
    pub struct Snapshot {
        /// Sorted by key.
        entries: Vec<(String, String)>,
    }

    impl Snapshot {
        /// Every key and value of the connection's config ([`entries`]).
        pub fn read() -> Snapshot {
            let mut entries = entries();
            // The host sends them sorted; sorting a sorted list is one pass.
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Snapshot { entries }
        }

        /// The value of `key`, as [`get`] answered it when the snapshot was read.
        pub fn get(&self, key: &str) -> Option<String> {
            let found = self.entries.binary_search_by(|(k, _)| k.as_str().cmp(key)).ok()?;
            Some(self.entries[found].1.clone())
        }
    }

    /// The value of `key`, or `default` if the admin did not set it.
    pub fn get_or(key: &str, default: &str) -> String {
        get(key).unwrap_or_else(|| default.to_string())
    }

    /// The value of `key`, or a `config` error naming the key if it is unset or blank.
    pub fn require(key: &str) -> Result<String, ConnectorError> {
        match get(key) {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(ConnectorError::config(format!(
                "config key `{key}` is required but not set"
            ))),
        }
    }

    /// The value of `key` as a boolean (`true`/`false`, case-insensitive), `None` if unset, or a
    /// `config` error naming the key for any other text.
    pub fn get_bool(key: &str) -> Result<Option<bool>, ConnectorError> {
        match get(key) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(ConnectorError::config(format!(
                "config key `{key}` must be `true` or `false`, got `{v}`"
            ))),
        }
    }

    /// The value of `key` split on commas, trimmed, empty items dropped; `None` if unset.
    /// Handy for keys that list alternatives (e.g. several attribute names to try in order).
    pub fn get_list(key: &str) -> Option<Vec<String>> {
        get(key).map(|v| split_list(&v))
    }

    /// Splits a comma-separated list, trimming items and dropping empty ones.
    pub fn split_list(value: &str) -> Vec<String> {
        value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// Wall-clock time from the host (`idplex:connector/clock`); a connector has no other clock.
pub mod clock {
    /// Milliseconds since the Unix epoch, UTC, from the host (`idplex:connector/clock`).
    ///
    /// Outside the sandbox: the time set on the [`crate::testing::MockHost`] installed on the
    /// current thread ([`MockHost::clock`](crate::testing::MockHost::clock)); without one, or
    /// when it sets none, the machine's clock.
    pub fn now_unix_millis() -> u64 {
        #[cfg(target_arch = "wasm32")]
        return crate::bindings::idplex::connector::clock::now_unix_millis();
        #[cfg(not(target_arch = "wasm32"))]
        return crate::mock_host::now_unix_millis();
    }
}

/// Constructors for [`ConnectorError`], one per [`ErrorKind`], so that returning an error reads
/// `Err(ConnectorError::invalid_request("..."))`. Attach an RFC 7644 `scimType` with
/// [`ConnectorError::with_scim_type`].
impl ConnectorError {
    /// A new error of `kind` with `message` and no `scimType`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ConnectorError { kind, message: message.into(), scim_type: None }
    }
    /// The IdP sent something this connector cannot interpret (SCIM 400).
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }
    /// A well-formed request for something this connector does not do (SCIM 501/400).
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }
    /// The connection's configuration is missing or wrong; name the key in `message`.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
    /// The IdP's API (reached through egress) failed or answered unexpectedly.
    pub fn upstream(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Upstream, message)
    }
    /// A bug in the connector.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    /// The standard answer for a capability the connector does not declare, e.g.
    /// `ConnectorError::unsupported_capability("my-idp", "directory-sync")`.
    pub fn unsupported_capability(connector: &str, capability: &str) -> Self {
        Self::unsupported(format!(
            "connector `{connector}` does not implement `{capability}`"
        ))
    }
    /// Sets the RFC 7644 §3.12 `scimType` (`invalidSyntax`, `invalidValue`, `noTarget`, ...) the
    /// host should report to the SCIM client.
    pub fn with_scim_type(mut self, scim_type: impl Into<String>) -> Self {
        self.scim_type = Some(scim_type.into());
        self
    }
}

/// SCIM (RFC 7643/7644) constants and small helpers shared by provisioning dialects.
pub mod scim {
    use crate::ResourceKind;

    /// Core schema URN of a User resource.
    pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
    /// Core schema URN of a Group resource.
    pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
    /// Schema URN of the enterprise User extension.
    pub const ENTERPRISE_USER_SCHEMA: &str =
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    /// Message URN of a PATCH request body.
    pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

    /// The core schema URN a resource of `kind` must list in its `schemas`.
    pub fn core_schema(kind: ResourceKind) -> &'static str {
        match kind {
            ResourceKind::User => USER_SCHEMA,
            ResourceKind::Group => GROUP_SCHEMA,
        }
    }

    /// The endpoint name of `kind` (`Users` or `Groups`), for messages.
    pub fn endpoint(kind: ResourceKind) -> &'static str {
        match kind {
            ResourceKind::User => "Users",
            ResourceKind::Group => "Groups",
        }
    }
}

pub mod http;
pub mod panic_hook;
pub mod saml_mapping;
pub mod scim_dialect;

/// The host imports outside the sandbox: the state of [`testing::MockHost`].
#[cfg(not(target_arch = "wasm32"))]
mod mock_host;

/// Helpers for a connector's native unit tests: the shared IdP fixture vectors as
/// [`ScimRequest`](provisioning::ScimRequest)s, assertion and config builders, a fake HTTP API
/// and a pass driver for `directory-pull` logic, and a mock host for the imports
/// ([`testing::MockHost`], native builds only).
///
/// Usable by any connector's `#[cfg(test)]` code. See the module page for what each helper is
/// for.
pub mod testing;

/// JSON helpers that turn parse failures into [`ConnectorError`]s naming what was being read.
pub mod json {
    use crate::{ConnectorError, Json};
    use serde_json::{Map, Value};

    /// Parses `text` as JSON; on failure an `invalid-request` error (scimType `invalidSyntax`)
    /// that says `what` was being parsed, e.g. `"request body"`.
    pub fn parse(text: &str, what: &str) -> Result<Value, ConnectorError> {
        serde_json::from_str(text).map_err(|e| {
            ConnectorError::invalid_request(format!("{what} is not valid JSON: {e}"))
                .with_scim_type("invalidSyntax")
        })
    }

    /// Checks that `text` is well-formed JSON without building it (no allocation per value):
    /// for a connector that passes a document on unchanged. Errors as [`parse`].
    pub fn check(text: &str, what: &str) -> Result<(), ConnectorError> {
        serde_json::from_str::<serde::de::IgnoredAny>(text).map(|_| ()).map_err(|e| {
            ConnectorError::invalid_request(format!("{what} is not valid JSON: {e}"))
                .with_scim_type("invalidSyntax")
        })
    }

    /// Parses `text` as a JSON object; errors as [`parse`], plus when the value is not an object.
    pub fn parse_object(text: &str, what: &str) -> Result<Map<String, Value>, ConnectorError> {
        match parse(text, what)? {
            Value::Object(map) => Ok(map),
            other => Err(ConnectorError::invalid_request(format!(
                "{what} must be a JSON object, got {}",
                type_name(&other)
            ))
            .with_scim_type("invalidSyntax")),
        }
    }

    /// Serializes `value` to JSON text for the contract's `json` type. Cannot fail for
    /// `serde_json::Value`; other types that fail to serialize yield an `internal` error.
    pub fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Json, ConnectorError> {
        serde_json::to_string(value)
            .map_err(|e| ConnectorError::internal(format!("cannot serialize JSON: {e}")))
    }

    /// The JSON type name of `value` (`null`, `boolean`, `number`, `string`, `array`, `object`),
    /// for error messages.
    pub fn type_name(value: &Value) -> &'static str {
        match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }
}

#[cfg(test)]
mod contract_1_1_tests {
    use crate::serde_json::Value;
    use crate::{ConnectorError, ErrorKind, ResourceKind, diagnostics, schemas};

    fn config<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |key| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v.to_string())
    }

    #[test]
    fn the_configured_extension_lists_each_attribute_with_its_type() {
        let get = config(&[
            (schemas::EXTENSION_URN, "urn:example:acme:2.0:User"),
            (schemas::EXTENSION_ATTRIBUTES, " costCenter, badge:integer ,site:reference"),
        ]);
        let ext = schemas::from_config(&get).unwrap();
        assert_eq!(ext.len(), 1);
        assert_eq!((ext[0].id.as_str(), ext[0].resource, ext[0].required), ("urn:example:acme:2.0:User", ResourceKind::User, false));
        let def: Value = crate::serde_json::from_str(&ext[0].definition).unwrap();
        let attrs: Vec<(&str, &str)> = def["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["name"].as_str().unwrap(), a["type"].as_str().unwrap()))
            .collect();
        assert_eq!(attrs, [("costCenter", "string"), ("badge", "integer"), ("site", "reference")]);
        assert!(schemas::from_config(&config(&[])).unwrap().is_empty(), "nothing configured, nothing declared");
    }

    #[test]
    fn a_half_or_wrong_extension_config_is_a_config_error_naming_the_key() {
        let only_urn = config(&[(schemas::EXTENSION_URN, "urn:example:acme:2.0:User")]);
        let e = schemas::from_config(&only_urn).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Config);
        assert!(e.message.contains(schemas::EXTENSION_ATTRIBUTES), "{}", e.message);
        let bad_type = config(&[(schemas::EXTENSION_URN, "urn:x:y"), (schemas::EXTENSION_ATTRIBUTES, "badge:number")]);
        let e = schemas::from_config(&bad_type).unwrap_err();
        assert!(e.message.contains("`badge` has type `number`"), "{}", e.message);
    }

    #[test]
    fn the_config_check_fails_only_on_a_config_error() {
        let failed = diagnostics::config_check(|| -> Result<(), _> { Err(ConnectorError::config("key `x` is wrong")) });
        assert_eq!((failed.ok, failed.detail.as_str()), (false, "key `x` is wrong"));
        let other = diagnostics::config_check(|| -> Result<(), _> { Err(ConnectorError::invalid_request("no email")) });
        assert!(other.ok, "the probe lacking what a real input carries is not a config problem");
    }
}

#[cfg(test)]
mod contract_1_2_tests {
    use crate::metadata::with_credential_keys;
    use crate::serde_json::{Value, json};

    #[test]
    fn a_closed_schema_admits_the_hosts_credential_keys() {
        let schema = r#"{"type":"object","additionalProperties":false,"properties":{"domain":{"type":"string"}}}"#;
        let v: Value = crate::serde_json::from_str(&with_credential_keys(schema)).unwrap();
        assert_eq!(v["additionalProperties"], false);
        assert_eq!(v["properties"], json!({"domain": {"type": "string"}}));
        let patterns: Vec<&String> = v["patternProperties"].as_object().unwrap().keys().collect();
        assert_eq!(patterns, ["^credential\\.", "^secret\\."]);
        assert_eq!(with_credential_keys("not json"), "not json");
    }
}
