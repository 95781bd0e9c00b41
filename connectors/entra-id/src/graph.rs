//! Microsoft Graph v1.0 for the directory pull: the request URLs, the rule that every link Graph
//! returns is followed on `https://graph.microsoft.com` only, and the mapping of delta pages
//! (users, groups, `members@delta`) to idplex's canonical shapes.
//!
//! Plain functions on `serde_json` values, tested natively; [`crate::pull`] drives the passes.
//!
//! References: <https://learn.microsoft.com/graph/api/user-delta>,
//! <https://learn.microsoft.com/graph/api/group-delta>,
//! <https://learn.microsoft.com/graph/delta-query-overview>.

use idplex_connector_sdk::directory_pull::{Member, PassKind, PullPage};
use idplex_connector_sdk::http::link_path_and_query;
use idplex_connector_sdk::serde_json::Value;
use idplex_connector_sdk::{CanonicalGroup, CanonicalUser, ConnectorError, Email, scim};

/// The only host this connector calls (declared in `egress-hosts`).
pub const API_HOST: &str = "graph.microsoft.com";
/// The origin every Graph request goes to, whatever origin a link Graph returned names.
pub const ORIGIN: &str = "https://graph.microsoft.com";

/// The user properties the pull asks for (and Graph tracks for changes).
pub const USER_SELECT: &str = "id,userPrincipalName,displayName,givenName,surname,mail,accountEnabled,department,jobTitle,employeeId";
/// The group properties the pull asks for (`members` brings `members@delta`).
pub const GROUP_SELECT: &str = "displayName,description,members";
/// Users asked per page of the initial round.
pub const USERS_TOP: u32 = 500;

/// Path and query of the first request of a users round (a full pass).
pub fn users_delta_start() -> String {
    format!("/v1.0/users/delta?$select={USER_SELECT}&$top={USERS_TOP}")
}

/// Path and query of the first request of a groups round (a full pass).
pub fn groups_delta_start() -> String {
    format!("/v1.0/groups/delta?$select={GROUP_SELECT}")
}

/// Path and query of the `test-connection` request: one user's id.
pub const PROBE: &str = "/v1.0/users?$top=1&$select=id";

/// The URL to fetch for `link` (a path and query, or a link Graph returned): its path and query
/// on [`ORIGIN`]. Never another origin: the host attaches the Graph credential to what the
/// connector sends, so a link naming another host (by mistake, or planted) must not take it
/// there.
pub fn url_of(link: &str) -> String {
    format!("{ORIGIN}{}", link_path_and_query(link))
}

/// `@odata.nextLink` and `@odata.deltaLink` of a page, each as a path and query.
pub fn links(body: &Value) -> (Option<String>, Option<String>) {
    let link = |key: &str| body.get(key).and_then(Value::as_str).filter(|l| !l.trim().is_empty()).map(link_path_and_query);
    (link("@odata.nextLink"), link("@odata.deltaLink"))
}

// ---------------------------------------------------------------------------------------------

/// The non-empty string at `v[key]`.
fn string<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// The `value` list of a Graph page (absent: empty).
pub fn values<'a>(body: &'a Value, what: &str) -> Result<&'a [Value], ConnectorError> {
    match body.get("value") {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(ConnectorError::invalid_request(format!(
            "{what} answered `value` as a JSON {}, not a list",
            idplex_connector_sdk::json::type_name(other)
        ))),
    }
}

/// `id` of the `index`-th `kind` of a page, or an `invalid-request` error naming both.
fn required_id<'a>(v: &'a Value, kind: &str, index: usize) -> Result<&'a str, ConnectorError> {
    string(v, "id").ok_or_else(|| {
        ConnectorError::invalid_request(format!(
            "Graph's {kind} at index {index} of the page has no `id`; nothing of the page was applied"
        ))
    })
}

/// Whether a delta object is a removal (`@removed`, with reason `changed`: soft-deleted or out
/// of scope, or `deleted`: gone for good).
fn removed(v: &Value) -> bool {
    v.get("@removed").is_some_and(|r| !r.is_null())
}

fn enterprise(name: &str) -> String {
    format!("{}:{name}", scim::ENTERPRISE_USER_SCHEMA)
}

