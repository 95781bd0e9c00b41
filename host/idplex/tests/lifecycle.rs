//! The user lifecycle end to end, against `idplex serve` over real HTTP on loopback and the CLI
//! on the same database: a user deactivated over SCIM loses its API token and session on the
//! very next request; the SCIM delete policy and the sync log through the admin API and the CLI;
//! user API tokens through the CLI.

use idplex_store::{
    NewDirectoryUser, ScimResourceType, Store, SyncLogEntry, SyncOperation, SyncOutcome,
};
use idplex_tests::{Resp, Server, TestEnv};
use reqwest::Method;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_idplex");

async fn scim_secret(env: &TestEnv, connection: &str) -> String {
    let v = env.cli_json(&["scim-token", "create", "--connection", connection]).await.ok_json();
    v["secret"].as_str().unwrap().to_string()
}

async fn scim(server: &Server, method: Method, path: &str, token: &str, body: &Value) -> (u16, Value) {
    let resp = server
        .request(method, path, Some(token))
        .header("content-type", "application/scim+json")
        .body(body.to_string())
        .send()
        .await
        .expect("HTTP request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn set_active(active: bool) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
           "Operations": [{"op": "replace", "path": "active", "value": active}]})
}

/// `GET /api/v1/me` with a bearer token, or with the session cookie.
async fn me(server: &Server, bearer: Option<&str>, cookie: Option<&str>) -> Resp {
    let mut rb = server.request(Method::GET, "/api/v1/me", bearer);
    if let Some(c) = cookie {
        rb = rb.header("cookie", format!("theme=dark; {c}"));
    }
    Server::send(rb).await
}

async fn admin(server: &Server, method: Method, path: &str, body: Option<&Value>) -> Resp {
    let mut rb = server.request(method, path, server.admin_token.as_deref());
    if let Some(b) = body {
        rb = rb.json(b);
    }
    Server::send(rb).await
}

/// The test's own handle on the server's database.
async fn store(env: &TestEnv) -> Store {
    Store::open(env.db_url()).await.expect("open the test database")
}

