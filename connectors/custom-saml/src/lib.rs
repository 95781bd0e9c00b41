//! `custom-saml`: the first-party idplex connector for IdPs that need no special handling.
//!
//! * **provisioning** speaks the generic RFC 7644 dialect: requests are validated and turned into
//!   RFC-correct operations without rewriting, and resources are rendered back unchanged.
//! * **sso** maps a verified SAML assertion to a canonical user, driven entirely by the
//!   connection's config (which SAML attribute carries which claim). The defaults cover the
//!   common claim URIs used by ADFS / Entra ID and the plain names used by most other IdPs.
//! * **directory-sync** is not offered: this connector never calls out (`egress-hosts` is empty).
//!
//! The logic is the SDK's generic building blocks, [`scim_dialect`] and [`saml_mapping`], with
//! no quirk of any IdP: an IdP with a dialect of its own has a connector of its own (`okta`,
//! `entra-id`, `onelogin`, `google-workspace`).

use idplex_connector_sdk::saml_mapping::{self, SamlMapping};
use idplex_connector_sdk::{
    ConnectorError, Json, ResourceKind, config, directory_pull, directory_sync, export_connector, metadata,
    diagnostics, provisioning, schemas, scim_dialect, scim_reads, sso,
};

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
            config_schema: saml_mapping::GENERIC.config_schema("custom-saml connection settings"),
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

impl directory_pull::Guest for CustomSaml {
    fn pull(_request: directory_pull::PullRequest) -> Result<directory_pull::PullPage, ConnectorError> {
        Err(ConnectorError::unsupported_capability(NAME, "directory-sync"))
    }
}

impl sso::Guest for CustomSaml {
    fn map_assertion(
        assertion: sso::VerifiedAssertion,
    ) -> Result<sso::SsoIdentity, ConnectorError> {
        let config = config::Snapshot::read();
        SamlMapping::map_assertion(&saml_mapping::GENERIC, &assertion, &|key| config.get(key))
    }
}

impl schemas::Guest for CustomSaml {
    /// None: this IdP sends only the core schemas and the enterprise extension.
    fn extensions() -> Result<Vec<schemas::SchemaExtension>, ConnectorError> {
        Ok(Vec::new())
    }
}

impl diagnostics::Guest for CustomSaml {
    /// The config, through the connector's own assertion mapping; nothing to reach (push only).
    fn test_connection() -> Result<Vec<diagnostics::Check>, ConnectorError> {
        Ok(diagnostics::push_connector_checks(|| SamlMapping::map_assertion(&saml_mapping::GENERIC, &diagnostics::probe_assertion(), &config::get), false))
    }
}

impl scim_reads::Guest for CustomSaml {
    /// The generic RFC 7644 dialect are plain RFC 7644: the host decodes them.
    fn as_sent() -> Vec<ResourceKind> {
        scim_reads::BOTH.to_vec()
    }
}

export_connector!(CustomSaml);
