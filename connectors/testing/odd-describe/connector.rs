// Shared source of the `impostor` and `bad-schema` test fixtures (connectors/testing/impostor
// and bad-schema): connectors whose self-description the host must refuse at install. Each
// crate is `const NAME`, `const SCHEMA` and `include!("../../odd-describe/connector.rs");`.
//
// * `describe` answers NAME@<crate version> with SCHEMA as its config schema and the
//   provisioning capability; `render` echoes; every other export answers `unsupported`.

use idplex_connector_sdk::provisioning::{Operation, ScimRequest};
use idplex_connector_sdk::{
    ConnectorError, Json, ResourceKind, diagnostics, directory_pull, directory_sync, export_connector, metadata,
    provisioning, schemas, scim_reads, sso,
};

struct Odd;

impl metadata::Guest for Odd {
    fn describe() -> metadata::ConnectorInfo {
        metadata::ConnectorInfo {
            name: NAME.to_string(),
            vendor: "not idplex".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "TEST FIXTURE: a self-description the host must refuse.".to_string(),
            capabilities: vec![metadata::Capability::Provisioning],
            config_schema: SCHEMA.to_string(),
            egress_hosts: Vec::new(),
        }
    }
}

impl provisioning::Guest for Odd {
    fn normalize(_request: ScimRequest) -> Result<Vec<Operation>, ConnectorError> {
        Err(ConnectorError::unsupported("test fixture"))
    }

    fn render(_kind: ResourceKind, resource: Json) -> Result<Json, ConnectorError> {
        Ok(resource)
    }
}

impl directory_sync::Guest for Odd {
    fn pull(_cursor: Option<String>) -> Result<directory_sync::SyncPage, ConnectorError> {
        Err(ConnectorError::unsupported_capability(NAME, "directory-sync"))
    }
}

impl directory_pull::Guest for Odd {
    fn pull(_request: directory_pull::PullRequest) -> Result<directory_pull::PullPage, ConnectorError> {
        Err(ConnectorError::unsupported_capability(NAME, "directory-sync"))
    }
}

impl sso::Guest for Odd {
    fn map_assertion(_: sso::VerifiedAssertion) -> Result<sso::SsoIdentity, ConnectorError> {
        Err(ConnectorError::unsupported_capability(NAME, "sso"))
    }
}

impl schemas::Guest for Odd {
    fn extensions() -> Result<Vec<schemas::SchemaExtension>, ConnectorError> {
        Ok(Vec::new())
    }
}

impl diagnostics::Guest for Odd {
    fn test_connection() -> Result<Vec<diagnostics::Check>, ConnectorError> {
        Ok(Vec::new())
    }
}

impl scim_reads::Guest for Odd {
    fn as_sent() -> Vec<ResourceKind> {
        Vec::new()
    }
}

export_connector!(Odd);
