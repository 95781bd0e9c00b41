//! `google-workspace`: the first-party idplex connector for Google Workspace: directory pull
//! from the Admin SDK Directory API and SAML app attribute mapping.
//!
//! * **directory-sync** through `directory-pull` (contract 1.2): full passes over users, groups
//!   and group members of the Admin SDK Directory API v1 ([`pull`], mapping in [`directory`]),
//!   through egress to `admin.googleapis.com`, with the credential (a service account with
//!   domain-wide delegation) the host attaches. The 1.0 `directory-sync.pull` answers
//!   `unsupported`: the host calls `directory-pull`.
//! * **sso**: a custom SAML app's NameID (primary e-mail by default) and admin-mapped
//!   attributes, with an optional pinned Workspace `domain` ([`saml`]).
//! * **provisioning** is not offered: Google Workspace pushes no SCIM to arbitrary apps.
//!   `normalize` answers `unsupported`; `render` returns the resource unchanged.
//!
//! The logic lives in plain modules taking plain values, a config lookup and an HTTP fetcher,
//! tested natively; the `Guest` impls only wire them to the host imports.

pub mod directory;
pub mod pull;
pub mod saml;

#[cfg(test)]
mod pull_tests;
#[cfg(test)]
mod tests;

use idplex_connector_sdk::saml_mapping::SamlMapping;
use idplex_connector_sdk::{
    ConnectorError, Json, ResourceKind, config, diagnostics, directory_pull, directory_sync,
    export_connector, http, metadata, provisioning, schemas, scim_dialect, scim_reads, sso,
};

/// Machine name of this connector.
const NAME: &str = "google-workspace";

/// Why there is no SCIM provisioning.
pub const NO_PUSH: &str = "Google Workspace does not push SCIM to idplex (its auto-provisioning \
                           only serves Google's own catalog apps); idplex pulls users and groups \
                           from its Admin SDK Directory API instead (directory sync), and users \
                           sign in through the Google Workspace SAML app.";

/// Why the 1.0 `directory-sync.pull` is not served.
pub const PULL_IN_PASSES: &str = "google-workspace pulls through `directory-pull` (contract 1.2), \
                                  which the host calls instead of `directory-sync.pull`";

/// The connection's config schema: the SAML mapping keys, `domain` and `customer`, plus the
/// host's credential keys (`credential.*`, `secret.*`: the service account the host signs in as).
pub fn config_schema() -> String {
    let mut properties = saml::config_properties();
    properties.extend(directory::config_properties());
    metadata::with_credential_keys(&SamlMapping::schema_of("google-workspace connection settings", properties))
}

/// The connector; all behaviour is in the trait impls.
struct GoogleWorkspace;

impl metadata::Guest for GoogleWorkspace {
    fn describe() -> metadata::ConnectorInfo {
        metadata::ConnectorInfo {
            name: NAME.to_string(),
            vendor: "idplex".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Google Workspace: users, groups and memberships pulled from the Admin \
                          SDK Directory API, and sign-in through a custom SAML app with Google's \
                          attribute mapping."
                .to_string(),
            capabilities: vec![metadata::Capability::DirectorySync, metadata::Capability::Sso],
            config_schema: config_schema(),
            egress_hosts: vec![directory::API_HOST.to_string()],
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
        Err(ConnectorError::unsupported(PULL_IN_PASSES))
    }
}

impl directory_pull::Guest for GoogleWorkspace {
    fn pull(request: directory_pull::PullRequest) -> Result<directory_pull::PullPage, ConnectorError> {
        pull::pull(request.cursor.as_deref(), &mut http::get_json, &config::get)
    }
}

impl sso::Guest for GoogleWorkspace {
    fn map_assertion(
        assertion: sso::VerifiedAssertion,
    ) -> Result<sso::SsoIdentity, ConnectorError> {
        let config = config::Snapshot::read();
        saml::map_assertion(&assertion, &|key| config.get(key))
    }
}

impl schemas::Guest for GoogleWorkspace {
    /// None: this IdP sends only the core schemas and the enterprise extension.
    fn extensions() -> Result<Vec<schemas::SchemaExtension>, ConnectorError> {
        Ok(Vec::new())
    }
}

impl diagnostics::Guest for GoogleWorkspace {
    /// The config (through the connector's own code), then the first user of the configured
    /// scope from the Directory API with the credential the host attaches.
    fn test_connection() -> Result<Vec<diagnostics::Check>, ConnectorError> {
        Ok(checks(&config::get, &mut http::get_json))
    }
}

/// The `test-connection` checks: `config` (the directory scope and the SAML mapping), then
/// `reachability admin.googleapis.com` and `credentials` from one `users.list` request of one
/// user (not made when the config is unusable).
pub fn checks(get: &dyn Fn(&str) -> Option<String>, fetch: &mut http::Fetch<'_>) -> Vec<diagnostics::Check> {
    let config = diagnostics::config_check(|| {
        directory::Scope::from_config(get)?;
        saml::map_assertion(&diagnostics::probe_assertion(), get)
    });
    let scope = match directory::Scope::from_config(get) {
        Ok(scope) => scope,
        Err(_) => return vec![config],
    };
    let mut checks = vec![config];
    checks.extend(diagnostics::api_checks(
        directory::API_HOST,
        "Admin SDK users.list",
        fetch(&pull::probe_url(&scope)),
    ));
    checks
}

impl scim_reads::Guest for GoogleWorkspace {
    /// No SCIM provisioning: no reads to decode.
    fn as_sent() -> Vec<ResourceKind> {
        Vec::new()
    }
}

export_connector!(GoogleWorkspace);
