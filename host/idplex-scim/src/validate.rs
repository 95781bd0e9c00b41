//! Validation of a full resource for create (POST) and replace (PUT), returning the
//! normalised representation to store.
//!
//! Policy (the strictest the Okta / Entra / OneLogin fixture vectors still pass):
//! * `schemas` must be present and include the resource type's core schema (its RFC URN:
//!   a pre-RFC `urn:scim:schemas:core:2.0` is refused; the onelogin connector rewrites it).
//!   Other URNs listed in `schemas` that we do not
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
//! * Extension keys in another case are re-keyed to the URN as defined.
//! * `userName` is stored in the canonical form of [`canonical_user_name`] (trimmed,
//!   width-mapped, NFC; invisible and control characters refused).
//! * Every string of the result passes [`check_resource_strings`]: no U+0000 (PostgreSQL
//!   cannot store it), identifier-like strings at most [`Limits::max_identifier_bytes`],
//!   others at most [`Limits::max_string_bytes`], multi-valued attributes at most
//!   [`Limits::max_multi_valued`] elements.

use crate::coerce::{PatchOptions, coerce_attr};
use crate::error::{ScimError, ScimType, err};
use crate::limits::Limits;
use crate::schema::{AttributeDef, ResourceType};
use crate::value::{get_ci, is_present};
use serde_json::{Map, Value};
use unicode_normalization::UnicodeNormalization;

/// Checks `input` against `rt` and returns the normalised resource (see module docs),
/// within [`Limits::DEFAULT`]. `options` enables the same value coercions as PATCH (e.g.
/// `"True"` for booleans).
pub fn prepare_resource(
    rt: &ResourceType,
    input: &Value,
    options: &PatchOptions,
) -> Result<Value, ScimError> {
    prepare_resource_with(rt, input, options, &Limits::DEFAULT)
}

/// [`prepare_resource`] within `limits`. Call it on every representation about to be
/// stored: a POST / PUT body, and the result of [`crate::apply_patch`]. Errors are
/// `invalidSyntax` / `invalidValue` (400) naming the attribute.
pub fn prepare_resource_with(
    rt: &ResourceType,
    input: &Value,
    options: &PatchOptions,
    limits: &Limits,
) -> Result<Value, ScimError> {
    let mut out = prepare_unchecked(rt, input, options)?;
    if let Some(Value::String(name)) = out.get_mut("userName") {
        *name = canonical_user_name(name)?;
    }
    check_resource_strings(&out, limits)?;
    Ok(out)
}

