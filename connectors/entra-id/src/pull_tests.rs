//! Native unit tests of the directory pull: the Graph mapping, the cursor, full and delta passes
//! over recorded Graph pages, `410 Gone`, links to other origins, errors and `test-connection`.

use crate::graph::{self, map_user};
use crate::pull::{self, Cursor, Phase};
use idplex_connector_sdk::directory_pull::{MAX_CURSOR_BYTES, Member, PassKind, PullPage};
use idplex_connector_sdk::http::{Body, Response};
use idplex_connector_sdk::serde_json::{self, Value, json};
use idplex_connector_sdk::testing::{FakeHttp, assert_invalid, attribute, cfg, members, run_pass};
use idplex_connector_sdk::{ConnectorError, ErrorKind};

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const GRAPH: &str = "https://graph.microsoft.com";
const USERS_START: &str = "https://graph.microsoft.com/v1.0/users/delta?$select=id,userPrincipalName,displayName,givenName,surname,mail,accountEnabled,department,jobTitle,employeeId&$top=500";
const GROUPS_START: &str = "https://graph.microsoft.com/v1.0/groups/delta?$select=displayName,description,members";

/// Where the host's tests run their fake Graph: links carry this origin.
const LOOPBACK: &str = "http://127.0.0.1:18443";

fn user(id: &str, upn: &str) -> Value {
    json!({"id": id, "userPrincipalName": upn, "displayName": "D", "givenName": "G", "surname": "S", "mail": upn, "accountEnabled": true, "department": null, "jobTitle": null, "employeeId": null})
}

fn m(ty: &str, id: &str) -> Value {
    json!({"@odata.type": format!("#microsoft.graph.{ty}"), "id": id})
}

fn gone(ty: &str, id: &str) -> Value {
    json!({"@odata.type": format!("#microsoft.graph.{ty}"), "id": id, "@removed": {"reason": "deleted"}})
}

fn page(value: Value, next: Option<&str>, delta: Option<&str>) -> Value {
    let mut p = json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users(id)", "value": value});
    if let Some(n) = next {
        p["@odata.nextLink"] = json!(n);
    }
    if let Some(d) = delta {
        p["@odata.deltaLink"] = json!(d);
    }
    p
}

fn pull_with(api: &mut FakeHttp, cursor: Option<&str>) -> Result<PullPage, ConnectorError> {
    pull::pull(cursor, &mut |url: &str| api.fetch(url))
}

fn user_ids(p: &PullPage) -> Vec<&str> {
    p.users.iter().map(|u| u.external_id.as_deref().unwrap()).collect()
}

fn group_ids(p: &PullPage) -> Vec<(&str, &str)> {
    p.groups.iter().map(|g| (g.external_id.as_deref().unwrap(), g.display_name.as_str())).collect()
}

fn full_page(kind: PassKind) -> PullPage {
    PullPage::new(kind)
}

// ---------- mapping ----------

#[test]
fn a_graph_user_maps_completely() {
    let u = json!({
        "id": "87d349ed-44d7-43e1-9a83-5f2406dee5bd", "userPrincipalName": "AdeleV@contoso.com",
        "displayName": "Adele Vance", "givenName": "Adele", "surname": "Vance", "mail": "AdeleV@contoso.com",
        "accountEnabled": false, "department": "Retail", "jobTitle": "Retail Manager", "employeeId": "1001"
    });
    let c = map_user(0, &u, PassKind::Full).unwrap();
    assert_eq!(c.external_id.as_deref(), Some("87d349ed-44d7-43e1-9a83-5f2406dee5bd"), "the object id, as SAML's objectidentifier");
    assert_eq!(c.user_name, "AdeleV@contoso.com");
    assert_eq!((c.given_name.as_deref(), c.family_name.as_deref(), c.display_name.as_deref()), (Some("Adele"), Some("Vance"), Some("Adele Vance")));
    assert_eq!(c.emails.len(), 1);
    assert_eq!((c.emails[0].value.as_str(), c.emails[0].kind.as_deref(), c.emails[0].primary), ("AdeleV@contoso.com", Some("work"), true));
    assert!(!c.active);
    assert_eq!(attribute(&c, &format!("{ENT}:department")), Some(json!("Retail")));
    assert_eq!(attribute(&c, &format!("{ENT}:employeeNumber")), Some(json!("1001")));
    assert_eq!(attribute(&c, "title"), Some(json!("Retail Manager")));
    assert_eq!(c.attributes.len(), 3);

    let sparse = json!({"id": "1", "userPrincipalName": "a@x.com", "mail": null, "department": null});
    let c = map_user(0, &sparse, PassKind::Full).unwrap();
    assert!(c.active, "accountEnabled absent in a full page: active");
    assert!(c.emails.is_empty() && c.attributes.is_empty() && c.display_name.is_none(), "null (cleared) properties are left out");
}

