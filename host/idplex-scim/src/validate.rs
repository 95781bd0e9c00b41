//! Validation of a full resource for create (POST) and replace (PUT), returning the
//! normalised representation to store.
//!
//! Policy (the strictest the Okta / Entra / OneLogin fixture vectors still pass):
//! * `schemas` must be present and include the resource type's core schema (legacy
//!   `urn:scim:schemas:core:2.0` accepted). Other URNs listed in `schemas` that we do not
//!   know (Entra adds a Microsoft group schema) are tolerated and dropped; the stored
//!   `schemas` is rebuilt from the data (core + extensions actually present).
//! * Unknown attributes are **rejected** with `invalidSyntax` naming the attribute, both at
//!   the top level, inside known extensions and as sub-attributes; data under an unknown
//!   extension URN key is rejected too. The RFC lets servers ignore them, but silently
//!   dropping data an IdP believes it provisioned hides mapping mistakes.
//! * readOnly attributes in the input (`id`, `meta`, `groups`, `manager.displayName`,
//!   `members.display`) are ignored, as RFC 7643 §2.2 says.
//! * nulls and empty arrays mean "unassigned" and are dropped.
//! * required attributes (`userName`, Group `displayName`) must be present and non-empty:
//!   `invalidValue`. Type mismatches are `invalidValue` too.
//! * `password` (writeOnly) is kept in the result: the caller must hash/strip it before
//!   storing; projection never returns it.
//! * Legacy extension keys (`urn:scim:schemas:extension:enterprise:2.0`) are re-keyed to
//!   the RFC URN.

use crate::coerce::{PatchOptions, coerce_attr};
use crate::error::{ScimError, ScimType, err};
use crate::schema::{AttributeDef, ResourceType};
use crate::value::{get_ci, is_present};
use serde_json::{Map, Value};

/// Checks `input` against `rt` and returns the normalised resource (see module docs).
/// `options` enables the same value coercions as PATCH (e.g. `"True"` for booleans).
pub fn prepare_resource(
    rt: &ResourceType,
    input: &Value,
    options: &PatchOptions,
) -> Result<Value, ScimError> {
    let obj = input
        .as_object()
        .ok_or_else(|| err(ScimType::InvalidSyntax, "resource must be a JSON object"))?;
    let schemas = get_ci(obj, "schemas")
        .and_then(Value::as_array)
        .ok_or_else(|| err(ScimType::InvalidSyntax, "missing 'schemas' array"))?;
    let has_core = schemas
        .iter()
        .filter_map(Value::as_str)
        .any(|u| matches!(rt.schema_for_urn(u), Some((_, false))));
    if !has_core {
        return Err(err(
            ScimType::InvalidSyntax,
            format!("'schemas' must include {}", rt.schema.id),
        ));
    }
    let mut out = Map::new();
    let mut schema_ids = vec![Value::String(rt.schema.id.to_owned())];
    for (key, value) in obj {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if let Some(ext) = rt.extension(key) {
            let inner = match value {
                Value::Null => continue,
                Value::Object(o) => o,
                _ => {
                    return Err(err(
                        ScimType::InvalidSyntax,
                        format!("'{key}' must be an object"),
                    ));
                }
            };
            let mut ext_out = Map::new();
            for (k, v) in inner {
                let def = ext
                    .attribute(k)
                    .ok_or_else(|| unknown(&format!("{}:{k}", ext.id)))?;
                put(
                    &mut ext_out,
                    def,
                    v,
                    options,
                    &format!("{}:{}", ext.id, def.name),
                )?;
            }
            if !ext_out.is_empty() {
                out.insert(ext.id.to_owned(), Value::Object(ext_out));
                schema_ids.push(Value::String(ext.id.to_owned()));
            }
            continue;
        }
        let def = rt.root_attribute(key).ok_or_else(|| unknown(key))?;
        put(&mut out, def, value, options, def.name)?;
    }
    for def in rt.schema.attributes.iter().filter(|a| a.required) {
        if !out.get(def.name).is_some_and(is_present) {
            return Err(err(
                ScimType::InvalidValue,
                format!("required attribute '{}' is missing", def.name),
            ));
        }
    }
    for ext in rt.extensions.iter().filter(|e| e.required) {
        if !out.contains_key(ext.schema.id) {
            return Err(err(
                ScimType::InvalidValue,
                format!("required extension '{}' is missing", ext.schema.id),
            ));
        }
    }
    out.insert("schemas".to_owned(), Value::Array(schema_ids));
    Ok(Value::Object(out))
}

fn unknown(name: &str) -> ScimError {
    err(
        ScimType::InvalidSyntax,
        format!("unknown attribute '{name}'"),
    )
}

