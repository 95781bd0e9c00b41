//! Entra ID's SAML claims: the defaults of the claim mapping, app roles, group overage and
//! tenant pinning, plus the connection's config schema.

use idplex_connector_sdk::saml_mapping::{self, Defaults, SamlMapping};
use idplex_connector_sdk::sso::{SsoIdentity, VerifiedAssertion};
use idplex_connector_sdk::ConnectorError;
use serde_json::{Map, Value, json};

/// The UPN (Entra's default `name` claim; also the default NameID).
pub const NAME: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name";
/// `user.mail`.
pub const EMAIL: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress";
/// `user.givenname`.
pub const GIVEN_NAME: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname";
/// `user.surname`.
pub const SURNAME: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname";
/// The display name.
pub const DISPLAY_NAME: &str = "http://schemas.microsoft.com/identity/claims/displayname";
/// The user's immutable object id (`oid`), what Entra provisions as SCIM `externalId` by default.
pub const OBJECT_ID: &str = "http://schemas.microsoft.com/identity/claims/objectidentifier";
/// The tenant id (`tid`).
pub const TENANT_ID: &str = "http://schemas.microsoft.com/identity/claims/tenantid";
/// Group object ids (when the app's groups claim is on).
pub const GROUPS: &str = "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups";
/// App role values.
pub const ROLES: &str = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role";
/// What Entra sends instead of [`GROUPS`] past 150 groups (a Graph URL): group overage.
pub const GROUPS_LINK: &str = "http://schemas.microsoft.com/claims/groups.link";

/// The canonical attribute that marks an identity whose groups are incomplete (overage).
pub const OVERAGE_ATTRIBUTE: &str = "urn:idplex:sso:groups-overage";
/// The canonical attribute (RFC 7643 `roles`) that carries the app roles.
pub const ROLES_ATTRIBUTE: &str = "roles";

/// Config key: the tenant assertions must come from (optional).
pub const TENANT_KEY: &str = "tenant_id";
/// Config key: the SAML attribute names of the app roles.
pub const ROLES_KEY: &str = "attribute.roles";

/// Entra's claim URIs per mapping key.
pub const DEFAULTS: Defaults = &[
    ("attribute.user_name", &[NAME, EMAIL]),
    ("attribute.email", &[EMAIL]),
    ("attribute.given_name", &[GIVEN_NAME]),
    ("attribute.family_name", &[SURNAME]),
    ("attribute.display_name", &[DISPLAY_NAME]),
    ("attribute.groups", &[GROUPS]),
    ("attribute.external_id", &[OBJECT_ID]),
    (ROLES_KEY, &[ROLES]),
];

/// Entra's claim mapping.
pub const MAPPING: SamlMapping = SamlMapping { defaults: DEFAULTS };

/// JSON-Schema pattern of a tenant id (a GUID).
const GUID_PATTERN: &str =
    "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$";

/// The connection's config schema: the claim mapping keys, `attribute.roles` and `tenant_id`.
pub fn config_schema() -> String {
    let mut properties: Map<String, Value> = MAPPING.config_properties();
    let describe = |properties: &mut Map<String, Value>, key: &str, text: &str| {
        if let Some(p) = properties.get_mut(key) {
            p["description"] = text.into();
        }
    };
    describe(
        &mut properties,
        "user_name_source",
        "Where the user name comes from: the assertion's NameID (Entra's default NameID is the \
         user principal name, which Entra also provisions as SCIM `userName`), or the first SAML \
         attribute listed in `attribute.user_name`.",
    );
    describe(
        &mut properties,
        "attribute.external_id",
        "Comma-separated SAML attribute names to read the external id from, tried in order. The \
         default, the `objectidentifier` claim (Entra's immutable object id), is what links a \
         sign-in to the SCIM user whose `externalId` Entra provisions from `objectId`.",
    );
    describe(
        &mut properties,
        "attribute.groups",
        "Comma-separated SAML attribute names to read the groups from (Entra sends group object \
         ids). Past 150 groups Entra sends `http://schemas.microsoft.com/claims/groups.link` \
         instead; the sign-in is then marked `urn:idplex:sso:groups-overage`.",
    );
    properties.insert(
        ROLES_KEY.into(),
        json!({
            "type": "string",
            "minLength": 1,
            "default": ROLES,
            "description": "Comma-separated SAML attribute names to read the user's app roles \
                            from, tried in order; they become the user's `roles` attribute.",
        }),
    );
    properties.insert(
        TENANT_KEY.into(),
        json!({
            "type": "string",
            "pattern": GUID_PATTERN,
            "description": "Directory (tenant) ID of the Entra tenant, a GUID. When set, an \
                            assertion whose issuer is not `https://sts.windows.net/<tenant_id>/` \
                            is refused. Unset: any issuer the connection's SAML trust accepts.",
        }),
    );
    SamlMapping::schema_of("entra-id connection settings", properties)
}