#[test]
fn a_user_without_what_the_host_needs_fails_the_page() {
    let e = map_user(3, &json!({"userPrincipalName": "a@x.com"}), PassKind::Full).unwrap_err();
    assert_invalid(&e, "user at index 3 of the page has no `id`");
    let e = map_user(1, &json!({"id": "u1", "accountEnabled": true}), PassKind::Delta).unwrap_err();
    assert_invalid(&e, "user at index 1 of the page (id u1) has no `userPrincipalName`");
    let e = map_user(2, &json!({"id": "u2", "userPrincipalName": "a@x.com", "accountEnabled": null}), PassKind::Delta).unwrap_err();
    assert_invalid(&e, "index 2 of a delta page (id u2) has no `accountEnabled`");
    let mut p = full_page(PassKind::Full);
    assert_invalid(&graph::add_users(&mut p, &json!({"value": {"id": "x"}})).unwrap_err(), "`value` as a JSON object");
}

#[test]
fn removed_users_count_only_in_a_delta_pass() {
    let body = page(json!([user("u1", "a@x.com"), {"id": "u2", "@removed": {"reason": "changed"}}, {"id": "u3", "@removed": {"reason": "deleted"}}]), None, None);
    let mut delta = full_page(PassKind::Delta);
    graph::add_users(&mut delta, &body).unwrap();
    assert_eq!((user_ids(&delta), delta.removed_users.clone()), (vec!["u1"], vec!["u2".to_string(), "u3".to_string()]));
    let mut full = full_page(PassKind::Full);
    graph::add_users(&mut full, &body).unwrap();
    assert_eq!((user_ids(&full), full.removed_users.len()), (vec!["u1"], 0));
}

#[test]
fn groups_and_members_at_delta_map_by_type_and_merge_per_page() {
    let body = page(
        json!([
            {"id": "g1", "displayName": "Sales", "description": "d", "members@delta": [m("user", "u1"), m("group", "g2"), m("orgContact", "c1"), m("device", "d1"), {"@odata.type": "#microsoft.graph.user"}]},
            {"id": "g2", "displayName": "Nested", "members@delta": []},
            {"id": "g1", "members@delta": [m("user", "u2"), gone("user", "u9")]},
            {"id": "g3", "@removed": {"reason": "deleted"}},
            {"id": "g4", "displayName": "Quiet"}
        ]),
        None,
        None,
    );
    let mut delta = full_page(PassKind::Delta);
    graph::add_groups(&mut delta, &body).unwrap();
    assert_eq!(group_ids(&delta), [("g1", "Sales"), ("g2", "Nested"), ("g4", "Quiet")], "a repeated object adds no group");
    assert_eq!(delta.removed_groups, ["g3"]);
    assert_eq!(delta.members.len(), 1, "one entry per group and page; none for a group without member changes");
    assert_eq!(members(&delta, "g1"), (vec!["user:u1".into(), "group:g2".into(), "user:u2".into()], vec!["user:u9".into()]));

    let mut full = full_page(PassKind::Full);
    graph::add_groups(&mut full, &body).unwrap();
    assert!(full.removed_groups.is_empty());
    assert_eq!(members(&full, "g1").1, Vec::<String>::new(), "no removals in a full pass");

    let mut p = full_page(PassKind::Full);
    let e = graph::add_groups(&mut p, &page(json!([{"id": "g", "displayName": "x", "members@delta": {"id": "u"}}]), None, None)).unwrap_err();
    assert_invalid(&e, "group at index 0 of the page (id g) has `members@delta` as a JSON object");
    let e = graph::add_groups(&mut p, &page(json!([{"displayName": "x"}]), None, None)).unwrap_err();
    assert_invalid(&e, "group at index 0 of the page has no `id`");
    assert!(matches!(graph::member_of(&m("group", "g")), Some(Member::Group(g)) if g == "g"));
}

