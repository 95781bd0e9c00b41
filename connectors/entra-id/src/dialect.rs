//! Entra ID's SCIM dialect, undone into RFC 7644 operations.
//!
//! Entra provisions in two PATCH dialects: the legacy one (the default of non-gallery apps:
//! capitalized ops, booleans as the strings `"True"`/`"False"`, member removal as a value list)
//! and the RFC-compliant one (`aadOptscim062020`: lowercase ops, JSON booleans, path-less
//! `replace` values with dotted and URN-qualified keys, filtered member removal). Both arrive at
//! the same endpoint, often mixed in one tenant's history, so every rewrite here applies to both
//! and leaves RFC-correct input as it is.
//!
//! What is undone (see [`normalize`]):
//! * boolean strings (`"False"`, `"true"`, any case) for the RFC 7643 boolean attributes of a
//!   User (`active`, and `primary` of every multi-valued attribute that has it), in PATCH values
//!   (with or without a path, also inside path-less values' keys) and in POST/PUT bodies; any
//!   other string (`"maybe"`) is left for the host to refuse with a clear error;
//! * `remove` of `members` with a value list: one `remove` per member, by value filter;
//! * the enterprise `manager`: full URN path, a bare id or a one-element array as
//!   `{"value": ..}` (a null `$ref` dropped), `remove` by path only;
//! * `replace` through a value filter to a sub-attribute (`emails[type eq "work"].value`) as
//!   `add`, which creates the element when none matches (Entra relies on it);
//! * app roles serialized as JSON inside `roles[].value` strings;
//! * the Microsoft schema URN Entra lists in group bodies' `schemas`.

use idplex_connector_sdk::provisioning::{Operation, PatchOpKind, ScimRequest};
use idplex_connector_sdk::scim_dialect::{self, Body, Parsed, PatchOp};
use idplex_connector_sdk::{ConnectorError, ResourceKind, scim};
use serde_json::{Map, Value};

/// Schema URNs of Microsoft's own that Entra lists in `schemas` next to the RFC ones (group
/// bodies carry `http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group`).
/// Matched as a prefix, ASCII case-insensitively.
pub const MICROSOFT_SCHEMA_PREFIX: &str =
    "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/";

/// The full URN path of the enterprise extension's `manager`.
pub const MANAGER_PATH: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager";

/// Multi-valued User attributes of RFC 7643 §4.1.2 whose elements have a boolean `primary`.
const WITH_PRIMARY: &[&str] = &[
    "emails",
    "phoneNumbers",
    "ims",
    "photos",
    "addresses",
    "entitlements",
    "roles",
    "x509Certificates",
];

/// Normalizes one Entra SCIM request into RFC-correct operations.
pub fn normalize(request: &ScimRequest) -> Result<Vec<Operation>, ConnectorError> {
    let kind = request.resource;
    let mut parsed = scim_dialect::parse(request)?;
    match &mut parsed {
        Parsed::Create(body) | Parsed::Replace(_, body) => fix_body(body, kind),
        Parsed::Patch(_, ops) => *ops = fix_patch(std::mem::take(ops), kind)?,
        Parsed::Delete(_) | Parsed::Get(_) | Parsed::Query(_) => {}
    }
    parsed.into_operations(kind)
}

// ---------------------------------------------------------------------------------------------
// Bodies (POST, PUT)

/// Undoes Entra's quirks in a resource body; the body is re-encoded only if one applied.
fn fix_body(body: &mut Body, kind: ResourceKind) {
    body.edit(|object| fix_object(object, kind));
}

/// Undoes Entra's quirks in a resource object; whether anything changed.
fn fix_object(object: &mut Map<String, Value>, kind: ResourceKind) -> bool {
    let mut changed = drop_microsoft_schemas(object);
    if kind == ResourceKind::User {
        if let Some(roles) = get_ci_mut(object, "roles") {
            changed |= scim_dialect::unwrap_stringified_roles(roles);
        }
        if let Some(Value::Object(enterprise)) = get_ci_mut(object, scim::ENTERPRISE_USER_SCHEMA)
            && let Some(manager) = get_ci_mut(enterprise, "manager")
        {
            // A shape that cannot be fixed (several managers) is left for the host to refuse.
            changed |= fix_manager_value(manager, "manager").unwrap_or(false);
        }
        for (key, value) in object.iter_mut() {
            if let Some(path) = AttrPath::parse(key) {
                changed |= fix_booleans(&path, value);
            }
        }
    }
    changed
}

