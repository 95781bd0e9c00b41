//! The generic RFC 7644 SCIM dialect, as building blocks a connector composes with its IdP's
//! quirks.
//!
//! [`parse`] reads one SCIM request the way RFC 7644 describes it, into a [`Parsed`] request
//! that a dialect may still edit (rename a URN, turn `"False"` into `false`, rewrite a PATCH
//! operation); [`Parsed::into_operations`] then checks what the host requires (the core schema
//! in `schemas`, a `path` for `remove`, a `value` for `add`/`replace`) and produces the contract's
//! operations. [`normalize`] is the two steps with no quirk in between: the generic dialect.
//!
//! ```ignore
//! fn normalize(request: ScimRequest) -> Result<Vec<Operation>, ConnectorError> {
//!     let mut parsed = scim_dialect::parse(&request)?;
//!     if let Some(body) = parsed.body_mut() {
//!         scim_dialect::rename_legacy_urns(body.object_mut(), request.resource);
//!     }
//!     parsed.into_operations(request.resource)
//! }
//! ```
//!
//! Bodies that no quirk touched are handed to the host as the IdP sent them (no re-encoding).

use crate::json::{parse_object, type_name};
use crate::provisioning::{ListQuery, Operation, PatchOpKind, PatchOperation, ScimRequest};
use crate::{ConnectorError, Json, ResourceKind, scim};
use serde_json::{Map, Value};

/// A resource body (POST, PUT) as received; parsed into an object only when a dialect looks at
/// it, and re-encoded only if a dialect changed it.
///
/// [`Body::parse`] reads the text once without building it (checking it is one JSON object and
/// keeping only its `schemas`), which is all the generic dialect needs: a body no quirk touches
/// is handed to the host as the IdP sent it, and the host parses it anyway. The first
/// [`Body::object`], [`Body::object_mut`] or [`Body::edit`] parses it in full. In the sandbox
/// that skips most of a create's guest work (allocating every key and value of the body).
#[derive(Debug, Clone)]
pub struct Body {
    text: String,
    /// The parsed object, once asked for.
    object: std::cell::OnceCell<Map<String, Value>>,
    /// Why the text could not be parsed in full (the skim is more lenient than a full parse on
    /// invalid escapes such as a lone surrogate): [`Body::into_json`] answers it.
    broken: std::cell::OnceCell<ConnectorError>,
    /// `schemas` as the skim read it (`None`: absent), while `object` is not parsed.
    schemas: Option<Value>,
    /// What errors call the body.
    what: String,
    changed: bool,
}

/// What [`Body::parse`] keeps of a body: `schemas` (absent, or any JSON value including `null`).
#[derive(serde::Deserialize)]
struct Skim {
    #[serde(default)]
    schemas: Present,
}

/// A member that was present (even as `null`); `None` when absent.
#[derive(Default)]
struct Present(Option<Value>);

impl<'de> serde::Deserialize<'de> for Present {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <Value as serde::Deserialize>::deserialize(d).map(|v| Present(Some(v)))
    }
}

impl Body {
    /// Reads `text` as a JSON object (`what` names it in errors), without building it.
    pub fn parse(text: &str, what: &str) -> Result<Self, ConnectorError> {
        let body = |object: std::cell::OnceCell<Map<String, Value>>, schemas| Body {
            text: text.to_string(),
            object,
            broken: std::cell::OnceCell::new(),
            schemas,
            what: what.to_string(),
            changed: false,
        };
        // Only an object can be a resource (a struct would also deserialize from an array).
        if text.trim_start().starts_with('{')
            && let Ok(skim) = serde_json::from_str::<Skim>(text)
        {
            return Ok(body(std::cell::OnceCell::new(), skim.schemas.0));
        }
        // Not an object, not JSON, or a duplicate `schemas` member: the full parse decides (and
        // names the error), as before the skim.
        Ok(body(std::cell::OnceCell::from(parse_object(text, what)?), None))
    }

    /// The body as the IdP sent it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The body as an object (parsed now if not yet).
    pub fn object(&self) -> &Map<String, Value> {
        self.object.get_or_init(|| {
            parse_object(&self.text, &self.what).unwrap_or_else(|e| {
                let _ = self.broken.set(e);
                Map::new()
            })
        })
    }

