//! `custom-saml`: the first-party idplex connector for IdPs that need no special handling.
//!
//! * **provisioning** speaks the generic RFC 7644 dialect: requests are validated and turned into
//!   RFC-correct operations without rewriting, and resources are rendered back unchanged.
//! * **sso** maps a verified SAML assertion to a canonical user, driven entirely by the
//!   connection's config (which SAML attribute carries which claim). The defaults cover the
//!   common claim URIs used by ADFS / Entra ID and the plain names used by most other IdPs.
//! * **directory-sync** is not offered: this connector never calls out (`egress-hosts` is empty).
//!
//! The logic lives in [`scim_dialect`] and [`saml_mapping`], which take plain values (and a
//! config lookup function) so that they can be unit-tested natively; the `Guest` impls below only
//! wire them to the host imports.

use idplex_connector_sdk::{
    ConnectorError, Json, ResourceKind, config, directory_sync, export_connector, metadata,
    provisioning, sso,
};

mod saml_mapping;
mod scim_dialect;

/// Machine name of this connector.
const NAME: &str = "custom-saml";

/// The connector; all behaviour is in the trait impls.
struct CustomSaml;

impl metadata::Guest for CustomSaml {
    fn describe() -> metadata::ConnectorInfo {
        metadata::ConnectorInfo {
            name: NAME.to_string(),
            vendor: "idplex".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Any SAML 2.0 IdP with standard SCIM 2.0 provisioning; claim mapping is \
                          configured per connection."
                .to_string(),
            capabilities: vec![metadata::Capability::Provisioning, metadata::Capability::Sso],
            config_schema: saml_mapping::config_schema(),
            egress_hosts: Vec::new(),
        }
    }
}

impl provisioning::Guest for CustomSaml {
    fn normalize(
        request: provisioning::ScimRequest,
    ) -> Result<Vec<provisioning::Operation>, ConnectorError> {
        scim_dialect::normalize(&request)
    }

    fn render(_kind: ResourceKind, resource: Json) -> Result<Json, ConnectorError> {
        scim_dialect::render(resource)
    }
}

impl directory_sync::Guest for CustomSaml {
    fn pull(_cursor: Option<String>) -> Result<directory_sync::SyncPage, ConnectorError> {
        Err(ConnectorError::unsupported(
            "custom-saml does not pull from an IdP API (it has no egress); configure the IdP to \
             push users and groups to idplex via SCIM provisioning instead",
        ))
    }
}

impl sso::Guest for CustomSaml {
    fn map_assertion(
        assertion: sso::VerifiedAssertion,
    ) -> Result<sso::SsoIdentity, ConnectorError> {
        saml_mapping::map_assertion(&assertion, &config::get)
    }
}

export_connector!(CustomSaml);
