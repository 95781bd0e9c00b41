//! Public data types. Timestamps are unix milliseconds (`i64`), ids are strings.

use serde::{Deserialize, Serialize};

/// A connector module to install. The store computes its sha256 and size from `component`.
#[derive(Debug, Clone)]
pub struct NewModule {
    pub name: String,
    pub version: String,
    pub contract_version: String,
    /// The connector's self-description, opaque to the store.
    pub info: serde_json::Value,
    /// The component bytes.
    pub component: Vec<u8>,
}

/// Result of [`crate::Store::insert_module`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    /// The module was not there and now is.
    Inserted { sha256: String },
    /// The very same bytes were already installed as the same name@version: nothing changed.
    AlreadyPresent { sha256: String },
}

impl InsertOutcome {
    pub fn sha256(&self) -> &str {
        match self {
            InsertOutcome::Inserted { sha256 } | InsertOutcome::AlreadyPresent { sha256 } => sha256,
        }
    }
}

/// An installed module, without its bytes (see [`crate::Store::module_bytes`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleSummary {
    pub sha256: String,
    pub name: String,
    pub version: String,
    pub contract_version: String,
    pub size_bytes: i64,
    pub info: serde_json::Value,
    pub installed_at: i64,
    /// Who published it, as judged at install (signature and trust policy); `None` for a
    /// module installed before signatures were checked.
    #[serde(default)]
    pub publisher: Option<crate::ModulePublisher>,
}

/// A connection to create. `id` is generated (`conn_<hex>`) when `None`.
#[derive(Debug, Clone)]
pub struct NewConnection {
    pub id: Option<String>,
    pub org_id: String,
    pub name: String,
    pub connector_name: String,
    pub config: serde_json::Value,
    pub egress_allow: Vec<String>,
    pub limits: serde_json::Value,
}

/// Fields of a connection an admin may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ConnectionUpdate {
    pub config: Option<serde_json::Value>,
    pub egress_allow: Option<Vec<String>>,
    pub limits: Option<serde_json::Value>,
}

/// An IdP connection of an organization (a.k.a. directory) and its binding to a connector version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub connector_name: String,
    pub active_version: Option<String>,
    pub previous_version: Option<String>,
    pub config: serde_json::Value,
    pub egress_allow: Vec<String>,
    pub limits: serde_json::Value,
    /// Bumped by every binding change (activate, rollback); not by config updates.
    pub generation: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// What a SCIM `DELETE` of a user does in this directory
    /// ([`crate::Store::set_scim_delete_policy`]).
    #[serde(default)]
    pub scim_delete_policy: ScimDeletePolicy,
}

/// What a SCIM `DELETE /Users/{id}` does in a directory ([`crate::Store::scim_delete_user`]).
///
/// RFC 7644 §3.6 lets a service provider keep a deleted resource as long as it answers 404 for
/// it from then on; both policies do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScimDeletePolicy {
    /// The default: the user is deactivated (its sessions end) and hidden from SCIM, but its
    /// data, group memberships, API tokens and history are kept; admins still see it, and a
    /// create of the same `userName` through the same directory restores it.
    #[default]
    Deactivate,
    /// The user is removed, with its memberships, API tokens and sessions.
    Delete,
}

impl ScimDeletePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ScimDeletePolicy::Deactivate => "deactivate",
            ScimDeletePolicy::Delete => "delete",
        }
    }

    /// `deactivate` or `delete`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "deactivate" => Some(ScimDeletePolicy::Deactivate),
            "delete" => Some(ScimDeletePolicy::Delete),
            _ => None,
        }
    }
}

impl std::fmt::Display for ScimDeletePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`crate::Store::scim_delete_user`] did, by the directory's [`ScimDeletePolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScimDeleteOutcome {
    /// The user row is gone (policy `delete`).
    Deleted,
    /// The user is deactivated and soft-deleted (policy `deactivate`).
    Deactivated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingAction {
    Activate,
    Rollback,
}

impl BindingAction {
    pub fn as_str(self) -> &'static str {
        match self {
            BindingAction::Activate => "activate",
            BindingAction::Rollback => "rollback",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "activate" => Some(BindingAction::Activate),
            "rollback" => Some(BindingAction::Rollback),
            _ => None,
        }
    }
}

/// One binding change of a connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BindingChange {
    pub connection_id: String,
    /// The connection's generation right after this change (1, 2, 3, ...).
    pub seq: i64,
    pub from_version: Option<String>,
    pub to_version: String,
    pub action: BindingAction,
    pub actor: String,
    pub at: i64,
}

/// An admin token as listed: never carries the secret nor its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminToken {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

/// A SCIM bearer token of one connection (directory), as listed: never carries the secret nor
/// its hash. An IdP presents the secret to `/scim/v2/{connection}`, and it authenticates requests
/// to that connection only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScimToken {
    /// `stok_` followed by 32 hex digits.
    pub id: String,
    /// The connection (directory) this token gives access to, and the only one.
    pub connection_id: String,
    /// When the token was issued.
    pub created_at: i64,
    /// When the token stops working. Every SCIM token expires; rotating it may bring this
    /// forward to the end of the overlap window.
    pub expires_at: i64,
    /// When the token was revoked, if it was. A revoked token never works again.
    pub revoked_at: Option<i64>,
    /// When the token last authenticated a request, to within a minute.
    pub last_used_at: Option<i64>,
    /// The id of the token this one replaced, if it was issued by rotation.
    pub rotated_from: Option<String>,
}

/// What went wrong with a connector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventKind {
    Trap,
    Timeout,
    Memory,
    OutputTooLarge,
    EgressDenied,
    InvalidOutput,
    InstallRefused,
    /// Anything else; stored verbatim.
    Other(String),
}

impl EventKind {
    pub fn as_str(&self) -> &str {
        match self {
            EventKind::Trap => "trap",
            EventKind::Timeout => "timeout",
            EventKind::Memory => "memory",
            EventKind::OutputTooLarge => "output_too_large",
            EventKind::EgressDenied => "egress_denied",
            EventKind::InvalidOutput => "invalid_output",
            EventKind::InstallRefused => "install_refused",
            EventKind::Other(s) => s,
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "trap" => EventKind::Trap,
            "timeout" => EventKind::Timeout,
            "memory" => EventKind::Memory,
            "output_too_large" => EventKind::OutputTooLarge,
            "egress_denied" => EventKind::EgressDenied,
            "invalid_output" => EventKind::InvalidOutput,
            "install_refused" => EventKind::InstallRefused,
            other => EventKind::Other(other.to_owned()),
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(EventKind::parse(&String::deserialize(d)?))
    }
}

/// A connector event to record.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// When it happened; `None` means now.
    pub at: Option<i64>,
    pub connection_id: Option<String>,
    /// `name@version` of the connector.
    pub connector: String,
    pub kind: EventKind,
    /// Human-readable detail; truncated to [`crate::MAX_EVENT_MESSAGE_BYTES`].
    pub message: String,
}

/// A recorded connector event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: i64,
    pub at: i64,
    pub connection_id: Option<String>,
    pub connector: String,
    pub kind: EventKind,
    /// The message of the first occurrence.
    pub message: String,
    /// How many times the event happened: 1, plus the repeats coalesced into this row (same
    /// connection, connector and kind within the store's coalescing window, see
    /// [`crate::EVENT_COALESCE_WINDOW_MS`]).
    #[serde(default = "one")]
    pub repeats: i64,
    /// When the last repeat happened; `None` if there was none.
    #[serde(default)]
    pub last_at: Option<i64>,
}

fn one() -> i64 {
    1
}