/// A mapped sign-in and the warnings to log about it.
#[derive(Debug)]
pub struct Mapped {
    /// The identity.
    pub identity: SsoIdentity,
    /// Warnings for the admin (the caller logs them at `warn`).
    pub warnings: Vec<String>,
}

/// Maps a verified Entra assertion with the config read through `get`.
pub fn map_assertion(
    assertion: &VerifiedAssertion,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Mapped, ConnectorError> {
    check_tenant(assertion, get)?;
    let mut identity = MAPPING.map_assertion(assertion, get)?;
    let mut warnings = Vec::new();

    let mut roles: Vec<String> = Vec::new();
    for role in saml_mapping::values(&assertion.attributes, &MAPPING.names(ROLES_KEY, get)) {
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    if !roles.is_empty() {
        let value: Vec<Value> = roles.iter().map(|r| json!({ "value": r })).collect();
        identity.user.attributes.push((ROLES_ATTRIBUTE.into(), Value::Array(value).to_string()));
    }

    if let Some(link) = saml_mapping::find(&assertion.attributes, GROUPS_LINK) {
        warnings.push(format!(
            "group overage: the assertion carries `{}` instead of the full groups claim (Entra \
             does so past 150 groups), so this sign-in's groups are incomplete ({} received). In \
             Entra, restrict the groups claim to \"Groups assigned to the application\", or \
             provision group memberships through SCIM instead",
            link.name,
            identity.groups.len()
        ));
        identity.user.attributes.push((OVERAGE_ATTRIBUTE.into(), "true".into()));
    }
    Ok(Mapped { identity, warnings })
}

/// Refuses an assertion from another tenant than `tenant_id` (when set).
fn check_tenant(
    assertion: &VerifiedAssertion,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConnectorError> {
    let Some(tenant) = get(TENANT_KEY).map(|t| t.trim().to_string()).filter(|t| !t.is_empty()) else {
        return Ok(());
    };
    if !is_guid(&tenant) {
        return Err(ConnectorError::config(format!(
            "config key `{TENANT_KEY}` must be the tenant's directory id, a GUID \
             (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), got `{tenant}`"
        )));
    }
    let expected = format!("https://sts.windows.net/{tenant}/");
    let issuer = assertion.issuer.trim();
    if !issuer.eq_ignore_ascii_case(&expected) {
        return Err(ConnectorError::invalid_request(format!(
            "the assertion's issuer `{issuer}` is not the pinned tenant's `{expected}` (config \
             key `{TENANT_KEY}`); sign-ins from another Entra tenant are refused"
        )));
    }
    if let Some(tid) = saml_mapping::find(&assertion.attributes, TENANT_ID)
        .and_then(|a| a.values.iter().map(|v| v.trim()).find(|v| !v.is_empty()))
        && !tid.eq_ignore_ascii_case(&tenant)
    {
        return Err(ConnectorError::invalid_request(format!(
            "the assertion's `{TENANT_ID}` claim `{tid}` is not the pinned tenant `{tenant}` \
             (config key `{TENANT_KEY}`)"
        )));
    }
    Ok(())
}

/// Whether `s` is a GUID in its usual 8-4-4-4-12 hex form.
fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}
