//! Config-driven mapping of a verified SAML assertion to a canonical user, shared by the
//! first-party connectors: each gives its IdP's attribute names as [`SamlMapping::defaults`],
//! and the admin overrides any of them per connection.
//!
//! Every `attribute.*` config key holds a comma-separated list of SAML attribute names tried in
//! order (exact match first, then ASCII case-insensitive); unset keys use the defaults.

use crate::sso::{SamlAttribute, SsoIdentity, VerifiedAssertion};
use crate::{CanonicalUser, ConnectorError, Email};
use serde_json::{Map, Value, json};

/// Default SAML attribute names per `attribute.*` config key, in the order they are tried.
pub type Defaults = &'static [(&'static str, &'static [&'static str])];

/// The claim keys every mapping has (`attribute.<claim>`), in schema order.
pub const CLAIMS: &[&str] =
    &["user_name", "email", "given_name", "family_name", "display_name", "groups", "external_id"];

/// The defaults of `custom-saml`: the ADFS / Entra ID claim URIs, then the plain names most
/// other IdPs use.
pub const GENERIC_DEFAULTS: Defaults = &[
    ("attribute.user_name", &[
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
        "email",
    ]),
    ("attribute.email", &[
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
        "email",
    ]),
    ("attribute.given_name", &[
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
        "firstName",
    ]),
    ("attribute.family_name", &[
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
        "lastName",
    ]),
    ("attribute.display_name", &[
        "http://schemas.microsoft.com/identity/claims/displayname",
        "displayName",
    ]),
    ("attribute.groups", &[
        "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
        "groups",
    ]),
    // No default: only used when set.
    ("attribute.external_id", &[]),
];

/// `NameID` format whose value is an opaque, immutable identifier of the subject.
pub const PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";

/// One connector's SAML mapping: its defaults, overridable by the connection's config.
#[derive(Debug, Clone, Copy)]
pub struct SamlMapping {
    /// Default attribute names per `attribute.*` key (keys missing here have no default).
    pub defaults: Defaults,
}

/// The generic mapping (`custom-saml`).
pub const GENERIC: SamlMapping = SamlMapping { defaults: GENERIC_DEFAULTS };

impl SamlMapping {
    /// The config schema's `properties` for the mapping keys (`user_name_source` and
    /// `attribute.*`), for a connector to extend with keys of its own.
    pub fn config_properties(&self) -> Map<String, Value> {
        let mut properties = Map::new();
        properties.insert(
            "user_name_source".into(),
            json!({
                "type": "string",
                "enum": ["name-id", "attribute"],
                "default": "name-id",
                "description": "Where the user name comes from: the assertion's NameID, or the \
                                first SAML attribute listed in `attribute.user_name`."
            }),
        );
        for claim in CLAIMS {
            let key = format!("attribute.{claim}");
            let mut p = json!({
                "type": "string",
                "minLength": 1,
                "description": format!(
                    "Comma-separated SAML attribute names to read the {claim} from, tried in order."
                ),
            });
            let defaults = self.default_names(&key);
            if !defaults.is_empty() {
                p["default"] = defaults.join(",").into();
            }
            properties.insert(key, p);
        }
        properties
    }

    /// A closed config schema (draft 2020-12) of `properties` titled `title`.
    pub fn schema_of(title: &str, properties: Map<String, Value>) -> String {
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": title,
            "type": "object",
            "additionalProperties": false,
            "properties": properties,
        })
        .to_string()
    }

    /// The config schema of a connector whose only settings are the mapping keys.
    pub fn config_schema(&self, title: &str) -> String {
        Self::schema_of(title, self.config_properties())
    }

    fn default_names(&self, key: &str) -> Vec<String> {
        self.defaults
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, d)| d.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default()
    }

    /// Attribute names configured for `key` (or its defaults).
    pub fn names(&self, key: &str, get: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
        match get(key).map(|v| crate::config::split_list(&v)) {
            Some(list) if !list.is_empty() => list,
            _ => self.default_names(key),
        }
    }

    /// First non-blank value of the claim configured under `key`.
    pub fn first(&self, attrs: &[SamlAttribute], key: &str, get: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        values(attrs, &self.names(key, get)).into_iter().next()
    }

    /// Maps `assertion` according to the config read through `get`.
    pub fn map_assertion(
        &self,
        assertion: &VerifiedAssertion,
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<SsoIdentity, ConnectorError> {
        map_assertion_with(self, assertion, get)
    }
}

/// The attribute called `name`: exact match first, else ASCII case-insensitive.
pub fn find<'a>(attrs: &'a [SamlAttribute], name: &str) -> Option<&'a SamlAttribute> {
    attrs
        .iter()
        .find(|a| a.name == name)
        .or_else(|| attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name)))
}