// ---------- links and cursor ----------

#[test]
fn every_link_is_followed_on_graph_only() {
    for link in [
        "https://graph.microsoft.com/v1.0/users/delta?$skiptoken=abc",
        "http://127.0.0.1:18443/v1.0/users/delta?$skiptoken=abc",
        "https://evil.example/v1.0/users/delta?$skiptoken=abc",
        "https://graph.microsoft.com.evil.example:8443/v1.0/users/delta?$skiptoken=abc#x",
        "/v1.0/users/delta?$skiptoken=abc",
    ] {
        assert_eq!(graph::url_of(link), "https://graph.microsoft.com/v1.0/users/delta?$skiptoken=abc", "{link}");
    }
    let (next, delta) = graph::links(&page(json!([]), Some("https://evil.example/v1.0/x?a=1"), Some("http://127.0.0.1:1/v1.0/y?b=2")));
    assert_eq!((next.as_deref(), delta.as_deref()), (Some("/v1.0/x?a=1"), Some("/v1.0/y?b=2")));
}

#[test]
fn cursors_round_trip_compactly_and_stay_within_8_kib() {
    let cursors = [
        Cursor::full_start(),
        Cursor::Resume { users: "/v1.0/users/delta?$deltatoken=U".into(), groups: "/v1.0/groups/delta?$deltatoken=G".into() },
        Cursor::Next { kind: PassKind::Full, phase: Phase::Groups, link: "/v1.0/groups/delta?$skiptoken=s".into(), users_delta: Some("/u".into()), groups_delta: None },
        Cursor::Next { kind: PassKind::Delta, phase: Phase::Users, link: "/l".into(), users_delta: None, groups_delta: Some("/g".into()) },
        Cursor::Next { kind: PassKind::Delta, phase: Phase::Groups, link: "/l".into(), users_delta: Some("/u".into()), groups_delta: None },
    ];
    for c in cursors {
        let text = c.encode().unwrap();
        assert!(!text.contains(' ') && !text.contains("://"), "compact, paths only: {text}");
        assert_eq!(Cursor::decode(&text).unwrap(), c, "{text}");
    }
    assert_eq!(
        Cursor::Resume { users: "/u".into(), groups: "/g".into() }.encode().unwrap(),
        r#"{"g":"/g","u":"/u","v":1}"#
    );
    let huge = Cursor::Next { kind: PassKind::Delta, phase: Phase::Users, link: format!("/{}", "l".repeat(5000)), users_delta: None, groups_delta: Some(format!("/{}", "g".repeat(4000))) };
    let e = huge.encode().unwrap_err();
    assert!(e.kind == ErrorKind::Upstream && e.message.contains(&MAX_CURSOR_BYTES.to_string()), "{e:?}");
    for bad in [
        "x",
        "{}",
        r#"{"v":1,"u":"/u"}"#,
        r#"{"v":1,"u":"https://evil.example/u","g":"/g"}"#,
        r#"{"v":1,"p":"users","k":"full"}"#,
        r#"{"v":1,"p":"users","k":"sometimes","l":"/l"}"#,
        r#"{"v":1,"p":"groups","k":"full","l":"/l"}"#,
        r#"{"v":1,"p":"users","k":"delta","l":"/l"}"#,
        r#"{"v":3,"u":"/u","g":"/g"}"#,
    ] {
        assert_invalid(&Cursor::decode(bad).unwrap_err(), "not one this connector (entra-id) issued");
    }
}

// ---------- passes ----------

