//! Attacks on the SCIM surface, tried end to end against the real binary (issue "Hardening"):
//! each test first does what an attacker or a buggy IdP does, then checks that the answer is a
//! specific RFC 7644 error, that nothing was lost or changed, and that the server still serves.
//! Runs on SQLite, or on PostgreSQL with `IDPLEX_TEST_DATABASE_URL`.

use std::time::Duration;

use idplex_bundled::testing::HOSTILE;
use idplex_tests::{Resp, Server, TestEnv, eventually};
use reqwest::Method;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_idplex");
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// A connection running `connector` with `config`, and a SCIM token for it.
async fn scim_connection(env: &TestEnv, server: &Server, name: &str, connector: &str, config: Value) -> (String, String) {
    let id = server
        .create_connection(&json!({"name": name, "connector": connector, "version": "1.0.0", "config": config}))
        .await;
    let v = env.cli_json(&["scim-token", "create", "--connection", &id]).await.ok_json();
    (id, v["secret"].as_str().expect("SCIM token").to_string())
}

async fn scim(server: &Server, token: &str, method: Method, path: &str, body: Option<&Value>) -> Resp {
    let mut rb = server.request(method, path, Some(token));
    if let Some(b) = body {
        rb = rb.header("content-type", "application/scim+json").body(b.to_string());
    }
    Server::send(rb).await
}

/// Panics unless `r` is an RFC 7644 error with `status` (and `scim_type`, when given).
#[track_caller]
fn scim_error(r: &Resp, status: u16, scim_type: Option<&str>) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.body["schemas"], json!([ERROR_SCHEMA]), "{}", r.body);
    assert_eq!(r.body["status"], status.to_string(), "{}", r.body);
    if let Some(t) = scim_type {
        assert_eq!(r.body["scimType"], t, "{}", r.body);
    }
}

fn user(user_name: &str) -> Value {
    json!({"schemas": [USER_SCHEMA], "userName": user_name})
}

