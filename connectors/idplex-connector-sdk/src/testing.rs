//! Test helpers for a connector's **native** unit tests (`cargo test` on the build machine, not
//! in the sandbox).
//!
//! A connector's logic is best tested as plain Rust functions: its dialect's `normalize` on a
//! [`ScimRequest`], its SAML mapping on a [`VerifiedAssertion`] with a config lookup passed in.
//! This module builds those inputs and reads the outputs:
//!
//! - fixture files in the shape of `tests/fixtures/idp-dialects/*.json` (an object whose
//!   `vectors` array holds recorded IdP traffic, each vector with an `id` and a `request` of
//!   `method`, `path`, `query` and `body`): [`vectors`], [`vector`], [`request_of`];
//! - requests: [`request`], [`patch`];
//! - results: [`patch_ops`], [`body_of`], [`value`], [`assert_invalid`], [`assert_config`];
//! - SAML: [`attr`] for assertion attributes, [`cfg`] for a config lookup;
//! - `directory-pull`: [`FakeHttp`] answers a connector's fetcher with recorded API pages and
//!   records the URLs asked; [`run_pass`] drives a pull function through a whole pass, checking
//!   the cursors; [`members`] reads a page's memberships as plain strings.
//!
//! - the host itself: [`MockHost`] scripts the imports (`config`, `log`, `clock`, and egress
//!   through a [`FakeHttp`]) for the current thread, so a test can call a connector's `Guest`
//!   impls, the very functions the component exports, and read what it logged.
//!
//! Pure functions can also take [`cfg`] where the connector would pass `&config::get`. The
//! helpers panic (with a message naming what was expected) instead of returning errors, as
//! tests want.
//!
//! [`ScimRequest`]: crate::provisioning::ScimRequest
//! [`VerifiedAssertion`]: crate::sso::VerifiedAssertion
//! [`vectors`]: crate::testing::vectors
//! [`vector`]: crate::testing::vector
//! [`request_of`]: crate::testing::request_of
//! [`request`]: crate::testing::request
//! [`patch`]: crate::testing::patch
//! [`patch_ops`]: crate::testing::patch_ops
//! [`body_of`]: crate::testing::body_of
//! [`value`]: crate::testing::value
//! [`assert_invalid`]: crate::testing::assert_invalid
//! [`assert_config`]: crate::testing::assert_config
//! [`attr`]: crate::testing::attr
//! [`cfg`]: crate::testing::cfg
//! [`FakeHttp`]: crate::testing::FakeHttp
//! [`run_pass`]: crate::testing::run_pass
//! [`members`]: crate::testing::members
//! [`MockHost`]: crate::testing::MockHost
//!
//! ```ignore
//! use idplex_connector_sdk::testing::{request_of, vector, vectors};
//!
//! const OKTA: &str = include_str!("../tests/fixtures/okta.json");
//!
//! #[test]
//! fn okta_user_create() {
//!     let all = vectors(OKTA);
//!     let req = request_of(vector(&all, "okta-user-03")).unwrap();
//!     let ops = crate::dialect::normalize(&req).unwrap();
//!     let body = idplex_connector_sdk::testing::body_of(&ops);
//!     assert_eq!(body["userName"], "jdoe@example.com");
//! }
//! ```

#[cfg(not(target_arch = "wasm32"))]
pub use crate::mock_host::{LogLine, MockHost, MockHostGuard};

use crate::provisioning::{Operation, PatchOperation, ScimRequest};
use crate::sso::SamlAttribute;
use crate::{ConnectorError, ErrorKind, ResourceKind};
use serde_json::{Value, json};

/// The `vectors` array of a fixture file's JSON text (typically an `include_str!` of it).
///
/// Panics if `file` is not JSON or has no `vectors` array.
#[track_caller]
pub fn vectors(file: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(file).expect("fixture JSON");
    v["vectors"].as_array().expect("vectors").clone()
}

/// The vector of `all` whose `id` is `id`.
///
/// Panics (`no vector {id}`) if there is none.
pub fn vector<'a>(all: &'a [Value], id: &str) -> &'a Value {
    all.iter()
        .find(|v| v["id"] == id)
        .unwrap_or_else(|| panic!("no vector {id}"))
}