fn prepare_unchecked(
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

/// The canonical form of a `userName`, the one stored and compared for uniqueness (the
/// store then compares case-insensitively, lowercasing with Unicode `to_lowercase`).
///
/// The rule, after RFC 8265 (PRECIS) `UsernameCaseMapped` / `OpaqueString`:
/// 1. leading and trailing white space (Unicode `White_Space`) is trimmed;
/// 2. refused (`invalidValue`, the detail names the character as `U+XXXX` and its
///    position): control characters (Cc, e.g. U+0000, tab, newline inside the name),
///    format and default-ignorable characters (Cf and friends: soft hyphen U+00AD,
///    zero-width space / non-joiner / joiner U+200B–U+200D, bidi controls U+200E/F,
///    U+202A–U+202E, U+2066–U+2069, word joiner U+2060, BOM U+FEFF, variation selectors,
///    tag characters, Hangul fillers), private-use characters and noncharacters.
///    Unassigned code points are *not* checked (that needs the Unicode tables);
/// 3. fullwidth and halfwidth forms (U+FF01–U+FFEE) are mapped to their normal width
///    (`ａｌｉｃｅ` → `alice`, halfwidth katakana → katakana); other white space inside the
///    name (no-break space, ideographic space, ...) becomes U+0020;
/// 4. the result is NFC-normalised (`e` + U+0301 → `é`);
/// 5. an empty result is refused.
///
/// Width mapping is PRECIS's: NFKC over the whole name would also fold characters users
/// see as different (ligature `ﬁ` → `fi`, `²` → `2`, `ℌ` → `H`, circled digits), which
/// RFC 8265 deliberately stopped doing; NFKC is applied to the width block only.
///
/// So `alice`, `ａｌｉｃｅ` and `alice ` are the same user and `al\u{200b}ice` is refused.
pub fn canonical_user_name(raw: &str) -> Result<String, ScimError> {
    let trimmed = raw.trim();
    let mut mapped = String::with_capacity(trimmed.len());
    for (i, c) in trimmed.chars().enumerate() {
        if let Some(what) = forbidden_in_name(c) {
            return Err(err(
                ScimType::InvalidValue,
                format!(
                    "userName contains U+{:04X} ({what}) at character {i}; such characters are not allowed",
                    c as u32
                ),
            ));
        }
        if ('\u{FF01}'..='\u{FFEE}').contains(&c) {
            mapped.extend(std::iter::once(c).nfkc());
        } else if c.is_whitespace() {
            mapped.push(' ');
        } else {
            mapped.push(c);
        }
    }
    let canonical: String = mapped.nfc().collect();
    let canonical = canonical.trim();
    if canonical.is_empty() {
        return Err(err(
            ScimType::InvalidValue,
            "userName is empty (after trimming white space)",
        ));
    }
    Ok(canonical.to_owned())
}

/// Why `c` may not appear in a userName, if it may not.
fn forbidden_in_name(c: char) -> Option<&'static str> {
    let u = c as u32;
    if c.is_control() {
        return Some("a control character");
    }
    const INVISIBLE: &[(u32, u32)] = &[
        (0x00AD, 0x00AD),
        (0x034F, 0x034F),
        (0x0600, 0x0605),
        (0x061C, 0x061C),
        (0x06DD, 0x06DD),
        (0x070F, 0x070F),
        (0x0890, 0x0891),
        (0x08E2, 0x08E2),
        (0x115F, 0x1160),
        (0x17B4, 0x17B5),
        (0x180B, 0x180F),
        (0x200B, 0x200F),
        (0x202A, 0x202E),
        (0x2060, 0x206F),
        (0x3164, 0x3164),
        (0xFE00, 0xFE0F),
        (0xFEFF, 0xFEFF),
        (0xFFA0, 0xFFA0),
        (0xFFF0, 0xFFFB),
        (0x110BD, 0x110BD),
        (0x110CD, 0x110CD),
        (0x13430, 0x1343F),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0000, 0xE0FFF),
    ];
    if INVISIBLE.iter().any(|&(lo, hi)| (lo..=hi).contains(&u)) {
        return Some("an invisible or format character");
    }
    if (0xE000..=0xF8FF).contains(&u)
        || ((0xF0000..=0x10FFFD).contains(&u) && (u & 0xFFFE) != 0xFFFE)
    {
        return Some("a private-use character");
    }
    if (0xFDD0..=0xFDEF).contains(&u) || (u & 0xFFFE) == 0xFFFE {
        return Some("a noncharacter");
    }
    None
}

