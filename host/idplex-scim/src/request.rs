//! The parts of a SCIM request a server decodes before applying it (RFC 7644 §3): the query
//! string, the `If-Match` precondition, the request body, a `/.search` body as query
//! parameters, and a group PATCH that only changes members, as a delta.

use serde_json::Value;

use crate::error::{ScimError, ScimType};
use crate::filter::PatchPath;
use crate::patch::{PatchOpKind, PatchOperation};
use crate::schema::GROUP_SCHEMA_URN;

/// URN of the `/.search` request message (RFC 7644 §3.4.3).
pub const SEARCH_REQUEST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

/// `application/scim+json`, the media type of SCIM messages.
pub const SCIM_MEDIA_TYPE: &str = "application/scim+json";

/// Decodes `a=b&c=d` (percent-encoding and `+`) into its pairs, in order.
pub fn decode_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Decodes `%XX` escapes and `+` (a space in a query); an escape that is not one is kept as
/// written, and bytes that are not UTF-8 become U+FFFD.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of the query parameter `name` (compared without case, as SCIM names are).
pub fn query_param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// The weak ETag of resource version `version`: `W/"7"`.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// An `If-Match` header (RFC 7644 §3.14) as the version it names: `W/"7"` → `Some(7)`; `*` and
/// no header → `None` (no precondition). Anything else is not an ETag this server issued (400).
pub fn parse_if_match(header: Option<&str>) -> Result<Option<i64>, ScimError> {
    let Some(text) = header.map(str::trim) else { return Ok(None) };
    if text == "*" {
        return Ok(None);
    }
    text.trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .map(Some)
        .map_err(|_| ScimError::with_status(400, format!("If-Match {text:?} is not an ETag this server issued")))
}

/// A request body: a JSON object sent as `application/scim+json`, `application/json` or without
/// a content type. Another media type is 415; text that is not a JSON object is `invalidSyntax`.
pub fn parse_request_body(content_type: Option<&str>, body: &[u8]) -> Result<Value, ScimError> {
    let media = content_type.unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if !media.is_empty() && media != SCIM_MEDIA_TYPE && media != "application/json" {
        return Err(ScimError::with_status(
            415,
            format!("Content-Type {media:?} is not accepted; send application/scim+json or application/json"),
        ));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ScimError::new(ScimType::InvalidSyntax, format!("request body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ScimError::new(ScimType::InvalidSyntax, "request body must be a JSON object"));
    }
    Ok(value)
}

/// A SearchRequest body (RFC 7644 §3.4.3) as the query parameters of the equivalent GET.
/// Unknown attributes are `invalidSyntax`; list values (`attributes`) are joined with commas.
pub fn search_params(body: &Value) -> Result<Vec<(String, String)>, ScimError> {
    let obj = body.as_object().cloned().unwrap_or_default();
    if let Some(schemas) = obj.get("schemas") {
        let listed = schemas
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(SEARCH_REQUEST_SCHEMA))));
        if !listed {
            return Err(ScimError::new(
                ScimType::InvalidSyntax,
                format!("a search request's `schemas` must list {SEARCH_REQUEST_SCHEMA}"),
            ));
        }
    }
    let mut params = Vec::new();
    for (key, value) in &obj {
        let name = match key.to_ascii_lowercase().as_str() {
            "schemas" => continue,
            "filter" => "filter",
            "startindex" => "startIndex",
            "count" => "count",
            "sortby" => "sortBy",
            "sortorder" => "sortOrder",
            "attributes" => "attributes",
            "excludedattributes" => "excludedAttributes",
            _ => {
                return Err(ScimError::new(
                    ScimType::InvalidSyntax,
                    format!("`{key}` is not a SearchRequest attribute (RFC 7644 §3.4.3)"),
                ));
            }
        };
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Array(items) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| ScimError::new(ScimType::InvalidValue, format!("`{key}` must list strings")))
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            Value::Null => continue,
            other => {
                return Err(ScimError::new(
                    ScimType::InvalidValue,
                    format!("`{key}` must be a string or a number, not {other}"),
                ));
            }
        };
        params.push((name.to_string(), text));
    }
    Ok(params)
}

/// A group PATCH that only adds or removes members, as IdPs send membership changes (Okta's
/// `add members [..]`, Entra's `remove members[value eq ".."]`, the legacy `remove members`
/// with a value list): the (added, removed) user ids. `None` for anything else, including an id
/// both added and removed (order would matter), which then goes through the general PATCH.
pub fn member_delta(ops: &[PatchOperation]) -> Option<(Vec<String>, Vec<String>)> {
    let (mut add, mut remove) = (Vec::new(), Vec::new());
    for op in ops {
        let target = PatchPath::parse(op.path.as_deref()?).ok()?;
        let core = target.attr.urn.as_deref().is_none_or(|u| u.eq_ignore_ascii_case(GROUP_SCHEMA_URN));
        if !core || !target.attr.attr.eq_ignore_ascii_case("members") || target.sub_attr().is_some() {
            return None;
        }
        match (op.op, &target.filter) {
            (PatchOpKind::Add, None) => add.extend(member_values(op.value.as_ref()?)?),
            (PatchOpKind::Remove, None) => remove.extend(member_values(op.value.as_ref()?)?),
            (PatchOpKind::Remove, Some(filter)) => {
                let (path, value) = filter.as_simple_eq()?;
                if !path.attr.eq_ignore_ascii_case("value") || path.sub_attr.is_some() {
                    return None;
                }
                remove.push(value.as_str()?.to_string());
            }
            _ => return None,
        }
    }
    let added: std::collections::HashSet<&String> = add.iter().collect();
    if remove.iter().any(|r| added.contains(r)) {
        return None;
    }
    Some((add, remove))
}