/// A fixture vector's `request` as the host hands it to a connector's `normalize`; `None` for a
/// vector that is not a SCIM request to idplex's `/Users` or `/Groups` endpoints (discovery
/// endpoints such as `/Schemas`, or calls to the IdP's own API).
///
/// The `path` is `/scim/v2/{Users|Groups}[/{id}]` or `/scim/{Users|Groups}[/{id}]` (a trailing
/// `/` or `?` is ignored); the `query` object becomes the list of pairs (non-string values as
/// empty strings); a non-null `body` becomes its JSON text. `None` too if `path` or `method` is
/// missing.
pub fn request_of(vector: &Value) -> Option<ScimRequest> {
    let req = &vector["request"];
    let path = req["path"].as_str()?;
    let rest = path
        .strip_prefix("/scim/v2/")
        .or_else(|| path.strip_prefix("/scim/"))?;
    let mut parts = rest.splitn(2, '/');
    let resource = match parts.next()?.trim_end_matches(['/', '?']) {
        "Users" => ResourceKind::User,
        "Groups" => ResourceKind::Group,
        _ => return None,
    };
    let id = parts
        .next()
        .map(|s| s.trim_end_matches(['/', '?']))
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let query = req["query"]
        .as_object()
        .map(|q| {
            q.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let body = (!req["body"].is_null()).then(|| req["body"].to_string());
    Some(ScimRequest {
        method: req["method"].as_str()?.to_string(),
        resource,
        id,
        query,
        body,
    })
}

/// A request without query: `method` on the `kind` endpoint, on the resource `id` if given, with
/// `body` as JSON text. `body` is a [`Value`] or an `Option<Value>` (`None`: no body).
pub fn request(
    method: &str,
    kind: ResourceKind,
    id: Option<&str>,
    body: impl Into<Option<Value>>,
) -> ScimRequest {
    ScimRequest {
        method: method.into(),
        resource: kind,
        id: id.map(Into::into),
        query: Vec::new(),
        body: body.into().map(|b| b.to_string()),
    }
}

/// A PATCH of the resource `id` whose body is the RFC 7644 §3.5.2 PatchOp message with
/// `operations` (a JSON array) as its `Operations`.
pub fn patch(kind: ResourceKind, id: &str, operations: Value) -> ScimRequest {
    request(
        "PATCH",
        kind,
        Some(id),
        json!({"schemas": [crate::scim::PATCH_OP_SCHEMA], "Operations": operations}),
    )
}

/// The resource id and operations of `ops` when it is exactly one [`Operation::Patch`].
///
/// Panics if there is not exactly one operation or it is not a patch.
#[track_caller]
pub fn patch_ops(ops: Vec<Operation>) -> (String, Vec<PatchOperation>) {
    match <[Operation; 1]>::try_from(ops) {
        Ok([Operation::Patch(p)]) => p,
        Ok([other]) => panic!("not a patch: {other:?}"),
        Err(ops) => panic!("expected one operation, got {}", ops.len()),
    }
}

/// The body of a single [`Operation::Create`] or [`Operation::Replace`], parsed.
///
/// Panics if `ops` is anything else or the body is not JSON.
#[track_caller]
pub fn body_of(ops: &[Operation]) -> Value {
    match ops {
        [Operation::Create(b)] | [Operation::Replace((_, b))] => serde_json::from_str(b).unwrap(),
        other => panic!("not a create/replace: {other:?}"),
    }
}

/// The `value` of a patch operation, parsed.
///
/// Panics if the operation has no value or it is not JSON.
#[track_caller]
pub fn value(op: &PatchOperation) -> Value {
    serde_json::from_str(op.value.as_deref().expect("a value")).expect("value JSON")
}

/// Asserts that `e` is an [`ErrorKind::InvalidRequest`] whose message contains `names` (the
/// field or value the IdP got wrong, so the admin can find it).
#[track_caller]
pub fn assert_invalid(e: &ConnectorError, names: &str) {
    assert!(matches!(e.kind, ErrorKind::InvalidRequest), "{e:?}");
    assert!(
        e.message.contains(names),
        "message should name {names}: {}",
        e.message
    );
}

/// Asserts that `e` is an [`ErrorKind::Config`] whose message names the config key `key` in
/// backticks (`` `key` ``), as the SDK's config getters and a connector's own checks do.
#[track_caller]
pub fn assert_config(e: &ConnectorError, key: &str) {
    assert!(matches!(e.kind, ErrorKind::Config), "{e:?}");
    assert!(
        e.message.contains(&format!("`{key}`")),
        "{key}: {}",
        e.message
    );
}

/// A SAML attribute `name` with `values`, for building a
/// [`VerifiedAssertion`](crate::sso::VerifiedAssertion).
pub fn attr(name: &str, values: &[&str]) -> SamlAttribute {
    SamlAttribute {
        name: name.into(),
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

/// A config lookup over `pairs` (key, value), to pass where the connector passes
/// `&config::get`: the value of the first pair with the key, `None` for any other key.
///
/// ```
/// let get = idplex_connector_sdk::testing::cfg(&[("domain", "example.com")]);
/// assert_eq!(get("domain").as_deref(), Some("example.com"));
/// assert_eq!(get("tenant_id"), None);
/// ```
pub fn cfg<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
    }
}

/// Asserts that `info` describes a first-party-quality connector named `name`: vendor
/// `idplex`, the crate's `version`, a description, no egress hosts, and a closed config schema
/// (draft 2020-12, `additionalProperties: false`) whose every property has a description.
/// Returns the schema for the connector's own checks.
#[track_caller]
pub fn assert_described(info: &crate::metadata::ConnectorInfo, name: &str, version: &str) -> Value {
    assert_described_with_egress(info, name, version, &[])
}

/// [`assert_described`] for a connector that calls its IdP's API: its egress hosts are exactly
/// `egress_hosts`.
#[track_caller]
pub fn assert_described_with_egress(
    info: &crate::metadata::ConnectorInfo,
    name: &str,
    version: &str,
    egress_hosts: &[&str],
) -> Value {
    assert_eq!(info.name, name);
    assert_eq!(info.vendor, "idplex");
    assert_eq!(info.version, version);
    assert!(!info.description.is_empty(), "{name}: no description");
    assert_eq!(info.egress_hosts, egress_hosts, "{name}: egress hosts");
    let schema: Value = serde_json::from_str(&info.config_schema).expect("config schema is JSON");
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(schema["additionalProperties"], false);
    let properties = schema["properties"].as_object().expect("config schema properties");
    for (key, p) in properties {
        assert!(p["description"].as_str().is_some_and(|d| !d.is_empty()), "{name}: `{key}` has no description");
    }
    schema
}

/// A fake IdP API for a connector's pull logic: answers each URL with the responses recorded
/// for it, and records every URL asked.
///
/// URLs match exactly (as the connector builds them, query included). Responses recorded for one
/// URL are served in order, the last one again for any further request; a URL with nothing
/// recorded panics, listing what was asked, so a test sees the connector's exact requests.
///
/// ```
/// use idplex_connector_sdk::http::Response;
/// use idplex_connector_sdk::serde_json::json;
/// use idplex_connector_sdk::testing::FakeHttp;
///
/// let mut api = FakeHttp::new()
///     .on("https://api.example/users", Response::json(503, json!({})))
///     .on_json("https://api.example/users", json!({"users": []}));
/// assert_eq!(api.fetch("https://api.example/users").unwrap().status, 503);
/// assert_eq!(api.fetch("https://api.example/users").unwrap().status, 200);
/// assert_eq!(api.requests, ["https://api.example/users", "https://api.example/users"]);
/// ```
#[derive(Debug, Default, Clone)]
pub struct FakeHttp {
    routes: Vec<(String, std::collections::VecDeque<crate::http::Response>)>,
    /// Every URL fetched, in order.
    pub requests: Vec<String>,
}

impl FakeHttp {
    /// A fake with nothing recorded.
    pub fn new() -> FakeHttp {
        FakeHttp::default()
    }

    /// Records `response` for `url` (after those already recorded for it).
    pub fn on(mut self, url: &str, response: crate::http::Response) -> FakeHttp {
        self.add(url, response);
        self
    }

    /// Records a `200` with the JSON `body` for `url`.
    pub fn on_json(self, url: &str, body: Value) -> FakeHttp {
        self.on(url, crate::http::Response::json(200, body))
    }

    /// Records `response` for `url` on an existing fake.
    pub fn add(&mut self, url: &str, response: crate::http::Response) {
        match self.routes.iter_mut().find(|(u, _)| u == url) {
            Some((_, queue)) => queue.push_back(response),
            None => self.routes.push((url.to_string(), [response].into())),
        }
    }

    /// Answers `url` as recorded (the fetcher a connector's pull logic takes).
    ///
    /// Panics if nothing is recorded for `url`.
    #[track_caller]
    pub fn fetch(&mut self, url: &str) -> Result<crate::http::Response, ConnectorError> {
        self.requests.push(url.to_string());
        let Some((_, queue)) = self.routes.iter_mut().find(|(u, _)| u == url) else {
            panic!(
                "FakeHttp: nothing recorded for\n  {url}\nrecorded:\n  {}",
                self.routes.iter().map(|(u, _)| u.as_str()).collect::<Vec<_>>().join("\n  ")
            );
        };
        Ok(if queue.len() > 1 { queue.pop_front().unwrap() } else { queue.front().unwrap().clone() })
    }

    /// The number of requests made since `since` (an earlier `requests.len()`).
    pub fn requests_since(&self, since: usize) -> usize {
        self.requests.len() - since
    }
}

/// Drives a pull function through one pass: calls `pull(cursor)` with `start` (`None`: a full
/// pass; a `resume` cursor: a delta pass), then with each page's `next`, until a page has
/// `next: none`, and returns the pages. Checks what the host relies on: every `next` and
/// `resume` at most [`MAX_CURSOR_BYTES`](crate::directory_pull::MAX_CURSOR_BYTES), `resume` only
/// on the last page, at most `max_pages` pages (a connector stuck on one cursor fails the test).
///
/// Panics on an error, naming the page.
#[track_caller]
pub fn run_pass(
    mut pull: impl FnMut(Option<&str>) -> Result<crate::directory_pull::PullPage, ConnectorError>,
    start: Option<&str>,
    max_pages: usize,
) -> Vec<crate::directory_pull::PullPage> {
    use crate::directory_pull::MAX_CURSOR_BYTES;
    let mut pages = Vec::new();
    let mut cursor = start.map(str::to_string);
    loop {
        assert!(pages.len() < max_pages, "the pass did not end within {max_pages} pages");
        let page = pull(cursor.as_deref()).unwrap_or_else(|e| panic!("page {} failed: {e:?}", pages.len() + 1));
        for c in page.next.iter().chain(page.resume.iter()) {
            assert!(c.len() <= MAX_CURSOR_BYTES, "page {}: a cursor of {} bytes", pages.len() + 1, c.len());
        }
        if page.next.is_some() {
            assert!(page.resume.is_none(), "page {}: `resume` before the last page", pages.len() + 1);
        }
        cursor = page.next.clone();
        pages.push(page);
        if cursor.is_none() {
            return pages;
        }
    }
}

/// The memberships of `group` on `page` as (`added`, `removed`), each member written `user:ID`
/// or `group:ID`, concatenated over the page's entries for `group`.
pub fn members(page: &crate::directory_pull::PullPage, group: &str) -> (Vec<String>, Vec<String>) {
    use crate::directory_pull::Member;
    let text = |m: &Member| match m {
        Member::User(id) => format!("user:{id}"),
        Member::Group(id) => format!("group:{id}"),
    };
    let mut added = Vec::new();
    let mut removed = Vec::new();
    for entry in page.members.iter().filter(|m| m.group == group) {
        added.extend(entry.added.iter().map(text));
        removed.extend(entry.removed.iter().map(text));
    }
    (added, removed)
}

/// The value of attribute `path` of `user`, parsed (`None` when the user has no such attribute).
pub fn attribute(user: &crate::CanonicalUser, path: &str) -> Option<Value> {
    user.attributes
        .iter()
        .find(|(p, _)| p == path)
        .map(|(_, v)| serde_json::from_str(v).expect("attribute value is JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector_with(path: &str) -> Value {
        json!({"id": "v", "request": {"method": "GET", "path": path, "query": {"count": "2", "n": 1}, "body": null}})
    }

    #[test]
    fn request_of_reads_both_path_forms_and_skips_other_endpoints() {
        for (path, kind, id) in [
            ("/scim/v2/Users", ResourceKind::User, None),
            ("/scim/Users/", ResourceKind::User, None),
            ("/scim/v2/Groups/g1", ResourceKind::Group, Some("g1")),
            ("/scim/Groups/g1/", ResourceKind::Group, Some("g1")),
        ] {
            let r = request_of(&vector_with(path)).unwrap_or_else(|| panic!("{path}"));
            assert_eq!((r.resource, r.id.as_deref()), (kind, id), "{path}");
            assert_eq!(r.method, "GET");
            assert_eq!(
                r.query,
                [("count".into(), "2".into()), ("n".into(), String::new())]
            );
            assert_eq!(r.body, None);
        }
        for path in [
            "/scim/v2/Schemas",
            "/scim/ServiceProviderConfig",
            "https://idp.example/api/users",
            "/Users",
        ] {
            assert!(request_of(&vector_with(path)).is_none(), "{path}");
        }
        let post = json!({"request": {"method": "POST", "path": "/scim/v2/Users", "body": {"userName": "a"}}});
        assert_eq!(
            request_of(&post).unwrap().body.as_deref(),
            Some(r#"{"userName":"a"}"#)
        );
    }

    #[test]
    fn builders_and_readers() {
        let all = vectors(r#"{"vectors": [{"id": "a"}, {"id": "b", "x": 1}]}"#);
        assert_eq!(vector(&all, "b")["x"], 1);
        let req = patch(
            ResourceKind::User,
            "42",
            json!([{"op": "remove", "path": "title"}]),
        );
        assert_eq!(
            (req.method.as_str(), req.id.as_deref()),
            ("PATCH", Some("42"))
        );
        let body: Value = serde_json::from_str(req.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["schemas"], json!([crate::scim::PATCH_OP_SCHEMA]));
        assert_eq!(request("POST", ResourceKind::Group, None, None).body, None);
        assert_eq!(
            request("POST", ResourceKind::Group, None, json!({}))
                .body
                .as_deref(),
            Some("{}")
        );
        assert_eq!(attr("groups", &["a", "b"]).values, ["a", "b"]);
        let get = cfg(&[("k", "v"), ("k", "w")]);
        assert_eq!((get("k").as_deref(), get("x")), (Some("v"), None));
        assert_invalid(
            &ConnectorError::invalid_request("bad `userName`"),
            "userName",
        );
        assert_config(
            &ConnectorError::config("config key `domain` is required"),
            "domain",
        );
    }

    #[test]
    fn the_fake_api_serves_recordings_in_order_and_the_pass_driver_follows_cursors() {
        use crate::directory_pull::{GroupMembers, Member, PassKind, PullPage};
        let mut api = FakeHttp::new()
            .on_json("https://x/a", json!(1))
            .on_json("https://x/a", json!(2));
        api.add("https://x/b", crate::http::Response::json(404, json!({})));
        let got: Vec<u16> = ["https://x/a", "https://x/b", "https://x/a", "https://x/a"]
            .iter()
            .map(|u| api.fetch(u).unwrap().status)
            .collect();
        assert_eq!(got, [200, 404, 200, 200]);
        assert_eq!(api.fetch("https://x/a").unwrap().json_body(), Some(&json!(2)));
        assert_eq!(api.requests_since(3), 2);

        let pages = run_pass(
            |cursor| {
                let mut page = PullPage::new(PassKind::Full);
                match cursor {
                    None => page.next = Some("2".into()),
                    Some("2") => {
                        page.members_of("g").added.push(Member::User("u1".into()));
                        page.members_of("g").removed.push(Member::Group("g2".into()));
                        page.members.push(GroupMembers { group: "g".into(), added: vec![Member::Group("g3".into())], removed: vec![] });
                        page.resume = Some("r".into());
                    }
                    other => panic!("{other:?}"),
                }
                Ok(page)
            },
            None,
            5,
        );
        assert_eq!(pages.len(), 2);
        assert_eq!(pages[1].members.len(), 2, "members_of reuses the entry; a pushed one is separate");
        assert_eq!(members(&pages[1], "g"), (vec!["user:u1".into(), "group:g3".into()], vec!["group:g2".into()]));
        assert_eq!(Member::Group("g3".into()).id(), "g3");
    }

    #[test]
    #[should_panic(expected = "a cursor of 8193 bytes")]
    fn the_pass_driver_refuses_an_oversized_cursor() {
        run_pass(
            |_| {
                let mut page = crate::directory_pull::PullPage::new(crate::directory_pull::PassKind::Full);
                page.resume = Some("x".repeat(8193));
                Ok(page)
            },
            None,
            1,
        );
    }

    #[test]
    fn cursors_are_bounded_and_api_checks_name_host_and_credentials() {
        use crate::directory_pull::{MAX_CURSOR_BYTES, cursor};
        assert_eq!(cursor("x".repeat(MAX_CURSOR_BYTES)).unwrap().len(), MAX_CURSOR_BYTES);
        let e = cursor("x".repeat(MAX_CURSOR_BYTES + 1)).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Upstream) && e.message.contains("8193 bytes"), "{e:?}");

        let ok = crate::diagnostics::api_checks("api.example", "users.list", Ok(crate::http::Response::json(200, json!({}))));
        assert_eq!(
            ok.iter().map(|c| (c.name.as_str(), c.ok)).collect::<Vec<_>>(),
            [("reachability api.example", true), ("credentials", true)]
        );
        let denied = crate::diagnostics::api_checks(
            "api.example",
            "users.list",
            Ok(crate::http::Response::json(403, json!({"error": {"message": "Not Authorized"}}))),
        );
        assert!(denied[0].ok && !denied[1].ok, "{denied:?}");
        assert!(denied[1].detail.contains("users.list answered HTTP 403: Not Authorized"), "{}", denied[1].detail);
        let down = crate::diagnostics::api_checks("api.example", "users.list", Err(ConnectorError::upstream("egress denied")));
        assert_eq!((down[0].ok, down[0].detail.as_str(), down[1].ok), (false, "egress denied", false));
    }
}
