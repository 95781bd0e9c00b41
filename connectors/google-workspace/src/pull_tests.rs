//! Native unit tests of the directory pull: the mapping, the URLs, the cursor, whole passes over
//! recorded Directory API pages (including the request budget), errors and `test-connection`.

use crate::directory::{self, Scope, map_group, map_members, map_user, members_url};
use crate::pull::{self, MAX_REQUESTS, Step};
use idplex_connector_sdk::directory_pull::{MAX_CURSOR_BYTES, Member, PassKind, PullPage};
use idplex_connector_sdk::http::Response;
use idplex_connector_sdk::serde_json::{self, Value, json};
use idplex_connector_sdk::testing::{FakeHttp, assert_config, assert_invalid, attribute, cfg, members, run_pass, vector, vectors};
use idplex_connector_sdk::{ConnectorError, ErrorKind};

const GOOGLE: &str = include_str!("../../../tests/fixtures/idp-dialects/google_workspace.json");
const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const BASE: &str = "https://admin.googleapis.com/admin/directory/v1";

fn users_url(token: Option<&str>) -> String {
    match token {
        None => format!("{BASE}/users?customer=my_customer&maxResults=500&projection=full&orderBy=email"),
        Some(t) => format!("{BASE}/users?customer=my_customer&maxResults=500&projection=full&orderBy=email&pageToken={t}"),
    }
}

fn groups_url(token: Option<&str>) -> String {
    match token {
        None => format!("{BASE}/groups?customer=my_customer&maxResults=200"),
        Some(t) => format!("{BASE}/groups?customer=my_customer&maxResults=200&pageToken={t}"),
    }
}

fn user(id: &str, email: &str) -> Value {
    json!({"kind": "admin#directory#user", "id": id, "primaryEmail": email, "name": {"givenName": "G", "familyName": "F", "fullName": "G F"}, "suspended": false})
}

fn group(id: &str, name: &str) -> Value {
    json!({"kind": "admin#directory#group", "id": id, "email": format!("{name}@example.com"), "name": name})
}

fn member(id: &str, ty: &str) -> Value {
    json!({"kind": "admin#directory#member", "id": id, "email": format!("{id}@example.com"), "role": "MEMBER", "type": ty, "status": "ACTIVE"})
}

/// The pull over `api` with no config.
fn pull_with(api: &mut FakeHttp, cursor: Option<&str>) -> Result<PullPage, ConnectorError> {
    pull::pull(cursor, &mut |url: &str| api.fetch(url), &|_| None)
}

fn ids(page: &PullPage) -> (Vec<String>, Vec<String>) {
    (
        page.users.iter().map(|u| u.external_id.clone().unwrap()).collect(),
        page.groups.iter().map(|g| g.external_id.clone().unwrap()).collect(),
    )
}

// ---------- mapping ----------

#[test]
fn the_documented_user_maps_completely() {
    let all = vectors(GOOGLE);
    let body = &vector(&all, "google-users-01")["expected_response"]["body"];
    let users = directory::map_users(body).unwrap();
    assert_eq!(users.len(), 1);
    let u = &users[0];
    assert_eq!(u.external_id.as_deref(), Some("103456789012345678901"));
    assert_eq!(u.user_name, "jane@example.com");
    assert_eq!((u.given_name.as_deref(), u.family_name.as_deref(), u.display_name.as_deref()), (Some("Jane"), Some("Doe"), Some("Jane Doe")));
    assert_eq!(u.emails.len(), 1, "the primary address is listed once");
    assert_eq!((u.emails[0].value.as_str(), u.emails[0].kind.as_deref(), u.emails[0].primary), ("jane@example.com", Some("work"), true));
    assert!(u.active);
    assert!(u.groups.is_empty());
    assert_eq!(attribute(u, &format!("{ENT}:department")), Some(json!("R&D")));
    assert_eq!(attribute(u, "title"), Some(json!("Engineer")));
    assert_eq!(attribute(u, &format!("{ENT}:manager")), Some(json!({"value": "boss@example.com"})));
    assert_eq!(attribute(u, &format!("{ENT}:employeeNumber")), Some(json!("E123")));
    assert_eq!(u.attributes.len(), 4, "{:?}", u.attributes);
    assert_eq!(directory::next_page_token(body).as_deref(), Some("<opaque>"));
}