    /// The body as an object, to edit: it will be re-encoded.
    pub fn object_mut(&mut self) -> &mut Map<String, Value> {
        self.changed = true;
        self.parsed_mut()
    }

    /// Lets `fix` edit the body in place; `fix` answers whether it changed anything, and only
    /// then is the body re-encoded (no copy of the object to find out).
    pub fn edit(&mut self, fix: impl FnOnce(&mut Map<String, Value>) -> bool) -> bool {
        let changed = fix(self.parsed_mut());
        self.changed |= changed;
        changed
    }

    /// The parsed object (parsed now if not yet), mutably.
    fn parsed_mut(&mut self) -> &mut Map<String, Value> {
        self.object();
        self.object.get_mut().expect("parsed by object()")
    }

    /// The body's `schemas` member (`None` when absent).
    fn schemas(&self) -> Option<&Value> {
        match self.object.get() {
            Some(object) => object.get("schemas"),
            None => self.schemas.as_ref(),
        }
    }

    /// The JSON text to hand to the host: the original unless edited.
    pub fn into_json(self) -> Result<Json, ConnectorError> {
        if let Some(e) = self.broken.into_inner() {
            return Err(e);
        }
        match self.object.into_inner() {
            Some(object) if self.changed => crate::json::to_json(&object),
            _ => Ok(self.text),
        }
    }
}

/// One PATCH operation as the IdP sent it (op case-normalized), before the dialect's rewrites.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOp {
    /// add, replace or remove.
    pub op: PatchOpKind,
    /// The path, `None` when absent or blank.
    pub path: Option<String>,
    /// The value, `None` when absent or `null`.
    pub value: Option<Value>,
}

/// Whether `path` is `attribute` itself (case-insensitive), optionally prefixed by a schema URN
/// and `:` (`urn:ietf:params:scim:schemas:core:2.0:User:active` names `active`).
pub fn path_names(path: &str, attribute: &str) -> bool {
    let path = path.trim();
    if path.eq_ignore_ascii_case(attribute) {
        return true;
    }
    let Some(colon) = path.len().checked_sub(attribute.len() + 1) else { return false };
    path.as_bytes()[colon] == b':'
        && path.get(colon + 1..).is_some_and(|a| a.eq_ignore_ascii_case(attribute))
        && path.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
        && path.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
}

/// A SCIM request read per RFC 7644, not yet checked nor turned into operations.
#[derive(Debug, Clone)]
pub enum Parsed {
    /// POST to the collection.
    Create(Body),
    /// PUT of the resource with this id.
    Replace(String, Body),
    /// PATCH of the resource with this id.
    Patch(String, Vec<PatchOp>),
    /// DELETE of the resource with this id.
    Delete(String),
    /// GET of the resource with this id.
    Get(String),
    /// GET of the collection.
    Query(ListQuery),
}

impl Parsed {
    /// The body of a create or replace.
    pub fn body_mut(&mut self) -> Option<&mut Body> {
        match self {
            Parsed::Create(body) | Parsed::Replace(_, body) => Some(body),
            _ => None,
        }
    }

    /// Checks what the host requires and produces the contract's operation (always exactly one).
    pub fn into_operations(self, kind: ResourceKind) -> Result<Vec<Operation>, ConnectorError> {
        let op = match self {
            Parsed::Create(body) => Operation::Create(checked_body(body, kind)?),
            Parsed::Replace(id, body) => Operation::Replace((id, checked_body(body, kind)?)),
            Parsed::Patch(id, ops) => Operation::Patch((
                id,
                ops.into_iter().enumerate().map(|(i, op)| checked_patch_op(i, op)).collect::<Result<_, _>>()?,
            )),
            Parsed::Delete(id) => Operation::Delete(id),
            Parsed::Get(id) => Operation::Get(id),
            Parsed::Query(query) => Operation::Query(query),
        };
        Ok(vec![op])
    }
}

/// The generic RFC 7644 dialect: [`parse`], then [`Parsed::into_operations`], nothing between.
pub fn normalize(request: &ScimRequest) -> Result<Vec<Operation>, ConnectorError> {
    parse(request)?.into_operations(request.resource)
}