/// A full round: two users pages (the first link on the loopback origin, as the host's fake
/// Graph sends them), two groups pages with `g1`'s members split across them.
fn initial_round() -> FakeHttp {
    FakeHttp::new()
        .on_json(USERS_START, page(json!([user("u1", "a@contoso.com"), user("u2", "b@contoso.com")]), Some(&format!("{LOOPBACK}/v1.0/users/delta?$skiptoken=U2")), None))
        .on_json(
            &format!("{GRAPH}/v1.0/users/delta?$skiptoken=U2"),
            page(json!([user("u3", "c@contoso.com")]), None, Some(&format!("{GRAPH}/v1.0/users/delta?$deltatoken=UD1"))),
        )
        .on_json(
            GROUPS_START,
            page(
                json!([{"id": "g1", "displayName": "Sales", "members@delta": [m("user", "u1"), m("user", "u2")]}]),
                Some(&format!("{LOOPBACK}/v1.0/groups/delta?$skiptoken=G2")),
                None,
            ),
        )
        .on_json(
            &format!("{GRAPH}/v1.0/groups/delta?$skiptoken=G2"),
            page(
                json!([{"id": "g1", "members@delta": [m("group", "g2")]}, {"id": "g2", "displayName": "Nested", "members@delta": [m("user", "u3")]}]),
                None,
                Some(&format!("{LOOPBACK}/v1.0/groups/delta?$deltatoken=GD1")),
            ),
        )
}