#[test]
fn status_emails_and_organizations_follow_google_semantics() {
    let mut u = user("1", "a@example.com");
    u["suspended"] = json!(true);
    assert!(!map_user(0, &u).unwrap().active, "suspended");
    let mut u = user("1", "a@example.com");
    u["archived"] = json!(true);
    assert!(!map_user(0, &u).unwrap().active, "archived");
    let bare = json!({"id": "1", "primaryEmail": "a@example.com"});
    let m = map_user(0, &bare).unwrap();
    assert!(m.active, "neither flag: active");
    assert_eq!((m.given_name, m.display_name, m.attributes.len()), (None, None, 0));
    assert_eq!(m.emails.len(), 1, "at least the primary e-mail");

    let u = json!({
        "id": "1", "primaryEmail": "a@example.com",
        "emails": [
            {"address": "A@example.com", "primary": true},
            {"address": "home@mail.example", "type": "home"},
            {"address": "x@example.com", "type": "custom", "customType": "alias"},
            {"address": "y@example.com"},
            {"primary": false}
        ],
        "organizations": [{"title": "Intern", "department": "Ops"}, {"title": "CTO", "department": "Exec", "primary": true}],
        "relations": [{"type": "spouse", "value": "s"}, {"type": "manager", "value": "m@example.com"}],
        "externalIds": [{"type": "account", "value": "A1"}]
    });
    let m = map_user(0, &u).unwrap();
    let emails: Vec<(&str, Option<&str>, bool)> = m.emails.iter().map(|e| (e.value.as_str(), e.kind.as_deref(), e.primary)).collect();
    assert_eq!(
        emails,
        [("a@example.com", Some("work"), true), ("home@mail.example", Some("home"), false), ("x@example.com", Some("alias"), false), ("y@example.com", None, false)]
    );
    assert_eq!(attribute(&m, "title"), Some(json!("CTO")), "the primary organization");
    assert_eq!(attribute(&m, &format!("{ENT}:department")), Some(json!("Exec")));
    assert_eq!(attribute(&m, &format!("{ENT}:employeeNumber")), None, "only an `organization` external id");
    let no_primary = json!({"id": "1", "primaryEmail": "a@example.com", "organizations": [{"title": "First"}, {"title": "Second"}]});
    assert_eq!(attribute(&map_user(0, &no_primary).unwrap(), "title"), Some(json!("First")));
}

#[test]
fn a_user_without_id_or_primary_email_fails_the_page_naming_field_and_index() {
    let e = directory::map_users(&json!({"users": [user("1", "a@x.com"), {"primaryEmail": "b@x.com"}]})).unwrap_err();
    assert_invalid(&e, "user at index 1");
    assert_invalid(&e, "`id`");
    let e = directory::map_users(&json!({"users": [user("1", "a@x.com"), user("2", "b@x.com"), {"id": "3", "primaryEmail": " "}]})).unwrap_err();
    assert_invalid(&e, "user at index 2 of the page (id 3) has no `primaryEmail`");
    let e = directory::map_users(&json!({"users": {"id": "1"}})).unwrap_err();
    assert_invalid(&e, "`users` as a JSON object");
    assert!(directory::map_users(&json!({"kind": "admin#directory#users"})).unwrap().is_empty(), "an empty page has no `users`");
}