/// Reads one SCIM request per RFC 7644: the method and path select the operation, the body is
/// parsed (a PatchOp message into its operations), the query string into a list query.
pub fn parse(request: &ScimRequest) -> Result<Parsed, ConnectorError> {
    let kind = request.resource;
    let endpoint = scim::endpoint(kind);
    let method = request.method.to_ascii_uppercase();
    let id = request.id.as_deref().filter(|id| !id.is_empty());

    let need_id = |m: &str| {
        id.map(str::to_string).ok_or_else(|| {
            ConnectorError::invalid_request(format!(
                "{m} /{endpoint} needs a resource id in the path (/{endpoint}/{{id}})"
            ))
        })
    };
    Ok(match method.as_str() {
        "POST" => {
            if id.is_some() {
                return Err(ConnectorError::invalid_request(format!(
                    "POST creates a resource and must address /{endpoint}, not /{endpoint}/{{id}}"
                )));
            }
            Parsed::Create(resource_body(request, kind)?)
        }
        "PUT" => {
            let id = need_id("PUT")?;
            Parsed::Replace(id, resource_body(request, kind)?)
        }
        "PATCH" => {
            let id = need_id("PATCH")?;
            Parsed::Patch(id, patch_operations(request)?)
        }
        "DELETE" => Parsed::Delete(need_id("DELETE")?),
        "GET" => match id {
            Some(id) => Parsed::Get(id.to_string()),
            None => Parsed::Query(list_query(&request.query)?),
        },
        other => {
            return Err(ConnectorError::unsupported(format!(
                "HTTP method `{other}` is not part of SCIM 2.0 provisioning on /{endpoint}"
            )));
        }
    })
}

/// The generic dialect's `render`: resources are served as stored (the dialect is the RFC's
/// own), so it answers `unsupported`, which tells the host (contract 1.1) to serve its own
/// resource and stop calling `render` for that kind: a sandbox call saved on every request.
pub fn render(_resource: Json) -> Result<Json, ConnectorError> {
    Err(ConnectorError::unsupported("resources are served unchanged (the generic RFC 7644 dialect)"))
}

/// The body of a POST/PUT, parsed.
fn resource_body(request: &ScimRequest, kind: ResourceKind) -> Result<Body, ConnectorError> {
    let body = request.body.as_deref().ok_or_else(|| {
        ConnectorError::invalid_request(format!(
            "{} /{} needs a JSON body",
            request.method,
            scim::endpoint(kind)
        ))
        .with_scim_type("invalidSyntax")
    })?;
    Body::parse(body, "request body")
}

/// A body whose `schemas` lists the core schema of `kind`, as JSON text.
fn checked_body(body: Body, kind: ResourceKind) -> Result<Json, ConnectorError> {
    if body.broken.get().is_none() {
        require_schemas(body.schemas(), scim::core_schema(kind))?;
    }
    body.into_json()
}

/// Pre-RFC URNs some IdPs still send (OneLogin's default template: `urn:scim:schemas:core:2.0`
/// and `urn:scim:schemas:extension:enterprise:2.0`, without `:User`), as the RFC 7643 URNs, in
/// `schemas` and as extension keys. Returns whether anything was renamed.
pub fn rename_legacy_urns(object: &mut Map<String, Value>, kind: ResourceKind) -> bool {
    const LEGACY_CORE: &str = "urn:scim:schemas:core:2.0";
    const LEGACY_ENTERPRISE: &str = "urn:scim:schemas:extension:enterprise:2.0";
    let rename = |urn: &str| -> Option<&'static str> {
        let urn = urn.trim_end_matches(":User").trim_end_matches(":Group");
        if urn.eq_ignore_ascii_case(LEGACY_CORE) {
            Some(scim::core_schema(kind))
        } else if urn.eq_ignore_ascii_case(LEGACY_ENTERPRISE) && matches!(kind, ResourceKind::User) {
            Some(scim::ENTERPRISE_USER_SCHEMA)
        } else {
            None
        }
    };
    let mut changed = false;
    if let Some(Value::Array(schemas)) = object.get_mut("schemas") {
        for s in schemas.iter_mut() {
            if let Some(new) = s.as_str().and_then(rename) {
                *s = Value::String(new.to_string());
                changed = true;
            }
        }
        let mut seen = Vec::new();
        schemas.retain(|s| {
            let fresh = !seen.contains(s);
            seen.push(s.clone());
            fresh
        });
    }
    let legacy_keys: Vec<String> = object.keys().filter(|k| rename(k).is_some()).cloned().collect();
    for key in legacy_keys {
        if let (Some(new), Some(value)) = (rename(&key), object.remove(&key)) {
            object.insert(new.to_string(), value);
            changed = true;
        }
    }
    changed
}

