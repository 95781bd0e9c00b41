//! `entra-id`: the first-party idplex connector for Microsoft Entra ID (Azure AD).
//!
//! * **provisioning** undoes Entra's SCIM dialect, in both of its PATCH dialects (the legacy
//!   default and `aadOptscim062020`), so that what reaches the host is RFC 7644-correct
//!   ([`dialect`]); resources are rendered back unchanged.
//! * **sso** maps Entra's SAML claim URIs (UPN NameID, `objectidentifier` as the external id,
//!   group object ids, app roles), flags group overage and optionally pins the tenant
//!   ([`claims`]).
//! * **directory-sync** through `directory-pull` (contract 1.2): users, groups and memberships
//!   from Microsoft Graph delta queries, full passes then delta passes ([`pull`], mapping in
//!   [`graph`]), through egress to `graph.microsoft.com` with the app credential the host
//!   attaches. The 1.0 `directory-sync.pull` answers `unsupported`: the host calls
//!   `directory-pull`. Provisioning by SCIM push and the pull are alternatives for a connection.
//!
//! The logic lives in plain modules that take plain values (unit-tested natively); the `Guest`
//! impls below only wire them to the host imports.

pub mod claims;
pub mod dialect;
pub mod graph;
pub mod pull;
#[cfg(test)]
mod pull_tests;
#[cfg(test)]
mod tests;

use idplex_connector_sdk::{
    ConnectorError, Json, ResourceKind, config, diagnostics, directory_pull, directory_sync,
    export_connector, http, log, metadata, provisioning, schemas, scim_dialect, scim_reads, sso,
};

/// Machine name of this connector.
const NAME: &str = "entra-id";

/// One sentence for the admin console.
const DESCRIPTION: &str = "Microsoft Entra ID (Azure AD): SCIM provisioning in both of Entra's \
                           PATCH dialects or directory pull from Microsoft Graph (delta queries), \
                           and SAML sign-in with Entra's claims, group overage detection and \
                           optional tenant pinning.";

/// Why the 1.0 `directory-sync.pull` is not served.
pub const PULL_IN_PASSES: &str = "entra-id pulls through `directory-pull` (contract 1.2), which the \
                                  host calls instead of `directory-sync.pull`";

/// The connector; all behaviour is in the trait impls.
struct EntraId;

impl metadata::Guest for EntraId {
    fn describe() -> metadata::ConnectorInfo {
        metadata::ConnectorInfo {
            name: NAME.to_string(),
            vendor: "idplex".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: DESCRIPTION.to_string(),
            capabilities: vec![
                metadata::Capability::Provisioning,
                metadata::Capability::DirectorySync,
                metadata::Capability::Sso,
            ],
            // Plus the host's credential keys (`credential.*`, `secret.*`: the app registration
            // the host fetches Graph tokens for).
            config_schema: metadata::with_credential_keys(&claims::config_schema()),
            egress_hosts: vec![graph::API_HOST.to_string()],
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
        Err(ConnectorError::unsupported(PULL_IN_PASSES))
    }
}

impl directory_pull::Guest for EntraId {
    fn pull(request: directory_pull::PullRequest) -> Result<directory_pull::PullPage, ConnectorError> {
        pull::pull(request.cursor.as_deref(), &mut http::get_json)
    }
}

impl sso::Guest for EntraId {
    fn map_assertion(
        assertion: sso::VerifiedAssertion,
    ) -> Result<sso::SsoIdentity, ConnectorError> {
        let config = config::Snapshot::read();
        let mapped = claims::map_assertion(&assertion, &|key| config.get(key))?;
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
    /// The config, through the connector's own assertion mapping, then Microsoft Graph with the
    /// credential the host attaches.
    fn test_connection() -> Result<Vec<diagnostics::Check>, ConnectorError> {
        Ok(checks(&config::get, &mut http::get_json))
    }
}

/// The `test-connection` checks: `config` (the SAML claim mapping), then
/// `reachability graph.microsoft.com` and `credentials` from `GET /v1.0/users?$top=1&$select=id`.
/// A failed Graph check says that only the directory pull needs Graph (SCIM provisioning and
/// SAML sign-in do not).
pub fn checks(get: &dyn Fn(&str) -> Option<String>, fetch: &mut http::Fetch<'_>) -> Vec<diagnostics::Check> {
    let mut checks = vec![diagnostics::config_check(|| claims::map_assertion(&diagnostics::probe_assertion(), get))];
    for mut check in diagnostics::api_checks(graph::API_HOST, "Microsoft Graph users", fetch(&graph::url_of(graph::PROBE))) {
        if !check.ok {
            check.detail.push_str(
                " (only the directory pull calls Microsoft Graph; SCIM provisioning and SAML sign-in work without it)",
            );
        }
        checks.push(check);
    }
    checks
}

impl scim_reads::Guest for EntraId {
    /// Entra's lookups (the Test Connection probe included) are plain RFC 7644: the host decodes them.
    fn as_sent() -> Vec<ResourceKind> {
        scim_reads::BOTH.to_vec()
    }
}

export_connector!(EntraId);
