//! The generic RFC 7644 SCIM dialect in native Rust: a **benchmarking aid**, not a connector.
//!
//! `idplex serve --native-scim-passthrough` makes [`Hub::normalize`](crate::Hub::normalize) and
//! [`Hub::render`](crate::Hub::render) call this module instead of the connection's Wasm
//! connector, so the same load can be measured with and without the sandbox and the connector's
//! share of a request's time computed (`scripts/bench-scim`). It bypasses the sandbox and
//! whatever dialect the connection's connector speaks: never use it in production.
//!
//! It does exactly what `connectors/custom-saml/src/scim_dialect.rs` does (the reference; the
//! test in `tests/native_scim.rs` compares both on the IdP request fixtures): a request becomes
//! exactly one RFC operation, bodies are checked to be JSON objects listing the resource's core
//! schema, PATCH messages are parsed into their operations, list parameters into a query; a
//! stored resource is rendered unchanged (not parsed again). Errors carry the same
//! kind, message and `scimType`. Its `GET` decoding is the production one of reads a connector
//! takes as sent ([`crate::provisioning::read_as_sent`]), which the same test thereby checks.

use idplex_runtime::{
    ConnectorErrorKind, Operation, PatchOp, PatchOperation, ResourceKind, ScimRequest,
    WitConnectorError,
};
use serde_json::{Map, Value};

/// What errors of the native dialect name as their connector.
pub const NATIVE_LABEL: &str = "native-scim-passthrough";

const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

type Result<T> = std::result::Result<T, WitConnectorError>;

fn invalid(message: impl Into<String>, scim_type: Option<&str>) -> WitConnectorError {
    WitConnectorError {
        kind: ConnectorErrorKind::InvalidRequest,
        message: message.into(),
        scim_type: scim_type.map(str::to_string),
    }
}

fn endpoint(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::User => "Users",
        ResourceKind::Group => "Groups",
    }
}

