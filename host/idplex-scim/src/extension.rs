//! Schema extensions declared at run time: the attributes an IdP sends beyond the core schemas
//! (an app's custom attributes), declared by a connector as RFC 7643 §7 definitions. Each is
//! checked here, then interned for the life of the process so the rest of the crate keeps its
//! `&'static` schema model: [`resource_type_with`] gives the same `&'static ResourceType` for
//! the same declarations, so memory grows with the number of *distinct* declarations only
//! (bounded by [`MAX_INTERNED`]), not with requests or rebinds.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde_json::{Map, Value};

use crate::schema::{
    AttrType, AttributeDef, ENTERPRISE_USER_URN, GROUP_SCHEMA_URN, Mutability, ResourceType, Returned, Schema,
    SchemaExtension, USER_SCHEMA_URN, Uniqueness,
};

/// At most this many extensions per resource type.
pub const MAX_EXTENSIONS: usize = 8;
/// At most this many attributes in one extension, sub-attributes included.
pub const MAX_EXTENSION_ATTRIBUTES: usize = 128;
/// Longest definition, in bytes of JSON.
pub const MAX_DEFINITION_BYTES: usize = 64 * 1024;
/// Longest schema URN, in bytes.
pub const MAX_URN_BYTES: usize = 256;
/// At most this many distinct extended resource types are interned per process.
pub const MAX_INTERNED: usize = 4096;

/// One extension as a connector declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredExtension {
    /// Schema URN, also the key its attributes arrive under.
    pub id: String,
    /// Whether every resource must carry it.
    pub required: bool,
    /// RFC 7643 §7 definition (JSON text).
    pub definition: String,
}

/// `base` with `declared` added to its extensions, interned (the same declarations give the
/// same reference). No declarations: `base` itself. The error names the extension and the
/// attribute at fault.
pub fn resource_type_with(
    base: &'static ResourceType,
    declared: &[DeclaredExtension],
) -> Result<&'static ResourceType, String> {
    if declared.is_empty() {
        return Ok(base);
    }
    if declared.len() > MAX_EXTENSIONS {
        return Err(format!("{} schema extensions of {} declared: at most {MAX_EXTENSIONS}", declared.len(), base.name));
    }
    let key = interning_key(base, declared);
    static INTERNED: OnceLock<Mutex<HashMap<String, &'static ResourceType>>> = OnceLock::new();
    let interned = INTERNED.get_or_init(Default::default);
    if let Some(rt) = interned.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key) {
        return Ok(rt);
    }
    let mut extensions: Vec<SchemaExtension> =
        base.extensions.iter().map(|e| SchemaExtension { schema: e.schema, required: e.required }).collect();
    for (i, d) in declared.iter().enumerate() {
        check_urn(&d.id)?;
        if declared[..i].iter().any(|o| o.id.eq_ignore_ascii_case(&d.id)) {
            return Err(format!("schema extension {} is declared twice", d.id));
        }
        let schema = parse_definition(&d.id, &d.definition).map_err(|e| format!("schema extension {}: {e}", d.id))?;
        extensions.push(SchemaExtension { schema: leak(schema), required: d.required });
    }
    let mut map = interned.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(rt) = map.get(&key) {
        return Ok(rt);
    }
    if map.len() >= MAX_INTERNED {
        return Err(format!(
            "this process already holds {MAX_INTERNED} distinct schema extension declarations; restart it to drop unused ones"
        ));
    }
    let rt: &'static ResourceType = leak(ResourceType {
        name: base.name,
        endpoint: base.endpoint,
        description: base.description,
        schema: base.schema,
        extensions: Box::leak(extensions.into_boxed_slice()),
    });
    map.insert(key, rt);
    Ok(rt)
}

fn interning_key(base: &ResourceType, declared: &[DeclaredExtension]) -> String {
    let mut key = base.name.to_string();
    for d in declared {
        // Lengths first: no two different declaration lists give the same key.
        key.push_str(&format!("\n{}:{}:{}:{}{}", d.id.len(), d.definition.len(), d.required, d.id, d.definition));
    }
    key
}

fn leak<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

