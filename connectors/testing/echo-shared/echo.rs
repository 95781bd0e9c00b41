// Shared source of the `echo` test fixtures (connectors/testing/echo-v1 and echo-v2).
//
// Both crates are one line: `include!("../../echo-shared/echo.rs");`. The connector reports the
// *including* crate's package version (`env!("CARGO_PKG_VERSION")`), so echo-v1 is `echo@1.0.0`
// and echo-v2 is `echo@2.0.0` with otherwise identical behaviour. The host's tests use them to
// check which installed version served a call (upgrade, pinning, rollback).
//
// * `provisioning.render(kind, resource)` → `{"served_by":"<version>","input":<resource>}`
// * `provisioning.normalize`: POST → `create(body)`; anything else → `unsupported`.
// * `directory-sync.pull`, `directory-pull.pull`, `sso.map-assertion` → `unsupported`.
// * `schemas.extensions`: the SDK's config-driven user extension (`scim_extension_urn`,
//   `scim_extension_attributes`); `diagnostics.test-connection`: a passing `config` check
//   naming the version.

use idplex_connector_sdk::provisioning::{Operation, ScimRequest};
use idplex_connector_sdk::serde_json::json;
use idplex_connector_sdk::{
    ConnectorError, Json, ResourceKind, config, diagnostics, directory_pull, directory_sync, export_connector, metadata,
    provisioning, schemas, scim_reads, sso,
};

/// The version this build reports.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The fixture.
struct Echo;

impl metadata::Guest for Echo {
    fn describe() -> metadata::ConnectorInfo {
        metadata::ConnectorInfo {
            name: "echo".to_string(),
            vendor: "idplex".to_string(),
            version: VERSION.to_string(),
            description: "TEST FIXTURE: echoes its input and says which version served it."
                .to_string(),
            capabilities: vec![metadata::Capability::Provisioning],
            config_schema: r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object"}"#
                .to_string(),
            egress_hosts: Vec::new(),
        }
    }
}

impl provisioning::Guest for Echo {
    fn normalize(request: ScimRequest) -> Result<Vec<Operation>, ConnectorError> {
        match (request.method.as_str(), request.body) {
            ("POST", Some(body)) => Ok(vec![Operation::Create(body)]),
            ("POST", None) => Err(ConnectorError::invalid_request("POST needs a body")),
            (m, _) => Err(ConnectorError::unsupported(format!("echo {VERSION}: {m} not handled"))),
        }
    }

    fn render(_kind: ResourceKind, resource: Json) -> Result<Json, ConnectorError> {
        let input = idplex_connector_sdk::json::parse(&resource, "resource")?;
        Ok(json!({ "served_by": VERSION, "input": input }).to_string())
    }
}

impl directory_sync::Guest for Echo {
    fn pull(_cursor: Option<String>) -> Result<directory_sync::SyncPage, ConnectorError> {
        Err(ConnectorError::unsupported_capability("echo", "directory-sync"))
    }
}

impl directory_pull::Guest for Echo {
    fn pull(_request: directory_pull::PullRequest) -> Result<directory_pull::PullPage, ConnectorError> {
        Err(ConnectorError::unsupported_capability("echo", "directory-sync"))
    }
}

impl sso::Guest for Echo {
    fn map_assertion(_: sso::VerifiedAssertion) -> Result<sso::SsoIdentity, ConnectorError> {
        Err(ConnectorError::unsupported_capability("echo", "sso"))
    }
}

impl schemas::Guest for Echo {
    fn extensions() -> Result<Vec<schemas::SchemaExtension>, ConnectorError> {
        schemas::from_config(&config::get)
    }
}

impl diagnostics::Guest for Echo {
    fn test_connection() -> Result<Vec<diagnostics::Check>, ConnectorError> {
        Ok(vec![diagnostics::check("config", Ok(format!("echo {VERSION} has nothing to check")))])
    }
}

impl scim_reads::Guest for Echo {
    /// The kinds named in the config key `reads_as_sent` (`user`, `group`, comma-separated):
    /// echo's `normalize` refuses every `GET`, so a `GET` that succeeds was decoded by the host.
    fn as_sent() -> Vec<ResourceKind> {
        let listed = config::get("reads_as_sent").unwrap_or_default();
        let mut kinds = Vec::new();
        for name in listed.split(',').map(str::trim) {
            match name {
                "user" => kinds.push(ResourceKind::User),
                "group" => kinds.push(ResourceKind::Group),
                _ => {}
            }
        }
        kinds
    }
}

export_connector!(Echo);