/// Maps one user object of a delta page (the `index`-th), of a pass of `kind`:
///
/// * external id = `id` (the object id, which the SAML side maps from the `objectidentifier`
///   claim), user name = `userPrincipalName` (both required);
/// * given / family / display name = `givenName` / `surname` / `displayName`;
/// * e-mails = `mail` as the primary `work` address, when set;
/// * active = `accountEnabled`. Absent (or `null`) in a **full** page it counts as `true`; in a
///   **delta** page it is an `invalid-request` error: Graph returns every selected property of
///   a changed user (unless `Prefer: return=minimal`, which this connector never sends), and the
///   host replaces the whole user, so guessing could re-enable a disabled account;
/// * attributes: enterprise `department`, enterprise `employeeNumber` (`employeeId`), core
///   `title` (`jobTitle`). A property Graph sends as `null` (cleared) is left out.
pub fn map_user(index: usize, u: &Value, kind: PassKind) -> Result<CanonicalUser, ConnectorError> {
    let id = required_id(u, "user", index)?;
    let upn = string(u, "userPrincipalName").ok_or_else(|| {
        ConnectorError::invalid_request(format!(
            "Graph's user at index {index} of the page (id {id}) has no `userPrincipalName`; nothing of the page was applied"
        ))
    })?;
    let active = match (u.get("accountEnabled").and_then(Value::as_bool), kind) {
        (Some(enabled), _) => enabled,
        (None, PassKind::Full) => true,
        (None, PassKind::Delta) => {
            return Err(ConnectorError::invalid_request(format!(
                "Graph's user at index {index} of a delta page (id {id}) has no `accountEnabled`, so whether the \
                 account is enabled is unknown; nothing of the page was applied"
            )));
        }
    };
    let text = |key: &str| string(u, key).map(str::to_string);
    let json_text = |s: &str| Value::String(s.to_string()).to_string();
    let mut attributes = Vec::new();
    if let Some(d) = string(u, "department") {
        attributes.push((enterprise("department"), json_text(d)));
    }
    if let Some(n) = string(u, "employeeId") {
        attributes.push((enterprise("employeeNumber"), json_text(n)));
    }
    if let Some(t) = string(u, "jobTitle") {
        attributes.push(("title".to_string(), json_text(t)));
    }
    Ok(CanonicalUser {
        external_id: Some(id.to_string()),
        user_name: upn.to_string(),
        given_name: text("givenName"),
        family_name: text("surname"),
        display_name: text("displayName"),
        emails: string(u, "mail")
            .map(|m| Email { value: m.to_string(), kind: Some("work".to_string()), primary: true })
            .into_iter()
            .collect(),
        active,
        groups: Vec::new(),
        attributes,
    })
}

/// Adds a `users/delta` page's objects to `page` (of `page.kind`): changed users to `users`,
/// removed ones (`@removed`) to `removed-users` in a delta pass (in a full pass Graph sends
/// none; any is ignored, the pass reporting every user that exists).
pub fn add_users(page: &mut PullPage, body: &Value) -> Result<(), ConnectorError> {
    for (i, u) in values(body, "Graph users/delta")?.iter().enumerate() {
        if removed(u) {
            let id = required_id(u, "removed user", i)?;
            if page.kind == PassKind::Delta {
                page.removed_users.push(id.to_string());
            }
        } else {
            page.users.push(map_user(i, u, page.kind)?);
        }
    }
    Ok(())
}

/// The member a `members@delta` entry names: `#microsoft.graph.user` → a user,
/// `#microsoft.graph.group` → a nested group; other types (contacts, devices, service
/// principals) and entries without `id` are left out.
pub fn member_of(m: &Value) -> Option<Member> {
    let id = string(m, "id")?.to_string();
    match string(m, "@odata.type")? {
        "#microsoft.graph.user" => Some(Member::User(id)),
        "#microsoft.graph.group" => Some(Member::Group(id)),
        _ => None,
    }
}

/// Adds a `groups/delta` page's objects to `page` (of `page.kind`):
///
/// * a removed group (`@removed`) goes to `removed-groups` in a delta pass;
/// * a group with a `displayName` goes to `groups` (external id = `id`); a repeated object that
///   only carries more `members@delta` (Graph splits a large group's members over objects and
///   pages) adds no group;
/// * its `members@delta` go to the page's `group-members` entry for the group (one per group and
///   page, the occurrences of a page merged): present members to `added`; members marked
///   `@removed` to `removed` in a delta pass (ignored in a full one).
pub fn add_groups(page: &mut PullPage, body: &Value) -> Result<(), ConnectorError> {
    let delta = page.kind == PassKind::Delta;
    for (i, g) in values(body, "Graph groups/delta")?.iter().enumerate() {
        let id = required_id(g, "group", i)?;
        if removed(g) {
            if delta {
                page.removed_groups.push(id.to_string());
            }
            continue;
        }
        if let Some(name) = string(g, "displayName") {
            page.groups.push(CanonicalGroup { external_id: Some(id.to_string()), display_name: name.to_string(), members: Vec::new() });
        }
        let changes = match g.get("members@delta") {
            None | Some(Value::Null) => continue,
            Some(Value::Array(a)) => a,
            Some(other) => {
                return Err(ConnectorError::invalid_request(format!(
                    "Graph's group at index {i} of the page (id {id}) has `members@delta` as a JSON {}, not a list",
                    idplex_connector_sdk::json::type_name(other)
                )));
            }
        };
        let mut added = Vec::new();
        let mut gone = Vec::new();
        for m in changes {
            let Some(member) = member_of(m) else { continue };
            if removed(m) {
                if delta {
                    gone.push(member);
                }
            } else {
                added.push(member);
            }
        }
        if !added.is_empty() || !gone.is_empty() {
            let entry = page.members_of(id);
            entry.added.extend(added);
            entry.removed.extend(gone);
        }
    }
    Ok(())
}
