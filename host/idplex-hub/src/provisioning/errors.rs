//! Hub, store and connector failures as the SCIM errors an IdP can act on.

use idplex_runtime::{CallError, ConnectorErrorKind, ResourceKind, WitConnectorError};
use idplex_scim::{ScimError, ScimType};
use idplex_store::StoreError;

use crate::HubError;

/// A store error as a SCIM error. A missing *user* while writing a group is a bad member
/// reference (400), not a missing group.
pub(crate) fn store_failure(kind: ResourceKind, e: StoreError) -> ScimError {
    let detail = e.to_string();
    match e {
        StoreError::NotFound { what: "user", key } if kind == ResourceKind::Group => {
            ScimError::new(ScimType::InvalidValue, format!("member {key:?} is not a user of this directory"))
        }
        StoreError::NotFound { .. } => ScimError::with_status(404, detail),
        StoreError::Conflict { .. } => ScimError::new(ScimType::Uniqueness, detail),
        StoreError::PreconditionFailed { .. } => ScimError::with_status(412, detail),
        StoreError::InvalidInput { .. } => ScimError::new(ScimType::InvalidValue, detail),
        other => {
            tracing::error!(error = %other, "SCIM request failed in the store");
            ScimError::with_status(503, "the directory store is unavailable; retry later")
        }
    }
}

/// A hub error met while serving a SCIM request. A connector's own error follows
/// [`connector_failure`]; a connector that misbehaved is 502 (504 when it ran out of time); a
/// connection that cannot serve right now (busy, not bound, unusable config) is 503.
pub fn hub_failure(e: HubError) -> ScimError {
    let detail = e.to_string();
    match e {
        HubError::Call(CallError::Connector { error, .. }) => connector_failure(error),
        HubError::Call(CallError::Timeout { .. }) => ScimError::with_status(504, detail),
        HubError::Call(CallError::Busy { .. }) => ScimError::with_status(503, detail),
        HubError::Config(_) => ScimError::with_status(503, detail),
        HubError::Call(_) => ScimError::with_status(502, detail),
        HubError::NotBound(_) | HubError::BindFailed { .. } | HubError::MissingCapability { .. } => {
            ScimError::with_status(503, detail)
        }
        HubError::Store(e) => store_failure(ResourceKind::User, e),
        other => ScimError::with_status(500, other.to_string()),
    }
}

/// An error the connector returned, with the status the contract documents for its kind
/// (`wit/connector.wit`, `error-kind`): `invalid-request` 400, `unsupported` 501, `upstream`
/// 502, `config` and `internal` 500. A `scimType` the connector named is kept; on an
/// `invalid-request` it also sets the status RFC 7644 gives it (409 `uniqueness`, 403
/// `sensitive`). A `scimType` that is not an RFC 7644 keyword is dropped.
pub fn connector_failure(error: WitConnectorError) -> ScimError {
    let scim_type = error.scim_type.as_deref().and_then(scim_type_named);
    let status = match error.kind {
        ConnectorErrorKind::InvalidRequest => scim_type.map_or(400, ScimType::http_status),
        ConnectorErrorKind::Unsupported => 501,
        ConnectorErrorKind::Upstream => 502,
        ConnectorErrorKind::Config | ConnectorErrorKind::Internal => 500,
    };
    ScimError { status, scim_type, detail: error.message }
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
    fn connector_errors_answer_their_documented_status() {
        let table: &[(ConnectorErrorKind, Option<&str>, u16, Option<ScimType>)] = &[
            (ConnectorErrorKind::InvalidRequest, None, 400, None),
            (ConnectorErrorKind::InvalidRequest, Some("invalidPath"), 400, Some(ScimType::InvalidPath)),
            (ConnectorErrorKind::InvalidRequest, Some("uniqueness"), 409, Some(ScimType::Uniqueness)),
            (ConnectorErrorKind::InvalidRequest, Some("madeUp"), 400, None),
            (ConnectorErrorKind::Unsupported, None, 501, None),
            (ConnectorErrorKind::Upstream, Some("invalidValue"), 502, Some(ScimType::InvalidValue)),
            (ConnectorErrorKind::Config, None, 500, None),
            (ConnectorErrorKind::Internal, None, 500, None),
        ];
        for (kind, scim_type, status, expected_type) in table {
            let e = connector_failure(WitConnectorError {
                kind: *kind,
                message: "why".into(),
                scim_type: scim_type.map(str::to_string),
            });
            assert_eq!((e.status, e.scim_type, e.detail.as_str()), (*status, *expected_type, "why"), "{kind:?} {scim_type:?}");
        }
    }
}