fn core_schema(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::User => "urn:ietf:params:scim:schemas:core:2.0:User",
        ResourceKind::Group => "urn:ietf:params:scim:schemas:core:2.0:Group",
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn parse(text: &str, what: &str) -> Result<Value> {
    serde_json::from_str(text)
        .map_err(|e| invalid(format!("{what} is not valid JSON: {e}"), Some("invalidSyntax")))
}

fn parse_object(text: &str, what: &str) -> Result<Map<String, Value>> {
    match parse(text, what)? {
        Value::Object(map) => Ok(map),
        other => Err(invalid(format!("{what} must be a JSON object, got {}", type_name(&other)), Some("invalidSyntax"))),
    }
}

/// One SCIM request as the one operation it asks for.
pub fn normalize(request: &ScimRequest) -> Result<Vec<Operation>> {
    let kind = request.resource;
    let endpoint = endpoint(kind);
    let id = request.id.as_deref().filter(|id| !id.is_empty());
    let need_id = |m: &str| {
        id.map(str::to_string)
            .ok_or_else(|| invalid(format!("{m} /{endpoint} needs a resource id in the path (/{endpoint}/{{id}})"), None))
    };
    let op = match request.method.to_ascii_uppercase().as_str() {
        "POST" if id.is_some() => {
            return Err(invalid(
                format!("POST creates a resource and must address /{endpoint}, not /{endpoint}/{{id}}"),
                None,
            ));
        }
        "POST" => Operation::Create(resource_body(request, kind)?),
        "PUT" => Operation::Replace((need_id("PUT")?, resource_body(request, kind)?)),
        "PATCH" => Operation::Patch((need_id("PATCH")?, patch_operations(request)?)),
        "DELETE" => Operation::Delete(need_id("DELETE")?),
        // The host's own decoding of reads, as for a connector that takes them as sent.
        "GET" => crate::provisioning::read_as_sent(request)?,
        other => {
            return Err(WitConnectorError {
                kind: ConnectorErrorKind::Unsupported,
                message: format!("HTTP method `{other}` is not part of SCIM 2.0 provisioning on /{endpoint}"),
                scim_type: None,
            });
        }
    };
    Ok(vec![op])
}

/// A stored resource, unchanged (the same as the SDK's generic `scim_dialect::render`: the
/// host's own serialization is not read again).
pub fn render(resource: String) -> Result<String> {
    Ok(resource)
}

fn resource_body(request: &ScimRequest, kind: ResourceKind) -> Result<String> {
    let body = request.body.as_deref().ok_or_else(|| {
        invalid(format!("{} /{} needs a JSON body", request.method, endpoint(kind)), Some("invalidSyntax"))
    })?;
    require_schema(&parse_object(body, "request body")?, core_schema(kind))?;
    Ok(body.to_string())
}

fn require_schema(object: &Map<String, Value>, urn: &str) -> Result<()> {
    match object.get("schemas") {
        Some(Value::Array(items)) if items.iter().any(|s| s.as_str() == Some(urn)) => Ok(()),
        Some(Value::Array(_)) => Err(invalid(format!("`schemas` must contain `{urn}`"), Some("invalidValue"))),
        Some(other) => Err(invalid(
            format!("`schemas` must be an array of URNs, got {}", type_name(other)),
            Some("invalidSyntax"),
        )),
        None => Err(invalid(
            format!("the body has no `schemas` attribute; it must list `{urn}`"),
            Some("invalidSyntax"),
        )),
    }
}

fn patch_operations(request: &ScimRequest) -> Result<Vec<PatchOperation>> {
    let body = request
        .body
        .as_deref()
        .ok_or_else(|| invalid("PATCH needs a PatchOp JSON body", Some("invalidSyntax")))?;
    let object = parse_object(body, "PATCH body")?;
    require_schema(&object, PATCH_OP_SCHEMA)?;
    match object.get("Operations") {
        Some(Value::Array(ops)) if !ops.is_empty() => {
            ops.iter().enumerate().map(|(i, op)| patch_operation(i, op)).collect()
        }
        Some(Value::Array(_)) => Err(invalid("`Operations` must not be empty", Some("invalidValue"))),
        Some(other) => Err(invalid(
            format!("`Operations` must be an array, got {}", type_name(other)),
            Some("invalidSyntax"),
        )),
        None => Err(invalid("the PatchOp body has no `Operations`", Some("invalidSyntax"))),
    }
}

fn patch_operation(index: usize, op: &Value) -> Result<PatchOperation> {
    let err = |msg: String, scim_type: &str| invalid(format!("Operations[{index}]: {msg}"), Some(scim_type));
    let Value::Object(op) = op else {
        return Err(err(format!("must be an object, got {}", type_name(op)), "invalidSyntax"));
    };
    let kind = match op.get("op") {
        Some(Value::String(name)) => match name.to_ascii_lowercase().as_str() {
            "add" => PatchOp::Add,
            "replace" => PatchOp::Replace,
            "remove" => PatchOp::Remove,
            _ => return Err(err(format!("unknown op `{name}` (expected add, replace or remove)"), "invalidSyntax")),
        },
        Some(other) => return Err(err(format!("`op` must be a string, got {}", type_name(other)), "invalidSyntax")),
        None => return Err(err("`op` is missing".to_string(), "invalidSyntax")),
    };
    let path = match op.get("path") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if p.trim().is_empty() => None,
        Some(Value::String(p)) => Some(p.clone()),
        Some(other) => return Err(err(format!("`path` must be a string, got {}", type_name(other)), "invalidPath")),
    };
    let value = match op.get("value") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.to_string()),
    };
    match kind {
        PatchOp::Remove if path.is_none() => return Err(err("`remove` needs a `path`".to_string(), "noTarget")),
        PatchOp::Add | PatchOp::Replace if value.is_none() => {
            let name = if matches!(kind, PatchOp::Add) { "add" } else { "replace" };
            return Err(err(format!("`{name}` needs a `value`"), "invalidValue"));
        }
        _ => {}
    }
    Ok(PatchOperation { op: kind, path, value })
}
