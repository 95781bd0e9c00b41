//! Type checking and normalisation of client-supplied attribute values against their
//! definitions; shared by PATCH ([`crate::apply_patch`]) and create/replace validation
//! ([`crate::prepare_resource`]) so both enforce the same rules.
//!
//! Normalisation: sub-attribute keys are rewritten to their schema spelling, nulls are
//! dropped (null means "unassigned", RFC 7643 §2.5), readOnly sub-attributes supplied by
//! the client are dropped, and an empty result means "unassign the attribute".

use crate::error::{ScimError, ScimType, err};
use crate::schema::{AttrType, AttributeDef};
use crate::value::{parse_bool_str, parse_datetime};
use serde_json::{Map, Value};

/// Leniency switches for values sent by real IdPs. `Default` is strict RFC behaviour.
///
/// Used by PATCH and, for the value-level switches, by create/replace validation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PatchOptions {
    /// Accept the strings `"True"`/`"False"` (any case) for boolean attributes and store
    /// real booleans. Microsoft Entra ID sends `{"op":"Replace","path":"active","value":"False"}`
    /// unless the tenant URL carries `aadOptscim062020`.
    pub coerce_boolean_strings: bool,
    /// Accept shorthand forms of single-valued complex attributes: a bare string becomes
    /// `{"value": s}` (Entra: `manager` set to `"271"`) and a one-element array becomes
    /// its element (Entra's legacy `manager` as `[{"value": ...}]`).
    pub coerce_shorthand_values: bool,
    /// A `replace` whose value filter matches nothing creates the element (from the
    /// filter's `eq` terms plus the value) instead of failing with `noTarget`. Entra relies
    /// on this for `emails[type eq "work"].value`. (An `add` always creates.)
    pub create_on_unmatched_filter: bool,
    /// A `remove` whose value filter matches nothing succeeds as a no-op instead of
    /// `noTarget` (Okta drops a whole group push on a 400 for one stale member).
    pub ignore_unmatched_remove: bool,
}

impl PatchOptions {
    /// Strict RFC 7644 behaviour (same as `Default`).
    pub const STRICT: PatchOptions = PatchOptions {
        coerce_boolean_strings: false,
        coerce_shorthand_values: false,
        create_on_unmatched_filter: false,
        ignore_unmatched_remove: false,
    };

    /// What the idplex host applies to every connection: strict RFC 7644, except that a
    /// `remove` whose value filter matches nothing is a no-op. That one is not an IdP's dialect
    /// but the idempotent reading of "this value must be gone", which every IdP relies on when
    /// it replays a removal (Okta drops a whole group push on one 400), and which loses nothing.
    /// Every other quirk is undone by the connector of the IdP that has it.
    pub const HOST: PatchOptions = PatchOptions {
        coerce_boolean_strings: false,
        coerce_shorthand_values: false,
        create_on_unmatched_filter: false,
        ignore_unmatched_remove: true,
    };

    /// Every documented IdP quirk accepted (what the host applied to every connection before
    /// the quirks moved into the connectors; kept for tests of the switches).
    pub const IDP_COMPATIBLE: PatchOptions = PatchOptions {
        coerce_boolean_strings: true,
        coerce_shorthand_values: true,
        create_on_unmatched_filter: true,
        ignore_unmatched_remove: true,
    };
}

/// Checks a whole attribute value (array for multi-valued attributes). `Ok(None)` means
/// the value amounts to "unassigned" (null, or an array with no non-null element).
pub(crate) fn coerce_attr(
    def: &AttributeDef,
    v: &Value,
    o: &PatchOptions,
    path: &str,
) -> Result<Option<Value>, ScimError> {
    if !def.multi_valued {
        return match v {
            Value::Array(a) if o.coerce_shorthand_values && a.len() == 1 => {
                coerce_single(def, &a[0], o, path)
            }
            Value::Array(_) => Err(invalid(path, "a single value, not an array")),
            _ => coerce_single(def, v, o, path),
        };
    }
    // A lone value for a multi-valued attribute is read as a one-element array.
    let items: &[Value] = match v {
        Value::Array(a) => a,
        other => std::slice::from_ref(other),
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if let Some(x) = coerce_single(def, item, o, path)? {
            out.push(x);
        }
    }
    Ok((!out.is_empty()).then_some(Value::Array(out)))
}

/// Checks one value (one element of a multi-valued attribute).
pub(crate) fn coerce_single(
    def: &AttributeDef,
    v: &Value,
    o: &PatchOptions,
    path: &str,
) -> Result<Option<Value>, ScimError> {
    if v.is_null() {
        return Ok(None);
    }
    let ok = |v: &Value| Ok(Some(v.clone()));
    match (def.ty, v) {
        (AttrType::Complex, Value::Object(obj)) => {
            let mut out = Map::new();
            for (k, x) in obj {
                let sub = def.sub_attribute(k).ok_or_else(|| {
                    err(
                        ScimType::InvalidSyntax,
                        format!("unknown sub-attribute '{path}.{k}'"),
                    )
                })?;
                if sub.is_read_only() {
                    continue;
                }
                if let Some(x) = coerce_single(sub, x, o, &format!("{path}.{}", sub.name))? {
                    out.insert(sub.name.to_owned(), x);
                }
            }
            Ok((!out.is_empty()).then_some(Value::Object(out)))
        }
        (AttrType::Complex, Value::String(s))
            if o.coerce_shorthand_values && def.sub_attribute("value").is_some() =>
        {
            Ok(Some(serde_json::json!({ "value": s })))
        }
        (AttrType::String | AttrType::Reference, Value::String(_)) => ok(v),
        (AttrType::Binary, Value::String(s)) if is_base64(s) => ok(v),
        (AttrType::Boolean, Value::Bool(_)) => ok(v),
        (AttrType::Boolean, Value::String(s)) if o.coerce_boolean_strings => {
            match parse_bool_str(s) {
                Some(b) => Ok(Some(Value::Bool(b))),
                None => Err(invalid(path, "a boolean")),
            }
        }
        (AttrType::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => ok(v),
        (AttrType::Decimal, Value::Number(_)) => ok(v),
        (AttrType::DateTime, Value::String(s)) if parse_datetime(s).is_some() => ok(v),
        (ty, _) => Err(invalid(path, &format!("a value of type {}", describe(ty)))),
    }
}

fn describe(ty: AttrType) -> &'static str {
    match ty {
        AttrType::Complex => "complex (a JSON object)",
        AttrType::Binary => "binary (base64 string)",
        AttrType::DateTime => "dateTime (xsd:dateTime string)",
        other => other.as_str(),
    }
}

