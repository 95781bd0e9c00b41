//! `directory-pull` for Google Workspace: full passes over the Admin SDK Directory API.
//!
//! Google offers no delta, so every pass is `full` and ends with `resume: none` (the host finds
//! deletions by comparing full passes). A pass goes through three phases, one step per `pull`
//! call, all its state in the cursor (compact JSON, at most 8 KiB; instances keep nothing):
//!
//! 1. **users**: one `users.list` page (500 users) per call;
//! 2. **groups**: one `groups.list` page (200 groups) per call, reported as `groups`, followed in
//!    the same call by the members of its groups;
//! 3. **members** of each group of that groups page (`members.list`, 200 per request), as many
//!    member pages as fit in [`MAX_REQUESTS`] requests; a call that runs out of requests stops
//!    with a cursor naming the groups page (by its page token), the group (index and id) and the
//!    member page token. The next call fetches that groups page again, finds the group (by id,
//!    so a page that shifted meanwhile is still read right) and goes on; the groups whose members
//!    it reports are reported again in its `groups`, so every group with members on a page is
//!    also on that page.
//!
//! When a groups page is done, the next call fetches the next one (phase 2); after the last, the
//! pass ends.
//!
//! Cursor (`v` is the format version):
//!
//! | phase | cursor |
//! |---|---|
//! | users, page after the first | `{"v":1,"p":"users","t":"<pageToken>"}` |
//! | groups | `{"v":1,"p":"groups"}`, `{"v":1,"p":"groups","t":"<pageToken>"}` |
//! | members | `{"v":1,"p":"members","g":"<groups pageToken>","i":3,"id":"<group id>","t":"<members pageToken>"}` (`g` absent for the first groups page, `t` for a group's first member page) |

use crate::directory::{self, Scope, USERS_PER_PAGE};
use idplex_connector_sdk::directory_pull::{self, PassKind, PullPage};
use idplex_connector_sdk::http::{self, Fetch};
use idplex_connector_sdk::serde_json::{Map, Value, json};
use idplex_connector_sdk::ConnectorError;

/// The most API requests one `pull` call makes (the host allows a pull call at least 64).
pub const MAX_REQUESTS: usize = 40;

/// Where a pass goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A `users.list` page (`None`: the first).
    Users(Option<String>),
    /// A `groups.list` page (`None`: the first), then the members of its groups.
    Groups(Option<String>),
    /// Members of the groups of a groups page.
    Members {
        /// The page token of the groups page (`None`: the first page).
        groups_page: Option<String>,
        /// The index of the group on that page.
        index: usize,
        /// That group's id (to find it if the page shifted).
        group: String,
        /// The page token of its next member page (`None`: the first).
        members_page: Option<String>,
    },
}

impl Step {
    /// The cursor text of this step (compact JSON), checked against the 8 KiB bound.
    pub fn encode(&self) -> Result<String, ConnectorError> {
        let mut m = Map::new();
        m.insert("v".into(), json!(1));
        let token = |m: &mut Map<String, Value>, key: &str, t: &Option<String>| {
            if let Some(t) = t {
                m.insert(key.into(), json!(t));
            }
        };
        match self {
            Step::Users(t) => {
                m.insert("p".into(), json!("users"));
                token(&mut m, "t", t);
            }
            Step::Groups(t) => {
                m.insert("p".into(), json!("groups"));
                token(&mut m, "t", t);
            }
            Step::Members { groups_page, index, group, members_page } => {
                m.insert("p".into(), json!("members"));
                token(&mut m, "g", groups_page);
                m.insert("i".into(), json!(index));
                m.insert("id".into(), json!(group));
                token(&mut m, "t", members_page);
            }
        }
        directory_pull::cursor(Value::Object(m).to_string())
    }

    /// The step a cursor of this connector names; an `invalid-request` error for anything else.
    pub fn decode(cursor: &str) -> Result<Step, ConnectorError> {
        let bad = |why: &str| {
            ConnectorError::invalid_request(format!(
                "the directory-pull cursor is not one this connector (google-workspace) issued ({why}); start a new full pass"
            ))
        };
        let v: Value = idplex_connector_sdk::serde_json::from_str(cursor).map_err(|_| bad("not JSON"))?;
        if v.get("v") != Some(&json!(1)) {
            return Err(bad("unknown format version"));
        }
        let opt = |key: &str| -> Result<Option<String>, ConnectorError> {
            match v.get(key) {
                None => Ok(None),
                Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
                Some(_) => Err(bad(&format!("`{key}` is not a token"))),
            }
        };
        match v.get("p").and_then(Value::as_str) {
            Some("users") => match opt("t")? {
                Some(t) => Ok(Step::Users(Some(t))),
                None => Err(bad("a users cursor without a page token")),
            },
            Some("groups") => Ok(Step::Groups(opt("t")?)),
            Some("members") => Ok(Step::Members {
                groups_page: opt("g")?,
                index: v.get("i").and_then(Value::as_u64).ok_or_else(|| bad("no group index"))? as usize,
                group: opt("id")?.ok_or_else(|| bad("no group id"))?,
                members_page: opt("t")?,
            }),
            _ => Err(bad("unknown phase")),
        }
    }
}

