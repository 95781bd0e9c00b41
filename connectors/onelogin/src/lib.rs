//! `onelogin`: the first-party idplex connector for OneLogin: SCIM provisioning with its pre-RFC
//! schema URNs and SAML parameters.
//!
//! * **provisioning**: OneLogin's SCIM dialect ([`dialect`]): pre-RFC URNs renamed, and a user
//!   `PUT` without `active` keeps the user active.
//! * **sso**: OneLogin's parameter names as defaults, overridable per connection, and
//!   delimiter-separated multi-value groups split ([`saml`]).
//! * **directory-sync** is not offered (no egress): OneLogin pushes via SCIM.
//!
//! The logic lives in plain modules taking plain values and a config lookup, tested natively;
//! the `Guest` impls only wire them to the host imports.

pub mod dialect;
pub mod saml;

#[cfg(test)]
mod tests;

use idplex_connector_sdk::{
    ConnectorError, Json, ResourceKind, config, directory_pull, directory_sync, export_connector, metadata,
    diagnostics, provisioning, schemas, scim_dialect, scim_reads, sso,
};

/// Machine name of this connector.
const NAME: &str = "onelogin";

/// The connector; all behaviour is in the trait impls.
struct OneLogin;

impl metadata::Guest for OneLogin {
    fn describe() -> metadata::ConnectorInfo {
        metadata::ConnectorInfo {
            name: NAME.to_string(),
            vendor: "idplex".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "OneLogin: SCIM provisioning from OneLogin's SCIM Provisioner connectors \
                          (pre-RFC schema URNs, template PUTs) and sign-in with OneLogin's SAML \
                          parameters."
                .to_string(),
            capabilities: vec![
                metadata::Capability::Provisioning,
                metadata::Capability::Sso,
            ],
            config_schema: saml::config_schema(),
            egress_hosts: Vec::new(),
        }
    }
}

impl provisioning::Guest for OneLogin {
    fn normalize(
        request: provisioning::ScimRequest,
    ) -> Result<Vec<provisioning::Operation>, ConnectorError> {
        dialect::normalize(&request)
    }

    fn render(_kind: ResourceKind, resource: Json) -> Result<Json, ConnectorError> {
        scim_dialect::render(resource)
    }
}

impl directory_sync::Guest for OneLogin {
    fn pull(_cursor: Option<String>) -> Result<directory_sync::SyncPage, ConnectorError> {
        Err(ConnectorError::unsupported(
            "onelogin does not pull from OneLogin's API; enable provisioning on the OneLogin SCIM \
             app so that OneLogin pushes users and groups to idplex via SCIM",
        ))
    }
}

impl directory_pull::Guest for OneLogin {
    fn pull(_request: directory_pull::PullRequest) -> Result<directory_pull::PullPage, ConnectorError> {
        Err(ConnectorError::unsupported_capability(NAME, "directory-sync"))
    }
}

impl sso::Guest for OneLogin {
    fn map_assertion(
        assertion: sso::VerifiedAssertion,
    ) -> Result<sso::SsoIdentity, ConnectorError> {
        let config = config::Snapshot::read();
        saml::map_assertion(&assertion, &|key| config.get(key))
    }
}

impl schemas::Guest for OneLogin {
    /// The app's custom user attributes, when the connection configures them
    /// (`scim_extension_urn`, `scim_extension_attributes`).
    fn extensions() -> Result<Vec<schemas::SchemaExtension>, ConnectorError> {
        schemas::from_config(&config::get)
    }
}

impl diagnostics::Guest for OneLogin {
    /// The config, through the connector's own assertion mapping; nothing to reach (push only).
    fn test_connection() -> Result<Vec<diagnostics::Check>, ConnectorError> {
        Ok(diagnostics::push_connector_checks(|| saml::map_assertion(&diagnostics::probe_assertion(), &config::get), true))
    }
}

impl scim_reads::Guest for OneLogin {
    /// OneLogin's lookups (its `+` for spaces and trailing `&` are the host's query decoding) are plain RFC 7644: the host decodes them.
    fn as_sent() -> Vec<ResourceKind> {
        scim_reads::BOTH.to_vec()
    }
}

export_connector!(OneLogin);
