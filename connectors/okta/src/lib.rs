//! `okta`: the first-party idplex connector for Okta (SCIM 2.0 provisioning app and SAML 2.0 app).
//!
//! * **provisioning**: Okta's SCIM dialect ([`dialect`]), RFC 7644 but for the group `id` Okta
//!   echoes in a path-less rename, which is dropped (a different `id` is refused).
//! * **sso**: Okta's attribute names as defaults, overridable per connection, and the
//!   `groups_filter` / `groups_filter_mode` group filter ([`saml`]).
//! * **directory-sync** is not offered (no egress): Okta pushes via SCIM.
//!
//! The logic lives in plain modules taking plain values and a config lookup, tested natively;
//! the `Guest` impls only wire them to the host imports.

pub mod dialect;
pub mod saml;

#[cfg(test)]
mod tests;

use idplex_connector_sdk::{
    ConnectorError, Json, ResourceKind, config, directory_pull, directory_sync, export_connector, log, metadata,
    diagnostics, provisioning, schemas, scim_dialect, scim_reads, sso,
};

/// Machine name of this connector.
const NAME: &str = "okta";

/// The connector; all behaviour is in the trait impls.
struct Okta;

impl metadata::Guest for Okta {
    fn describe() -> metadata::ConnectorInfo {
        metadata::ConnectorInfo {
            name: NAME.to_string(),
            vendor: "idplex".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description:
                "Okta: SCIM 2.0 provisioning from an Okta SCIM app and sign-in through an \
                          Okta SAML 2.0 app, with Okta's attribute names and group filter."
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

impl provisioning::Guest for Okta {
    fn normalize(
        request: provisioning::ScimRequest,
    ) -> Result<Vec<provisioning::Operation>, ConnectorError> {
        dialect::normalize(&request)
    }

    fn render(_kind: ResourceKind, resource: Json) -> Result<Json, ConnectorError> {
        scim_dialect::render(resource)
    }
}

impl directory_sync::Guest for Okta {
    fn pull(_cursor: Option<String>) -> Result<directory_sync::SyncPage, ConnectorError> {
        Err(ConnectorError::unsupported(
            "okta does not pull from Okta's API; assign the Okta SCIM app so that Okta pushes \
             users and groups to idplex via SCIM provisioning",
        ))
    }
}

impl directory_pull::Guest for Okta {
    fn pull(_request: directory_pull::PullRequest) -> Result<directory_pull::PullPage, ConnectorError> {
        Err(ConnectorError::unsupported_capability(NAME, "directory-sync"))
    }
}

impl sso::Guest for Okta {
    fn map_assertion(
        assertion: sso::VerifiedAssertion,
    ) -> Result<sso::SsoIdentity, ConnectorError> {
        let config = config::Snapshot::read();
        let (identity, dropped) = saml::map_assertion(&assertion, &|key| config.get(key))?;
        if dropped > 0 {
            log::debug(&format!(
                "groups_filter dropped {dropped} group(s) of the assertion"
            ));
        }
        Ok(identity)
    }
}

impl schemas::Guest for Okta {
    /// The app's custom user attributes, when the connection configures them
    /// (`scim_extension_urn`, `scim_extension_attributes`).
    fn extensions() -> Result<Vec<schemas::SchemaExtension>, ConnectorError> {
        schemas::from_config(&config::get)
    }
}

impl diagnostics::Guest for Okta {
    /// The config, through the connector's own assertion mapping; nothing to reach (push only).
    fn test_connection() -> Result<Vec<diagnostics::Check>, ConnectorError> {
        Ok(diagnostics::push_connector_checks(|| saml::map_assertion(&diagnostics::probe_assertion(), &config::get), true))
    }
}

impl scim_reads::Guest for Okta {
    /// Okta's lookups (`userName eq`, by id, group lists) are plain RFC 7644: the host decodes them.
    fn as_sent() -> Vec<ResourceKind> {
        scim_reads::BOTH.to_vec()
    }
}

export_connector!(Okta);