#[test]
fn groups_and_members_map_by_id() {
    let all = vectors(GOOGLE);
    let groups = &vector(&all, "google-groups-01")["expected_response"]["body"];
    let g = map_group(0, &directory::groups_of(groups).unwrap()[0]).unwrap();
    assert_eq!((g.external_id.as_deref(), g.display_name.as_str()), (Some("03cqmetx3y1lz2a"), "Engineering"));
    assert_eq!(map_group(0, &json!({"id": "g", "email": "e@x.com", "name": ""})).unwrap().display_name, "e@x.com");
    assert_invalid(&map_group(4, &json!({"id": "g"})).unwrap_err(), "group at index 4 of the page (id g) has neither `name` nor `email`");
    assert_invalid(&map_group(1, &json!({"name": "n"})).unwrap_err(), "group at index 1 of the page has no `id`");

    let documented = &vector(&all, "google-members-01")["expected_response"]["body"];
    let m = map_members(documented).unwrap();
    assert!(matches!(&m[..], [Member::User(u), Member::Group(g)] if u == "103456789012345678901" && g == "04abc"), "{m:?}");
    let odd = json!({"members": [member("C01", "CUSTOMER"), member("x", "EXTERNAL"), {"type": "USER", "email": "noid@x.com"}, member("u", "USER")]});
    assert!(matches!(&map_members(&odd).unwrap()[..], [Member::User(u)] if u == "u"));
}

// ---------- scope, URLs, cursor ----------

#[test]
fn the_scope_comes_from_customer_and_domain() {
    let s = Scope::from_config(&cfg(&[])).unwrap();
    assert_eq!(s, Scope { customer: "my_customer".into(), domain: None });
    assert_eq!(s.users_url(500, Some("a+b/c=")), format!("{BASE}/users?customer=my_customer&maxResults=500&projection=full&orderBy=email&pageToken=a%2Bb/c%3D"));
    assert_eq!(s.groups_url(None), groups_url(None));
    let s = Scope::from_config(&cfg(&[("customer", "C01abcde"), ("domain", "Example.COM")])).unwrap();
    assert_eq!(s.users_url(1, None), format!("{BASE}/users?domain=example.com&maxResults=1&projection=full&orderBy=email"));
    assert_eq!(s.groups_url(Some("t")), format!("{BASE}/groups?customer=C01abcde&maxResults=200&pageToken=t"));
    assert_config(&Scope::from_config(&cfg(&[("customer", "my customer&x=1")])).unwrap_err(), "customer");
    assert_config(&Scope::from_config(&cfg(&[("domain", "@example.com")])).unwrap_err(), "domain");
    assert_eq!(members_url("03cq mx/1", Some("p")), format!("{BASE}/groups/03cq%20mx%2F1/members?maxResults=200&pageToken=p"));
}

#[test]
fn cursors_round_trip_compactly_and_stay_within_8_kib() {
    let steps = [
        Step::Users(Some("tok".into())),
        Step::Groups(None),
        Step::Groups(Some("g2".into())),
        Step::Members { groups_page: None, index: 0, group: "g".into(), members_page: None },
        Step::Members { groups_page: Some("gp".into()), index: 199, group: "03cq".into(), members_page: Some("mp".into()) },
    ];
    for step in steps {
        let c = step.encode().unwrap();
        assert!(!c.contains(' '), "compact: {c}");
        assert_eq!(Step::decode(&c).unwrap(), step, "{c}");
    }
    assert_eq!(Step::Groups(None).encode().unwrap(), r#"{"p":"groups","v":1}"#);
    assert_eq!(
        Step::Members { groups_page: Some("gp".into()), index: 3, group: "g".into(), members_page: Some("mp".into()) }.encode().unwrap(),
        r#"{"g":"gp","i":3,"id":"g","p":"members","t":"mp","v":1}"#
    );
    let huge = Step::Members { groups_page: Some("g".repeat(4000)), index: 1, group: "g".into(), members_page: Some("m".repeat(4200)) };
    let e = huge.encode().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Upstream);
    assert!(e.message.contains(&format!("{MAX_CURSOR_BYTES} bytes")), "{}", e.message);
    for bad in ["", "nope", "{}", r#"{"v":2,"p":"groups"}"#, r#"{"v":1,"p":"users"}"#, r#"{"v":1,"p":"members","id":"g"}"#, r#"{"v":1,"p":"x"}"#, r#"{"v":1,"p":"groups","t":5}"#] {
        assert_invalid(&Step::decode(bad).unwrap_err(), "not one this connector (google-workspace) issued");
    }
}

// ---------- whole passes ----------

