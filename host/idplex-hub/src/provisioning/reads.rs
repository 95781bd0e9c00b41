//! Reads a connector takes as RFC 7644 sends them (contract 1.3 `scim-reads`): the host decodes
//! the `GET` itself, exactly as the generic dialect (`idplex-connector-sdk`'s `scim_dialect`)
//! does, instead of calling the connector's `normalize`. `tests/native_scim.rs` compares this
//! decoding with the SDK's on every IdP fixture.

use idplex_runtime::{ConnectorErrorKind, ListQuery, Operation, ScimRequest, WitConnectorError};

use super::KindExt;

type Result<T> = std::result::Result<T, WitConnectorError>;

/// The one operation a `GET` asks for: `get(id)` with a resource id in the path, a list query
/// without one. Errors are the generic dialect's (kind, message and `scimType`).
pub fn read_as_sent(request: &ScimRequest) -> Result<Operation> {
    if !request.method.eq_ignore_ascii_case("GET") {
        return Err(WitConnectorError {
            kind: ConnectorErrorKind::Internal,
            message: format!("{} /{} is not a read", request.method, request.resource.endpoint()),
            scim_type: None,
        });
    }
    Ok(match request.id.as_deref().filter(|id| !id.is_empty()) {
        Some(id) => Operation::Get(id.to_string()),
        None => Operation::Query(list_query(&request.query)?),
    })
}

fn invalid(message: String) -> WitConnectorError {
    WitConnectorError {
        kind: ConnectorErrorKind::InvalidRequest,
        message,
        scim_type: Some("invalidValue".into()),
    }
}

fn list_query(params: &[(String, String)]) -> Result<ListQuery> {
    let mut query = ListQuery {
        filter: None,
        start_index: None,
        count: None,
        sort_by: None,
        sort_descending: false,
        attributes: Vec::new(),
        excluded_attributes: Vec::new(),
    };
    let non_empty = |v: &str| Some(v.trim()).filter(|v| !v.is_empty()).map(str::to_string);
    let list = |v: &str| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
    for (name, value) in params {
        match name.to_ascii_lowercase().as_str() {
            "filter" => query.filter = non_empty(value),
            // RFC 7644 §3.4.2.4: a startIndex below 1 means 1, a negative count means 0.
            "startindex" => query.start_index = Some(integer("startIndex", value)?.max(1) as u32),
            "count" => query.count = Some(integer("count", value)?.max(0) as u32),
            "sortby" => query.sort_by = non_empty(value),
            "sortorder" => {
                query.sort_descending = match value.trim().to_ascii_lowercase().as_str() {
                    "ascending" | "" => false,
                    "descending" => true,
                    _ => {
                        return Err(invalid(format!(
                            "query parameter `sortOrder` must be `ascending` or `descending`, got `{value}`"
                        )));
                    }
                }
            }
            "attributes" => query.attributes = list(value),
            "excludedattributes" => query.excluded_attributes = list(value),
            _ => {}
        }
    }
    Ok(query)
}

fn integer(name: &str, value: &str) -> Result<i64> {
    value.trim().parse::<i64>().map(|n| n.min(u32::MAX as i64)).map_err(|_| {
        invalid(format!("query parameter `{name}` must be an integer, got `{value}`"))
    })
}
