//! `/scim/v2/{connection}/Users`: every request goes through the connection's connector (which
//! normalizes the IdP's dialect into RFC operations), then the host applies RFC 7643/7644
//! semantics (validation, uniqueness, PATCH, ETags) and stores the result.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use idplex_hub::HubError;
use idplex_runtime::{CallError, Operation, PatchOp, ResourceKind, ScimRequest};
use idplex_scim::{
    Filter, ListResponse, PatchOperation, PatchOptions, Projection, ScimError, ScimType,
    USER_RESOURCE_TYPE, apply_patch, prepare_resource,
};
use idplex_store::{DirectoryUser, NewDirectoryUser, StoreError};
use serde_json::{Value, json};

use crate::AppState;
use crate::scim::{ScimFailure, ScimJson, base_url, parse_body};

/// Largest page a list request returns (also advertised as `filter.maxResults`).
const MAX_RESULTS: usize = idplex_scim::MAX_RESULTS;

/// IdP quirks the host accepts after the connector normalized a request.
const OPTIONS: PatchOptions = PatchOptions::IDP_COMPATIBLE;

type ScimResult = Result<Response, ScimFailure>;

/// `/Users` (list, create).
pub async fn collection(
    State(s): State<AppState>,
    Path(connection): Path<String>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult {
    handle(&s, &connection, method, None, query, &headers, &body).await
}

/// `/Users/{id}` (get, replace, patch, delete).
pub async fn item(
    State(s): State<AppState>,
    Path((connection, id)): Path<(String, String)>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult {
    handle(&s, &connection, method, Some(id), query, &headers, &body).await
}

async fn handle(
    s: &AppState,
    connection: &str,
    method: Method,
    id: Option<String>,
    raw_query: Option<String>,
    headers: &HeaderMap,
    body: &[u8],
) -> ScimResult {
    let query = decode_query(raw_query.as_deref().unwrap_or(""));
    let body = match method {
        Method::POST | Method::PUT | Method::PATCH => Some(parse_body(headers, body)?),
        _ => None,
    };
    let request = ScimRequest {
        method: method.as_str().to_string(),
        resource: ResourceKind::User,
        id,
        query: query.clone(),
        body: body.as_ref().map(Value::to_string),
    };
    let ops = s.hub.normalize(connection, request).await.map_err(hub_failure)?;
    let [op] = <[Operation; 1]>::try_from(ops).map_err(|ops| {
        ScimFailure(ScimError::with_status(
            502,
            format!("the connector turned one request into {} operations; idplex applies exactly one", ops.len()),
        ))
    })?;
    let base = base_url(headers, connection);
    let store = s.hub.store();
    let projection = |q: &[(String, String)]| {
        Projection::from_params(param(q, "attributes"), param(q, "excludedAttributes")).map_err(ScimFailure)
    };
    match op {
        Operation::Create(json) => {
            let input = connector_json(&json)?;
            let prepared = prepare_resource(&USER_RESOURCE_TYPE, &input, &OPTIONS)?;
            let (user_name, external_id, active) = key_fields(&prepared)?;
            let user = store
                .create_user(&NewDirectoryUser {
                    connection_id: connection.to_string(),
                    user_name,
                    external_id,
                    active,
                    resource: prepared,
                })
                .await
                .map_err(store_failure)?;
            respond(s, connection, &base, &user, StatusCode::CREATED, &projection(&query)?).await
        }
        Operation::Get(id) => {
            let user = store.get_user(connection, &id).await.map_err(store_failure)?;
            respond(s, connection, &base, &user, StatusCode::OK, &projection(&query)?).await
        }
        Operation::Replace((id, json)) => {
            let input = connector_json(&json)?;
            let prepared = prepare_resource(&USER_RESOURCE_TYPE, &input, &OPTIONS)?;
            let (user_name, external_id, active) = key_fields(&prepared)?;
            let user = store
                .replace_user(connection, &id, if_match(headers)?, &user_name, external_id.as_deref(), active, &prepared)
                .await
                .map_err(store_failure)?;
            respond(s, connection, &base, &user, StatusCode::OK, &projection(&query)?).await
        }
        Operation::Patch((id, patch)) => {
            let ops = PatchOperation::parse_request(&json!({
                "schemas": [idplex_scim::PATCH_OP_SCHEMA],
                "Operations": patch.iter().map(|p| json!({
                    "op": match p.op { PatchOp::Add => "add", PatchOp::Replace => "replace", PatchOp::Remove => "remove" },
                    "path": p.path,
                    "value": p.value.as_deref().map(serde_json::from_str::<Value>).transpose().ok().flatten(),
                })).collect::<Vec<_>>(),
            }))?;
            let user = store.get_user(connection, &id).await.map_err(store_failure)?;
            let expected = if_match(headers)?.unwrap_or(user.version);
            let mut resource = stored_resource(&user);
            apply_patch(&USER_RESOURCE_TYPE, &mut resource, &ops, &OPTIONS)?;
            let prepared = prepare_resource(&USER_RESOURCE_TYPE, &resource, &OPTIONS)?;
            let (user_name, external_id, active) = key_fields(&prepared)?;
            let user = store
                .replace_user(connection, &id, Some(expected), &user_name, external_id.as_deref(), active, &prepared)
                .await
                .map_err(store_failure)?;
            respond(s, connection, &base, &user, StatusCode::OK, &projection(&query)?).await
        }
        Operation::Delete(id) => {
            store.delete_user(connection, &id).await.map_err(store_failure)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Operation::Query(q) => {
            let projection = Projection::from_params(
                (!q.attributes.is_empty()).then(|| q.attributes.join(",")).as_deref(),
                (!q.excluded_attributes.is_empty()).then(|| q.excluded_attributes.join(",")).as_deref(),
            )?;
            let users = match &q.filter {
                Some(text) => filter_users(s, connection, &Filter::parse(text)?).await?,
                None => all_users(s, connection).await?,
            };
            let mut resources = Vec::with_capacity(users.len());
            for u in &users {
                resources.push(scim_resource(u, &base));
            }
            let page = ListResponse::page(resources, q.start_index.map(i64::from), q.count.map(i64::from), MAX_RESULTS);
            let mut out = page.to_json();
            if let Some(items) = out["Resources"].as_array_mut() {
                for r in items.iter_mut() {
                    let rendered = render(s, connection, r).await?;
                    *r = projection.apply(&USER_RESOURCE_TYPE, &rendered);
                }
            }
            Ok(ScimJson(StatusCode::OK, out).into_response())
        }
    }
}

/// The users of this connection a filter selects. `userName eq` and `externalId eq` use the
/// store's indexes; any other filter is evaluated over the connection's users.
async fn filter_users(s: &AppState, connection: &str, filter: &Filter) -> Result<Vec<DirectoryUser>, ScimFailure> {
    filter.validate_for(&USER_RESOURCE_TYPE)?;
    let store = s.hub.store();
    if let Some((path, value)) = filter.as_simple_eq() {
        let attr = path.to_string().to_ascii_lowercase();
        if let Some(v) = value.as_str() {
            let found = match attr.as_str() {
                "username" => Some(store.find_users_by_user_name(connection, v).await),
                "externalid" => Some(store.find_users_by_external_id(connection, v).await),
                _ => None,
            };
            if let Some(found) = found {
                let users = found.map_err(store_failure)?;
                return Ok(users.into_iter().filter(|u| u.connection_id == connection).collect());
            }
        }
    }
    let all = all_users(s, connection).await?;
    Ok(all.into_iter().filter(|u| filter.matches(&USER_RESOURCE_TYPE, &scim_resource(u, ""))).collect())
}

/// Every user of the connection, in the store's stable order.
async fn all_users(s: &AppState, connection: &str) -> Result<Vec<DirectoryUser>, ScimFailure> {
    let mut out = Vec::new();
    loop {
        let (page, total) = s
            .hub
            .store()
            .list_users(connection, out.len() as u64, idplex_store::MAX_DIRECTORY_LIST_LIMIT)
            .await
            .map_err(store_failure)?;
        let done = page.is_empty();
        out.extend(page);
        if done || out.len() as i64 >= total {
            return Ok(out);
        }
    }
}

async fn respond(
    s: &AppState,
    connection: &str,
    base: &str,
    user: &DirectoryUser,
    status: StatusCode,
    projection: &Projection,
) -> ScimResult {
    let resource = scim_resource(user, base);
    let rendered = render(s, connection, &resource).await?;
    let mut resp = ScimJson(status, projection.apply(&USER_RESOURCE_TYPE, &rendered)).into_response();
    let etag = format!("W/\"{}\"", user.version);
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    if status == StatusCode::CREATED {
        if let Ok(v) = HeaderValue::from_str(&format!("{base}/Users/{}", user.id)) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
    }
    Ok(resp)
}

/// The connector's rendering of a stored resource, checked to still be a User.
async fn render(s: &AppState, connection: &str, resource: &Value) -> Result<Value, ScimFailure> {
    let out = s
        .hub
        .render(connection, ResourceKind::User, resource.to_string())
        .await
        .map_err(hub_failure)?;
    let v = connector_json(&out)?;
    if v.get("id") != resource.get("id") {
        return Err(ScimFailure(ScimError::with_status(502, "the connector's rendering changed the resource id")));
    }
    Ok(v)
}

/// A stored user as an RFC 7643 resource: the stored document plus `id`, `active` and `meta`.
pub fn scim_resource(user: &DirectoryUser, base: &str) -> Value {
    let mut r = stored_resource(user);
    r["meta"] = json!({
        "resourceType": "User",
        "created": rfc3339(user.created_at),
        "lastModified": rfc3339(user.updated_at),
        "location": format!("{base}/Users/{}", user.id),
        "version": format!("W/\"{}\"", user.version),
    });
    r
}

fn stored_resource(user: &DirectoryUser) -> Value {
    let mut r = match &user.resource {
        Value::Object(_) => user.resource.clone(),
        _ => json!({}),
    };
    r["id"] = Value::String(user.id.clone());
    r["active"] = Value::Bool(user.active);
    r
}

fn key_fields(resource: &Value) -> Result<(String, Option<String>, bool), ScimFailure> {
    let user_name = resource
        .get("userName")
        .and_then(Value::as_str)
        .ok_or_else(|| ScimError::new(ScimType::InvalidValue, "userName is required"))?
        .to_string();
    let external_id = resource.get("externalId").and_then(Value::as_str).map(str::to_string);
    let active = resource.get("active").and_then(Value::as_bool).unwrap_or(true);
    Ok((user_name, external_id, active))
}

fn connector_json(text: &str) -> Result<Value, ScimFailure> {
    serde_json::from_str(text)
        .map_err(|e| ScimFailure(ScimError::with_status(502, format!("the connector returned invalid JSON: {e}"))))
}

/// `If-Match: W/"7"` → Some(7).
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ScimFailure> {
    let Some(v) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let text = v.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    text.trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .map(Some)
        .map_err(|_| ScimFailure(ScimError::with_status(400, format!("If-Match {text:?} is not an ETag this server issued"))))
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Decode `a=b&c=d` (percent-encoding and `+`).
fn decode_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
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

/// Unix milliseconds as an RFC 3339 UTC timestamp.
fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

fn store_failure(e: StoreError) -> ScimFailure {
    let detail = e.to_string();
    ScimFailure(match e {
        StoreError::NotFound { .. } => ScimError::with_status(404, detail),
        StoreError::Conflict { .. } => ScimError::new(ScimType::Uniqueness, detail),
        StoreError::PreconditionFailed { .. } => ScimError::with_status(412, detail),
        StoreError::InvalidInput { .. } => ScimError::new(ScimType::InvalidValue, detail),
        other => {
            tracing::error!(error = %other, "SCIM request failed in the store");
            ScimError::with_status(503, "the directory store is unavailable; retry later")
        }
    })
}

fn hub_failure(e: HubError) -> ScimFailure {
    let detail = e.to_string();
    ScimFailure(match e {
        HubError::Call(CallError::Connector { error, .. }) => {
            let scim_type = error.scim_type.as_deref().and_then(scim_type_named);
            match scim_type {
                Some(t) => ScimError::new(t, error.message),
                None => ScimError::with_status(400, error.message),
            }
        }
        HubError::Call(CallError::Timeout { .. }) => ScimError::with_status(504, detail),
        HubError::Call(_) => ScimError::with_status(502, detail),
        HubError::NotBound(_) | HubError::MissingCapability { .. } => ScimError::with_status(503, detail),
        HubError::Store(e) => return store_failure(e),
        other => ScimError::with_status(500, other.to_string()),
    })
}

fn scim_type_named(name: &str) -> Option<ScimType> {
    use ScimType::*;
    [InvalidFilter, TooMany, Uniqueness, Mutability, InvalidSyntax, InvalidPath, NoTarget, InvalidValue, InvalidVers, Sensitive]
        .into_iter()
        .find(|t| t.as_str() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_795_623_479_070), "2026-11-25T16:17:59.070Z");
    }

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
    }
}