/// Type-checks one attribute and stores it under its schema spelling, skipping readOnly
/// attributes and unassigned values.
fn put(
    out: &mut Map<String, Value>,
    def: &AttributeDef,
    v: &Value,
    o: &PatchOptions,
    label: &str,
) -> Result<(), ScimError> {
    if def.is_read_only() {
        return Ok(());
    }
    if let Some(x) = coerce_attr(def, v, o, label)? {
        out.insert(def.name.to_owned(), x);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ENTERPRISE_USER_URN, GROUP_RESOURCE_TYPE, USER_RESOURCE_TYPE};
    use crate::test_fixtures;
    use serde_json::json;

    const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

    #[test]
    fn normalisation() {
        let input = json!({
            "schemas": ["urn:scim:schemas:core:2.0", "urn:scim:schemas:extension:enterprise:2.0"],
            "id": "client-id", "meta": {"resourceType": "User"}, "groups": [{"value": "g"}],
            "UserName": "a@b.c", "addresses": null, "roles": [], "password": "pw",
            "name": {"givenName": "A", "honorificPrefix": null},
            "urn:scim:schemas:extension:enterprise:2.0": {"department": "Eng", "manager": {"value": "m", "displayName": "M"}}
        });
        let out = prepare_resource(&USER_RESOURCE_TYPE, &input, &PatchOptions::STRICT).unwrap();
        assert_eq!(
            out,
            json!({
                "schemas": [CORE, ENTERPRISE_USER_URN],
                "userName": "a@b.c", "password": "pw", "name": {"givenName": "A"},
                ENTERPRISE_USER_URN: {"department": "Eng", "manager": {"value": "m"}}
            })
        );
    }

    /// (description, resource type is group, input, scimType, detail fragment)
    #[test]
    fn rejections() {
        let table: Vec<(&str, bool, Value, ScimType, &str)> = vec![
            (
                "not an object",
                false,
                json!([]),
                ScimType::InvalidSyntax,
                "JSON object",
            ),
            (
                "no schemas",
                false,
                json!({"userName": "a"}),
                ScimType::InvalidSyntax,
                "missing 'schemas'",
            ),
            (
                "wrong core",
                false,
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "userName": "a"}),
                ScimType::InvalidSyntax,
                "must include urn:ietf:params:scim:schemas:core:2.0:User",
            ),
            (
                "missing userName",
                false,
                json!({"schemas": [CORE], "displayName": "x"}),
                ScimType::InvalidValue,
                "required attribute 'userName'",
            ),
            (
                "empty userName",
                false,
                json!({"schemas": [CORE], "userName": ""}),
                ScimType::InvalidValue,
                "required attribute 'userName'",
            ),
            (
                "unknown attribute",
                false,
                json!({"schemas": [CORE], "userName": "a", "favoriteColor": "red"}),
                ScimType::InvalidSyntax,
                "unknown attribute 'favoriteColor'",
            ),
            (
                "unknown ext attribute",
                false,
                json!({"schemas": [CORE], "userName": "a", ENTERPRISE_USER_URN: {"shoeSize": 9}}),
                ScimType::InvalidSyntax,
                "enterprise:2.0:User:shoeSize",
            ),
            (
                "unknown extension",
                false,
                json!({"schemas": [CORE], "userName": "a", "urn:example:ext:1.0": {"x": 1}}),
                ScimType::InvalidSyntax,
                "unknown attribute 'urn:example:ext:1.0'",
            ),
            (
                "unknown sub-attribute",
                false,
                json!({"schemas": [CORE], "userName": "a", "name": {"nick": "x"}}),
                ScimType::InvalidSyntax,
                "'name.nick'",
            ),
            (
                "bad boolean",
                false,
                json!({"schemas": [CORE], "userName": "a", "active": "yes"}),
                ScimType::InvalidValue,
                "'active'",
            ),
            (
                "bad multi element",
                false,
                json!({"schemas": [CORE], "userName": "a", "emails": ["a@b"]}),
                ScimType::InvalidValue,
                "'emails'",
            ),
            (
                "group needs displayName",
                true,
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"]}),
                ScimType::InvalidValue,
                "'displayName'",
            ),
            (
                "user attr on group",
                true,
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "g", "userName": "x"}),
                ScimType::InvalidSyntax,
                "'userName'",
            ),
        ];
        for (what, is_group, input, ty, frag) in table {
            let rt = if is_group {
                &GROUP_RESOURCE_TYPE
            } else {
                &USER_RESOURCE_TYPE
            };
            let e = prepare_resource(rt, &input, &PatchOptions::STRICT).expect_err(what);
            assert_eq!(e.scim_type, Some(ty), "{what}: {e}");
            assert!(e.detail.contains(frag), "{what}: {}", e.detail);
        }
    }

    #[test]
    fn lenient_boolean_strings() {
        let input = json!({"schemas": [CORE], "userName": "a", "active": "False"});
        assert!(prepare_resource(&USER_RESOURCE_TYPE, &input, &PatchOptions::STRICT).is_err());
        let out =
            prepare_resource(&USER_RESOURCE_TYPE, &input, &PatchOptions::IDP_COMPATIBLE).unwrap();
        assert_eq!(out["active"], json!(false));
    }

    /// Every POST/PUT body of the IdP fixtures validates strictly.
    #[test]
    fn fixture_bodies_validate() {
        let mut seen = 0;
        for (id, v) in test_fixtures::vectors() {
            let req = &v["request"];
            if !matches!(req["method"].as_str(), Some("POST" | "PUT")) {
                continue;
            }
            seen += 1;
            let rt = if req["path"].as_str().unwrap().contains("/Groups") {
                &GROUP_RESOURCE_TYPE
            } else {
                &USER_RESOURCE_TYPE
            };
            let out = prepare_resource(rt, &req["body"], &PatchOptions::STRICT)
                .unwrap_or_else(|e| panic!("{id}: {e}"));
            for ro in ["id", "meta", "groups"] {
                assert!(out.get(ro).is_none(), "{id}: {ro} kept");
            }
            // Normalising is idempotent.
            assert_eq!(
                prepare_resource(rt, &out, &PatchOptions::STRICT).unwrap(),
                out,
                "{id}"
            );
        }
        assert!(seen >= 10, "only {seen} bodies");
    }
}