/// Removes Microsoft's own URNs from `schemas`; whether any was there.
fn drop_microsoft_schemas(object: &mut Map<String, Value>) -> bool {
    let Some(Value::Array(schemas)) = object.get_mut("schemas") else { return false };
    let before = schemas.len();
    schemas.retain(|s| !s.as_str().is_some_and(is_microsoft_schema));
    schemas.len() != before
}

/// Whether `urn` is one of Microsoft's own schema URNs (see [`MICROSOFT_SCHEMA_PREFIX`]).
pub fn is_microsoft_schema(urn: &str) -> bool {
    urn.get(..MICROSOFT_SCHEMA_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(MICROSOFT_SCHEMA_PREFIX))
}

// ---------------------------------------------------------------------------------------------
// PATCH

/// Rewrites Entra's PATCH operations into RFC-correct ones (possibly more of them).
fn fix_patch(ops: Vec<PatchOp>, kind: ResourceKind) -> Result<Vec<PatchOp>, ConnectorError> {
    let mut out = Vec::with_capacity(ops.len());
    for (index, op) in ops.into_iter().enumerate() {
        match kind {
            ResourceKind::Group => fix_group_op(index, op, &mut out)?,
            ResourceKind::User => fix_user_op(index, op, &mut out)?,
        }
    }
    Ok(out)
}

/// A Group operation: member removal by value list becomes one filtered `remove` per member.
fn fix_group_op(index: usize, op: PatchOp, out: &mut Vec<PatchOp>) -> Result<(), ConnectorError> {
    let is_member_list_removal = op.op == PatchOpKind::Remove
        && op.value.is_some()
        && op.path.as_deref().is_some_and(|p| scim_dialect::path_names(p, "members"));
    if !is_member_list_removal {
        out.push(op);
        return Ok(());
    }
    let value = op.value.unwrap_or(Value::Null);
    let members: Vec<&Value> = match &value {
        Value::Array(items) => items.iter().collect(),
        Value::Object(_) => vec![&value],
        other => {
            return Err(invalid_value(format!(
                "Operations[{index}].value: `remove` of `members` with a value must list the \
                 members as [{{\"value\": \"<id>\"}}, ...], got {}",
                idplex_connector_sdk::json::type_name(other)
            )));
        }
    };
    if members.is_empty() {
        return Err(invalid_value(format!(
            "Operations[{index}].value: `remove` of `members` with an empty value list names no \
             member to remove (leave out `value` to remove every member)"
        )));
    }
    for (j, member) in members.into_iter().enumerate() {
        let id = member.as_object().and_then(|m| get_ci(m, "value")).and_then(Value::as_str);
        let Some(id) = id.filter(|id| !id.is_empty()) else {
            return Err(invalid_value(format!(
                "Operations[{index}].value[{j}].value: each member to remove needs its id as a \
                 non-empty string in `value`"
            )));
        };
        out.push(PatchOp {
            op: PatchOpKind::Remove,
            path: Some(format!("members[value eq \"{}\"]", escape_filter_string(id))),
            value: None,
        });
    }
    Ok(())
}

/// A User operation: manager, roles, boolean strings, filtered `replace`.
fn fix_user_op(index: usize, mut op: PatchOp, out: &mut Vec<PatchOp>) -> Result<(), ConnectorError> {
    let path = op.path.as_deref().and_then(AttrPath::parse);
    match path {
        Some(path) if path.is_manager() => {
            op.path = Some(MANAGER_PATH.to_string());
            if op.op == PatchOpKind::Remove {
                op.value = None;
            } else if let Some(value) = op.value.as_mut() {
                fix_manager_value(value, &format!("Operations[{index}].value"))?;
            }
            out.push(op);
        }
        Some(path) => {
            if let Some(value) = op.value.as_mut() {
                if path.names("roles") && path.sub.is_none() {
                    scim_dialect::unwrap_stringified_roles(value);
                }
                fix_booleans(&path, value);
            }
            if op.op == PatchOpKind::Replace && path.filter.is_some() && path.sub.is_some() {
                op.op = PatchOpKind::Add;
            }
            out.push(op);
        }
        None if op.path.is_some() => out.push(op), // unparsable: the host says why
        None => fix_pathless_user_op(index, op, out)?,
    }
    Ok(())
}

