//! Helpers over `serde_json` resources: case-insensitive member access, locating an
//! attribute's container (root object or extension object), and comparable scalars
//! (strings honouring `caseExact`, numbers, booleans, dateTimes as instants).

use crate::schema::{AttrType, AttributeDef, ResolvedAttr, ResourceType, Schema};
use serde_json::{Map, Value};
use std::cmp::Ordering;

/// Case-insensitive member lookup (attribute names are case-insensitive, RFC 7643 §2.1).
pub(crate) fn get_ci<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.get(name).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// The actual key under which `name` is stored, if any.
pub(crate) fn key_ci(map: &Map<String, Value>, name: &str) -> Option<String> {
    if map.contains_key(name) {
        return Some(name.to_owned());
    }
    map.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

/// Removes `name` (any case) and returns the value.
pub(crate) fn remove_ci(map: &mut Map<String, Value>, name: &str) -> Option<Value> {
    key_ci(map, name).and_then(|k| map.remove(&k))
}

/// Inserts under the canonical name, replacing any differently-cased key.
pub(crate) fn insert_ci(map: &mut Map<String, Value>, name: &str, value: Value) {
    remove_ci(map, name);
    map.insert(name.to_owned(), value);
}

/// Finds the key of an extension object in a resource (exact URN, other case, or legacy alias).
pub(crate) fn extension_key(
    rt: &ResourceType,
    resource: &Map<String, Value>,
    ext: &Schema,
) -> Option<String> {
    resource
        .keys()
        .find(|k| rt.extension(k).is_some_and(|s| std::ptr::eq(s, ext)))
        .cloned()
}

/// The object holding the attribute: the resource itself or its extension object.
pub(crate) fn container<'a>(
    rt: &ResourceType,
    resource: &'a Value,
    ext: Option<&Schema>,
) -> Option<&'a Map<String, Value>> {
    let root = resource.as_object()?;
    match ext {
        None => Some(root),
        Some(ext) => root.get(&extension_key(rt, root, ext)?)?.as_object(),
    }
}

/// The values an attribute path designates in a resource, flattened: each element of a
/// multi-valued attribute, then the sub-attribute of each if the path has one. Nulls are
/// skipped.
pub(crate) fn values_at<'a>(
    rt: &ResourceType,
    resource: &'a Value,
    r: &ResolvedAttr,
) -> Vec<&'a Value> {
    let Some(top) = container(rt, resource, r.extension).and_then(|m| get_ci(m, r.attr.name))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for v in flatten(top) {
        match r.sub {
            None => out.push(v),
            Some(sub) => {
                if let Some(s) = v.as_object().and_then(|o| get_ci(o, sub.name)) {
                    out.extend(flatten(s));
                }
            }
        }
    }
    out
}

fn flatten(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().filter(|x| !x.is_null()).collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// RFC 7644 `pr`: present means not null, not an empty string, not an empty array
/// (and, for complex values, not an empty object).
pub(crate) fn is_present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => a.iter().any(is_present),
        Value::Object(o) => o.values().any(is_present),
        _ => true,
    }
}

/// A scalar prepared for comparison according to its attribute definition.
#[derive(Debug, Clone, PartialEq)]
pub enum Comparable {
    /// Boolean.
    Bool(bool),
    /// Number (integer or decimal).
    Number(f64),
    /// dateTime as nanoseconds since the Unix epoch.
    Instant(i128),
    /// String, already lower-cased when the attribute is not caseExact.
    Text(String),
}

impl Comparable {
    /// Converts a JSON scalar. `def` decides case folding and dateTime parsing; when the
    /// attribute is unknown, strings compare case-insensitively. Boolean-typed attributes
    /// also accept `"true"`/`"false"` strings (stored data written by lenient clients).
    pub fn from_json(v: &Value, def: Option<&AttributeDef>) -> Option<Comparable> {
        let ty = def.map(|d| d.ty);
        let case_exact = def.is_some_and(|d| d.case_exact);
        match v {
            Value::Bool(b) => Some(Comparable::Bool(*b)),
            Value::Number(n) => n.as_f64().map(Comparable::Number),
            Value::String(s) => {
                if ty == Some(AttrType::DateTime)
                    && let Some(t) = parse_datetime(s)
                {
                    return Some(Comparable::Instant(t));
                }
                if ty == Some(AttrType::Boolean)
                    && let Some(b) = parse_bool_str(s)
                {
                    return Some(Comparable::Bool(b));
                }
                Some(Comparable::Text(if case_exact {
                    s.clone()
                } else {
                    s.to_lowercase()
                }))
            }
            Value::Object(o) => get_ci(o, "value").and_then(|x| Comparable::from_json(x, def)),
            _ => None,
        }
    }