/// The user ids of a `members` value (an array of, or one, `{"value": id}` of type User);
/// `None` when an element is not a user reference.
pub fn member_values(value: &Value) -> Option<Vec<String>> {
    let items = match value {
        Value::Array(items) => items.iter().collect::<Vec<_>>(),
        Value::Object(_) => vec![value],
        _ => return None,
    };
    items
        .into_iter()
        .map(|m| {
            let user = m.get("type").and_then(Value::as_str).is_none_or(|t| t.eq_ignore_ascii_case("User"));
            user.then(|| m.get("value").and_then(Value::as_str).map(str::to_string)).flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn queries_decode() {
        assert_eq!(
            decode_query("filter=userName%20eq%20%22a%2Bb%40x%22&count=2&x"),
            vec![
                ("filter".into(), "userName eq \"a+b@x\"".into()),
                ("count".into(), "2".into()),
                ("x".into(), String::new())
            ]
        );
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(query_param(&decode_query("Count=3"), "count"), Some("3"));
    }

    #[test]
    fn if_match_names_a_version() {
        let table: &[(Option<&str>, Result<Option<i64>, u16>)] = &[
            (None, Ok(None)),
            (Some("*"), Ok(None)),
            (Some("W/\"7\""), Ok(Some(7))),
            (Some(" \"8\" "), Ok(Some(8))),
            (Some("W/\"x\""), Err(400)),
        ];
        for (header, expected) in table {
            assert_eq!(parse_if_match(*header).map_err(|e| e.status), *expected, "{header:?}");
        }
        assert_eq!(parse_if_match(Some(&etag(12))), Ok(Some(12)));
    }

    #[test]
    fn bodies_are_json_objects_of_an_accepted_media_type() {
        assert!(parse_request_body(Some("application/scim+json; charset=utf-8"), b"{}").is_ok());
        assert!(parse_request_body(None, b"{}").is_ok());
        assert_eq!(parse_request_body(Some("text/plain"), b"{}").unwrap_err().status, 415);
        assert_eq!(parse_request_body(None, b"[]").unwrap_err().scim_type, Some(ScimType::InvalidSyntax));
        assert_eq!(parse_request_body(None, b"{").unwrap_err().scim_type, Some(ScimType::InvalidSyntax));
    }

    #[test]
    fn search_bodies_become_query_parameters() {
        let body = json!({
            "schemas": [SEARCH_REQUEST_SCHEMA],
            "filter": "userName sw \"a\"",
            "startIndex": 2,
            "count": 5,
            "attributes": ["userName", "emails"],
        });
        let params = search_params(&body).unwrap();
        assert!(params.contains(&("filter".into(), "userName sw \"a\"".into())));
        assert!(params.contains(&("startIndex".into(), "2".into())));
        assert!(params.contains(&("attributes".into(), "userName,emails".into())));
        let e = search_params(&json!({"schemas": ["x"]})).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
        let e = search_params(&json!({"filterr": "x"})).unwrap_err();
        assert!(e.detail.contains("filterr"), "{}", e.detail);
    }

    #[test]
    fn membership_patches_become_deltas() {
        let ops = |v: Value| {
            PatchOperation::parse_request(&json!({"schemas": [crate::PATCH_OP_SCHEMA], "Operations": v})).unwrap()
        };
        let okta = ops(json!([
            {"op": "remove", "path": "members[value eq \"u9\"]"},
            {"op": "add", "path": "members", "value": [{"value": "u1", "display": "a"}, {"value": "u2"}]}
        ]));
        assert_eq!(member_delta(&okta), Some((vec!["u1".into(), "u2".into()], vec!["u9".into()])));
        let legacy = ops(json!([{"op": "Remove", "path": "members", "value": [{"value": "u3"}]}]));
        assert_eq!(member_delta(&legacy), Some((vec![], vec!["u3".into()])));
        for general in [
            json!([{"op": "replace", "path": "members", "value": [{"value": "u1"}]}]),
            json!([{"op": "remove", "path": "members"}]),
            json!([{"op": "add", "path": "members", "value": [{"value": "g1", "type": "Group"}]}]),
            json!([{"op": "replace", "path": "displayName", "value": "x"}]),
            json!([{"op": "add", "path": "members", "value": [{"value": "u1"}]}, {"op": "remove", "path": "members[value eq \"u1\"]"}]),
        ] {
            assert_eq!(member_delta(&ops(general.clone())), None, "{general}");
        }
    }
}