fn leak_str(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

fn check_urn(id: &str) -> Result<(), String> {
    let reserved = [USER_SCHEMA_URN, GROUP_SCHEMA_URN, ENTERPRISE_USER_URN];
    if id.len() > MAX_URN_BYTES {
        return Err(format!("schema extension id is {} bytes: at most {MAX_URN_BYTES}", id.len()));
    }
    if !id.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
        || id.len() < 6
        || id.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!("schema extension id {id:?} is not a URN (`urn:…`, no spaces)"));
    }
    let lower = id.to_ascii_lowercase();
    if reserved.iter().any(|r| r.eq_ignore_ascii_case(id)) || lower.starts_with("urn:scim:schemas:core:") {
        return Err(format!("schema extension id {id} is a core schema's; extensions need their own URN"));
    }
    if lower.starts_with("urn:ietf:params:scim:api:") || lower.starts_with("urn:ietf:params:scim:schemas:core:") {
        return Err(format!("schema extension id {id} is in a namespace RFC 7643 reserves"));
    }
    Ok(())
}

/// Parses one RFC 7643 §7 schema definition for extension `id`.
fn parse_definition(id: &str, definition: &str) -> Result<Schema, String> {
    if definition.len() > MAX_DEFINITION_BYTES {
        return Err(format!("the definition is {} bytes: at most {MAX_DEFINITION_BYTES}", definition.len()));
    }
    let value: Value = serde_json::from_str(definition).map_err(|e| format!("the definition is not JSON: {e}"))?;
    let Value::Object(obj) = value else {
        return Err("the definition is not a JSON object".into());
    };
    for key in obj.keys() {
        if !["name", "description", "attributes", "id", "schemas", "meta"].contains(&key.as_str()) {
            return Err(format!("unknown key {key:?} in the definition"));
        }
    }
    if let Some(own) = obj.get("id").and_then(Value::as_str) {
        if !own.eq_ignore_ascii_case(id) {
            return Err(format!("the definition's id {own:?} is not the declared one"));
        }
    }
    let fallback = id.rsplit(':').find(|s| !s.is_empty()).unwrap_or(id);
    let name = optional_str(&obj, "name")?.unwrap_or(fallback);
    let description = optional_str(&obj, "description")?.unwrap_or("");
    let Some(Value::Array(attrs)) = obj.get("attributes") else {
        return Err("the definition has no `attributes` array".into());
    };
    if attrs.is_empty() {
        return Err("the definition's `attributes` is empty".into());
    }
    let mut count = 0usize;
    let attributes = parse_attributes(attrs, 0, &mut count, "")?;
    Ok(Schema { id: leak_str(id), name: leak_str(name), description: leak_str(description), attributes })
}

fn parse_attributes(
    attrs: &[Value],
    depth: usize,
    count: &mut usize,
    parent: &str,
) -> Result<&'static [AttributeDef], String> {
    let mut out: Vec<AttributeDef> = Vec::with_capacity(attrs.len());
    for a in attrs {
        *count += 1;
        if *count > MAX_EXTENSION_ATTRIBUTES {
            return Err(format!("more than {MAX_EXTENSION_ATTRIBUTES} attributes"));
        }
        let def = parse_attribute(a, depth, count, parent)?;
        if out.iter().any(|o| o.name.eq_ignore_ascii_case(def.name)) {
            return Err(format!("attribute {parent}{} is defined twice", def.name));
        }
        out.push(def);
    }
    Ok(Box::leak(out.into_boxed_slice()))
}

const ATTRIBUTE_KEYS: &[&str] = &[
    "name",
    "type",
    "multiValued",
    "description",
    "required",
    "caseExact",
    "mutability",
    "returned",
    "uniqueness",
    "canonicalValues",
    "referenceTypes",
    "subAttributes",
];