#[tokio::test(flavor = "multi_thread")]
async fn deactivation_over_scim_stops_the_users_token_and_session_at_once() {
    let env = TestEnv::new(BIN).await;
    let server = env.serve(&["--demo"]).await;
    let conn = server.create_connection(&json!({"name": "okta", "connector": "custom-saml", "version": "1.0.0"})).await;
    let scim_token = scim_secret(&env, &conn).await;
    let users = format!("/scim/v2/{conn}/Users");
    let (status, created) = scim(
        &server,
        Method::POST,
        &users,
        &scim_token,
        &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "ada@example.com", "active": true}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();

    // An admin issues an API token and a session; both are shown once.
    let r = admin(&server, Method::POST, &format!("/admin/v1/users/{id}/api-tokens"), Some(&json!({"label": "deploy script"}))).await;
    r.expect(201);
    let token = r.body["secret"].as_str().unwrap().to_string();
    assert!(token.starts_with("idp_uat_"));
    let token_id = r.body["token"]["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["token"]["label"], "deploy script");
    let r = admin(&server, Method::POST, &format!("/admin/v1/users/{id}/sessions"), None).await;
    r.expect(201);
    let cookie = r.body["cookie"].as_str().unwrap().to_string();
    assert!(cookie.starts_with("idplex_session=idp_ses_"), "{cookie}");

    let r = me(&server, Some(&token), None).await;
    r.expect(200);
    assert_eq!(r.body, json!({"id": id, "userName": "ada@example.com", "active": true, "connection": conn}));
    me(&server, None, Some(&cookie)).await.expect(200);

    // Without credentials, or with wrong ones: 401, and the same answer for every wrong one.
    let r = me(&server, None, None).await;
    r.expect(401);
    assert_eq!(r.error_code(), "unauthorized");
    let wrong = me(&server, Some("idp_uat_nope"), None).await;
    wrong.expect(401);
    me(&server, Some(&format!("idp_uat_{}", "0".repeat(64))), None).await.expect(401);
    me(&server, None, Some("idplex_session=idp_ses_nope")).await.expect(401);
    // An admin token is not a user token.
    me(&server, server.admin_token.as_deref(), None).await.expect(401);

    // The IdP deactivates the user: the very next request with either credential is refused.
    let (status, body) = scim(&server, Method::PATCH, &format!("{users}/{id}"), &scim_token, &set_active(false)).await;
    assert_eq!(status, 200, "{body}");
    let r = me(&server, Some(&token), None).await;
    r.expect(401);
    assert_eq!(r.body, wrong.body, "does not reveal that the token exists");
    me(&server, None, Some(&cookie)).await.expect(401);
    let r = admin(&server, Method::GET, &format!("/admin/v1/users/{id}/sessions"), None).await;
    r.expect(200);
    assert_eq!(r.body["sessions"][0]["end_reason"], "user_deactivated", "{}", r.body);
    // Nothing new is issued while inactive.
    admin(&server, Method::POST, &format!("/admin/v1/users/{id}/api-tokens"), Some(&json!({"label": "x"}))).await.expect(409);
    admin(&server, Method::POST, &format!("/admin/v1/users/{id}/sessions"), None).await.expect(409);

    // Reactivated: the API token works again; the session stays ended.
    let (status, body) = scim(&server, Method::PATCH, &format!("{users}/{id}"), &scim_token, &set_active(true)).await;
    assert_eq!(status, 200, "{body}");
    me(&server, Some(&token), None).await.expect(200);
    me(&server, None, Some(&cookie)).await.expect(401);

    // Admins see the token with its owner, never its secret; revocation is immediate.
    let r = admin(&server, Method::GET, &format!("/admin/v1/api-tokens?user={id}"), None).await;
    r.expect(200);
    let listed = &r.body["tokens"][0];
    assert_eq!((listed["id"].as_str(), listed["user_name"].as_str()), (Some(token_id.as_str()), Some("ada@example.com")));
    assert_eq!(listed["user_active"], true);
    assert!(listed["last_used_at"].is_i64(), "{listed}");
    assert!(token.starts_with(listed["prefix"].as_str().unwrap()));
    let text = r.body.to_string();
    assert!(!text.contains(&token) && !text.contains("hash"), "{text}");
    assert!(r.body["next"].is_null(), "one page: {}", r.body);
    // Paged: a second token, one per page, the newest first.
    admin(&server, Method::POST, &format!("/admin/v1/users/{id}/api-tokens"), Some(&json!({"label": "second"})))
        .await
        .expect(201);
    let first = admin(&server, Method::GET, &format!("/admin/v1/api-tokens?user={id}&limit=1"), None).await;
    first.expect(200);
    assert_eq!(first.body["tokens"][0]["label"], "second", "{}", first.body);
    let cursor = first.body["next"].as_str().expect("a next page").to_string();
    let second = admin(&server, Method::GET, &format!("/admin/v1/api-tokens?user={id}&limit=1&before={cursor}"), None).await;
    second.expect(200);
    assert_eq!(second.body["tokens"][0]["id"], token_id.as_str(), "{}", second.body);
    assert!(second.body["next"].is_null(), "{}", second.body);
    admin(&server, Method::GET, "/admin/v1/api-tokens?before=garbage", None).await.expect(400);
    admin(&server, Method::POST, &format!("/admin/v1/api-tokens/{token_id}/revoke"), None).await.expect(200);
    me(&server, Some(&token), None).await.expect(401);

    // Unknown users and tokens; bad bodies.
    admin(&server, Method::POST, "/admin/v1/users/nope/api-tokens", Some(&json!({"label": "x"}))).await.expect(404);
    admin(&server, Method::GET, "/admin/v1/users/nope/sessions", None).await.expect(404);
    admin(&server, Method::POST, "/admin/v1/api-tokens/uat_nope/revoke", None).await.expect(404);
    admin(&server, Method::POST, &format!("/admin/v1/users/{id}/api-tokens"), Some(&json!({"label": "x", "ttl_days": 0}))).await.expect(422);
    admin(&server, Method::POST, &format!("/admin/v1/users/{id}/api-tokens"), Some(&json!({}))).await.expect(400);
    // The admin routes need the admin token.
    Server::send(server.request(Method::GET, "/admin/v1/api-tokens", Some(&token))).await.expect(401);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_policy_sync_log_and_user_tokens_through_the_admin_api_and_the_cli() {
    let env = TestEnv::new(BIN).await;
    let server = env.serve(&["--demo"]).await;
    let conn = server.create_connection(&json!({"name": "okta", "connector": "custom-saml", "version": "1.0.0"})).await;
    let other = server.create_connection(&json!({"name": "entra", "connector": "custom-saml"})).await;

    // Delete policy: default deactivate, set over HTTP and from the CLI, listed.
    let r = admin(&server, Method::GET, &format!("/admin/v1/connections/{conn}"), None).await;
    assert_eq!(r.body["scim_delete_policy"], "deactivate", "{}", r.body);
    let path = format!("/admin/v1/connections/{conn}/scim-delete-policy");
    let r = admin(&server, Method::PUT, &path, Some(&json!({"policy": "delete"}))).await;
    r.expect(200);
    assert_eq!(r.body["scim_delete_policy"], "delete");
    let r = admin(&server, Method::PUT, &path, Some(&json!({"policy": "shred"}))).await;
    r.expect(422);
    assert!(r.message().contains("deactivate"), "{}", r.body);
    admin(&server, Method::PUT, "/admin/v1/connections/conn_nope/scim-delete-policy", Some(&json!({"policy": "delete"}))).await.expect(404);
    let out = env.cli(&["connection", "list"]).await;
    out.expect_code(0);
    assert!(out.stdout.lines().any(|l| l.starts_with(&conn) && l.contains("scim-delete=delete")), "{}", out.stdout);
    let v = env.cli_json(&["connection", "set-delete-policy", &conn, "deactivate"]).await.ok_json();
    assert_eq!(v["scim_delete_policy"], "deactivate");
    env.cli(&["connection", "set-delete-policy", "conn_nope", "delete"]).await.expect_code(4);
    env.cli(&["connection", "set-delete-policy", &conn, "shred"]).await.expect_code(2);

    // Sync log: entries recorded through the store (as the SCIM server does), read back.
    let store = store(&env).await;
    let base = SyncLogEntry {
        connection_id: conn.clone(),
        at: 1_732_000_000_000,
        method: "POST".into(),
        path: format!("/scim/v2/{conn}/Users"),
        resource_type: Some(ScimResourceType::User),
        resource_id: Some("u1".into()),
        operation: SyncOperation::Create,
        status: 201,
        outcome: SyncOutcome::Ok,
        scim_type: None,
        detail: None,
        duration_us: 800,
        user_agent: Some("Okta SCIM Client 1.0.0".into()),
    };
    store.record_sync(&base).await.unwrap();
    store
        .record_sync(&SyncLogEntry {
            at: base.at + 1000,
            method: "PATCH".into(),
            path: format!("/scim/v2/{conn}/Users/u2"),
            resource_id: Some("u2".into()),
            operation: SyncOperation::Patch,
            status: 409,
            outcome: SyncOutcome::ClientError,
            scim_type: Some("uniqueness".into()),
            detail: Some("user \"ada@example.com\" userName is already taken in this organization".into()),
            ..base.clone()
        })
        .await
        .unwrap();
    store
        .record_sync(&SyncLogEntry {
            at: base.at + 2000,
            operation: SyncOperation::Get,
            method: "GET".into(),
            status: 502,
            outcome: SyncOutcome::ConnectorError,
            detail: Some("connector custom-saml@1.0.0 trapped".into()),
            ..base.clone()
        })
        .await
        .unwrap();
    store.record_sync(&SyncLogEntry { connection_id: other.clone(), ..base.clone() }).await.unwrap();

    let log = format!("/admin/v1/connections/{conn}/sync-log");
    let r = admin(&server, Method::GET, &log, None).await;
    r.expect(200);
    let entries = r.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "{}", r.body);
    assert_eq!(r.body["next"], Value::Null);
    assert_eq!(entries[0]["outcome"], "connector_error");
    assert_eq!(entries[1]["scim_type"], "uniqueness");
    assert_eq!(entries[2]["operation"], "create");
    assert_eq!(entries[2]["user_agent"], "Okta SCIM Client 1.0.0");
    // Paging.
    let r = admin(&server, Method::GET, &format!("{log}?limit=2"), None).await;
    r.expect(200);
    assert_eq!(r.body["entries"].as_array().unwrap().len(), 2);
    let next = r.body["next"].as_str().unwrap().to_string();
    let r = admin(&server, Method::GET, &format!("{log}?limit=2&before={next}"), None).await;
    assert_eq!(r.body["entries"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["entries"][0]["operation"], "create");
    // Filters.
    let r = admin(&server, Method::GET, &format!("{log}?outcome=error"), None).await;
    assert_eq!(r.body["entries"].as_array().unwrap().len(), 2);
    let r = admin(&server, Method::GET, &format!("{log}?outcome=client_error&resource=u2"), None).await;
    assert_eq!(r.body["entries"].as_array().unwrap().len(), 1);
    admin(&server, Method::GET, &format!("{log}?outcome=bad"), None).await.expect(400);
    admin(&server, Method::GET, &format!("{log}?before=yesterday"), None).await.expect(400);
    admin(&server, Method::GET, "/admin/v1/connections/conn_nope/sync-log", None).await.expect(404);
    let r = admin(&server, Method::GET, &format!("/admin/v1/connections/{other}/sync-log"), None).await;
    assert_eq!(r.body["entries"].as_array().unwrap().len(), 1, "each directory sees its own log");

    // The CLI: a readable table, JSON, filters, exit codes.
    let out = env.cli(&["sync-log", &conn]).await;
    out.expect_code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", out.stdout);
    assert!(lines[0].starts_with("TIME"), "{}", out.stdout);
    assert!(lines[2].starts_with("2024-11-19T07:06:41.000Z"), "{}", out.stdout);
    for part in ["patch", &format!("PATCH /scim/v2/{conn}/Users/u2"), "409", "client_error", "uniqueness: user \"ada@example.com\""] {
        assert!(lines[2].contains(part), "{part} in {}", lines[2]);
    }
    let out = env.cli(&["sync-log", &conn, "--limit", "1"]).await;
    assert!(out.stdout.contains("(more: --before "), "{}", out.stdout);
    let v = env.cli_json(&["sync-log", &conn, "--outcome", "connector_error"]).await.ok_json();
    assert_eq!(v["entries"].as_array().unwrap().len(), 1);
    assert_eq!(v["entries"][0]["detail"], "connector custom-saml@1.0.0 trapped");
    env.cli(&["sync-log", "conn_nope"]).await.expect_code(4);
    env.cli(&["sync-log", &conn, "--outcome", "bad"]).await.expect_code(2);

    // User API tokens from the CLI.
    let ada = store
        .create_user(&NewDirectoryUser {
            connection_id: conn.clone(),
            user_name: "ada@example.com".into(),
            external_id: None,
            active: true,
            resource: json!({"userName": "ada@example.com"}),
        })
        .await
        .unwrap();
    let v = env.cli_json(&["user-token", "create", &ada.id, "--label", "backup job"]).await.ok_json();
    let secret = v["secret"].as_str().unwrap().to_string();
    let token_id = v["token"]["id"].as_str().unwrap().to_string();
    me(&server, Some(&secret), None).await.expect(200);
    let out = env.cli(&["user-token", "list"]).await;
    out.expect_code(0);
    assert!(out.stdout.contains(&token_id) && out.stdout.contains("backup job") && out.stdout.contains("ada@example.com"), "{}", out.stdout);
    assert!(!out.stdout.contains(&secret));
    let v = env.cli_json(&["user-token", "list", "--user", &ada.id]).await.ok_json();
    assert_eq!(v["tokens"].as_array().unwrap().len(), 1);
    let v = env.cli_json(&["user-token", "list", "--org", "elsewhere"]).await.ok_json();
    assert_eq!(v["tokens"].as_array().unwrap().len(), 0);
    env.cli(&["user-token", "revoke", &token_id]).await.expect_code(0);
    me(&server, Some(&secret), None).await.expect(401);
    env.cli(&["user-token", "revoke", "uat_nope"]).await.expect_code(4);
    env.cli(&["user-token", "create", "nope", "--label", "x"]).await.expect_code(4);
    store.set_user_active(&conn, &ada.id, false).await.unwrap();
    env.cli(&["user-token", "create", &ada.id, "--label", "x"]).await.expect_code(5);

    // Admins list a directory's users, soft-deleted ones included.
    let r = admin(&server, Method::GET, &format!("/admin/v1/connections/{conn}/users"), None).await;
    r.expect(200);
    assert_eq!(r.body["total"], 1);
    assert_eq!(r.body["users"][0]["active"], false);
    store.close().await;
}

/// What the SCIM handler itself records and enforces: every provisioning request lands in the
/// directory's sync log (with the error detail an admin can act on), and a SCIM DELETE follows
/// the directory's policy.
#[tokio::test(flavor = "multi_thread")]
async fn scim_requests_are_logged_and_delete_follows_the_directory_policy() {
    let env = TestEnv::new(BIN).await;
    let server = env.serve(&["--demo"]).await;
    let conn = server.create_connection(&json!({"name": "okta", "connector": "custom-saml", "version": "1.0.0"})).await;
    let token = scim_secret(&env, &conn).await;
    let users = format!("/scim/v2/{conn}/Users");
    let user = |name: &str| json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name});

    // Default policy: deactivate. The IdP sees the user gone; the admin still sees it.
    let (status, ada) = scim(&server, Method::POST, &users, &token, &user("ada@example.com")).await;
    assert_eq!(status, 201, "{ada}");
    let id = ada["id"].as_str().unwrap().to_string();
    let del = Server::send(server.request(Method::DELETE, &format!("{users}/{id}"), Some(&token))).await;
    del.expect(204);
    let get = Server::send(server.request(Method::GET, &format!("{users}/{id}"), Some(&token))).await;
    get.expect(404);
    let r = admin(&server, Method::GET, &format!("/admin/v1/users/{id}"), None).await;
    r.expect(200);
    assert_eq!(r.body["user"]["active"], false, "{}", r.body);
    assert!(!r.body["user"]["scim_deleted_at"].is_null(), "{}", r.body);
    // The same directory provisioning the userName again restores that user.
    let (status, again) = scim(&server, Method::POST, &users, &token, &user("ada@example.com")).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["id"], id.as_str());
    let r = admin(&server, Method::GET, &format!("/admin/v1/users/{id}"), None).await;
    assert_eq!(r.body["user"]["active"], true, "{}", r.body);
    assert!(r.body["user"]["scim_deleted_at"].is_null(), "{}", r.body);

    // Policy delete: gone for the admin too.
    admin(&server, Method::PUT, &format!("/admin/v1/connections/{conn}/scim-delete-policy"), Some(&json!({"policy": "delete"})))
        .await
        .expect(200);
    Server::send(server.request(Method::DELETE, &format!("{users}/{id}"), Some(&token))).await.expect(204);
    admin(&server, Method::GET, &format!("/admin/v1/users/{id}"), None).await.expect(404);

    // A bad request is logged with the detail that says what to fix.
    let bad = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "x@example.com", "shoeSize": 44});
    let (status, body) = scim(&server, Method::POST, &users, &token, &bad).await;
    assert_eq!(status, 400, "{body}");
    let log = idplex_tests::eventually(std::time::Duration::from_secs(5), "sync log entries", || async {
        let r = admin(&server, Method::GET, &format!("/admin/v1/connections/{conn}/sync-log"), None).await;
        r.expect(200);
        let entries = r.body["entries"].as_array().cloned().unwrap_or_default();
        (entries.len() >= 6).then_some(entries)
    })
    .await;
    let newest = &log[0];
    assert_eq!(newest["operation"], "create");
    assert_eq!(newest["status"], 400);
    assert_eq!(newest["outcome"], "client_error");
    assert!(newest["detail"].as_str().unwrap().contains("shoeSize"), "{newest}");
    let ops: Vec<&str> = log.iter().map(|e| e["operation"].as_str().unwrap()).collect();
    assert_eq!(ops, ["create", "delete", "create", "get", "delete", "create"], "{ops:?}");
    assert!(log.iter().all(|e| !e.to_string().contains(&token)), "the token never reaches the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_purge_frees_a_soft_deleted_users_name_for_another_directory() {
    let env = TestEnv::new(BIN).await;
    let server = env.serve(&["--demo"]).await;
    let okta = server.create_connection(&json!({"name": "okta", "connector": "custom-saml", "version": "1.0.0"})).await;
    let entra = server.create_connection(&json!({"name": "entra", "connector": "custom-saml", "version": "1.0.0"})).await;
    let (okta_token, entra_token) = (scim_secret(&env, &okta).await, scim_secret(&env, &entra).await);
    let bob = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "bob@example.com"});

    // Okta provisions and then deletes Bob: under the default policy he is only soft-deleted,
    // and keeps his userName, so Entra cannot provision the same person.
    let (status, created) = scim(&server, Method::POST, &format!("/scim/v2/{okta}/Users"), &okta_token, &bob).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let (_, api_token) = {
        let r = admin(&server, Method::POST, &format!("/admin/v1/users/{id}/api-tokens"), Some(&json!({"label": "x"}))).await;
        r.expect(201);
        (r.body["token"]["id"].as_str().unwrap().to_string(), r.body["secret"].as_str().unwrap().to_string())
    };
    Server::send(server.request(Method::DELETE, &format!("/scim/v2/{okta}/Users/{id}"), Some(&okta_token))).await.expect(204);
    let (status, body) = scim(&server, Method::POST, &format!("/scim/v2/{entra}/Users"), &entra_token, &bob).await;
    assert_eq!((status, body["scimType"].as_str()), (409, Some("uniqueness")), "{body}");

    // The admin purges him: gone for the admin too, his API token with him; an unknown id is a 404.
    let r = admin(&server, Method::DELETE, &format!("/admin/v1/users/{id}"), None).await;
    r.expect(200);
    assert_eq!(r.body["purged"]["user_name"], "bob@example.com", "{}", r.body);
    admin(&server, Method::GET, &format!("/admin/v1/users/{id}"), None).await.expect(404);
    admin(&server, Method::DELETE, &format!("/admin/v1/users/{id}"), None).await.expect(404);
    me(&server, Some(&api_token), None).await.expect(401);

    // Now Entra can provision Bob, as a new user.
    let (status, again) = scim(&server, Method::POST, &format!("/scim/v2/{entra}/Users"), &entra_token, &bob).await;
    assert_eq!(status, 201, "{again}");
    assert_ne!(again["id"], id.as_str());
}