fn invalid(path: &str, expected: &str) -> ScimError {
    err(
        ScimType::InvalidValue,
        format!("attribute '{path}' requires {expected}"),
    )
}

fn is_base64(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "+/=-_\r\n ".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::USER_RESOURCE_TYPE;
    use serde_json::json;

    #[test]
    fn coercion_table() {
        let strict = PatchOptions::STRICT;
        let lenient = PatchOptions::IDP_COMPATIBLE;
        // (path, input, options, expected Ok value or Err fragment)
        type Row = (
            &'static str,
            Value,
            PatchOptions,
            Result<Option<Value>, &'static str>,
        );
        let table: &[Row] = &[
            ("active", json!(true), strict, Ok(Some(json!(true)))),
            (
                "active",
                json!("False"),
                strict,
                Err("requires a value of type boolean"),
            ),
            ("active", json!("False"), lenient, Ok(Some(json!(false)))),
            ("active", json!("TRUE"), lenient, Ok(Some(json!(true)))),
            ("active", json!("yes"), lenient, Err("requires a boolean")),
            (
                "userName",
                json!(5),
                strict,
                Err("'userName' requires a value of type string"),
            ),
            ("userName", json!(null), strict, Ok(None)),
            (
                "name",
                json!({"GivenName": "A", "familyName": null}),
                strict,
                Ok(Some(json!({"givenName": "A"}))),
            ),
            (
                "name",
                json!({"nope": "A"}),
                strict,
                Err("unknown sub-attribute 'name.nope'"),
            ),
            ("name", json!("A"), strict, Err("complex")),
            (
                "emails",
                json!([{"value": "a@b", "primary": true}, null]),
                strict,
                Ok(Some(json!([{"value": "a@b", "primary": true}]))),
            ),
            (
                "emails",
                json!({"value": "a@b"}),
                strict,
                Ok(Some(json!([{"value": "a@b"}]))),
            ),
            ("emails", json!([]), strict, Ok(None)),
            (
                "emails",
                json!([{"primary": "true"}]),
                strict,
                Err("'emails.primary' requires a value of type boolean"),
            ),
            ("manager", json!("271"), strict, Err("complex")),
            (
                "manager",
                json!("271"),
                lenient,
                Ok(Some(json!({"value": "271"}))),
            ),
            (
                "manager",
                json!([{"value": "m", "$ref": "u"}]),
                lenient,
                Ok(Some(json!({"value": "m", "$ref": "u"}))),
            ),
            (
                "manager",
                json!([{"value": "m"}]),
                strict,
                Err("not an array"),
            ),
            (
                "manager",
                json!({"value": "m", "displayName": "ro"}),
                strict,
                Ok(Some(json!({"value": "m"}))),
            ),
            (
                "meta",
                json!({"created": "2011-05-13T04:42:34Z"}),
                strict,
                Ok(None),
            ), // readOnly subs dropped
            (
                "x509Certificates",
                json!([{"value": "MIIB+w=="}]),
                strict,
                Ok(Some(json!([{"value": "MIIB+w=="}]))),
            ),
            (
                "x509Certificates",
                json!([{"value": "not base64!"}]),
                strict,
                Err("binary"),
            ),
        ];
        for (path, input, o, expected) in table {
            let def = USER_RESOURCE_TYPE.resolve_str(path).unwrap().leaf();
            let got = coerce_attr(def, input, o, path);
            match expected {
                Ok(v) => assert_eq!(got.as_ref().ok(), Some(v), "{path} {input}: {got:?}"),
                Err(frag) => {
                    let e = got.unwrap_err();
                    assert!(e.detail.contains(frag), "{path} {input}: {}", e.detail);
                }
            }
        }
    }

    #[test]
    fn numbers_and_dates() {
        use crate::schema::attr_for_tests as a;
        let o = PatchOptions::STRICT;
        assert!(coerce_single(&a(AttrType::Integer), &json!(3), &o, "n").is_ok());
        assert!(coerce_single(&a(AttrType::Integer), &json!(3.5), &o, "n").is_err());
        assert!(coerce_single(&a(AttrType::Decimal), &json!(3.5), &o, "n").is_ok());
        assert!(
            coerce_single(
                &a(AttrType::DateTime),
                &json!("2011-05-13T04:42:34Z"),
                &o,
                "d"
            )
            .is_ok()
        );
        assert!(coerce_single(&a(AttrType::DateTime), &json!("yesterday"), &o, "d").is_err());
    }
}