fn parse_attribute(a: &Value, depth: usize, count: &mut usize, parent: &str) -> Result<AttributeDef, String> {
    let Value::Object(obj) = a else {
        return Err(format!("an attribute of {}is not a JSON object", if parent.is_empty() { String::new() } else { format!("{parent} ") }));
    };
    let name = match obj.get("name") {
        Some(Value::String(n)) if is_attribute_name(n) => n.as_str(),
        Some(Value::String(n)) => {
            return Err(format!(
                "attribute name {n:?} is not an RFC 7643 name (a letter, then letters, digits, `-` or `_`; at most 64)"
            ));
        }
        _ => return Err(format!("an attribute of {}has no `name`", if parent.is_empty() { "the definition ".to_string() } else { format!("{parent} ") })),
    };
    let path = format!("{parent}{name}");
    let at = |e: String| format!("attribute {path}: {e}");
    for key in obj.keys() {
        if !ATTRIBUTE_KEYS.contains(&key.as_str()) {
            return Err(at(format!("unknown key {key:?}")));
        }
    }
    let ty = match optional_str(obj, "type").map_err(at)? {
        Some("string") => AttrType::String,
        Some("boolean") => AttrType::Boolean,
        Some("decimal") => AttrType::Decimal,
        Some("integer") => AttrType::Integer,
        Some("dateTime") => AttrType::DateTime,
        Some("binary") => AttrType::Binary,
        Some("reference") => AttrType::Reference,
        Some("complex") => AttrType::Complex,
        Some(other) => return Err(at(format!("unknown type {other:?}"))),
        None => return Err(at("no `type`".into())),
    };
    let mutability = match optional_str(obj, "mutability").map_err(at)? {
        None | Some("readWrite") => Mutability::ReadWrite,
        Some("readOnly") => Mutability::ReadOnly,
        Some("immutable") => Mutability::Immutable,
        Some("writeOnly") => Mutability::WriteOnly,
        Some(other) => return Err(at(format!("unknown mutability {other:?}"))),
    };
    let returned = match optional_str(obj, "returned").map_err(at)? {
        None | Some("default") => Returned::Default,
        Some("always") => Returned::Always,
        Some("never") => Returned::Never,
        Some("request") => Returned::Request,
        Some(other) => return Err(at(format!("unknown returned {other:?}"))),
    };
    let uniqueness = match optional_str(obj, "uniqueness").map_err(at)? {
        None | Some("none") => Uniqueness::None,
        // The host enforces uniqueness for `userName` only: an extension cannot promise more.
        Some(other) => return Err(at(format!("uniqueness {other:?} is not supported for extension attributes"))),
    };
    let sub_attributes = match (ty, obj.get("subAttributes")) {
        (AttrType::Complex, _) if depth > 0 => return Err(at("a complex attribute cannot hold another one".into())),
        (AttrType::Complex, Some(Value::Array(subs))) if !subs.is_empty() => {
            parse_attributes(subs, depth + 1, count, &format!("{path}."))?
        }
        (AttrType::Complex, _) => return Err(at("a complex attribute needs `subAttributes`".into())),
        (_, None) => &[],
        (_, Some(_)) => return Err(at("only a complex attribute has `subAttributes`".into())),
    };
    Ok(AttributeDef {
        name: leak_str(name),
        ty,
        multi_valued: optional_bool(obj, "multiValued").map_err(at)?,
        description: leak_str(optional_str(obj, "description").map_err(at)?.unwrap_or("")),
        required: optional_bool(obj, "required").map_err(at)?,
        case_exact: optional_bool(obj, "caseExact").map_err(at)?,
        mutability,
        returned,
        uniqueness,
        canonical_values: string_list(obj, "canonicalValues").map_err(at)?,
        reference_types: string_list(obj, "referenceTypes").map_err(at)?,
        sub_attributes,
    })
}

fn is_attribute_name(n: &str) -> bool {
    let mut chars = n.chars();
    n.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn optional_str<'v>(obj: &'v Map<String, Value>, key: &str) -> Result<Option<&'v str>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= 1024 => Ok(Some(s)),
        Some(Value::String(_)) => Err(format!("`{key}` is longer than 1024 bytes")),
        Some(_) => Err(format!("`{key}` is not a string")),
    }
}

fn optional_bool(obj: &Map<String, Value>, key: &str) -> Result<bool, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("`{key}` is not a boolean")),
    }
}