async fn create_user(server: &Server, token: &str, conn: &str, user_name: &str) -> String {
    let r = scim(server, token, Method::POST, &format!("/scim/v2/{conn}/Users"), Some(&user(user_name))).await;
    r.expect(201);
    r.body["id"].as_str().expect("user id").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_queries_get_scim_errors_and_the_server_keeps_serving() {
    let env = TestEnv::new(BIN).await;
    let server = env.serve(&["--demo"]).await;
    let (conn, token) = scim_connection(&env, &server, "idp", "custom-saml", json!({})).await;
    let users = format!("/scim/v2/{conn}/Users");
    let ada = create_user(&server, &token, &conn, "ada@example.com").await;

    // ~1,600 nested parentheses (a 3 KB request) used to overflow a worker's stack and abort
    // the process; ~12,000 flat `or` terms too.
    let nested = format!("{}userName eq \"x\"{}", "(".repeat(1600), ")".repeat(1600));
    let flat = vec!["userName eq \"x\""; 12_000].join(" or ");
    for (what, filter) in [("nested", &nested), ("flat", &flat)] {
        let r = scim(
            &server,
            &token,
            Method::POST,
            &format!("{users}/.search"),
            Some(&json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": filter})),
        )
        .await;
        assert_eq!(r.status, 400, "{what}: {}", r.body);
        scim_error(&r, 400, None);
    }
    let r = Server::send(server.request(Method::GET, &users, Some(&token)).query(&[("filter", nested.as_str())])).await;
    scim_error(&r, 400, Some("invalidFilter"));
    let deep_path = format!("emails[{}type eq \"work\"{}].value", "(".repeat(1600), ")".repeat(1600));
    let r = scim(
        &server,
        &token,
        Method::PATCH,
        &format!("{users}/{ada}"),
        Some(&json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "path": deep_path, "value": "x"}]})),
    )
    .await;
    scim_error(&r, 400, None);

    // A non-ASCII attribute name used to panic (an empty reply, nothing logged).
    for (param, value) in [("sortBy", "abcé"), ("filter", "abcé eq \"x\""), ("attributes", "abcé")] {
        let r = Server::send(server.request(Method::GET, &users, Some(&token)).query(&[(param, value)])).await;
        assert!(r.status == 400 || r.status == 200, "{param}={value}: {} {}", r.status, r.body);
        if r.status == 400 {
            scim_error(&r, 400, None);
        }
    }
    let r = scim(
        &server,
        &token,
        Method::PATCH,
        &format!("{users}/{ada}"),
        Some(&json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "nämé", "value": "x"}]})),
    )
    .await;
    scim_error(&r, 400, None);

    // Thousands of PATCH operations are refused before any is applied.
    let ops: Vec<Value> =
        (0..2_000).map(|i| json!({"op": "add", "path": "emails", "value": [{"value": format!("a{i}@example.com")}]})).collect();
    let r = scim(
        &server,
        &token,
        Method::PATCH,
        &format!("{users}/{ada}"),
        Some(&json!({"schemas": [PATCH_SCHEMA], "Operations": ops})),
    )
    .await;
    scim_error(&r, 400, Some("tooMany"));

    // Ids no resource can have: 404, on both backends (PostgreSQL cannot even compare NUL).
    for id in ["%00", "a%00b", "%0Aforged", &"x".repeat(300)] {
        let r = scim(&server, &token, Method::GET, &format!("{users}/{id}"), None).await;
        scim_error(&r, 404, None);
    }
    // A raw NUL in a filter is a malformed string literal; an escaped one (`\u0000`) finds
    // nothing instead of failing the store.
    let r = Server::send(server.request(Method::GET, &users, Some(&token)).query(&[("filter", "userName eq \"a\u{0}b\"")])).await;
    scim_error(&r, 400, Some("invalidFilter"));
    for filter in ["userName eq \"a\\u0000b\"", "externalId eq \"\\u0000\"", "id eq \"\\u0000\""] {
        let r = Server::send(server.request(Method::GET, &users, Some(&token)).query(&[("filter", filter)])).await;
        r.expect(200);
        assert_eq!(r.body["totalResults"], 0, "{filter}: {}", r.body);
    }

    // Methods a SCIM endpoint does not serve, and path segments that are not UTF-8.
    let r = scim(&server, &token, Method::POST, &format!("{users}/{ada}"), Some(&user("x@example.com"))).await;
    scim_error(&r, 405, None);
    let r = scim(&server, &token, Method::DELETE, &users, None).await;
    scim_error(&r, 405, None);
    let r = scim(&server, &token, Method::GET, &format!("{users}/%FF%FE"), None).await;
    scim_error(&r, 400, None);
    // HEAD is a GET without body, not a request the connector refuses.
    let head = server.request(Method::HEAD, &format!("{users}/{ada}"), Some(&token)).send().await.expect("HEAD");
    assert_eq!(head.status().as_u16(), 200);
    assert!(head.headers().get("etag").is_some());

    // Still serving, and Ada is intact.
    server.get_anon("/healthz").await.expect(200);
    let r = scim(&server, &token, Method::GET, &format!("{users}/{ada}"), None).await;
    r.expect(200);
    assert_eq!(r.body["userName"], "ada@example.com");
    assert!(r.body.get("emails").is_none(), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_values_are_refused_with_400_and_usernames_are_canonical() {
    let env = TestEnv::new(BIN).await;
    let server = env.serve(&["--demo"]).await;
    let (conn, token) = scim_connection(&env, &server, "idp", "custom-saml", json!({})).await;
    let (other, other_token) = scim_connection(&env, &server, "other", "custom-saml", json!({})).await;
    let users = format!("/scim/v2/{conn}/Users");
    let groups = format!("/scim/v2/{conn}/Groups");

    // NUL in a userName or displayName: 400, never 503 (an IdP retries a 503 forever).
    let r = scim(&server, &token, Method::POST, &users, Some(&user("nul\u{0}@example.com"))).await;
    scim_error(&r, 400, Some("invalidValue"));
    let r = scim(
        &server,
        &token,
        Method::POST,
        &groups,
        Some(&json!({"schemas": [GROUP_SCHEMA], "displayName": "a\u{0}b"})),
    )
    .await;
    scim_error(&r, 400, Some("invalidValue"));
    // Over-long keys: 400 naming the limit (PostgreSQL's index rows end near 2.7 KB).
    let r = scim(&server, &token, Method::POST, &users, Some(&user(&format!("{}@example.com", "a".repeat(3000))))).await;
    scim_error(&r, 400, Some("invalidValue"));
    let r = scim(
        &server,
        &token,
        Method::POST,
        &users,
        Some(&json!({"schemas": [USER_SCHEMA], "userName": "long-external@example.com", "externalId": "e".repeat(3000)})),
    )
    .await;
    scim_error(&r, 400, Some("invalidValue"));

    // One userName, however it is dressed up: full-width forms, trailing space, another case.
    create_user(&server, &token, &conn, "alice").await;
    for twin in ["ａｌｉｃｅ", "alice ", " ALICE", "Alice"] {
        let r = scim(&server, &token, Method::POST, &users, Some(&user(twin))).await;
        scim_error(&r, 409, Some("uniqueness"));
    }
    // Invisible and control characters are refused, not stored as a look-alike user.
    for forged in ["al\u{200b}ice", "al\u{202e}ice", "ali\u{7}ce", "\u{feff}alice"] {
        let r = scim(&server, &token, Method::POST, &users, Some(&user(forged))).await;
        scim_error(&r, 400, Some("invalidValue"));
    }
    // Unicode case folding: ÄLICE and älice are one user.
    create_user(&server, &token, &conn, "ÄLICE").await;
    let r = scim(&server, &token, Method::POST, &users, Some(&user("älice"))).await;
    scim_error(&r, 409, Some("uniqueness"));

    // A group looked up by displayName before it is created (what IdPs do) is found whatever
    // the case, on SQLite too.
    let r = scim(&server, &token, Method::POST, &groups, Some(&json!({"schemas": [GROUP_SCHEMA], "displayName": "ÄRZTE"}))).await;
    r.expect(201);
    for probe in ["ärzte", "ÄrZtE", "ÄRZTE"] {
        let r = Server::send(
            server.request(Method::GET, &groups, Some(&token)).query(&[("filter", format!("displayName eq \"{probe}\""))]),
        )
        .await;
        r.expect(200);
        assert_eq!(r.body["totalResults"], 1, "{probe}: {}", r.body);
    }

    // The other tenant's traffic meanwhile lands in its sync log, whatever the first one sent.
    create_user(&server, &other_token, &other, "bob@example.com").await;
    let log = format!("/admin/v1/connections/{other}/sync-log");
    eventually(Duration::from_secs(10), "the other tenant's sync log entry", || async {
        let r = server.get(&log).await;
        (r.status == 200 && r.body["entries"].as_array().is_some_and(|e| !e.is_empty())).then_some(())
    })
    .await;
    // And the refused requests of the first are in its own log, as client errors.
    let log = format!("/admin/v1/connections/{conn}/sync-log?outcome=client_error");
    eventually(Duration::from_secs(10), "the refused requests in the sync log", || async {
        let r = server.get(&log).await;
        (r.status == 200 && r.body["entries"].as_array().is_some_and(|e| e.len() >= 10)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_patches_without_if_match_all_apply() {
    let env = TestEnv::new(BIN).await;
    let server = env.serve(&["--demo"]).await;
    let (conn, token) = scim_connection(&env, &server, "idp", "custom-saml", json!({})).await;
    let id = create_user(&server, &token, &conn, "busy@example.com").await;
    let path = format!("/scim/v2/{conn}/Users/{id}");

    // 50 IdP updates of one user at once, none with If-Match: every one applies.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let rb = server.request(Method::PATCH, &path, Some(&token)).header("content-type", "application/scim+json").body(
            json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "add", "path": "emails", "value": [{"value": format!("u{i}@example.com")}]}]})
                .to_string(),
        );
        tasks.push(tokio::spawn(Server::send(rb)));
    }
    for t in tasks {
        t.await.expect("task").expect(200);
    }
    let r = scim(&server, &token, Method::GET, &path, None).await;
    r.expect(200);
    assert_eq!(r.body["emails"].as_array().map(Vec::len), Some(50), "{}", r.body);

    // With If-Match the precondition still holds: a stale version gets 412, nothing applied.
    let r = Server::send(
        server
            .request(Method::PATCH, &path, Some(&token))
            .header("if-match", "W/\"1\"")
            .header("content-type", "application/scim+json")
            .body(json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "title", "value": "x"}]}).to_string()),
    )
    .await;
    scim_error(&r, 412, None);
    let r = scim(&server, &token, Method::GET, &path, None).await;
    assert!(r.body.get("title").is_none(), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connector_cannot_change_the_operation_or_forge_host_owned_fields() {
    let env = TestEnv::new(BIN).await;
    let server = env.serve(&["--demo"]).await;
    server.post_wasm("/admin/v1/connectors", HOSTILE).await.expect(201);

    // `steal`: a GET of A normalized to a delete of B. Refused; B still there; an event says why.
    let (conn, token) = scim_connection(&env, &server, "steal", "hostile", json!({"mode": "steal"})).await;
    let a = create_user(&server, &token, &conn, "a@example.com").await;
    let b = create_user(&server, &token, &conn, "b@example.com").await;
    let r = Server::send(server.request(Method::GET, &format!("/scim/v2/{conn}/Users/{a}"), Some(&token)).query(&[("victim", &b)])).await;
    scim_error(&r, 502, None);
    assert!(r.body["detail"].as_str().unwrap_or_default().contains("delete"), "{}", r.body);
    let r = scim(&server, &token, Method::GET, &format!("/scim/v2/{conn}/Users/{b}"), None).await;
    r.expect(200);
    assert_eq!(r.body["userName"], "b@example.com");
    let events = server.get(&format!("/admin/v1/events?connection={conn}")).await;
    events.expect(200);
    assert!(events.body.to_string().contains("invalid_output"), "{}", events.body);

    // `forge`: whatever render says, identity, ETag, location and memberships are the host's.
    let (conn, token) = scim_connection(&env, &server, "forge", "hostile", json!({"mode": "forge"})).await;
    let resp = server
        .request(Method::POST, &format!("/scim/v2/{conn}/Users"), Some(&token))
        .header("content-type", "application/scim+json")
        .body(user("carol@example.com").to_string())
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 201);
    let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let location = resp.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["userName"], "carol@example.com", "{body}");
    assert_eq!(body["schemas"], json!([USER_SCHEMA]), "{body}");
    assert_eq!(body["meta"]["version"], etag, "{body}");
    assert_eq!(body["meta"]["location"], location, "{body}");
    assert_eq!(body["meta"]["resourceType"], "User", "{body}");
    assert!(body.get("groups").is_none() && body.get("members").is_none(), "{body}");
    assert!(body.get("externalId").is_none(), "{body}");
    assert!(!body.to_string().contains("forged") && !body.to_string().contains("attacker"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_list_of_large_resources_comes_in_bounded_pages() {
    let env = TestEnv::new(BIN).await;
    let server = env.serve(&["--demo"]).await;
    let (conn, token) = scim_connection(&env, &server, "idp", "custom-saml", json!({})).await;
    let users = format!("/scim/v2/{conn}/Users");
    // 8 users of ~900 KB each: one page of them would be ~7 MB.
    for i in 0..8 {
        let addresses: Vec<Value> = (0..15).map(|j| json!({"type": "work", "formatted": format!("{j}{}", "x".repeat(60_000))})).collect();
        let r = scim(
            &server,
            &token,
            Method::POST,
            &users,
            Some(&json!({"schemas": [USER_SCHEMA], "userName": format!("big{i}@example.com"), "addresses": addresses})),
        )
        .await;
        r.expect(201);
    }
    // Each page stays under the response budget; following startIndex + itemsPerPage reaches
    // every user exactly once, with and without a filter.
    for filter in [None, Some("userName sw \"big\"")] {
        let mut seen = Vec::new();
        let mut start = 1;
        loop {
            let mut rb = server.request(Method::GET, &users, Some(&token)).query(&[("startIndex", start.to_string())]);
            if let Some(f) = filter {
                rb = rb.query(&[("filter", f)]);
            }
            let r = Server::send(rb).await;
            r.expect(200);
            assert_eq!(r.body["totalResults"], 8, "{filter:?}");
            let page = r.body["Resources"].as_array().expect("Resources").clone();
            assert_eq!(r.body["itemsPerPage"].as_u64(), Some(page.len() as u64));
            assert!(!page.is_empty() && page.len() < 8, "{filter:?}: a page of {} large users", page.len());
            assert!(r.body.to_string().len() < 6 << 20, "{filter:?}: page of {} bytes", r.body.to_string().len());
            seen.extend(page.iter().map(|u| u["userName"].as_str().unwrap_or_default().to_string()));
            start += page.len();
            if start > 8 {
                break;
            }
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 8, "{filter:?}: {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_over_its_instance_cap_gets_503_busy_and_others_are_served() {
    let env = TestEnv::new(BIN).await;
    let server = env.serve(&["--demo", "--connector-max-instances", "2", "--connector-instance-wait-ms", "100"]).await;
    server.post_wasm("/admin/v1/connectors", HOSTILE).await.expect(201);
    let (looping, loop_token) = scim_connection(&env, &server, "loop", "hostile", json!({"mode": "loop"})).await;
    let (healthy, healthy_token) = scim_connection(&env, &server, "healthy", "custom-saml", json!({})).await;

    // Six spinning requests at once against a cap of two: the rest are told to come back.
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let rb = server.request(Method::GET, &format!("/scim/v2/{looping}/Users"), Some(&loop_token));
        tasks.push(tokio::spawn(async move { rb.send().await.expect("HTTP") }));
    }
    // Meanwhile the healthy connection is served.
    create_user(&server, &healthy_token, &healthy, "served@example.com").await;
    let (mut busy, mut timeouts) = (0, 0);
    for t in tasks {
        let resp = t.await.expect("task");
        match resp.status().as_u16() {
            503 => {
                assert_eq!(resp.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
                let body: Value = resp.json().await.expect("JSON");
                assert!(body["detail"].as_str().unwrap_or_default().contains("busy"), "{body}");
                busy += 1;
            }
            504 => timeouts += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(busy >= 1 && timeouts >= 1 && busy + timeouts == 6, "busy {busy}, timeouts {timeouts}");
    server.get_anon("/healthz").await.expect(200);
}