    /// Ordering between two comparables of the same kind; `None` across kinds.
    pub fn partial_cmp_same(&self, other: &Comparable) -> Option<Ordering> {
        match (self, other) {
            (Comparable::Bool(a), Comparable::Bool(b)) => Some(a.cmp(b)),
            (Comparable::Number(a), Comparable::Number(b)) => Some(a.total_cmp(b)),
            (Comparable::Instant(a), Comparable::Instant(b)) => Some(a.cmp(b)),
            (Comparable::Text(a), Comparable::Text(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

/// `"true"` / `"false"` in any case (Entra sends `"True"`/`"False"`).
pub(crate) fn parse_bool_str(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Parses an xsd:dateTime / RFC 3339 timestamp (`2011-05-13T04:42:34Z`,
/// `2011-05-13T04:42:34.123+02:00`; a missing zone is read as UTC) into nanoseconds
/// since the Unix epoch.
pub fn parse_datetime(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(range)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: i128 = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let frac = &s[start..i];
        if frac.is_empty() {
            return None;
        }
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
        nanos = digits.parse().ok()?;
    }
    // Byte comparisons only: the zone may hold multi-byte characters, and slicing a `str`
    // inside one panics.
    let offset_secs = match &b[i..] {
        b"" | b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let h = num(i + 1..i + 3)?;
            let m = num(i + 4..i + 6)?;
            let sign = if *sign == b'-' { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_secs;
    Some(secs as i128 * 1_000_000_000 + nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn datetimes() {
        let table: &[(&str, Option<i128>)] = &[
            ("1970-01-01T00:00:00Z", Some(0)),
            ("1970-01-02T00:00:00Z", Some(86_400_000_000_000)),
            ("2000-03-01T00:00:00Z", Some(951_868_800_000_000_000)),
            ("1970-01-01T00:00:00.5Z", Some(500_000_000)),
            ("1970-01-01T01:00:00+01:00", Some(0)),
            ("1969-12-31T23:00:00-01:00", Some(0)),
            ("1970-01-01T00:00:00", Some(0)),
            ("2011-05-13T04:42:34Z", Some(1_305_261_754_000_000_000)),
            ("2011-13-13T04:42:34Z", None),
            ("2011-05-13", None),
            ("not a date", None),
            ("2011-05-13T04:42:34.Z", None),
            ("2011-05-13T04:42:34+0100", None),
            // Multi-byte characters where the zone goes (used to panic slicing inside 'é').
            ("2011-05-13T04:42:34é1234", None),
            ("2011-05-13T04:42:34+é:00", None),
            ("2011-05-13T04:42:34.5é", None),
            ("2011-05-1éT04:42:34Z", None),
        ];
        for (s, expected) in table {
            assert_eq!(parse_datetime(s), *expected, "{s}");
        }
    }

    #[test]
    fn presence() {
        for (v, p) in [
            (json!(null), false),
            (json!(""), false),
            (json!([]), false),
            (json!([null]), false),
            (json!({}), false),
            (json!({"value": ""}), false),
            (json!("x"), true),
            (json!(false), true),
            (json!(0), true),
            (json!([{"value": "a"}]), true),
        ] {
            assert_eq!(is_present(&v), p, "{v}");
        }
    }

    #[test]
    fn case_insensitive_access() {
        let mut m = json!({"UserName": "a"}).as_object().unwrap().clone();
        assert_eq!(get_ci(&m, "username"), Some(&json!("a")));
        insert_ci(&mut m, "userName", json!("b"));
        assert_eq!(Value::Object(m), json!({"userName": "b"}));
    }
}
