//! `entra-id`: the first-party idplex connector for Microsoft Entra ID (Azure AD).
//!
//! * **provisioning** undoes Entra's SCIM dialect, in both of its PATCH dialects (the legacy
//!   default and `aadOptscim062020`), so that what reaches the host is RFC 7644-correct
//!   ([`dialect`]); resources are rendered back unchanged.
//! * **sso** maps Entra's SAML claim URIs (UPN NameID, `objectidentifier` as the external id,
//!   group object ids, app roles), flags group overage and optionally pins the tenant
//!   ([`claims`]).
//! * **directory-sync** is not offered: Entra pushes through SCIM, and this connector never
//!   calls out (`egress-hosts` is empty).
//!
//! The logic lives in plain modules that take plain values (unit-tested natively); the `Guest`
//! impls below only wire them to the host imports.

pub mod claims;
pub mod dialect;
#[cfg(test)]
mod tests;

use idplex_connector_sdk::{
    ConnectorError, Json, ResourceKind, config, directory_sync, export_connector, log, metadata,
    diagnostics, provisioning, schemas, scim_dialect, sso,
};

/// Machine name of this connector.
const NAME: &str = "entra-id";

/// One sentence for the admin console.
const DESCRIPTION: &str = "Microsoft Entra ID (Azure AD): SCIM provisioning in both of Entra's \
                           PATCH dialects, and SAML sign-in with Entra's claims, group overage \
                           detection and optional tenant pinning.";

/// The connector; all behaviour is in the trait impls.
struct EntraId;

impl metadata::Guest for EntraId {
    fn describe() -> metadata::ConnectorInfo {
        metadata::ConnectorInfo {
            name: NAME.to_string(),
            vendor: "idplex".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: DESCRIPTION.to_string(),
            capabilities: vec![metadata::Capability::Provisioning, metadata::Capability::Sso],
            config_schema: claims::config_schema(),
            egress_hosts: Vec::new(),
        }
    }
}

impl provisioning::Guest for EntraId {
    fn normalize(
        request: provisioning::ScimRequest,
    ) -> Result<Vec<provisioning::Operation>, ConnectorError> {
        dialect::normalize(&request)
    }

    fn render(_kind: ResourceKind, resource: Json) -> Result<Json, ConnectorError> {
        scim_dialect::render(resource)
    }
}

impl directory_sync::Guest for EntraId {
    fn pull(_cursor: Option<String>) -> Result<directory_sync::SyncPage, ConnectorError> {
        Err(ConnectorError::unsupported(
            "entra-id does not pull from Microsoft Graph (it has no egress); configure \
             provisioning in the Entra enterprise application to push users and groups to idplex \
             via SCIM instead",
        ))
    }
}

impl sso::Guest for EntraId {
    fn map_assertion(
        assertion: sso::VerifiedAssertion,
    ) -> Result<sso::SsoIdentity, ConnectorError> {
        let mapped = claims::map_assertion(&assertion, &config::get)?;
        for warning in &mapped.warnings {
            log::warn(warning);
        }
        Ok(mapped.identity)
    }
}

impl schemas::Guest for EntraId {
    /// None: this IdP sends only the core schemas and the enterprise extension.
    fn extensions() -> Result<Vec<schemas::SchemaExtension>, ConnectorError> {
        Ok(Vec::new())
    }
}

impl diagnostics::Guest for EntraId {
    /// The config, through the connector's own assertion mapping; nothing to reach (push only).
    fn test_connection() -> Result<Vec<diagnostics::Check>, ConnectorError> {
        Ok(diagnostics::push_connector_checks(|| claims::map_assertion(&diagnostics::probe_assertion(), &config::get), false))
    }
}

export_connector!(EntraId);