fn string_list(obj: &Map<String, Value>, key: &str) -> Result<&'static [&'static str], String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) if items.len() <= 64 => {
            let strings = items
                .iter()
                .map(|v| v.as_str().filter(|s| s.len() <= 256).map(leak_str))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| format!("`{key}` holds something other than short strings"))?;
            Ok(Box::leak(strings.into_boxed_slice()))
        }
        Some(_) => Err(format!("`{key}` is not a list of at most 64 strings")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{GROUP_RESOURCE_TYPE, USER_RESOURCE_TYPE};
    use serde_json::json;

    const URN: &str = "urn:example:params:scim:schemas:extension:acme:2.0:User";

    fn declared(definition: Value) -> Vec<DeclaredExtension> {
        vec![DeclaredExtension { id: URN.into(), required: false, definition: definition.to_string() }]
    }

    fn badge() -> Value {
        json!({"name": "AcmeUser", "description": "Acme app attributes", "attributes": [
            {"name": "costCenter", "type": "string"},
            {"name": "badgeNumber", "type": "integer", "required": true},
            {"name": "licenses", "type": "complex", "multiValued": true, "subAttributes": [
                {"name": "sku", "type": "string"}, {"name": "assigned", "type": "dateTime"}
            ]}
        ]})
    }

    #[test]
    fn a_declared_extension_joins_the_resource_type_and_resolves() {
        let rt = resource_type_with(&USER_RESOURCE_TYPE, &declared(badge())).unwrap();
        assert_eq!(rt.extensions.len(), 2, "enterprise + acme");
        let (schema, _) = rt.schema_for_urn(URN).expect("the extension is known");
        assert_eq!(schema.name, "AcmeUser");
        let badge = schema.attribute("BADGENUMBER").expect("names compare without case");
        assert_eq!((badge.ty, badge.required), (AttrType::Integer, true));
        let sku = rt.resolve_str(&format!("{URN}:licenses.sku")).expect("a sub-attribute resolves");
        assert_eq!(sku.leaf().ty, AttrType::String);
    }

    #[test]
    fn the_same_declarations_are_interned_once() {
        let a = resource_type_with(&USER_RESOURCE_TYPE, &declared(badge())).unwrap();
        let b = resource_type_with(&USER_RESOURCE_TYPE, &declared(badge())).unwrap();
        assert!(std::ptr::eq(a, b));
        let g = resource_type_with(&GROUP_RESOURCE_TYPE, &declared(badge())).unwrap();
        assert!(!std::ptr::eq(a, g), "another base is another resource type");
        assert!(std::ptr::eq(resource_type_with(&USER_RESOURCE_TYPE, &[]).unwrap(), &USER_RESOURCE_TYPE));
    }

    #[test]
    fn bad_declarations_are_refused_naming_what_is_wrong() {
        let cases: Vec<(Vec<DeclaredExtension>, &str)> = vec![
            (declared(json!({"attributes": [{"name": "x", "type": "colour"}]})), "attribute x: unknown type \"colour\""),
            (declared(json!({"attributes": []})), "`attributes` is empty"),
            (declared(json!({"attributes": [{"name": "9lives", "type": "string"}]})), "not an RFC 7643 name"),
            (declared(json!({"attributes": [{"name": "a", "type": "string"}, {"name": "A", "type": "string"}]})), "attribute A is defined twice"),
            (
                declared(json!({"attributes": [{"name": "c", "type": "complex", "subAttributes": [{"name": "d", "type": "complex", "subAttributes": [{"name": "e", "type": "string"}]}]}]})),
                "attribute c.d: a complex attribute cannot hold another one",
            ),
            (declared(json!({"attributes": [{"name": "s", "type": "string", "subAttributes": []}]})), "only a complex attribute"),
            (declared(json!({"attributes": [{"name": "u", "type": "string", "uniqueness": "server"}]})), "uniqueness \"server\" is not supported"),
            (declared(json!({"attributes": [{"name": "x", "type": "string", "colour": "red"}]})), "unknown key \"colour\""),
            (declared(json!(["not", "an", "object"])), "not a JSON object"),
            (
                vec![DeclaredExtension { id: USER_SCHEMA_URN.into(), required: false, definition: badge().to_string() }],
                "is a core schema's",
            ),
            (
                vec![DeclaredExtension { id: "acme".into(), required: false, definition: badge().to_string() }],
                "is not a URN",
            ),
            (
                vec![
                    DeclaredExtension { id: URN.into(), required: false, definition: badge().to_string() },
                    DeclaredExtension { id: URN.to_uppercase(), required: false, definition: badge().to_string() },
                ],
                "declared twice",
            ),
        ];
        for (declared, expected) in cases {
            let e = resource_type_with(&USER_RESOURCE_TYPE, &declared).expect_err(expected);
            assert!(e.contains(expected), "{e:?} should say {expected:?}");
        }
        let many: Vec<Value> = (0..=MAX_EXTENSION_ATTRIBUTES).map(|i| json!({"name": format!("a{i}"), "type": "string"})).collect();
        let e = resource_type_with(&USER_RESOURCE_TYPE, &declared(json!({"attributes": many}))).unwrap_err();
        assert!(e.contains("more than 128 attributes"), "{e}");
    }
}