/// Checks every string of a resource (as stored: the output of [`prepare_resource`] or of
/// [`crate::apply_patch`], user or group):
/// * no string value or member name contains U+0000 (PostgreSQL cannot store it);
/// * `id` is at most [`Limits::max_resource_id_bytes`]; `userName`, `externalId`,
///   `displayName` and the `value` of `members`, `groups`, `emails` and `manager` at most
///   [`Limits::max_identifier_bytes`]; every other string at most
///   [`Limits::max_string_bytes`];
/// * no array holds more than [`Limits::max_multi_valued`] elements.
///
/// Errors are `invalidValue` (400) naming the attribute and the limit. Iterative: the
/// depth of the JSON does not matter.
pub fn check_resource_strings(resource: &Value, limits: &Limits) -> Result<(), ScimError> {
    // (value, name of the member holding it, name of the member holding that one)
    let mut stack: Vec<(&Value, &str, &str)> = vec![(resource, "", "")];
    while let Some((v, key, parent)) = stack.pop() {
        let label = || match (parent, key) {
            ("", k) => k.to_owned(),
            (p, k) if p.starts_with("urn:") || p.starts_with("URN:") => format!("{p}:{k}"),
            (p, k) => format!("{p}.{k}"),
        };
        match v {
            Value::String(s) => {
                if s.contains('\0') {
                    return Err(err(
                        ScimType::InvalidValue,
                        format!(
                            "attribute '{}' contains U+0000 (NUL), which cannot be stored",
                            label()
                        ),
                    ));
                }
                let (max, which) = string_cap(parent, key, limits);
                if s.len() > max {
                    return Err(err(
                        ScimType::InvalidValue,
                        format!(
                            "attribute '{}' is {} bytes long, more than the limit of {max} bytes for {which}",
                            label(),
                            s.len()
                        ),
                    ));
                }
            }
            Value::Array(a) => {
                if a.len() > limits.max_multi_valued {
                    return Err(err(
                        ScimType::InvalidValue,
                        format!(
                            "attribute '{}' has {} values, more than the limit of {}",
                            label(),
                            a.len(),
                            limits.max_multi_valued
                        ),
                    ));
                }
                // Elements keep the attribute's name, so `members[].value` reads as `members.value`.
                stack.extend(a.iter().map(|x| (x, key, parent)));
            }
            Value::Object(o) => {
                for (k, x) in o {
                    if k.contains('\0') {
                        return Err(err(
                            ScimType::InvalidValue,
                            format!(
                                "a member name under '{}' contains U+0000 (NUL), which cannot be stored",
                                label()
                            ),
                        ));
                    }
                    stack.push((x, k, key));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The length cap for a string at `parent.key` (top-level attributes have parent `""`).
fn string_cap(parent: &str, key: &str, limits: &Limits) -> (usize, &'static str) {
    let is = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    if parent.is_empty() && is(key, "id") {
        return (limits.max_resource_id_bytes, "a resource id");
    }
    let identifier = if parent.is_empty() {
        ["userName", "externalId", "displayName"]
            .iter()
            .any(|n| is(key, n))
    } else {
        is(key, "value")
            && ["members", "groups", "emails", "manager"]
                .iter()
                .any(|n| is(parent, n))
    };
    if identifier {
        (limits.max_identifier_bytes, "an identifier")
    } else {
        (limits.max_string_bytes, "a string")
    }
}

/// Checks a resource id taken from a URL path segment (`/Users/{id}`, `/Groups/{id}`)
/// before it reaches the store: not empty, at most [`Limits::max_resource_id_bytes`]
/// bytes, no control character (U+0000 included, which PostgreSQL cannot even compare).
/// Errors are `invalidValue` (400) naming the offence.
pub fn validate_resource_id(id: &str, limits: &Limits) -> Result<(), ScimError> {
    if id.is_empty() {
        return Err(err(ScimType::InvalidValue, "resource id is empty"));
    }
    if id.len() > limits.max_resource_id_bytes {
        return Err(err(
            ScimType::InvalidValue,
            format!(
                "resource id is {} bytes long, more than the limit of {} bytes",
                id.len(),
                limits.max_resource_id_bytes
            ),
        ));
    }
    if let Some((i, c)) = id.chars().enumerate().find(|(_, c)| c.is_control()) {
        return Err(err(
            ScimType::InvalidValue,
            format!(
                "resource id contains U+{:04X} (a control character) at character {i}",
                c as u32
            ),
        ));
    }
    Ok(())
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
            "schemas": [CORE.to_lowercase(), ENTERPRISE_USER_URN],
            "id": "client-id", "meta": {"resourceType": "User"}, "groups": [{"value": "g"}],
            "UserName": "a@b.c", "addresses": null, "roles": [], "password": "pw",
            "name": {"givenName": "A", "honorificPrefix": null},
            (ENTERPRISE_USER_URN.to_uppercase()): {"department": "Eng", "manager": {"value": "m", "displayName": "M"}}
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