/// Entra ID sends app-role assignments with each role's `value` being a JSON *string* of an
/// object (`"{\"id\":..,\"value\":\"Admin\",\"displayName\":\"..\"}"`). Unwraps them into
/// RFC 7643 `roles` entries (`value`, `display`). Returns whether anything changed.
pub fn unwrap_stringified_roles(roles: &mut Value) -> bool {
    let mut changed = false;
    let items: Vec<&mut Value> = match roles {
        Value::Array(items) => items.iter_mut().collect(),
        Value::Object(_) => vec![roles],
        _ => return false,
    };
    for item in items {
        let Some(text) = item.get("value").and_then(Value::as_str) else { continue };
        if !text.trim_start().starts_with('{') {
            continue;
        }
        let Ok(Value::Object(inner)) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        let Some(value) = inner.get("value").cloned() else { continue };
        let mut role = Map::new();
        role.insert("value".into(), value);
        if let Some(display) = inner.get("displayName").or_else(|| inner.get("display")) {
            role.insert("display".into(), display.clone());
        }
        for (k, v) in item.as_object().into_iter().flatten() {
            if k != "value" {
                role.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        *item = Value::Object(role);
        changed = true;
    }
    changed
}

/// Requires `schemas` to be an array of strings containing `urn`.
pub fn require_schema(object: &Map<String, Value>, urn: &str) -> Result<(), ConnectorError> {
    require_schemas(object.get("schemas"), urn)
}

/// [`require_schema`] of a `schemas` member (`None`: absent).
fn require_schemas(schemas: Option<&Value>, urn: &str) -> Result<(), ConnectorError> {
    let schemas = match schemas {
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(ConnectorError::invalid_request(format!(
                "`schemas` must be an array of URNs, got {}",
                type_name(other)
            ))
            .with_scim_type("invalidSyntax"));
        }
        None => {
            return Err(ConnectorError::invalid_request(format!(
                "the body has no `schemas` attribute; it must list `{urn}`"
            ))
            .with_scim_type("invalidSyntax"));
        }
    };
    if schemas.iter().any(|s| s.as_str() == Some(urn)) {
        Ok(())
    } else {
        Err(ConnectorError::invalid_request(format!("`schemas` must contain `{urn}`"))
            .with_scim_type("invalidValue"))
    }
}

/// Parses an RFC 7644 §3.5.2 PatchOp message into its operations.
fn patch_operations(request: &ScimRequest) -> Result<Vec<PatchOp>, ConnectorError> {
    let body = request.body.as_deref().ok_or_else(|| {
        ConnectorError::invalid_request("PATCH needs a PatchOp JSON body")
            .with_scim_type("invalidSyntax")
    })?;
    let object = parse_object(body, "PATCH body")?;
    require_schema(&object, scim::PATCH_OP_SCHEMA)?;
    let operations = match object.get("Operations") {
        Some(Value::Array(ops)) if !ops.is_empty() => ops,
        Some(Value::Array(_)) => {
            return Err(ConnectorError::invalid_request("`Operations` must not be empty")
                .with_scim_type("invalidValue"));
        }
        Some(other) => {
            return Err(ConnectorError::invalid_request(format!(
                "`Operations` must be an array, got {}",
                type_name(other)
            ))
            .with_scim_type("invalidSyntax"));
        }
        None => {
            return Err(ConnectorError::invalid_request("the PatchOp body has no `Operations`")
                .with_scim_type("invalidSyntax"));
        }
    };
    operations.iter().enumerate().map(|(i, op)| patch_operation(i, op)).collect()
}

/// Parses `Operations[index]`.
fn patch_operation(index: usize, op: &Value) -> Result<PatchOp, ConnectorError> {
    let invalid = |msg: String, scim_type: &str| {
        ConnectorError::invalid_request(format!("Operations[{index}]: {msg}"))
            .with_scim_type(scim_type)
    };
    let Value::Object(op) = op else {
        return Err(invalid(format!("must be an object, got {}", type_name(op)), "invalidSyntax"));
    };
    let kind = match op.get("op") {
        Some(Value::String(name)) => match name.to_ascii_lowercase().as_str() {
            "add" => PatchOpKind::Add,
            "replace" => PatchOpKind::Replace,
            "remove" => PatchOpKind::Remove,
            _ => {
                return Err(invalid(
                    format!("unknown op `{name}` (expected add, replace or remove)"),
                    "invalidSyntax",
                ));
            }
        },
        Some(other) => {
            return Err(invalid(
                format!("`op` must be a string, got {}", type_name(other)),
                "invalidSyntax",
            ));
        }
        None => return Err(invalid("`op` is missing".to_string(), "invalidSyntax")),
    };
    let path = match op.get("path") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if p.trim().is_empty() => None,
        Some(Value::String(p)) => Some(p.clone()),
        Some(other) => {
            return Err(invalid(
                format!("`path` must be a string, got {}", type_name(other)),
                "invalidPath",
            ));
        }
    };
    let value = match op.get("value") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.clone()),
    };
    Ok(PatchOp { op: kind, path, value })
}

