//! Google's Admin SDK Directory API v1: the connection's scope (`customer` / `domain`), the
//! request URLs, and the mapping of its users, groups and members to idplex's canonical shapes.
//!
//! Plain functions on `serde_json` values, tested natively; [`crate::pull`] drives the pass.
//!
//! References: `users.list`, `groups.list`, `members.list` of
//! <https://developers.google.com/admin-sdk/directory/reference/rest/v1>.

use idplex_connector_sdk::directory_pull::Member;
use idplex_connector_sdk::http::{encode_path_segment, with_query};
use idplex_connector_sdk::serde_json::{Map, Value, json};
use idplex_connector_sdk::{CanonicalGroup, CanonicalUser, ConnectorError, Email, scim};

/// The only host this connector calls (declared in `egress-hosts`).
pub const API_HOST: &str = "admin.googleapis.com";
/// The Directory API's base URL.
pub const BASE_URL: &str = "https://admin.googleapis.com/admin/directory/v1";

/// Config key: the Google customer whose directory is pulled.
pub const CUSTOMER: &str = "customer";
/// Default of [`CUSTOMER`]: the customer of the impersonated admin.
pub const MY_CUSTOMER: &str = "my_customer";
/// JSON-Schema pattern of [`CUSTOMER`] (`my_customer` or a customer id such as `C01abcde`).
pub const CUSTOMER_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";

/// Users per `users.list` page (the API's maximum).
pub const USERS_PER_PAGE: u32 = 500;
/// Groups per `groups.list` page (the API's maximum).
pub const GROUPS_PER_PAGE: u32 = 200;
/// Members per `members.list` page (the API's maximum).
pub const MEMBERS_PER_PAGE: u32 = 200;

/// What part of Google's directory a connection pulls: the customer's groups, and its users or
/// only those of one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `customer` (default `my_customer`).
    pub customer: String,
    /// `domain` when set: `users.list` then asks for that domain's users (`domain=`) instead of
    /// the customer's.
    pub domain: Option<String>,
}

impl Scope {
    /// The scope configured through `get`; a `config` error naming the key when `customer` or
    /// `domain` is malformed.
    pub fn from_config(get: &dyn Fn(&str) -> Option<String>) -> Result<Scope, ConnectorError> {
        let customer = match get(CUSTOMER).map(|c| c.trim().to_string()) {
            None => MY_CUSTOMER.to_string(),
            Some(c) if c.is_empty() => MY_CUSTOMER.to_string(),
            Some(c) if c.len() <= 64 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') => c,
            Some(c) => {
                return Err(ConnectorError::config(format!(
                    "config key `{CUSTOMER}` must be `my_customer` or a Google customer id like `C01abcde`, got `{c}`"
                )));
            }
        };
        Ok(Scope { customer, domain: crate::saml::domain(get)? })
    }

    /// `users.list`: a page of `max_results` users, `projection=full`, ordered by e-mail.
    pub fn users_url(&self, max_results: u32, page_token: Option<&str>) -> String {
        let max = max_results.to_string();
        let (key, value) = match &self.domain {
            Some(d) => ("domain", d.as_str()),
            None => ("customer", self.customer.as_str()),
        };
        with_query(
            &format!("{BASE_URL}/users"),
            &[
                (key, Some(value)),
                ("maxResults", Some(&max)),
                ("projection", Some("full")),
                ("orderBy", Some("email")),
                ("pageToken", page_token),
            ],
        )
    }

    /// `groups.list`: a page of the customer's groups.
    pub fn groups_url(&self, page_token: Option<&str>) -> String {
        let max = GROUPS_PER_PAGE.to_string();
        with_query(
            &format!("{BASE_URL}/groups"),
            &[("customer", Some(&self.customer)), ("maxResults", Some(&max)), ("pageToken", page_token)],
        )
    }
}

/// `members.list`: a page of the direct members of group `group_id`.
pub fn members_url(group_id: &str, page_token: Option<&str>) -> String {
    let max = MEMBERS_PER_PAGE.to_string();
    with_query(
        &format!("{BASE_URL}/groups/{}/members", encode_path_segment(group_id)),
        &[("maxResults", Some(&max)), ("pageToken", page_token)],
    )
}

/// The config schema's property of [`CUSTOMER`].
pub fn config_properties() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        CUSTOMER.into(),
        json!({
            "type": "string",
            "pattern": CUSTOMER_PATTERN,
            "default": MY_CUSTOMER,
            "description": "The Google Workspace customer whose users and groups the directory pull reads: \
                            `my_customer` (the impersonated admin's own) or a customer id such as `C01abcde`."
        }),
    );
    m
}

// ---------------------------------------------------------------------------------------------
// Reading API answers

/// The non-empty string at `v[key]`.
fn string<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// The list `body[key]` of an API answer: absent or `null` (Google leaves it out of an empty
/// page) is empty; anything else but a list is an `invalid-request` error.
pub fn items<'a>(body: &'a Value, key: &str, what: &str) -> Result<&'a [Value], ConnectorError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(ConnectorError::invalid_request(format!(
            "{what} answered `{key}` as a JSON {}, not a list",
            idplex_connector_sdk::json::type_name(other)
        ))),
    }
}

/// The `nextPageToken` of an API answer (`None` on the last page).
pub fn next_page_token(body: &Value) -> Option<String> {
    string(body, "nextPageToken").map(str::to_string)
}

/// `id` of the `index`-th `kind` of a page, or an `invalid-request` error naming both.
fn required_id<'a>(v: &'a Value, kind: &str, index: usize) -> Result<&'a str, ConnectorError> {
    string(v, "id").ok_or_else(|| {
        ConnectorError::invalid_request(format!(
            "Google's {kind} at index {index} of the page has no `id`; nothing of the page was applied"
        ))
    })
}

