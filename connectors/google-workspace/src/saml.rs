//! Google Workspace's custom SAML app: claim mapping and the pinned Workspace domain.
//!
//! Google sends the `NameID` (by default the user's *primary e-mail*, "Basic Information >
//! Primary email") plus only the attributes the admin mapped under "Attribute mapping" (Google
//! directory attribute → app attribute name). The defaults are the app attribute names setup
//! guides use: `email`, `firstName`, `lastName`, and `groups` for Google's "Group membership"
//! mapping, which sends the selected group names as one multi-valued attribute. When no e-mail
//! attribute is mapped, an e-mail NameID is the user's primary e-mail.
//!
//! `domain` pins the Workspace domain: a NameID or e-mail outside it (or its subdomains) is
//! refused.

use idplex_connector_sdk::saml_mapping::{Defaults, SamlMapping};
use idplex_connector_sdk::serde_json::{Map, Value, json};
use idplex_connector_sdk::sso::{SsoIdentity, VerifiedAssertion};
use idplex_connector_sdk::{ConnectorError, Email};

/// Google Workspace's default attribute names per `attribute.*` key.
pub const DEFAULTS: Defaults = &[
    // Used only when `user_name_source` = `attribute` (the default is the NameID).
    ("attribute.user_name", &["email"]),
    ("attribute.email", &["email"]),
    ("attribute.given_name", &["firstName"]),
    ("attribute.family_name", &["lastName"]),
    // No Google convention: given and family name are joined when unset.
    ("attribute.display_name", &[]),
    ("attribute.groups", &["groups"]),
    // No default: a persistent NameID is the external id, else only when set.
    ("attribute.external_id", &[]),
];

/// The Google Workspace mapping.
pub const MAPPING: SamlMapping = SamlMapping { defaults: DEFAULTS };

/// Config key: the pinned Workspace domain.
pub const DOMAIN: &str = "domain";

/// JSON-Schema pattern of `domain` (what [`domain`] accepts, before lower-casing).
pub const DOMAIN_PATTERN: &str = "^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$";

/// The pinned domain, lower-cased; `None` when unset; a `config` error naming the key unless it
/// is a DNS name of at least two labels (`example.com`, no `@`, no trailing dot).
pub fn domain(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, ConnectorError> {
    let Some(raw) = get(DOMAIN) else {
        return Ok(None);
    };
    let d = raw.trim().to_ascii_lowercase();
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if d.len() <= 253 && d.split('.').count() >= 2 && d.split('.').all(label_ok) {
        Ok(Some(d))
    } else {
        Err(ConnectorError::config(format!(
            "config key `{DOMAIN}` must be the Workspace's DNS domain, like `example.com` (no `@`, \
             no scheme, no trailing dot), got `{raw}`"
        )))
    }
}

/// Whether `address` is an e-mail address in `domain` or one of its subdomains.
pub fn in_domain(address: &str, domain: &str) -> bool {
    let Some((local, host)) = address.trim().rsplit_once('@') else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    !local.is_empty()
        && (host == domain
            || host
                .strip_suffix(domain)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')))
}

/// Whether `text` looks like an e-mail address (`local@host`, one `@`, no blanks).
fn is_email(text: &str) -> bool {
    matches!(text.split_once('@'), Some((l, h)) if !l.is_empty() && !h.is_empty() && !h.contains('@'))
        && !text.contains(char::is_whitespace)
}

/// The config schema's properties: the SDK's mapping keys plus `domain`.
pub fn config_properties() -> Map<String, Value> {
    let mut properties = MAPPING.config_properties();
    properties.insert(
        DOMAIN.into(),
        json!({
            "type": "string",
            "minLength": 3,
            "maxLength": 253,
            "pattern": DOMAIN_PATTERN,
            "description": "The Google Workspace domain (e.g. `example.com`). When set, a sign-in \
                            whose NameID or e-mail is outside this domain and its subdomains is \
                            refused, and the directory pull reads only this domain's users \
                            (`users.list` with `domain=`; groups stay the customer's). Unset: any \
                            domain is accepted and the pull reads the customer's users."
        }),
    );
    properties
}

/// The closed config schema of a Google Workspace connection.
pub fn config_schema() -> String {
    SamlMapping::schema_of("google-workspace connection settings", config_properties())
}

/// Maps a verified Google Workspace assertion according to the config read through `get`:
/// an e-mail NameID is the primary e-mail when no e-mail attribute is mapped, and with `domain`
/// set every address (NameID, user name, e-mails) must be in that domain.
pub fn map_assertion(
    assertion: &VerifiedAssertion,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<SsoIdentity, ConnectorError> {
    let domain = domain(get)?;
    let mut identity = MAPPING.map_assertion(assertion, get)?;
    let name_id = assertion.name_id.trim();
    if identity.user.emails.is_empty() && is_email(name_id) {
        identity.user.emails.push(Email {
            value: name_id.to_string(),
            kind: Some("work".into()),
            primary: true,
        });
    }
    if let Some(domain) = domain {
        let mut checked = 0;
        let addresses = [
            ("NameID", name_id),
            ("user name", identity.user.user_name.as_str()),
        ]
        .into_iter()
        .filter(|(_, a)| a.contains('@'))
        .chain(
            identity
                .user
                .emails
                .iter()
                .map(|e| ("e-mail", e.value.as_str())),
        );
        for (what, address) in addresses {
            checked += 1;
            if !in_domain(address, &domain) {
                return Err(ConnectorError::invalid_request(format!(
                    "the {what} `{address}` is outside the Workspace domain `{domain}` (config \
                     key `{DOMAIN}`); only addresses in `{domain}` and its subdomains may sign in"
                )));
            }
        }
        if checked == 0 {
            return Err(ConnectorError::invalid_request(format!(
                "the assertion carries no e-mail address to check against the Workspace domain \
                 `{domain}` (config key `{DOMAIN}`): send the primary e-mail as NameID or map an \
                 `email` attribute (config key `attribute.email`)"
            )));
        }
    }
    Ok(identity)
}