#[test]
fn a_full_pass_is_the_initial_delta_round_and_resumes_from_both_delta_links() {
    let mut api = initial_round();
    let pages = run_pass(|c| pull_with(&mut api, c), None, 10);
    assert_eq!(pages.len(), 4, "one Graph page per call");
    assert!(pages.iter().all(|p| p.kind == PassKind::Full));
    assert_eq!(user_ids(&pages[0]), ["u1", "u2"]);
    assert_eq!(user_ids(&pages[1]), ["u3"]);
    assert_eq!(group_ids(&pages[2]), [("g1", "Sales")]);
    assert_eq!(members(&pages[2], "g1").0, ["user:u1", "user:u2"]);
    assert_eq!(group_ids(&pages[3]), [("g2", "Nested")]);
    assert_eq!(members(&pages[3], "g1").0, ["group:g2"], "the rest of g1's members, on the next page");
    assert_eq!(members(&pages[3], "g2").0, ["user:u3"]);
    assert_eq!(
        pages[3].resume.as_deref(),
        Some(r#"{"g":"/v1.0/groups/delta?$deltatoken=GD1","u":"/v1.0/users/delta?$deltatoken=UD1","v":1}"#)
    );
    assert!(api.requests.iter().all(|u| u.starts_with("https://graph.microsoft.com/v1.0/")), "{:?}", api.requests);
    assert_eq!(api.requests.len(), 4);
    for p in &pages {
        assert!(!p.next.as_deref().unwrap_or("").contains("127.0.0.1"), "the cursor keeps paths only");
    }
}

#[test]
fn a_delta_pass_reports_changes_and_removals_and_ends_with_new_delta_links() {
    let resume = r#"{"g":"/v1.0/groups/delta?$deltatoken=GD1","u":"/v1.0/users/delta?$deltatoken=UD1","v":1}"#;
    let mut changed = user("u2", "b@contoso.com");
    changed["accountEnabled"] = json!(false);
    changed["jobTitle"] = json!("Lead");
    let mut api = FakeHttp::new()
        .on_json(
            &format!("{GRAPH}/v1.0/users/delta?$deltatoken=UD1"),
            page(json!([changed, {"id": "u3", "@removed": {"reason": "changed"}}]), Some("https://graph.microsoft.com/v1.0/users/delta?$skiptoken=UX"), None),
        )
        .on_json(&format!("{GRAPH}/v1.0/users/delta?$skiptoken=UX"), page(json!([]), None, Some("https://graph.microsoft.com/v1.0/users/delta?$deltatoken=UD2")))
        .on_json(
            &format!("{GRAPH}/v1.0/groups/delta?$deltatoken=GD1"),
            page(
                json!([
                    {"id": "g1", "displayName": "Sales", "members@delta": [m("user", "u4"), gone("user", "u1"), gone("group", "g2")]},
                    {"id": "g2", "@removed": {"reason": "deleted"}}
                ]),
                None,
                Some("https://graph.microsoft.com/v1.0/groups/delta?$deltatoken=GD2"),
            ),
        );
    let pages = run_pass(|c| pull_with(&mut api, c), Some(resume), 10);
    assert_eq!(pages.len(), 3);
    assert!(pages.iter().all(|p| p.kind == PassKind::Delta));
    assert_eq!(user_ids(&pages[0]), ["u2"]);
    assert!(!pages[0].users[0].active);
    assert_eq!(attribute(&pages[0].users[0], "title"), Some(json!("Lead")));
    assert_eq!(pages[0].removed_users, ["u3"]);
    assert_eq!(pages[2].removed_groups, ["g2"]);
    assert_eq!(members(&pages[2], "g1"), (vec!["user:u4".into()], vec!["user:u1".into(), "group:g2".into()]));
    let resume: Value = serde_json::from_str(pages[2].resume.as_deref().unwrap()).unwrap();
    assert_eq!(resume, json!({"v": 1, "u": "/v1.0/users/delta?$deltatoken=UD2", "g": "/v1.0/groups/delta?$deltatoken=GD2"}));
}

#[test]
fn a_410_in_a_delta_pass_starts_a_full_pass_transparently() {
    let expired = Response::json(410, json!({"error": {"code": "syncStateNotFound", "message": "The requested sync state is not found."}}));
    // In the users phase (the resume cursor itself).
    let mut api = initial_round().on(&format!("{GRAPH}/v1.0/users/delta?$deltatoken=OLD"), expired.clone());
    let resume = Cursor::Resume { users: "/v1.0/users/delta?$deltatoken=OLD".into(), groups: "/v1.0/groups/delta?$deltatoken=OLDG".into() };
    let page = pull_with(&mut api, Some(&resume.encode().unwrap())).unwrap();
    assert_eq!(page.kind, PassKind::Full, "the host sees the kind change and restarts its pass");
    assert_eq!(user_ids(&page), ["u1", "u2"]);
    assert_eq!(api.requests, [format!("{GRAPH}/v1.0/users/delta?$deltatoken=OLD"), USERS_START.to_string()]);
    assert_eq!(Cursor::decode(page.next.as_deref().unwrap()).unwrap(), Cursor::Next {
        kind: PassKind::Full,
        phase: Phase::Users,
        link: "/v1.0/users/delta?$skiptoken=U2".into(),
        users_delta: None,
        groups_delta: None,
    });

    // In the groups phase (`resyncRequired`).
    let mut api = initial_round().on(
        &format!("{GRAPH}/v1.0/groups/delta?$deltatoken=OLDG"),
        Response::json(410, json!({"error": {"code": "resyncRequired", "message": "Resync required."}})),
    );
    let groups = Cursor::Next { kind: PassKind::Delta, phase: Phase::Groups, link: "/v1.0/groups/delta?$deltatoken=OLDG".into(), users_delta: Some("/u".into()), groups_delta: None };
    let page = pull_with(&mut api, Some(&groups.encode().unwrap())).unwrap();
    assert_eq!((page.kind, user_ids(&page)), (PassKind::Full, vec!["u1", "u2"]));
    // Then the new full pass goes on to the end.
    let rest = run_pass(|c| pull_with(&mut api, c), page.next.as_deref(), 10);
    assert!(rest.iter().all(|p| p.kind == PassKind::Full));
    assert!(rest.last().unwrap().resume.as_deref().unwrap().contains("GD1"));
}

#[test]
fn a_410_mid_full_pass_reads_everything_again_and_at_its_start_is_an_error() {
    let mut api = initial_round().on(&format!("{GRAPH}/v1.0/users/delta?$skiptoken=EXPIRED"), Response::json(410, json!({})));
    let mid = Cursor::Next { kind: PassKind::Full, phase: Phase::Users, link: "/v1.0/users/delta?$skiptoken=EXPIRED".into(), users_delta: None, groups_delta: None };
    let page = pull_with(&mut api, Some(&mid.encode().unwrap())).unwrap();
    assert_eq!((page.kind, user_ids(&page)), (PassKind::Full, vec!["u1", "u2"]));

    let mut api = FakeHttp::new().on(USERS_START, Response::json(410, json!({})));
    let e = pull_with(&mut api, None).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Upstream);
    assert_eq!(api.requests.len(), 1, "no second try of the same request");
}

