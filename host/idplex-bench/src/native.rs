//! Native Rust versions of what `custom-saml` does inside Wasm, for the baseline figures.
//!
//! They follow the same rules as the connector (same config keys and defaults, same attribute
//! lookup, same output fields) and produce the same host-side values, so the ratio wasm/native
//! measures the cost of the sandbox (fresh instance, lifting/lowering, host imports, host-side
//! checks), not a difference in work. `main` checks once that both produce equal output.

use std::collections::BTreeMap;

use idplex_runtime::{
    CanonicalUser, ConnectorErrorKind, Email, Operation, ResourceKind, SamlAttribute, ScimRequest,
    SsoIdentity, VerifiedAssertion, WitConnectorError,
};
use serde_json::{Map, Value};

/// Default SAML attribute names per config key (the connector's defaults).
const DEFAULT_NAMES: &[(&str, &[&str])] = &[
    (
        "attribute.user_name",
        &[
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
            "email",
        ],
    ),
    (
        "attribute.email",
        &["http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress", "email"],
    ),
    (
        "attribute.given_name",
        &["http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname", "firstName"],
    ),
    (
        "attribute.family_name",
        &["http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname", "lastName"],
    ),
    (
        "attribute.display_name",
        &["http://schemas.microsoft.com/identity/claims/displayname", "displayName"],
    ),
    (
        "attribute.groups",
        &["http://schemas.microsoft.com/ws/2008/06/identity/claims/groups", "groups"],
    ),
    ("attribute.external_id", &[]),
];

const NAMEID_PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";

fn error(kind: ConnectorErrorKind, message: String) -> WitConnectorError {
    WitConnectorError { kind, message, scim_type: None }
}

/// The connection config as the connector sees it through the `config.get` import.
struct Config<'a>(&'a BTreeMap<String, String>);

impl Config<'_> {
    fn get(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }

    /// Attribute names configured under `key` (comma-separated), else the defaults.
    fn attribute_names(&self, key: &str) -> Vec<String> {
        let configured: Vec<String> = self
            .get(key)
            .map(|v| {
                v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
            })
            .unwrap_or_default();
        if !configured.is_empty() {
            return configured;
        }
        DEFAULT_NAMES
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, names)| names.iter().map(|s| (*s).to_string()).collect())
            .unwrap_or_default()
    }
}

/// Exact name match, then ASCII case-insensitive.
fn attribute<'a>(attrs: &'a [SamlAttribute], name: &str) -> Option<&'a SamlAttribute> {
    match attrs.iter().position(|a| a.name == name) {
        Some(i) => Some(&attrs[i]),
        None => attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name)),
    }
}

/// Non-blank, trimmed values of the first listed attribute that has any.
fn first_values(attrs: &[SamlAttribute], names: &[String]) -> Vec<String> {
    for name in names {
        if let Some(a) = attribute(attrs, name) {
            let vals: Vec<String> =
                a.values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()).map(String::from).collect();
            if !vals.is_empty() {
                return vals;
            }
        }
    }
    Vec::new()
}

fn first_value(attrs: &[SamlAttribute], cfg: &Config<'_>, key: &str) -> Option<String> {
    first_values(attrs, &cfg.attribute_names(key)).into_iter().next()
}