// ---------------------------------------------------------------------------------------------
// Users

/// The attribute path of enterprise extension attribute `name`.
fn enterprise(name: &str) -> String {
    format!("{}:{name}", scim::ENTERPRISE_USER_SCHEMA)
}

/// A JSON string as the contract's `json` text.
fn json_string(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// The e-mail kind of a Google `emails[]` entry: `work`, `home`, `other`, or a `custom` entry's
/// `customType`.
fn email_kind(e: &Value) -> Option<String> {
    match string(e, "type") {
        Some(t @ ("work" | "home" | "other")) => Some(t.to_string()),
        Some("custom") => string(e, "customType").map(str::to_string),
        _ => None,
    }
}

/// Maps one `users.list` user (the `index`-th of its page).
///
/// * external id = `id`, user name = `primaryEmail` (both required: an `invalid-request` error
///   naming the field and the index otherwise);
/// * given / family / display name = `name.givenName` / `name.familyName` / `name.fullName`;
/// * e-mails = `primaryEmail` first (primary, `work`), then the other `emails[].address` (kind
///   from `type`, `customType` for `custom`), without duplicates;
/// * active = neither `suspended` nor `archived`;
/// * attributes: enterprise `department`, core `title` (of the `primary` `organizations[]` entry,
///   else the first), enterprise `manager` = `{"value": relations[type=manager].value}`, enterprise
///   `employeeNumber` = `externalIds[type=organization].value`.
pub fn map_user(index: usize, u: &Value) -> Result<CanonicalUser, ConnectorError> {
    let id = required_id(u, "user", index)?;
    let primary_email = string(u, "primaryEmail").ok_or_else(|| {
        ConnectorError::invalid_request(format!(
            "Google's user at index {index} of the page (id {id}) has no `primaryEmail`; nothing of the page was applied"
        ))
    })?;
    let name = u.get("name").unwrap_or(&Value::Null);

    let mut emails = vec![Email { value: primary_email.to_string(), kind: Some("work".to_string()), primary: true }];
    for e in u.get("emails").and_then(Value::as_array).into_iter().flatten() {
        let Some(address) = string(e, "address") else { continue };
        if emails.iter().any(|known| known.value.eq_ignore_ascii_case(address)) {
            continue;
        }
        emails.push(Email { value: address.to_string(), kind: email_kind(e), primary: false });
    }

    let flag = |key: &str| u.get(key).and_then(Value::as_bool).unwrap_or(false);
    let active = !(flag("suspended") || flag("archived"));

    let mut attributes = Vec::new();
    let organizations = u.get("organizations").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let organization = organizations
        .iter()
        .find(|o| o.get("primary").and_then(Value::as_bool) == Some(true))
        .or_else(|| organizations.first());
    if let Some(org) = organization {
        if let Some(department) = string(org, "department") {
            attributes.push((enterprise("department"), json_string(department)));
        }
        if let Some(title) = string(org, "title") {
            attributes.push(("title".to_string(), json_string(title)));
        }
    }
    let typed = |list: &str, ty: &str| {
        u.get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|r| string(r, "type") == Some(ty))
            .and_then(|r| string(r, "value"))
    };
    if let Some(manager) = typed("relations", "manager") {
        attributes.push((enterprise("manager"), json!({"value": manager}).to_string()));
    }
    if let Some(number) = typed("externalIds", "organization") {
        attributes.push((enterprise("employeeNumber"), json_string(number)));
    }

    Ok(CanonicalUser {
        external_id: Some(id.to_string()),
        user_name: primary_email.to_string(),
        given_name: string(name, "givenName").map(str::to_string),
        family_name: string(name, "familyName").map(str::to_string),
        display_name: string(name, "fullName").map(str::to_string),
        emails,
        active,
        groups: Vec::new(),
        attributes,
    })
}

/// Maps the `users` of a `users.list` answer; the first unusable user fails the page.
pub fn map_users(body: &Value) -> Result<Vec<CanonicalUser>, ConnectorError> {
    items(body, "users", "Admin SDK users.list")?
        .iter()
        .enumerate()
        .map(|(i, u)| map_user(i, u))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Groups and members

/// Maps one `groups.list` group (the `index`-th of its page): external id = `id` (required),
/// display name = `name`, else `email` (one of them required).
pub fn map_group(index: usize, g: &Value) -> Result<CanonicalGroup, ConnectorError> {
    let id = required_id(g, "group", index)?;
    let display_name = string(g, "name").or_else(|| string(g, "email")).ok_or_else(|| {
        ConnectorError::invalid_request(format!(
            "Google's group at index {index} of the page (id {id}) has neither `name` nor `email`; nothing of the page was applied"
        ))
    })?;
    Ok(CanonicalGroup { external_id: Some(id.to_string()), display_name: display_name.to_string(), members: Vec::new() })
}

/// The groups of a `groups.list` answer, as the API sent them.
pub fn groups_of(body: &Value) -> Result<&[Value], ConnectorError> {
    items(body, "groups", "Admin SDK groups.list")
}

/// Maps a `members.list` answer: `type: USER` → a user member, `type: GROUP` → a nested group,
/// by `id`. `CUSTOMER` (everyone in the customer) and any other type, and a member without `id`,
/// are left out.
pub fn map_members(body: &Value) -> Result<Vec<Member>, ConnectorError> {
    Ok(items(body, "members", "Admin SDK members.list")?
        .iter()
        .filter_map(|m| {
            let id = string(m, "id")?.to_string();
            match string(m, "type")? {
                "USER" => Some(Member::User(id)),
                "GROUP" => Some(Member::Group(id)),
                _ => None,
            }
        })
        .collect())
}
