//! `directory-pull` for Entra ID: Microsoft Graph delta queries, one Graph page per `pull` call.
//!
//! A **full** pass is Graph's initial delta round: `users/delta` (following `@odata.nextLink`
//! until the `@odata.deltaLink`), then `groups/delta` with `members` the same way; its pages are
//! `kind: full` and the last one's `resume` holds both delta links. A **delta** pass starts from
//! that `resume`: the same two phases from the saved delta links, `kind: delta`, reporting
//! removed users and groups (`@removed`) and removed members (`@removed` in `members@delta`),
//! and ends with the new delta links as `resume`.
//!
//! Links are followed by their path and query only, always on `https://graph.microsoft.com`
//! ([`graph::url_of`]); the cursor stores only paths and queries.
//!
//! When Graph answers `410 Gone` (the delta or skip token expired: `syncStateNotFound`,
//! `resyncRequired`), the call starts over with a full pass and returns its first page
//! (`kind: full`): in a delta pass the host sees the kind change and restarts its pass; in a
//! full pass (a skip token that expired mid-pass) the pass simply reads everything again.
//!
//! Cursor (`v` is the format version; `k` the pass kind, `p` the phase, `l` the path and query
//! to fetch, `u` / `g` the users / groups delta links once known):
//!
//! | cursor | |
//! |---|---|
//! | `{"k":"full","l":"/v1.0/users/delta?$skiptoken=…","p":"users","v":1}` | a full pass, users phase |
//! | `{"k":"full","l":"/v1.0/groups/delta?$select=…","p":"groups","u":"/v1.0/users/delta?$deltatoken=…","v":1}` | a full pass, groups phase |
//! | `{"g":"/v1.0/groups/delta?$deltatoken=…","k":"delta","l":"/v1.0/users/delta?$deltatoken=…","p":"users","v":1}` | a delta pass, users phase |
//! | `{"g":"/v1.0/groups/delta?$deltatoken=…","u":"/v1.0/users/delta?$deltatoken=…","v":1}` | `resume`: the next pass starts from both delta links |

use crate::graph;
use idplex_connector_sdk::directory_pull::{self, PassKind, PullPage};
use idplex_connector_sdk::http::{self, Fetch};
use idplex_connector_sdk::serde_json::{Map, Value, json};
use idplex_connector_sdk::ConnectorError;

/// The phase of a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `users/delta`.
    Users,
    /// `groups/delta`.
    Groups,
}

/// What a cursor says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// The end of a complete pass: where the next (delta) pass starts.
    Resume {
        /// The users delta link (path and query).
        users: String,
        /// The groups delta link (path and query).
        groups: String,
    },
    /// The next page of a pass.
    Next {
        /// The pass's kind.
        kind: PassKind,
        /// Its phase.
        phase: Phase,
        /// The path and query to fetch.
        link: String,
        /// The users delta link, once the users phase is done.
        users_delta: Option<String>,
        /// The groups delta link to start the groups phase from (a delta pass).
        groups_delta: Option<String>,
    },
}

impl Cursor {
    /// The first page of a full pass.
    pub fn full_start() -> Cursor {
        Cursor::Next { kind: PassKind::Full, phase: Phase::Users, link: graph::users_delta_start(), users_delta: None, groups_delta: None }
    }

    /// The cursor text (compact JSON), checked against the 8 KiB bound.
    pub fn encode(&self) -> Result<String, ConnectorError> {
        let mut m = Map::new();
        m.insert("v".into(), json!(1));
        match self {
            Cursor::Resume { users, groups } => {
                m.insert("u".into(), json!(users));
                m.insert("g".into(), json!(groups));
            }
            Cursor::Next { kind, phase, link, users_delta, groups_delta } => {
                m.insert("k".into(), json!(if *kind == PassKind::Full { "full" } else { "delta" }));
                m.insert("p".into(), json!(if *phase == Phase::Users { "users" } else { "groups" }));
                m.insert("l".into(), json!(link));
                if let Some(u) = users_delta {
                    m.insert("u".into(), json!(u));
                }
                if let Some(g) = groups_delta {
                    m.insert("g".into(), json!(g));
                }
            }
        }
        directory_pull::cursor(Value::Object(m).to_string())
    }

