//! Host-side bindings of the `idplex:connector` WIT contract, one module per contract major
//! version ([`v1`]), and the names the rest of the host uses for them.

pub mod v1;

/// The contract majors this host links (a component built against another is refused at
/// install).
pub const SUPPORTED_MAJORS: &[u64] = &[v1::MAJOR];

pub use v1::Exports as Connector;
pub(crate) use v1::ExportsPre as ConnectorPre;
pub use v1::exports::idplex::connector::diagnostics::Check as DiagnosticCheck;
pub use v1::exports::idplex::connector::schemas::SchemaExtension;
pub use v1::exports::idplex::connector::directory_sync::SyncPage;
pub use v1::exports::idplex::connector::directory_pull::{
    GroupMembers, Member, PassKind, PullPage, PullRequest,
};
pub use v1::exports::idplex::connector::metadata::{Capability, ConnectorInfo};
pub use v1::exports::idplex::connector::provisioning::{
    ListQuery, Operation, PatchOpKind as PatchOp, PatchOperation, ScimRequest,
};
pub use v1::exports::idplex::connector::sso::{SamlAttribute, SsoIdentity, VerifiedAssertion};
pub use v1::idplex::connector::types::{
    CanonicalGroup, CanonicalUser, ConnectorError as WitConnectorError,
    ErrorKind as ConnectorErrorKind, Email, ResourceKind,
};

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Capability::Provisioning => "provisioning",
            Capability::DirectorySync => "directory-sync",
            Capability::Sso => "sso",
        })
    }
}