#[test]
fn links_to_another_origin_are_followed_on_graph() {
    let mut api = FakeHttp::new()
        .on_json(USERS_START, page(json!([]), Some("https://attacker.example/v1.0/users/delta?$skiptoken=S"), None))
        .on_json(&format!("{GRAPH}/v1.0/users/delta?$skiptoken=S"), page(json!([]), None, Some("https://attacker.example:444/v1.0/users/delta?$deltatoken=D")));
    let first = pull_with(&mut api, None).unwrap();
    assert!(!first.next.as_deref().unwrap().contains("attacker"));
    let second = pull_with(&mut api, first.next.as_deref()).unwrap();
    assert_eq!(api.requests[1], format!("{GRAPH}/v1.0/users/delta?$skiptoken=S"));
    match Cursor::decode(second.next.as_deref().unwrap()).unwrap() {
        Cursor::Next { phase: Phase::Groups, link, users_delta, .. } => {
            assert_eq!(link, "/v1.0/groups/delta?$select=displayName,description,members");
            assert_eq!(users_delta.as_deref(), Some("/v1.0/users/delta?$deltatoken=D"));
        }
        other => panic!("{other:?}"),
    }
}

// ---------- errors ----------

#[test]
fn graph_failures_are_upstream_errors_the_host_can_retry() {
    let throttled = Response::json(429, json!({"error": {"code": "TooManyRequests", "message": "Too many requests."}})).with_header("Retry-After", "3");
    let mut api = FakeHttp::new().on(USERS_START, throttled);
    let e = pull_with(&mut api, None).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Upstream);
    assert_eq!(
        e.message,
        "Microsoft Graph users/delta (graph.microsoft.com) answered HTTP 429: TooManyRequests: Too many requests. (throttled; Retry-After: 3)"
    );
    let mut api = FakeHttp::new().on(USERS_START, Response::json(401, json!({"error": {"code": "InvalidAuthenticationToken", "message": "Access token has expired or is not yet valid."}})));
    let e = pull_with(&mut api, None).unwrap_err();
    assert!(e.kind == ErrorKind::Upstream && e.message.contains("HTTP 401: InvalidAuthenticationToken"), "{e:?}");
    let mut api = FakeHttp::new().on(USERS_START, Response::json(403, json!({"error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges to complete the operation."}})));
    assert!(pull_with(&mut api, None).unwrap_err().message.contains("Authorization_RequestDenied"));
    let mut api = FakeHttp::new().on(USERS_START, Response { status: 200, headers: vec![], body: Body::Bytes(b"<html/>".to_vec()) });
    assert!(pull_with(&mut api, None).unwrap_err().message.contains("not JSON"));
    let mut api = FakeHttp::new().on_json(USERS_START, page(json!([user("u1", "a@x.com")]), None, None));
    assert_invalid(&pull_with(&mut api, None).unwrap_err(), "neither `@odata.nextLink` nor `@odata.deltaLink`");
    let mut api = FakeHttp::new().on_json(USERS_START, page(json!([user("u1", "a@x.com"), {"id": "u2"}]), Some("/n"), None));
    assert_invalid(&pull_with(&mut api, None).unwrap_err(), "index 1 of the page (id u2) has no `userPrincipalName`");
    assert_invalid(&pull_with(&mut FakeHttp::new(), Some("not a cursor")).unwrap_err(), "cursor");
}

// ---------- test-connection ----------

#[test]
fn test_connection_asks_graph_for_one_user() {
    let probe = format!("{GRAPH}/v1.0/users?$top=1&$select=id");
    let mut api = FakeHttp::new().on_json(&probe, json!({"value": [{"id": "u1"}]}));
    let checks = crate::checks(&cfg(&[]), &mut |u: &str| api.fetch(u));
    let summary: Vec<(&str, bool)> = checks.iter().map(|c| (c.name.as_str(), c.ok)).collect();
    assert_eq!(summary, [("config", true), ("reachability graph.microsoft.com", true), ("credentials", true)]);
    assert_eq!(api.requests, [probe.as_str()]);

    let mut api = FakeHttp::new().on(&probe, Response::json(403, json!({"error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges to complete the operation."}})));
    let checks = crate::checks(&cfg(&[]), &mut |u: &str| api.fetch(u));
    assert!(checks[1].ok && !checks[2].ok, "{checks:?}");
    assert!(checks[2].detail.contains("Insufficient privileges") && checks[2].detail.contains("only the directory pull"), "{}", checks[2].detail);

    let mut down = |_: &str| -> Result<Response, ConnectorError> { Err(ConnectorError::upstream("egress denied: graph.microsoft.com")) };
    let checks = crate::checks(&cfg(&[("tenant_id", "not-a-guid")]), &mut down);
    assert!(!checks[1].ok && !checks[2].ok && checks[1].detail.starts_with("egress denied"), "{checks:?}");
}