    /// What a cursor of this connector says; an `invalid-request` error for anything else.
    pub fn decode(cursor: &str) -> Result<Cursor, ConnectorError> {
        let bad = |why: &str| {
            ConnectorError::invalid_request(format!(
                "the directory-pull cursor is not one this connector (entra-id) issued ({why}); start a new full pass"
            ))
        };
        let v: Value = idplex_connector_sdk::serde_json::from_str(cursor).map_err(|_| bad("not JSON"))?;
        if v.get("v") != Some(&json!(1)) {
            return Err(bad("unknown format version"));
        }
        let link = |key: &str| -> Result<Option<String>, ConnectorError> {
            match v.get(key) {
                None => Ok(None),
                Some(Value::String(s)) if s.starts_with('/') => Ok(Some(s.clone())),
                Some(_) => Err(bad(&format!("`{key}` is not a path"))),
            }
        };
        let Some(phase) = v.get("p") else {
            return match (link("u")?, link("g")?) {
                (Some(users), Some(groups)) => Ok(Cursor::Resume { users, groups }),
                _ => Err(bad("a resume cursor needs both delta links")),
            };
        };
        let phase = match phase.as_str() {
            Some("users") => Phase::Users,
            Some("groups") => Phase::Groups,
            _ => return Err(bad("unknown phase")),
        };
        let kind = match v.get("k").and_then(Value::as_str) {
            Some("full") => PassKind::Full,
            Some("delta") => PassKind::Delta,
            _ => return Err(bad("unknown pass kind")),
        };
        let cursor = Cursor::Next {
            kind,
            phase,
            link: link("l")?.ok_or_else(|| bad("no link"))?,
            users_delta: link("u")?,
            groups_delta: link("g")?,
        };
        match &cursor {
            Cursor::Next { phase: Phase::Groups, users_delta: None, .. } => Err(bad("a groups cursor without the users delta link")),
            Cursor::Next { kind: PassKind::Delta, phase: Phase::Users, groups_delta: None, .. } => {
                Err(bad("a delta cursor without the groups delta link"))
            }
            _ => Ok(cursor),
        }
    }
}

/// One page of a pass: `cursor` `None` starts a full pass, a `resume` cursor a delta pass, a
/// `next` cursor goes on. `fetch` GETs a URL ([`http::get_json`] in the sandbox).
pub fn pull(cursor: Option<&str>, fetch: &mut Fetch<'_>) -> Result<PullPage, ConnectorError> {
    let cursor = match cursor {
        None => Cursor::full_start(),
        Some(c) => match Cursor::decode(c)? {
            Cursor::Resume { users, groups } => {
                Cursor::Next { kind: PassKind::Delta, phase: Phase::Users, link: users, users_delta: None, groups_delta: Some(groups) }
            }
            next => next,
        },
    };
    let gone_at_start = || ConnectorError::upstream("Microsoft Graph answered 410 Gone to the first request of a full pass (users/delta)");
    match page(&cursor, fetch)? {
        Some(page) => Ok(page),
        None if cursor == Cursor::full_start() => Err(gone_at_start()),
        // 410 Gone: the token expired; start over with a full pass.
        None => page(&Cursor::full_start(), fetch)?.ok_or_else(gone_at_start),
    }
}

/// The page `cursor` (a [`Cursor::Next`]) names; `None` when Graph answered `410 Gone`.
fn page(cursor: &Cursor, fetch: &mut Fetch<'_>) -> Result<Option<PullPage>, ConnectorError> {
    let Cursor::Next { kind, phase, link, users_delta, groups_delta } = cursor else {
        return Err(ConnectorError::internal("a resume cursor is not a page"));
    };
    let what = match phase {
        Phase::Users => "Microsoft Graph users/delta (graph.microsoft.com)",
        Phase::Groups => "Microsoft Graph groups/delta (graph.microsoft.com)",
    };
    let response = fetch(&graph::url_of(link))?;
    if response.status == 410 {
        return Ok(None);
    }
    let body = http::check(what, response)?.into_json(what)?;
    let mut page = PullPage::new(*kind);
    let (next_link, delta_link) = graph::links(&body);
    let no_link = || ConnectorError::invalid_request(format!("{what} answered a page with neither `@odata.nextLink` nor `@odata.deltaLink`"));
    match phase {
        Phase::Users => {
            graph::add_users(&mut page, &body)?;
            let next = match (next_link, delta_link) {
                (Some(next), _) => Cursor::Next {
                    kind: *kind,
                    phase: Phase::Users,
                    link: next,
                    users_delta: None,
                    groups_delta: groups_delta.clone(),
                },
                (None, Some(users)) => Cursor::Next {
                    kind: *kind,
                    phase: Phase::Groups,
                    link: match (kind, groups_delta) {
                        (PassKind::Delta, Some(g)) => g.clone(),
                        _ => graph::groups_delta_start(),
                    },
                    users_delta: Some(users),
                    groups_delta: None,
                },
                (None, None) => return Err(no_link()),
            };
            page.next = Some(next.encode()?);
        }
        Phase::Groups => {
            graph::add_groups(&mut page, &body)?;
            let users = users_delta.clone().ok_or_else(|| ConnectorError::internal("groups phase without the users delta link"))?;
            match (next_link, delta_link) {
                (Some(next), _) => {
                    let next = Cursor::Next { kind: *kind, phase: Phase::Groups, link: next, users_delta: Some(users), groups_delta: None };
                    page.next = Some(next.encode()?);
                }
                (None, Some(groups)) => page.resume = Some(Cursor::Resume { users, groups }.encode()?),
                (None, None) => return Err(no_link()),
            }
        }
    }
    Ok(Some(page))
}
