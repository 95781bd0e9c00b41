//! `google-workspace`: the first-party idplex connector for Google Workspace: SAML app attribute
//! mapping (directory pull comes with the sync engine).
//!
//! * **sso**: a custom SAML app's NameID (primary e-mail by default) and admin-mapped
//!   attributes, with an optional pinned Workspace `domain` ([`saml`]).
//! * **provisioning** is not offered: Google Workspace pushes no SCIM to arbitrary apps.
//!   `normalize` answers `unsupported`; `render` returns the resource unchanged.
//! * **directory-sync** (pulling users and groups from the Admin SDK Directory API) comes with
//!   the sync engine; `pull` answers `unsupported` until then.
//!
//! The logic lives in a plain module taking plain values and a config lookup, tested natively;
//! the `Guest` impls only wire it to the host imports.

pub mod saml;

#[cfg(test)]
mod tests;

use idplex_connector_sdk::{
    ConnectorError, Json, ResourceKind, config, directory_sync, export_connector, metadata,
    diagnostics, provisioning, schemas, scim_dialect, sso,
};

/// Machine name of this connector.
const NAME: &str = "google-workspace";

/// Why there is neither SCIM provisioning nor a directory pull (yet).
pub const NO_PUSH: &str = "Google Workspace does not push SCIM to idplex (its auto-provisioning \
                           only serves Google's own catalog apps); its directory pull (Admin SDK \
                           Directory API) comes with the sync engine. Until then, users sign in \
                           through the Google Workspace SAML app and are known from their \
                           assertions.";

/// The connector; all behaviour is in the trait impls.
struct GoogleWorkspace;

impl metadata::Guest for GoogleWorkspace {
    fn describe() -> metadata::ConnectorInfo {
        metadata::ConnectorInfo {
            name: NAME.to_string(),
            vendor: "idplex".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Google Workspace: sign-in through a custom SAML app with Google's \
                          attribute mapping (directory pull comes with the sync engine)."
                .to_string(),
            capabilities: vec![metadata::Capability::Sso],
            config_schema: saml::config_schema(),
            egress_hosts: Vec::new(),
        }
    }
}

impl provisioning::Guest for GoogleWorkspace {
    fn normalize(
        _request: provisioning::ScimRequest,
    ) -> Result<Vec<provisioning::Operation>, ConnectorError> {
        Err(ConnectorError::unsupported(NO_PUSH))
    }

    fn render(_kind: ResourceKind, resource: Json) -> Result<Json, ConnectorError> {
        scim_dialect::render(resource)
    }
}

impl directory_sync::Guest for GoogleWorkspace {
    fn pull(_cursor: Option<String>) -> Result<directory_sync::SyncPage, ConnectorError> {
        Err(ConnectorError::unsupported(NO_PUSH))
    }
}

impl sso::Guest for GoogleWorkspace {
    fn map_assertion(
        assertion: sso::VerifiedAssertion,
    ) -> Result<sso::SsoIdentity, ConnectorError> {
        saml::map_assertion(&assertion, &config::get)
    }
}

impl schemas::Guest for GoogleWorkspace {
    /// None: this IdP sends only the core schemas and the enterprise extension.
    fn extensions() -> Result<Vec<schemas::SchemaExtension>, ConnectorError> {
        Ok(Vec::new())
    }
}

impl diagnostics::Guest for GoogleWorkspace {
    /// The config, through the connector's own assertion mapping; nothing to reach (push only).
    fn test_connection() -> Result<Vec<diagnostics::Check>, ConnectorError> {
        Ok(diagnostics::push_connector_checks(|| saml::map_assertion(&diagnostics::probe_assertion(), &config::get), false))
    }
}

export_connector!(GoogleWorkspace);