/// A path-less User `add`/`replace`: each key of the value is a path of its own (the host
/// accepts dotted and URN-qualified keys). Fixes each key's value; a `replace` key through a
/// value filter to a sub-attribute becomes an `add` of its own, after the path-less operation.
fn fix_pathless_user_op(index: usize, mut op: PatchOp, out: &mut Vec<PatchOp>) -> Result<(), ConnectorError> {
    let Some(Value::Object(object)) = op.value.as_mut() else {
        out.push(op); // no value, or not an object: the host says why
        return Ok(());
    };
    let mut filtered = Vec::new();
    let keys: Vec<String> = object.keys().cloned().collect();
    for key in keys {
        let Some(path) = AttrPath::parse(&key) else { continue };
        if path.is_manager() {
            let mut value = object.remove(&key).unwrap_or(Value::Null);
            if !value.is_null() {
                fix_manager_value(&mut value, &format!("Operations[{index}].value.{key}"))?;
            }
            object.insert(MANAGER_PATH.to_string(), value);
            continue;
        }
        let Some(value) = object.get_mut(&key) else { continue };
        if path.names(scim::ENTERPRISE_USER_SCHEMA) {
            if let Some(manager) = value.as_object_mut().and_then(|e| get_ci_mut(e, "manager"))
                && !manager.is_null()
            {
                fix_manager_value(manager, &format!("Operations[{index}].value.{key}.manager"))?;
            }
            continue;
        }
        if path.names("roles") && path.sub.is_none() {
            scim_dialect::unwrap_stringified_roles(value);
        }
        fix_booleans(&path, value);
        if op.op == PatchOpKind::Replace && path.filter.is_some() && path.sub.is_some() {
            filtered.push(key);
        }
    }
    let extracted: Vec<PatchOp> = filtered
        .into_iter()
        .filter_map(|key| {
            let value = object.remove(&key)?;
            Some(PatchOp { op: PatchOpKind::Add, path: Some(key), value: Some(value) })
        })
        .collect();
    // A path-less operation left empty by the extraction has nothing more to say.
    if !object.is_empty() || extracted.is_empty() {
        out.push(op);
    }
    out.extend(extracted);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Values

/// Turns `manager` as Entra sends it into the RFC 7643 complex value: a bare id `"271"` into
/// `{"value": "271"}`, a one-element array into its element, a null `$ref` dropped. `what` names
/// the field in errors. Whether anything changed.
fn fix_manager_value(value: &mut Value, what: &str) -> Result<bool, ConnectorError> {
    match value {
        Value::String(id) => {
            let mut object = Map::new();
            object.insert("value".into(), Value::String(std::mem::take(id)));
            *value = Value::Object(object);
            Ok(true)
        }
        Value::Array(items) if items.len() == 1 => {
            let mut item = items.pop().unwrap_or(Value::Null);
            fix_manager_value(&mut item, &format!("{what}[0]"))?;
            *value = item;
            Ok(true)
        }
        Value::Array(items) => Err(invalid_value(format!(
            "{what}: `manager` is single-valued; got an array of {} elements",
            items.len()
        ))),
        Value::Object(object) => {
            let null_refs: Vec<String> =
                object.iter().filter(|(k, v)| k.eq_ignore_ascii_case("$ref") && v.is_null()).map(|(k, _)| k.clone()).collect();
            for key in &null_refs {
                object.remove(key);
            }
            Ok(!null_refs.is_empty())
        }
        _ => Ok(false), // a number or boolean: the host refuses it, naming `manager`
    }
}

/// Converts boolean strings where RFC 7643 defines a boolean, for a value at `path` of a User.
/// Whether anything changed.
fn fix_booleans(path: &AttrPath, value: &mut Value) -> bool {
    if path.names("active") && path.filter.is_none() && path.sub.is_none() {
        return coerce_bool(value);
    }
    if !WITH_PRIMARY.iter().any(|a| path.names(a)) {
        return false;
    }
    match path.sub {
        Some(sub) if sub.eq_ignore_ascii_case("primary") => coerce_bool(value),
        Some(_) => false,
        None => {
            let mut changed = false;
            let elements: Vec<&mut Value> = match value {
                Value::Array(items) => items.iter_mut().collect(),
                Value::Object(_) => vec![value],
                _ => Vec::new(),
            };
            for element in elements {
                if let Some(primary) = element.as_object_mut().and_then(|e| get_ci_mut(e, "primary")) {
                    changed |= coerce_bool(primary);
                }
            }
            changed
        }
    }
}

/// `"True"`/`"false"` (any case, surrounding blanks ignored) as a JSON boolean; any other value
/// is left as it is. Whether it converted.
fn coerce_bool(value: &mut Value) -> bool {
    let Value::String(s) = value else { return false };
    let b = match s.trim() {
        t if t.eq_ignore_ascii_case("true") => true,
        t if t.eq_ignore_ascii_case("false") => false,
        _ => return false,
    };
    *value = Value::Bool(b);
    true
}

/// `s` as the content of a double-quoted SCIM filter string (`"` and `\` escaped).
pub fn escape_filter_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Paths

/// An RFC 7644 attribute path taken apart: `[urn:]attr[[filter]][.sub]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrPath<'a> {
    /// The schema URN prefix, without the final `:`.
    pub urn: Option<&'a str>,
    /// The attribute name.
    pub attr: &'a str,
    /// The value filter between `[` and `]`.
    pub filter: Option<&'a str>,
    /// The sub-attribute after `.`.
    pub sub: Option<&'a str>,
}

