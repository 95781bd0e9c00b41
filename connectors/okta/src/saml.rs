//! Okta's SAML 2.0 app: claim mapping and the group filter.
//!
//! Okta sends only the `NameID` ("Application username") plus the Attribute Statements and
//! Group Attribute Statements the admin defined. The defaults follow the names nearly every
//! setup guide uses (`email`, `firstName`, `lastName`, `displayName`, `groups`); each can be
//! overridden per connection with the SDK's `attribute.*` keys.
//!
//! `groups_filter` / `groups_filter_mode` repeat Okta's own Group Attribute Statement filter on
//! our side (`starts-with`, `equals`, `contains`; case-sensitive; no regex), so that a
//! misconfigured IdP cannot grant more groups than the connection admits.

use idplex_connector_sdk::ConnectorError;
use idplex_connector_sdk::saml_mapping::{Defaults, SamlMapping};
use idplex_connector_sdk::serde_json::{Map, Value, json};
use idplex_connector_sdk::sso::{SsoIdentity, VerifiedAssertion};

/// Okta's default attribute names per `attribute.*` key.
pub const DEFAULTS: Defaults = &[
    // Used only when `user_name_source` = `attribute` (the default is the NameID).
    ("attribute.user_name", &["email"]),
    ("attribute.email", &["email"]),
    ("attribute.given_name", &["firstName"]),
    ("attribute.family_name", &["lastName"]),
    ("attribute.display_name", &["displayName"]),
    ("attribute.groups", &["groups"]),
    // No default: a persistent NameID is the external id, else only when set.
    ("attribute.external_id", &[]),
];

/// The Okta mapping.
pub const MAPPING: SamlMapping = SamlMapping { defaults: DEFAULTS };

/// Config key: the group filter value.
pub const GROUPS_FILTER: &str = "groups_filter";
/// Config key: how `groups_filter` matches.
pub const GROUPS_FILTER_MODE: &str = "groups_filter_mode";
/// The modes of `groups_filter_mode`, the default first.
pub const MODES: &[&str] = &["starts-with", "equals", "contains"];

/// How a group name is matched against `groups_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The name starts with the filter.
    StartsWith,
    /// The name is the filter.
    Equals,
    /// The name contains the filter.
    Contains,
}

/// The group filter of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupFilter {
    /// What to match.
    pub value: String,
    /// How.
    pub mode: Mode,
}

impl GroupFilter {
    /// The filter configured through `get`, `None` when `groups_filter` is unset; a `config`
    /// error naming the key for a blank filter, an unknown mode, or a mode without a filter.
    pub fn from_config(
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, ConnectorError> {
        let mode = match get(GROUPS_FILTER_MODE) {
            None => None,
            Some(m) => Some(match m.trim() {
                "starts-with" => Mode::StartsWith,
                "equals" => Mode::Equals,
                "contains" => Mode::Contains,
                other => {
                    return Err(ConnectorError::config(format!(
                        "config key `{GROUPS_FILTER_MODE}` must be one of {} (regular expressions \
                         are not supported), got `{other}`",
                        MODES
                            .iter()
                            .map(|m| format!("`{m}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            }),
        };
        match get(GROUPS_FILTER) {
            None if mode.is_some() => Err(ConnectorError::config(format!(
                "config key `{GROUPS_FILTER_MODE}` is set but `{GROUPS_FILTER}` is not: set \
                 `{GROUPS_FILTER}` to the text group names must match, or remove \
                 `{GROUPS_FILTER_MODE}`"
            ))),
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Err(ConnectorError::config(format!(
                "config key `{GROUPS_FILTER}` is blank: set it to the text group names must \
                 match, or remove it to keep every group"
            ))),
            Some(v) => Ok(Some(GroupFilter {
                value: v.trim().to_string(),
                mode: mode.unwrap_or(Mode::StartsWith),
            })),
        }
    }

    /// Whether the group called `name` passes the filter (case-sensitive).
    pub fn keeps(&self, name: &str) -> bool {
        match self.mode {
            Mode::StartsWith => name.starts_with(&self.value),
            Mode::Equals => name == self.value,
            Mode::Contains => name.contains(&self.value),
        }
    }
}

/// The config schema's properties: the SDK's mapping keys plus the group filter.
pub fn config_properties() -> Map<String, Value> {
    let mut properties = MAPPING.config_properties();
    properties.extend(idplex_connector_sdk::schemas::config_properties());
    properties.insert(
        GROUPS_FILTER.into(),
        json!({
            "type": "string",
            "minLength": 1,
            "description": "Keep only the groups whose name matches this text (see \
                            `groups_filter_mode`; case-sensitive, no regular expressions). \
                            Repeats the filter of Okta's Group Attribute Statement on the idplex \
                            side so that a misconfigured IdP cannot grant more groups. Unset: \
                            every group Okta sends is kept."
        }),
    );
    properties.insert(
        GROUPS_FILTER_MODE.into(),
        json!({
            "type": "string",
            "enum": MODES,
            "default": MODES[0],
            "description": "How `groups_filter` matches a group name: `starts-with`, `equals` or \
                            `contains` (Okta's `Matches regex` has no equivalent here). Only \
                            meaningful with `groups_filter`."
        }),
    );
    properties
}

/// The closed config schema (draft 2020-12) of an Okta connection: the SDK's shape
/// ([`SamlMapping::schema_of`]) plus `groups_filter_mode` requiring `groups_filter`.
pub fn config_schema() -> String {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "okta connection settings",
        "type": "object",
        "additionalProperties": false,
        "properties": config_properties(),
        "dependentRequired": { GROUPS_FILTER_MODE: [GROUPS_FILTER] },
    })
    .to_string()
}

/// Maps a verified Okta assertion according to the config read through `get`, then applies the
/// group filter. Returns the identity and how many groups the filter dropped.
pub fn map_assertion(
    assertion: &VerifiedAssertion,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<(SsoIdentity, usize), ConnectorError> {
    let filter = GroupFilter::from_config(get)?;
    let mut identity = MAPPING.map_assertion(assertion, get)?;
    let mut dropped = 0;
    if let Some(filter) = filter {
        let before = identity.groups.len();
        identity.groups.retain(|g| filter.keeps(g));
        dropped = before - identity.groups.len();
        identity.user.groups = identity.groups.clone();
    }
    Ok((identity, dropped))
}
