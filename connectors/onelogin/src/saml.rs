//! OneLogin's SAML 2.0 connector: claim mapping and multi-value groups.
//!
//! OneLogin sends the `NameID` ("SAML NameID (Subject)" parameter, the user's e-mail by default)
//! plus the Parameters marked "Include in SAML assertion", named by the admin. The defaults are
//! the names OneLogin's own connectors and most setup guides use: `User.email`,
//! `User.FirstName`, `User.LastName`, groups from `memberOf` then `Groups`, and
//! `PersonImmutableID` as the external id. Each is overridable with the SDK's `attribute.*` keys.
//!
//! A group parameter set to "semicolon delimited input (multi-value)" arrives as one value
//! `"A;B;C"`: every group value is split on `groups_delimiter` (default `;`) and trimmed.

use idplex_connector_sdk::ConnectorError;
use idplex_connector_sdk::saml_mapping::{Defaults, SamlMapping};
use idplex_connector_sdk::serde_json::{Map, Value, json};
use idplex_connector_sdk::sso::{SsoIdentity, VerifiedAssertion};

/// OneLogin's default attribute names per `attribute.*` key.
pub const DEFAULTS: Defaults = &[
    // Used only when `user_name_source` = `attribute` (the default is the NameID).
    ("attribute.user_name", &["User.email"]),
    ("attribute.email", &["User.email"]),
    ("attribute.given_name", &["User.FirstName"]),
    ("attribute.family_name", &["User.LastName"]),
    // No OneLogin convention: given and family name are joined when unset.
    ("attribute.display_name", &[]),
    ("attribute.groups", &["memberOf", "Groups"]),
    ("attribute.external_id", &["PersonImmutableID"]),
];

/// The OneLogin mapping.
pub const MAPPING: SamlMapping = SamlMapping { defaults: DEFAULTS };

/// Config key: the character multi-value group parameters are joined with.
pub const GROUPS_DELIMITER: &str = "groups_delimiter";
/// Its default: OneLogin's "semicolon delimited input (multi-value)".
pub const DEFAULT_DELIMITER: char = ';';

/// The configured group delimiter; a `config` error naming the key unless it is one character.
pub fn delimiter(get: &dyn Fn(&str) -> Option<String>) -> Result<char, ConnectorError> {
    let Some(value) = get(GROUPS_DELIMITER) else {
        return Ok(DEFAULT_DELIMITER);
    };
    let mut chars = value.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Ok(c),
        _ => Err(ConnectorError::config(format!(
            "config key `{GROUPS_DELIMITER}` must be a single character (OneLogin's multi-value \
             delimiter, default `{DEFAULT_DELIMITER}`), got `{value}`"
        ))),
    }
}

/// The config schema's properties: the SDK's mapping keys plus the group delimiter.
pub fn config_properties() -> Map<String, Value> {
    let mut properties = MAPPING.config_properties();
    properties.extend(idplex_connector_sdk::schemas::config_properties());
    properties.insert(
        GROUPS_DELIMITER.into(),
        json!({
            "type": "string",
            "minLength": 1,
            "maxLength": 1,
            "default": DEFAULT_DELIMITER.to_string(),
            "description": "The single character that separates group names inside one value of \
                            the group attributes (OneLogin's \"semicolon delimited input \
                            (multi-value)\" parameter option). Each part is trimmed; empty parts \
                            are dropped."
        }),
    );
    properties
}

/// The closed config schema of a OneLogin connection.
pub fn config_schema() -> String {
    SamlMapping::schema_of("onelogin connection settings", config_properties())
}

/// Maps a verified OneLogin assertion according to the config read through `get`, splitting
/// delimited group values.
pub fn map_assertion(
    assertion: &VerifiedAssertion,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<SsoIdentity, ConnectorError> {
    let delimiter = delimiter(get)?;
    let mut identity = MAPPING.map_assertion(assertion, get)?;
    identity.groups = split_groups(&identity.groups, delimiter);
    identity.user.groups = identity.groups.clone();
    Ok(identity)
}

/// Splits each value on `delimiter`, trims the parts, drops empty ones and duplicates (first
/// occurrence kept).
pub fn split_groups(values: &[String], delimiter: char) -> Vec<String> {
    let mut groups: Vec<String> = Vec::new();
    for part in values
        .iter()
        .flat_map(|v| v.split(delimiter))
        .map(str::trim)
    {
        if !part.is_empty() && !groups.iter().any(|g| g == part) {
            groups.push(part.to_string());
        }
    }
    groups
}
