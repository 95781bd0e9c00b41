//! The generic RFC 7644 SCIM dialect: validate a request and express it as RFC operations.

use idplex_connector_sdk::json::{check, parse_object, type_name};
use idplex_connector_sdk::provisioning::{
    ListQuery, Operation, PatchOpKind, PatchOperation, ScimRequest,
};
use idplex_connector_sdk::serde_json::{Map, Value};
use idplex_connector_sdk::{ConnectorError, Json, ResourceKind, scim};

/// Turns one SCIM request into the operation it asks for (always exactly one).
pub fn normalize(request: &ScimRequest) -> Result<Vec<Operation>, ConnectorError> {
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
    let op = match method.as_str() {
        "POST" => {
            if id.is_some() {
                return Err(ConnectorError::invalid_request(format!(
                    "POST creates a resource and must address /{endpoint}, not /{endpoint}/{{id}}"
                )));
            }
            Operation::Create(resource_body(request, kind)?)
        }
        "PUT" => {
            let id = need_id("PUT")?;
            Operation::Replace((id, resource_body(request, kind)?))
        }
        "PATCH" => {
            let id = need_id("PATCH")?;
            Operation::Patch((id, patch_operations(request)?))
        }
        "DELETE" => Operation::Delete(need_id("DELETE")?),
        "GET" => match id {
            Some(id) => Operation::Get(id.to_string()),
            None => Operation::Query(list_query(&request.query)?),
        },
        other => {
            return Err(ConnectorError::unsupported(format!(
                "HTTP method `{other}` is not part of SCIM 2.0 provisioning on /{endpoint}"
            )));
        }
    };
    Ok(vec![op])
}

/// Checks that a stored resource is JSON and returns it unchanged (the generic dialect is the
/// RFC's own).
pub fn render(resource: Json) -> Result<Json, ConnectorError> {
    check(&resource, "stored resource")?;
    Ok(resource)
}

/// The body of a POST/PUT: a JSON object whose `schemas` lists the core schema of `kind`.
fn resource_body(request: &ScimRequest, kind: ResourceKind) -> Result<Json, ConnectorError> {
    let body = request.body.as_deref().ok_or_else(|| {
        ConnectorError::invalid_request(format!(
            "{} /{} needs a JSON body",
            request.method,
            scim::endpoint(kind)
        ))
        .with_scim_type("invalidSyntax")
    })?;
    let mut object = parse_object(body, "request body")?;
    let legacy = rename_legacy_urns(&mut object, kind);
    let roles = object.get_mut("roles").is_some_and(unwrap_stringified_roles);
    require_schema(&object, scim::core_schema(kind))?;
    if legacy || roles {
        return idplex_connector_sdk::json::to_json(&object);
    }
    Ok(body.to_string())
}

/// Pre-RFC URNs some IdPs still send (OneLogin's default template: `urn:scim:schemas:core:2.0`
/// and `urn:scim:schemas:extension:enterprise:2.0`, without `:User`), as the RFC 7643 URNs, in
/// `schemas` and as extension keys. Returns whether anything was renamed.
fn rename_legacy_urns(object: &mut Map<String, Value>, kind: ResourceKind) -> bool {
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
fn unwrap_stringified_roles(roles: &mut Value) -> bool {
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
        let Ok(Value::Object(inner)) = idplex_connector_sdk::serde_json::from_str::<Value>(text) else {
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
fn require_schema(object: &Map<String, Value>, urn: &str) -> Result<(), ConnectorError> {
    let schemas = match object.get("schemas") {
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
fn patch_operations(request: &ScimRequest) -> Result<Vec<PatchOperation>, ConnectorError> {
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
fn patch_operation(index: usize, op: &Value) -> Result<PatchOperation, ConnectorError> {
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
        Some(v) if path.as_deref().is_some_and(|p| p.eq_ignore_ascii_case("roles")) => {
            let mut v = v.clone();
            unwrap_stringified_roles(&mut v);
            Some(v.to_string())
        }
        Some(v) => Some(v.to_string()),
    };
    match kind {
        PatchOpKind::Remove if path.is_none() => {
            return Err(invalid("`remove` needs a `path`".to_string(), "noTarget"));
        }
        PatchOpKind::Add | PatchOpKind::Replace if value.is_none() => {
            let name = if matches!(kind, PatchOpKind::Add) { "add" } else { "replace" };
            return Err(invalid(format!("`{name}` needs a `value`"), "invalidValue"));
        }
        _ => {}
    }
    Ok(PatchOperation { op: kind, path, value })
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
    idplex_connector_sdk::config::split_list(value)
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
    fn legacy_urns_and_stringified_roles_are_normalized() {
        let onelogin = r#"{"schemas":["urn:scim:schemas:core:2.0","urn:scim:schemas:extension:enterprise:2.0"],
            "userName":"u","urn:scim:schemas:extension:enterprise:2.0":{"department":"Eng"}}"#;
        let ops = normalize(&req("POST", None, Some(onelogin))).unwrap();
        let [Operation::Create(body)] = &ops[..] else { panic!() };
        let v: Value = idplex_connector_sdk::serde_json::from_str(body).unwrap();
        assert_eq!(v["schemas"][0], scim::USER_SCHEMA);
        assert_eq!(v["schemas"][1], scim::ENTERPRISE_USER_SCHEMA);
        assert_eq!(v[scim::ENTERPRISE_USER_SCHEMA]["department"], "Eng");

        let entra = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"roles",
            "value":[{"value":"{\"id\":\"1\",\"value\":\"Admin\",\"displayName\":\"The admins\"}"}]}]}"#;
        let ops = normalize(&req("PATCH", Some("42"), Some(entra))).unwrap();
        let [Operation::Patch((_, ops))] = &ops[..] else { panic!() };
        let v: Value = idplex_connector_sdk::serde_json::from_str(ops[0].value.as_deref().unwrap()).unwrap();
        assert_eq!(v[0]["value"], "Admin");
        assert_eq!(v[0]["display"], "The admins");
    }

    #[test]
    fn other_methods() {
        assert!(matches!(&normalize(&req("DELETE", Some("x"), None)).unwrap()[..], [Operation::Delete(_)]));
        assert!(normalize(&req("DELETE", None, None)).is_err());
        assert!(matches!(&normalize(&req("GET", Some("x"), None)).unwrap()[..], [Operation::Get(_)]));
        let e = normalize(&req("HEAD", None, None)).unwrap_err();
        assert!(matches!(e.kind, idplex_connector_sdk::ErrorKind::Unsupported));
    }
}