/// Checks one operation as the host needs it and encodes its value.
fn checked_patch_op(index: usize, op: PatchOp) -> Result<PatchOperation, ConnectorError> {
    let invalid = |msg: String, scim_type: &str| {
        ConnectorError::invalid_request(format!("Operations[{index}]: {msg}"))
            .with_scim_type(scim_type)
    };
    match op.op {
        PatchOpKind::Remove if op.path.is_none() => {
            return Err(invalid("`remove` needs a `path`".to_string(), "noTarget"));
        }
        PatchOpKind::Add | PatchOpKind::Replace if op.value.is_none() => {
            let name = if matches!(op.op, PatchOpKind::Add) { "add" } else { "replace" };
            return Err(invalid(format!("`{name}` needs a `value`"), "invalidValue"));
        }
        _ => {}
    }
    Ok(PatchOperation { op: op.op, path: op.path, value: op.value.map(|v| v.to_string()) })
}

/// Builds a list query from the request's query parameters (names matched case-insensitively;
/// unknown parameters are ignored; a repeated parameter keeps its last value).
fn list_query(params: &[(String, String)]) -> Result<ListQuery, ConnectorError> {
    let mut query = ListQuery {
        filter: None,
        start_index: None,
        count: None,
        sort_by: None,
        sort_descending: false,
        attributes: Vec::new(),
        excluded_attributes: Vec::new(),
    };
    for (name, value) in params {
        match name.to_ascii_lowercase().as_str() {
            "filter" => query.filter = non_empty(value),
            "startindex" => {
                // RFC 7644 §3.4.2.4: a value below 1 is interpreted as 1.
                query.start_index = Some(integer("startIndex", value)?.max(1) as u32)
            }
            // RFC 7644 §3.4.2.4: a negative count is interpreted as 0.
            "count" => query.count = Some(integer("count", value)?.max(0) as u32),
            "sortby" => query.sort_by = non_empty(value),
            "sortorder" => {
                query.sort_descending = match value.trim().to_ascii_lowercase().as_str() {
                    "ascending" | "" => false,
                    "descending" => true,
                    _ => {
                        return Err(ConnectorError::invalid_request(format!(
                            "query parameter `sortOrder` must be `ascending` or `descending`, \
                             got `{value}`"
                        ))
                        .with_scim_type("invalidValue"));
                    }
                }
            }
            "attributes" => query.attributes = comma_list(value),
            "excludedattributes" => query.excluded_attributes = comma_list(value),
            _ => {}
        }
    }
    Ok(query)
}

/// Parses an integer query parameter, clamped to the `u32` range; names the parameter on error.
fn integer(name: &str, value: &str) -> Result<i64, ConnectorError> {
    value
        .trim()
        .parse::<i64>()
        .map(|n| n.min(u32::MAX as i64))
        .map_err(|_| {
            ConnectorError::invalid_request(format!(
                "query parameter `{name}` must be an integer, got `{value}`"
            ))
            .with_scim_type("invalidValue")
        })
}

fn non_empty(value: &str) -> Option<String> {
    let v = value.trim();
    (!v.is_empty()).then(|| v.to_string())
}