/// Two users pages, two groups pages (g1, g2 | g3), g1's members on two pages.
fn small_directory() -> FakeHttp {
    FakeHttp::new()
        .on_json(&users_url(None), json!({"users": [user("u1", "a@example.com"), user("u2", "b@example.com")], "nextPageToken": "U2"}))
        .on_json(&users_url(Some("U2")), json!({"users": [user("u3", "c@example.com")]}))
        .on_json(&groups_url(None), json!({"groups": [group("g1", "eng"), group("g2", "empty")], "nextPageToken": "G2"}))
        .on_json(&groups_url(Some("G2")), json!({"groups": [group("g3", "ops")]}))
        .on_json(&members_url("g1", None), json!({"members": [member("u1", "USER"), member("C01", "CUSTOMER")], "nextPageToken": "M2"}))
        .on_json(&members_url("g1", Some("M2")), json!({"members": [member("u2", "USER"), member("g3", "GROUP")]}))
        .on_json(&members_url("g2", None), json!({"kind": "admin#directory#members"}))
        .on_json(&members_url("g3", None), json!({"members": [member("u3", "USER")]}))
}

#[test]
fn a_full_pass_reads_users_then_groups_then_their_members() {
    let mut api = small_directory();
    let pages = run_pass(|c| pull_with(&mut api, c), None, 10);
    assert_eq!(pages.len(), 4);
    assert!(pages.iter().all(|p| p.kind == PassKind::Full && p.removed_users.is_empty() && p.removed_groups.is_empty()));
    assert_eq!(ids(&pages[0]), (vec!["u1".into(), "u2".into()], vec![]));
    assert_eq!(ids(&pages[1]), (vec!["u3".into()], vec![]));
    assert_eq!(ids(&pages[2]), (vec![], vec!["g1".into(), "g2".into()]));
    assert_eq!(members(&pages[2], "g1").0, ["user:u1", "user:u2", "group:g3"], "both member pages, CUSTOMER left out");
    assert_eq!(pages[2].members.len(), 1, "no entry for the empty group");
    assert_eq!(ids(&pages[3]), (vec![], vec!["g3".into()]));
    assert_eq!(members(&pages[3], "g3").0, ["user:u3"]);
    let last = pages.last().unwrap();
    assert_eq!((last.next.as_deref(), last.resume.as_deref()), (None, None), "no delta at Google: the next pass is full");
    assert_eq!(
        api.requests,
        [
            users_url(None),
            users_url(Some("U2")),
            groups_url(None),
            members_url("g1", None),
            members_url("g1", Some("M2")),
            members_url("g2", None),
            groups_url(Some("G2")),
            members_url("g3", None),
        ]
    );
    assert_eq!(pages[1].next.as_deref(), Some(r#"{"p":"groups","v":1}"#));
}

#[test]
fn an_empty_directory_is_a_two_page_pass() {
    let mut api = FakeHttp::new()
        .on_json(&users_url(None), json!({"kind": "admin#directory#users"}))
        .on_json(&groups_url(None), json!({"kind": "admin#directory#groups"}));
    let pages = run_pass(|c| pull_with(&mut api, c), None, 5);
    assert_eq!(pages.len(), 2);
    assert!(pages.iter().all(|p| p.users.is_empty() && p.groups.is_empty() && p.members.is_empty()));
}

/// One groups page (big, small); `big` has `pages` member pages of one member each.
fn big_group(pages: usize) -> FakeHttp {
    let mut api = FakeHttp::new().on_json(&groups_url(Some("G")), json!({"groups": [group("big", "big"), group("small", "small")]}));
    for p in 0..pages {
        let token = (p > 0).then(|| format!("M{p}"));
        let mut body = json!({"members": [member(&format!("u{p}"), "USER")]});
        if p + 1 < pages {
            body["nextPageToken"] = json!(format!("M{}", p + 1));
        }
        api.add(&members_url("big", token.as_deref()), Response::json(200, body));
    }
    api.add(&members_url("small", None), Response::json(200, json!({"members": [member("s", "USER")]})));
    api
}

#[test]
fn a_call_stops_at_its_request_budget_and_the_next_goes_on_from_the_cursor() {
    let member_pages = 100;
    let mut api = big_group(member_pages);
    let start = Step::Groups(Some("G".into())).encode().unwrap();
    let mut counts = Vec::new();
    let mut seen = 0;
    let pages = run_pass(
        |c| {
            let page = pull_with(&mut api, c);
            counts.push(api.requests_since(seen));
            seen = api.requests.len();
            page
        },
        Some(&start),
        10,
    );
    assert!(counts.iter().all(|n| *n <= MAX_REQUESTS), "{counts:?}");
    assert_eq!(counts, [40, 40, 24], "1 groups + 39 members, then 1 groups (again) + 39, then 1 + 22 + 1");
    let big: Vec<String> = pages.iter().flat_map(|p| members(p, "big").0).collect();
    assert_eq!(big.len(), member_pages);
    assert_eq!(big, (0..member_pages).map(|p| format!("user:u{p}")).collect::<Vec<_>>(), "each member once, in order");
    assert_eq!(members(&pages[2], "small").0, ["user:s"]);
    assert_eq!(ids(&pages[0]).1, ["big", "small"], "the groups page is reported where it is read first");
    assert_eq!(ids(&pages[1]).1, ["big"], "a later call reports the groups whose members it reports");
    assert_eq!(ids(&pages[2]).1, ["big", "small"]);
    let cursor: Value = serde_json::from_str(pages[0].next.as_deref().unwrap()).unwrap();
    assert_eq!(cursor, json!({"v": 1, "p": "members", "g": "G", "i": 0, "id": "big", "t": "M39"}));
}

#[test]
fn a_group_that_moved_on_its_page_is_found_by_id_and_a_vanished_one_is_skipped() {
    let cursor = Step::Members { groups_page: Some("G".into()), index: 0, group: "small".into(), members_page: None }.encode().unwrap();
    let mut api = big_group(1);
    let page = pull_with(&mut api, Some(&cursor)).unwrap();
    assert_eq!(ids(&page).1, ["small"], "found at index 1, `big` before it is not read again");
    assert_eq!(api.requests, [groups_url(Some("G")), members_url("small", None)]);

    let gone = Step::Members { groups_page: Some("G".into()), index: 1, group: "deleted".into(), members_page: Some("stale".into()) }.encode().unwrap();
    let mut api = big_group(1);
    let page = pull_with(&mut api, Some(&gone)).unwrap();
    assert_eq!(ids(&page).1, ["small"], "the group now at index 1, from its first member page");
    assert_eq!(page.next, None);
}

// ---------- errors ----------

#[test]
fn api_failures_are_upstream_errors_the_host_can_retry() {
    let mut api = FakeHttp::new().on(
        &users_url(None),
        Response::json(429, json!({"error": {"code": 429, "message": "Quota exceeded for quota metric", "status": "RESOURCE_EXHAUSTED"}}))
            .with_header("Retry-After", "17"),
    );
    let e = pull_with(&mut api, None).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Upstream);
    assert!(e.message.starts_with("Admin SDK users.list (admin.googleapis.com) answered HTTP 429: RESOURCE_EXHAUSTED: Quota exceeded"), "{}", e.message);
    assert!(e.message.contains("Retry-After: 17"), "{}", e.message);

    let mut api = FakeHttp::new().on(
        &users_url(None),
        Response::json(403, json!({"error": {"code": 403, "message": "Not Authorized to access this resource/api", "status": "PERMISSION_DENIED"}})),
    );
    let e = pull_with(&mut api, None).unwrap_err();
    assert!(e.message.contains("PERMISSION_DENIED: Not Authorized") && e.message.contains("scope"), "{}", e.message);

    let mut api = FakeHttp::new().on_json(&groups_url(None), json!({"groups": [group("g1", "x")]})).on(
        &members_url("g1", None),
        Response::json(503, json!({"error": {"code": 503, "message": "The service is currently unavailable."}})),
    );
    let e = pull_with(&mut api, Some(r#"{"v":1,"p":"groups"}"#)).unwrap_err();
    assert!(e.message.contains("members.list") && e.message.contains("HTTP 503"), "{}", e.message);

    let mut api = FakeHttp::new().on(&users_url(None), Response { status: 200, headers: vec![], body: idplex_connector_sdk::http::Body::Bytes(b"<html>".to_vec()) });
    assert!(pull_with(&mut api, None).unwrap_err().message.contains("not JSON"));

    let mut refused = |_: &str| -> Result<Response, ConnectorError> { Err(ConnectorError::upstream("GET https://admin.googleapis.com/admin/directory/v1/users: request refused: HttpRequestDenied")) };
    assert_eq!(pull::pull(None, &mut refused, &|_| None).unwrap_err().kind, ErrorKind::Upstream);
}

#[test]
fn an_unusable_user_fails_the_page_and_bad_config_fails_before_any_request() {
    let mut api = FakeHttp::new().on_json(&users_url(None), json!({"users": [user("u1", "a@x.com"), {"id": "u2"}]}));
    assert_invalid(&pull_with(&mut api, None).unwrap_err(), "user at index 1 of the page (id u2) has no `primaryEmail`");
    let mut api = FakeHttp::new();
    let e = pull::pull(None, &mut |u: &str| api.fetch(u), &cfg(&[("customer", "bad customer")])).unwrap_err();
    assert_config(&e, "customer");
    assert!(api.requests.is_empty());
    assert_invalid(&pull_with(&mut FakeHttp::new(), Some("garbage")).unwrap_err(), "cursor");
}

#[test]
fn the_domain_scopes_the_users_pull() {
    let url = format!("{BASE}/users?domain=example.com&maxResults=500&projection=full&orderBy=email");
    let mut api = FakeHttp::new().on_json(&url, json!({"users": [user("u1", "a@example.com")]}));
    let page = pull::pull(None, &mut |u: &str| api.fetch(u), &cfg(&[("domain", "example.com")])).unwrap();
    assert_eq!(ids(&page).0, ["u1"]);
}

// ---------- test-connection ----------

#[test]
fn test_connection_reads_one_user_with_the_hosts_credential() {
    let probe = format!("{BASE}/users?customer=my_customer&maxResults=1");
    assert_eq!(pull::probe_url(&Scope::from_config(&cfg(&[("domain", "example.com")])).unwrap()), format!("{BASE}/users?domain=example.com&maxResults=1"));
    let mut api = FakeHttp::new().on_json(&probe, json!({"users": [user("u1", "a@example.com")]}));
    let checks = crate::checks(&cfg(&[]), &mut |u: &str| api.fetch(u));
    let summary: Vec<(&str, bool)> = checks.iter().map(|c| (c.name.as_str(), c.ok)).collect();
    assert_eq!(summary, [("config", true), ("reachability admin.googleapis.com", true), ("credentials", true)]);
    assert_eq!(api.requests, [probe.as_str()]);

    let mut api = FakeHttp::new().on(
        &probe,
        Response::json(401, json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}})),
    );
    let checks = crate::checks(&cfg(&[]), &mut |u: &str| api.fetch(u));
    assert!(checks[1].ok && !checks[2].ok, "{checks:?}");
    assert!(checks[2].detail.contains("UNAUTHENTICATED: Request had invalid authentication credentials."), "{}", checks[2].detail);

    let mut down = |_: &str| -> Result<Response, ConnectorError> { Err(ConnectorError::upstream("egress to admin.googleapis.com is not allowed")) };
    let checks = crate::checks(&cfg(&[]), &mut down);
    assert_eq!((checks[1].ok, checks[1].detail.as_str(), checks[2].ok), (false, "egress to admin.googleapis.com is not allowed", false));

    let mut never = |u: &str| -> Result<Response, ConnectorError> { panic!("no request with a bad config: {u}") };
    let checks = crate::checks(&cfg(&[("customer", "no way")]), &mut never);
    assert_eq!(checks.len(), 1);
    assert!(!checks[0].ok && checks[0].detail.contains("`customer`"), "{checks:?}");
}