/// Non-blank values of the first attribute of `names` that has any.
pub fn values(attrs: &[SamlAttribute], names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter_map(|n| find(attrs, n))
        .map(|a| {
            a.values
                .iter()
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .find(|v| !v.is_empty())
        .unwrap_or_default()
}

fn map_assertion_with(
    mapping: &SamlMapping,
    assertion: &VerifiedAssertion,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<SsoIdentity, ConnectorError> {
    let names = |key: &str| mapping.names(key, get);
    let first = |key: &str| mapping.first(&assertion.attributes, key, get);
    let attrs = &assertion.attributes[..];
    let source = get("user_name_source").unwrap_or_else(|| "name-id".into());
    let user_name = match source.trim() {
        "name-id" | "" => {
            let name_id = assertion.name_id.trim();
            if name_id.is_empty() {
                return Err(ConnectorError::invalid_request(
                    "the assertion's NameID is empty; set `user_name_source` to `attribute` \
                     to take the user name from an attribute",
                ));
            }
            name_id.to_string()
        }
        "attribute" => {
            let looked_for = names("attribute.user_name");
            values(attrs, &looked_for).into_iter().next().ok_or_else(|| {
                ConnectorError::invalid_request(format!(
                    "the assertion has no user name: none of the attributes {} (config key \
                     `attribute.user_name`) is present with a value",
                    looked_for.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                ))
            })?
        }
        other => {
            return Err(ConnectorError::config(format!(
                "config key `user_name_source` must be `name-id` or `attribute`, got `{other}`"
            )));
        }
    };

    let external_id = first("attribute.external_id").or_else(|| {
        (assertion.name_id_format.as_deref() == Some(PERSISTENT))
            .then(|| assertion.name_id.trim().to_string())
            .filter(|s| !s.is_empty())
    });
    let given_name = first("attribute.given_name");
    let family_name = first("attribute.family_name");
    let display_name = first("attribute.display_name").or_else(|| {
        match (&given_name, &family_name) {
            (Some(g), Some(f)) => Some(format!("{g} {f}")),
            _ => None,
        }
    });

    let mut emails: Vec<Email> = Vec::new();
    for value in values(attrs, &names("attribute.email")) {
        if !emails.iter().any(|e| e.value.eq_ignore_ascii_case(&value)) {
            emails.push(Email { primary: emails.is_empty(), value, kind: Some("work".into()) });
        }
    }

    let mut groups: Vec<String> = Vec::new();
    for name in names("attribute.groups") {
        if let Some(attr) = find(attrs, &name) {
            for g in attr.values.iter().map(|g| g.trim()).filter(|g| !g.is_empty()) {
                if !groups.iter().any(|x| x == g) {
                    groups.push(g.to_string());
                }
            }
        }
    }

    Ok(SsoIdentity {
        user: CanonicalUser {
            external_id,
            user_name,
            given_name,
            family_name,
            display_name,
            emails,
            active: true,
            groups: groups.clone(),
            attributes: Vec::new(),
        },
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::attr;

    fn assertion(attributes: Vec<SamlAttribute>) -> VerifiedAssertion {
        VerifiedAssertion {
            issuer: "https://idp.example".into(),
            name_id: "nid-1".into(),
            name_id_format: Some(PERSISTENT.into()),
            session_index: None,
            authn_context: None,
            attributes,
        }
    }

    #[test]
    fn defaults_map_common_uris() {
        let a = assertion(vec![
            attr("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress", &["a@x.io"]),
            attr("firstName", &["Ada"]),
            attr("lastName", &["Lovelace"]),
            attr("http://schemas.microsoft.com/ws/2008/06/identity/claims/groups", &["g1", "g2"]),
            attr("groups", &["g2", "g3"]),
        ]);
        let id = GENERIC.map_assertion(&a, &|_| None).unwrap();
        assert_eq!(id.user.user_name, "nid-1");
        assert_eq!(id.user.external_id.as_deref(), Some("nid-1"));
        assert_eq!(id.user.emails[0].value, "a@x.io");
        assert!(id.user.emails[0].primary);
        assert_eq!(id.user.display_name.as_deref(), Some("Ada Lovelace"));
        assert_eq!(id.groups, ["g1", "g2", "g3"]);
    }

    #[test]
    fn attribute_source_names_missing_attribute() {
        let a = assertion(vec![attr("mail", &["a@x.io"])]);
        let cfg = |k: &str| match k {
            "user_name_source" => Some("attribute".to_string()),
            "attribute.user_name" => Some("uid".to_string()),
            _ => None,
        };
        let e = GENERIC.map_assertion(&a, &cfg).unwrap_err();
        assert!(e.message.contains("`uid`"), "{}", e.message);
        let a = assertion(vec![attr("UID", &["ada"])]);
        assert_eq!(GENERIC.map_assertion(&a, &cfg).unwrap().user.user_name, "ada");
    }

    #[test]
    fn schema_is_json() {
        let v: Value = serde_json::from_str(&GENERIC.config_schema("custom-saml connection settings")).unwrap();
        assert_eq!(v["properties"]["user_name_source"]["default"], "name-id");
        assert!(v["properties"]["attribute.groups"]["default"].as_str().unwrap().contains("groups"));
    }
}