/// One API request, counted against [`MAX_REQUESTS`]; a non-2xx answer is an `upstream` error
/// (the host retries 401, 429, 503 and 5xx with the same cursor).
struct Api<'a, 'f> {
    fetch: &'a mut Fetch<'f>,
    made: usize,
}

impl Api<'_, '_> {
    fn get(&mut self, url: &str, what: &str) -> Result<Value, ConnectorError> {
        self.made += 1;
        let what = format!("Admin SDK {what} ({})", directory::API_HOST);
        http::check(&what, (self.fetch)(url)?)?.into_json(&what)
    }

    fn left(&self) -> usize {
        MAX_REQUESTS.saturating_sub(self.made)
    }
}

/// One page of a pass: `cursor` `None` starts a full pass (there is no other kind), otherwise
/// goes on where the cursor says. `fetch` GETs a URL ([`http::get_json`] in the sandbox), `get`
/// reads the connection's config.
pub fn pull(cursor: Option<&str>, fetch: &mut Fetch<'_>, get: &dyn Fn(&str) -> Option<String>) -> Result<PullPage, ConnectorError> {
    let scope = Scope::from_config(get)?;
    let step = match cursor {
        None => Step::Users(None),
        Some(c) => Step::decode(c)?,
    };
    let mut api = Api { fetch, made: 0 };
    let mut page = PullPage::new(PassKind::Full);
    let next = match step {
        Step::Users(token) => {
            let body = api.get(&scope.users_url(USERS_PER_PAGE, token.as_deref()), "users.list")?;
            page.users = directory::map_users(&body)?;
            Some(match directory::next_page_token(&body) {
                Some(t) => Step::Users(Some(t)),
                None => Step::Groups(None),
            })
        }
        Step::Groups(token) => {
            let body = api.get(&scope.groups_url(token.as_deref()), "groups.list")?;
            let groups = directory::groups_of(&body)?;
            page.groups = groups.iter().enumerate().map(|(i, g)| directory::map_group(i, g)).collect::<Result<_, _>>()?;
            let at = Position { groups_page: token, index: 0, members_page: None };
            members(&mut api, &mut page, groups, directory::next_page_token(&body), at, true)?
        }
        Step::Members { groups_page, index, group, members_page } => {
            let body = api.get(&scope.groups_url(groups_page.as_deref()), "groups.list")?;
            let groups = directory::groups_of(&body)?;
            let is = |g: &Value| g.get("id").and_then(Value::as_str) == Some(group.as_str());
            // The group where the cursor left it, or where it moved; if it is gone, its member
            // page token means nothing: go on with the group now at its place.
            let at = if groups.get(index).is_some_and(is) {
                Position { groups_page, index, members_page }
            } else if let Some(moved) = groups.iter().position(is) {
                Position { groups_page, index: moved, members_page }
            } else {
                Position { groups_page, index, members_page: None }
            };
            members(&mut api, &mut page, groups, directory::next_page_token(&body), at, false)?
        }
    };
    page.next = next.map(|s| s.encode()).transpose()?;
    Ok(page)
}

/// Where on a groups page the members phase stands.
struct Position {
    groups_page: Option<String>,
    index: usize,
    members_page: Option<String>,
}

/// Reports the members of `groups` (one groups page, fetched with `at.groups_page`) from `at`
/// on, as far as the request budget goes; the step after: the rest of this page, the next
/// groups page (`next_groups_page`), or the end of the pass (`None`). Unless `reported` (the
/// page's groups are already on `page`), each group whose members are reported is reported too.
fn members(
    api: &mut Api<'_, '_>,
    page: &mut PullPage,
    groups: &[Value],
    next_groups_page: Option<String>,
    at: Position,
    reported: bool,
) -> Result<Option<Step>, ConnectorError> {
    let Position { groups_page, mut index, members_page } = at;
    let mut members_page = members_page;
    while index < groups.len() {
        let group = directory::map_group(index, &groups[index])?;
        let id = group.external_id.clone().unwrap_or_default();
        if api.left() == 0 {
            return Ok(Some(Step::Members { groups_page, index, group: id, members_page }));
        }
        if !reported {
            page.groups.push(group);
        }
        loop {
            let body = api.get(&directory::members_url(&id, members_page.as_deref()), "members.list")?;
            let found = directory::map_members(&body)?;
            if !found.is_empty() {
                page.members_of(&id).added.extend(found);
            }
            members_page = directory::next_page_token(&body);
            if members_page.is_none() {
                break;
            }
            if api.left() == 0 {
                return Ok(Some(Step::Members { groups_page, index, group: id, members_page }));
            }
        }
        index += 1;
    }
    Ok(next_groups_page.map(|t| Step::Groups(Some(t))))
}

/// The `test-connection` request: one user of the configured scope
/// (`users?customer=…&maxResults=1`, or `domain=…` when `domain` is set).
pub fn probe_url(scope: &Scope) -> String {
    let (key, value) = match &scope.domain {
        Some(d) => ("domain", d.as_str()),
        None => ("customer", scope.customer.as_str()),
    };
    http::with_query(&format!("{}/users", directory::BASE_URL), &[(key, Some(value)), ("maxResults", Some("1"))])
}