/// The `sso.map-assertion` of custom-saml, natively.
pub fn map_assertion(
    assertion: &VerifiedAssertion,
    config: &BTreeMap<String, String>,
) -> Result<SsoIdentity, WitConnectorError> {
    let cfg = Config(config);
    let attrs = assertion.attributes.as_slice();
    let source = cfg.get("user_name_source").unwrap_or_else(|| "name-id".to_string());
    let user_name = match source.trim() {
        "" | "name-id" => {
            let nid = assertion.name_id.trim();
            if nid.is_empty() {
                return Err(error(ConnectorErrorKind::InvalidRequest, "the assertion's NameID is empty".into()));
            }
            nid.to_string()
        }
        "attribute" => first_value(attrs, &cfg, "attribute.user_name").ok_or_else(|| {
            error(ConnectorErrorKind::InvalidRequest, "the assertion has no user name".into())
        })?,
        other => {
            return Err(error(
                ConnectorErrorKind::Config,
                format!("config key `user_name_source` must be `name-id` or `attribute`, got `{other}`"),
            ));
        }
    };

    let external_id = match first_value(attrs, &cfg, "attribute.external_id") {
        Some(v) => Some(v),
        None if assertion.name_id_format.as_deref() == Some(NAMEID_PERSISTENT) => {
            Some(assertion.name_id.trim().to_string()).filter(|s| !s.is_empty())
        }
        None => None,
    };
    let given_name = first_value(attrs, &cfg, "attribute.given_name");
    let family_name = first_value(attrs, &cfg, "attribute.family_name");
    let display_name = first_value(attrs, &cfg, "attribute.display_name").or_else(|| {
        match (given_name.as_deref(), family_name.as_deref()) {
            (Some(g), Some(f)) => Some(format!("{g} {f}")),
            _ => None,
        }
    });

    let mut emails: Vec<Email> = Vec::new();
    for value in first_values(attrs, &cfg.attribute_names("attribute.email")) {
        if emails.iter().all(|e| !e.value.eq_ignore_ascii_case(&value)) {
            let primary = emails.is_empty();
            emails.push(Email { value, kind: Some("work".to_string()), primary });
        }
    }

    let mut groups: Vec<String> = Vec::new();
    for name in cfg.attribute_names("attribute.groups") {
        let Some(a) = attribute(attrs, &name) else { continue };
        for g in a.values.iter().map(|v| v.trim()) {
            if !g.is_empty() && !groups.iter().any(|x| x == g) {
                groups.push(g.to_string());
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

/// What to return for a valid POST body.
#[derive(Clone, Copy, Debug)]
pub enum Body {
    /// The body text unchanged, as custom-saml does.
    Verbatim,
    /// The parsed object serialized again (what a connector that rewrites would pay).
    Reserialized,
}

/// The `provisioning.normalize` of custom-saml for POST /Users (create), natively: parse the
/// body, require the core User schema in `schemas`, return `create(body)`.
pub fn normalize_post(request: &ScimRequest, body_out: Body) -> Result<Vec<Operation>, WitConnectorError> {
    let invalid = |m: String| error(ConnectorErrorKind::InvalidRequest, m);
    if !request.method.eq_ignore_ascii_case("POST") {
        return Err(error(ConnectorErrorKind::Unsupported, "only POST is mirrored natively".into()));
    }
    if request.id.as_deref().is_some_and(|id| !id.is_empty()) {
        return Err(invalid("POST must address the collection".into()));
    }
    let (urn, endpoint) = match request.resource {
        ResourceKind::User => ("urn:ietf:params:scim:schemas:core:2.0:User", "Users"),
        ResourceKind::Group => ("urn:ietf:params:scim:schemas:core:2.0:Group", "Groups"),
    };
    let body = request.body.as_deref().ok_or_else(|| invalid(format!("POST /{endpoint} needs a JSON body")))?;
    let object: Map<String, Value> = match serde_json::from_str(body) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(invalid("request body must be a JSON object".into())),
        Err(e) => return Err(invalid(format!("request body is not valid JSON: {e}"))),
    };
    match object.get("schemas") {
        Some(Value::Array(items)) if items.iter().any(|s| s.as_str() == Some(urn)) => {}
        Some(Value::Array(_)) => return Err(invalid(format!("`schemas` must contain `{urn}`"))),
        Some(_) => return Err(invalid("`schemas` must be an array of URNs".into())),
        None => return Err(invalid(format!("the body has no `schemas` attribute; it must list `{urn}`"))),
    }
    let json = match body_out {
        Body::Verbatim => body.to_string(),
        Body::Reserialized => Value::Object(object).to_string(),
    };
    Ok(vec![Operation::Create(json)])
}