impl<'a> AttrPath<'a> {
    /// Parses `path`; `None` when it is not of the shape above (unbalanced bracket, empty name).
    pub fn parse(path: &'a str) -> Option<Self> {
        let path = path.trim();
        // A URN prefix ends at the last `:` before any filter (filters may contain colons).
        let head_end = path.find('[').unwrap_or(path.len());
        let (urn, rest) = if path.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")) {
            match path[..head_end].rfind(':') {
                Some(i) if i > 4 => {
                    // `urn:...:User` itself (an extension object's key) has no attribute.
                    let candidate = &path[i + 1..];
                    (Some(&path[..i]), candidate)
                }
                _ => return None,
            }
        } else {
            (None, path)
        };
        let name_end = rest.find(['[', '.']).unwrap_or(rest.len());
        let attr = &rest[..name_end];
        if attr.is_empty() {
            return None;
        }
        let mut tail = &rest[name_end..];
        let mut filter = None;
        if tail.starts_with('[') {
            let close = closing_bracket(tail)?;
            filter = Some(&tail[1..close]);
            tail = &tail[close + 1..];
        }
        let sub = match tail {
            "" => None,
            t if t.starts_with('.') && t.len() > 1 => Some(&t[1..]),
            _ => return None,
        };
        Some(AttrPath { urn, attr, filter, sub })
    }

    /// Whether the attribute (or, for a bare extension URN key, the whole URN) is `name`,
    /// ASCII case-insensitively.
    pub fn names(&self, name: &str) -> bool {
        if self.attr.eq_ignore_ascii_case(name) {
            return true;
        }
        // `urn:...:enterprise:2.0:User` parses as URN `urn:...:2.0` + attribute `User`.
        match (self.urn, self.filter, self.sub) {
            (Some(urn), None, None) => {
                name.len() == urn.len() + 1 + self.attr.len()
                    && name.get(..urn.len()).is_some_and(|n| n.eq_ignore_ascii_case(urn))
                    && name.as_bytes()[urn.len()] == b':'
                    && name[urn.len() + 1..].eq_ignore_ascii_case(self.attr)
            }
            _ => false,
        }
    }

    /// Whether this is the enterprise extension's `manager` (bare, or under the enterprise URN).
    pub fn is_manager(&self) -> bool {
        self.attr.eq_ignore_ascii_case("manager")
            && self.filter.is_none()
            && self.sub.is_none()
            && self.urn.is_none_or(|u| u.eq_ignore_ascii_case(scim::ENTERPRISE_USER_SCHEMA))
    }
}

/// The index of the `]` closing the `[` at the start of `s`, skipping quoted strings.
fn closing_bracket(s: &str) -> Option<usize> {
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            ']' if !in_string => return Some(i),
            _ => {}
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Small helpers

/// The value under `key` (exact, else ASCII case-insensitive: SCIM attribute names are).
fn get_ci<'m>(object: &'m Map<String, Value>, key: &str) -> Option<&'m Value> {
    object
        .get(key)
        .or_else(|| object.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

/// Mutable [`get_ci`].
fn get_ci_mut<'m>(object: &'m mut Map<String, Value>, key: &str) -> Option<&'m mut Value> {
    let actual = if object.contains_key(key) {
        key.to_string()
    } else {
        object.keys().find(|k| k.eq_ignore_ascii_case(key))?.clone()
    };
    object.get_mut(&actual)
}

fn invalid_value(message: String) -> ConnectorError {
    ConnectorError::invalid_request(message).with_scim_type("invalidValue")
}
