//! Okta's SCIM 2.0 dialect.
//!
//! Okta is close to RFC 7644: it looks users up with `userName eq "…"` before creating them,
//! updates profiles with a full `PUT`, (de)activates with a path-less
//! `{"op":"replace","value":{"active":false}}`, pushes groups with `members` add/remove, and
//! never deletes users (it deactivates them; a `DELETE /Users/{id}` is still passed through and
//! the connection's delete policy decides). Duplicates (409) and the pushed-but-never-stored
//! `password` are the host's business.
//!
//! The one thing undone here: Okta renames a pushed group with a path-less `replace` whose value
//! echoes the group's own `id` (`{"id":"<the group's id>","displayName":"…"}`). That echo is
//! dropped; an `id` that differs from the one in the request path is refused, naming `id`.
//!
//! Other IdPs' quirks are deliberately *not* undone (an Entra-style `"False"` string stays as
//! sent; the strict host refuses it).

use idplex_connector_sdk::provisioning::{Operation, PatchOpKind, ScimRequest};
use idplex_connector_sdk::scim_dialect::{self, Parsed, PatchOp, path_names};
use idplex_connector_sdk::serde_json::Value;
use idplex_connector_sdk::{ConnectorError, ResourceKind, scim};

/// Normalizes one request of Okta's dialect into RFC-correct operations.
pub fn normalize(request: &ScimRequest) -> Result<Vec<Operation>, ConnectorError> {
    let mut parsed = scim_dialect::parse(request)?;
    if let Parsed::Patch(id, ops) = &mut parsed {
        for (index, op) in ops.iter_mut().enumerate() {
            drop_echoed_id(request.resource, id, index, op)?;
        }
    }
    parsed.into_operations(request.resource)
}

/// In a path-less `add`/`replace` (`Operations[index]` of a PATCH of the resource `id`), removes
/// an `id` key equal to `id`; any other `id` value is an `invalid-request` naming `id`.
pub fn drop_echoed_id(
    kind: ResourceKind,
    id: &str,
    index: usize,
    op: &mut PatchOp,
) -> Result<(), ConnectorError> {
    if op.path.is_some() || matches!(op.op, PatchOpKind::Remove) {
        return Ok(());
    }
    let Some(Value::Object(value)) = op.value.as_mut() else {
        return Ok(());
    };
    let id_keys: Vec<String> = value
        .keys()
        .filter(|k| path_names(k, "id"))
        .cloned()
        .collect();
    for key in id_keys {
        match value.get(&key) {
            Some(Value::String(echoed)) if echoed == id => {
                value.remove(&key);
            }
            Some(other) => {
                return Err(ConnectorError::invalid_request(format!(
                    "Operations[{index}]: `{key}` in the path-less value is {other}, but the \
                     request addresses /{}/{id}; `id` is read-only and cannot be changed",
                    scim::endpoint(kind)
                ))
                .with_scim_type("mutability"));
            }
            None => {}
        }
    }
    Ok(())
}