fn comma_list(value: &str) -> Vec<String> {
    crate::config::split_list(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, id: Option<&str>, body: Option<&str>) -> ScimRequest {
        ScimRequest {
            method: method.into(),
            resource: ResourceKind::User,
            id: id.map(Into::into),
            query: Vec::new(),
            body: body.map(Into::into),
        }
    }

    const USER: &str =
        r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"a"}"#;

    #[test]
    fn post_creates() {
        let ops = normalize(&req("POST", None, Some(USER))).unwrap();
        assert!(matches!(&ops[..], [Operation::Create(b)] if b == USER));
    }

    #[test]
    fn post_without_core_schema_is_invalid_value() {
        let e = normalize(&req("POST", None, Some(r#"{"schemas":["x"]}"#))).unwrap_err();
        assert_eq!(e.scim_type.as_deref(), Some("invalidValue"));
        let e = normalize(&req("POST", None, Some("[1]"))).unwrap_err();
        assert_eq!(e.scim_type.as_deref(), Some("invalidSyntax"));
        assert!(normalize(&req("POST", Some("1"), Some(USER))).is_err());
    }

    #[test]
    fn patch_parses_ops() {
        let body = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations":[{"op":"Replace","path":"active","value":false},
                          {"op":"REMOVE","path":"emails"}]}"#;
        let ops = normalize(&req("PATCH", Some("42"), Some(body))).unwrap();
        let [Operation::Patch((id, ops))] = &ops[..] else { panic!() };
        assert_eq!(id, "42");
        assert!(matches!(ops[0].op, PatchOpKind::Replace));
        assert_eq!(ops[0].value.as_deref(), Some("false"));
        assert!(matches!(ops[1].op, PatchOpKind::Remove));
        let no_target = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations":[{"op":"remove"}]}"#;
        let e = normalize(&req("PATCH", Some("42"), Some(no_target))).unwrap_err();
        assert_eq!(e.scim_type.as_deref(), Some("noTarget"));
        assert!(normalize(&req("PATCH", None, Some(body))).is_err());
    }

    #[test]
    fn get_without_id_queries() {
        let mut r = req("GET", None, None);
        r.query = vec![
            ("filter".into(), "userName eq \"a\"".into()),
            ("startIndex".into(), "0".into()),
            ("count".into(), "10".into()),
            ("sortOrder".into(), "descending".into()),
            ("attributes".into(), "userName, emails".into()),
        ];
        let ops = normalize(&r).unwrap();
        let [Operation::Query(q)] = &ops[..] else { panic!() };
        assert_eq!(q.start_index, Some(1));
        assert_eq!(q.count, Some(10));
        assert!(q.sort_descending);
        assert_eq!(q.attributes, ["userName", "emails"]);
        r.query = vec![("count".into(), "ten".into())];
        assert!(normalize(&r).unwrap_err().message.contains("`count`"));
    }

    #[test]
    fn legacy_urns_and_stringified_roles_are_quirks_a_dialect_opts_into() {
        let onelogin = r#"{"schemas":["urn:scim:schemas:core:2.0","urn:scim:schemas:extension:enterprise:2.0"],
            "userName":"u","urn:scim:schemas:extension:enterprise:2.0":{"department":"Eng"}}"#;
        // The generic dialect refuses the pre-RFC core URN...
        let e = normalize(&req("POST", None, Some(onelogin))).unwrap_err();
        assert_eq!(e.scim_type.as_deref(), Some("invalidValue"));
        assert!(e.message.contains(scim::USER_SCHEMA), "{}", e.message);
        // ...which a dialect renames between parse and into_operations.
        let mut parsed = parse(&req("POST", None, Some(onelogin))).unwrap();
        assert!(rename_legacy_urns(parsed.body_mut().unwrap().object_mut(), ResourceKind::User));
        let ops = parsed.into_operations(ResourceKind::User).unwrap();
        let [Operation::Create(body)] = &ops[..] else { panic!() };
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["schemas"][0], scim::USER_SCHEMA);
        assert_eq!(v["schemas"][1], scim::ENTERPRISE_USER_SCHEMA);
        assert_eq!(v[scim::ENTERPRISE_USER_SCHEMA]["department"], "Eng");

        let mut roles = serde_json::json!([{"value":"{\"id\":\"1\",\"value\":\"Admin\",\"displayName\":\"The admins\"}"}]);
        assert!(unwrap_stringified_roles(&mut roles));
        assert_eq!(roles[0]["value"], "Admin");
        assert_eq!(roles[0]["display"], "The admins");
        let mut plain = serde_json::json!([{"value":"Admin"}]);
        assert!(!unwrap_stringified_roles(&mut plain));
    }

    #[test]
    fn untouched_bodies_pass_as_sent_and_paths_name_attributes() {
        let spaced = r#"{ "schemas" : ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName" : "a" }"#;
        let ops = normalize(&req("POST", None, Some(spaced))).unwrap();
        assert!(matches!(&ops[..], [Operation::Create(b)] if b == spaced));
        assert!(path_names("active", "active"));
        assert!(path_names("ACTIVE", "active"));
        assert!(path_names("urn:ietf:params:scim:schemas:core:2.0:User:active", "active"));
        assert!(!path_names("inactive", "active"));
        assert!(!path_names("emails[type eq \"work\"].active", "active"));
        assert!(!path_names("é:active", "active"));
    }

    /// A body is read once without being built (only `schemas` kept); the first look at the
    /// object parses it in full. Both readings must agree on every body a dialect can see.
    #[test]
    fn a_body_is_parsed_in_full_only_when_a_dialect_looks_at_it() {
        let err = |body: &str| normalize(&req("POST", None, Some(body))).unwrap_err();
        // Untouched: handed on as sent, never built.
        let body = Body::parse(USER, "request body").unwrap();
        assert!(body.object.get().is_none(), "skimmed, not parsed");
        assert_eq!(body.into_json().unwrap(), USER);
        // A look (no change) parses it, and still hands on the text as sent.
        let body = Body::parse(USER, "request body").unwrap();
        assert_eq!(body.object()["userName"], "a");
        assert_eq!(body.into_json().unwrap(), USER);
        // An edit re-encodes it.
        let mut body = Body::parse(USER, "request body").unwrap();
        assert!(body.edit(|o| o.insert("active".into(), Value::Bool(true)).is_none()));
        let edited: Value = serde_json::from_str(&body.into_json().unwrap()).unwrap();
        assert_eq!(edited["active"], true);

        // The same errors as the full parse, with the same scimType.
        let e = err(r#"{"schemas":null,"userName":"a"}"#);
        assert!(e.message.contains("must be an array of URNs, got null"), "{}", e.message);
        let e = err(r#"{"userName":"a"}"#);
        assert!(e.message.contains("no `schemas` attribute"), "{}", e.message);
        let e = err(r#"[{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"]}]"#);
        assert!(e.message.contains("must be a JSON object, got array"), "{}", e.message);
        let e = err(r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":}"#);
        assert_eq!(e.scim_type.as_deref(), Some("invalidSyntax"), "{}", e.message);
        // A duplicate `schemas`: the last one counts, as in the full parse (and the host's).
        let twice = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"schemas":["x"],"userName":"a"}"#;
        assert!(err(twice).message.contains("must contain `urn:ietf:params:scim:schemas:core:2.0:User`"));
        let twice = r#"{"schemas":["x"],"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"a"}"#;
        assert!(normalize(&req("POST", None, Some(twice))).is_ok());

        // A lone surrogate passes the skim but not the full parse: untouched, the text goes on
        // as sent (the host's own parse refuses it); looked at, the body is refused here rather
        // than edited as an empty object.
        let lone = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"\ud800"}"#;
        let mut body = Body::parse(lone, "request body").unwrap();
        body.edit(|o| o.insert("active".into(), Value::Bool(true)).is_none());
        let e = body.into_json().unwrap_err();
        assert_eq!(e.scim_type.as_deref(), Some("invalidSyntax"), "{}", e.message);
        assert!(e.message.contains("request body is not valid JSON"), "{}", e.message);
    }

    #[test]
    fn other_methods() {
        assert!(matches!(&normalize(&req("DELETE", Some("x"), None)).unwrap()[..], [Operation::Delete(_)]));
        assert!(normalize(&req("DELETE", None, None)).is_err());
        assert!(matches!(&normalize(&req("GET", Some("x"), None)).unwrap()[..], [Operation::Get(_)]));
        let e = normalize(&req("HEAD", None, None)).unwrap_err();
        assert!(matches!(e.kind, crate::ErrorKind::Unsupported));
    }
}
