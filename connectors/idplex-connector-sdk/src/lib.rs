//! # idplex connector SDK
//!
//! Everything a Rust crate needs to become an idplex *connector*: the bindings of the WIT world
//! `idplex:connector/connector@1.0.0` (generated once, here, from `wit/connector.wit`), the
//! [`export_connector!`] macro that wires a type implementing the export traits into the
//! component's exports, and a few helpers for the chores every connector repeats (logging,
//! reading config, building [`ConnectorError`]s, parsing JSON), plus the generic RFC 7644 SCIM
//! dialect as building blocks ([`scim_dialect`]) and the config-driven SAML claim mapping
//! ([`saml_mapping`]) that the first-party connectors compose with their IdP's quirks, and
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
//! impl directory_sync::Guest for MyConnector { /* pull() */ }
//! impl sso::Guest for MyConnector { /* map_assertion() */ }
//!
//! export_connector!(MyConnector);
//! ```
//!
//! then builds with `cargo build --release --target wasm32-unknown-unknown` and turns the core
//! module into a component (see `connectors/README.md`).
#![warn(missing_docs)]

/// Raw output of `wit_bindgen::generate!` for the `connector` world. Prefer the re-exports at
/// the crate root ([`types`], [`metadata`], [`provisioning`], ...); this module exists because
/// the generated export macro refers to it by path.
#[doc(hidden)]
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "connector",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_connector",
        default_bindings_module: "idplex_connector_sdk::bindings",
        generate_all,
    });
}

/// Exports a connector type to the host.
///
/// `export_connector!(MyConnector);` generates the component's export functions for the
/// `metadata`, `provisioning`, `directory-sync` and `sso` interfaces and forwards them to the
/// `Guest` trait impls of `MyConnector`. Invoke it exactly once, in the `cdylib` crate.
pub use bindings::export_connector;

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
}

/// The `provisioning` export: implement [`provisioning::Guest`] to normalize inbound SCIM.
pub mod provisioning {
    pub use crate::bindings::exports::idplex::connector::provisioning::*;
}

/// The `directory-sync` export: implement [`directory_sync::Guest`] to pull from an IdP API.
pub mod directory_sync {
    pub use crate::bindings::exports::idplex::connector::directory_sync::*;
}

/// The `sso` export: implement [`sso::Guest`] to map verified SAML assertions.
pub mod sso {
    pub use crate::bindings::exports::idplex::connector::sso::*;
}

/// Structured logging through the host (`idplex:connector/log`).
///
/// Lines land in the host's log tagged with the connector and the directory it serves; the host
/// rate-limits and truncates them. Never log secrets or whole request bodies.
pub mod log {
    pub use crate::bindings::idplex::connector::log::{Level, log};

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
    pub use crate::bindings::idplex::connector::config::{entries, get};

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
    pub use crate::bindings::idplex::connector::clock::now_unix_millis;
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

pub mod saml_mapping;
pub mod scim_dialect;

/// Helpers for a connector's native unit tests: the shared IdP fixture vectors as
/// [`ScimRequest`](provisioning::ScimRequest)s, assertion and config builders.
///
/// Usable by any connector's `#[cfg(test)]` code; nothing in it calls a host import, so it runs
/// outside the sandbox. See the module page for what each helper is for.
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
