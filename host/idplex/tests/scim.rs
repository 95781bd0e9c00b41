//! The SCIM surface of a connection: per-connection bearer tokens (issued by the CLI, checked by
//! the running server), RFC 7644 errors, and the discovery endpoints clients start from.

use idplex_tests::{Server, TestEnv};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_idplex");

async fn scim_token(env: &TestEnv, connection: &str) -> (String, String) {
    let v = env.cli_json(&["scim-token", "create", "--connection", connection]).await.ok_json();
    (v["token"]["id"].as_str().unwrap().to_string(), v["secret"].as_str().unwrap().to_string())
}

async fn scim_get(server: &Server, path: &str, token: Option<&str>) -> (u16, String, Option<String>, serde_json::Value) {
    let resp = server.request(reqwest::Method::GET, path, token).send().await.expect("HTTP request");
    let status = resp.status().as_u16();
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let www = resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = resp.json().await.expect("JSON body");
    (status, ct, www, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn scim_tokens_are_per_connection_and_discovery_describes_the_server() {
    let env = TestEnv::new(BIN).await;
    let server = env.serve(&["--demo"]).await;
    let a = server.create_connection(&json!({"name": "okta", "connector": "custom-saml", "version": "1.0.0"})).await;
    let b = server.create_connection(&json!({"name": "entra", "connector": "custom-saml", "version": "1.0.0"})).await;
    let (_, secret_a) = scim_token(&env, &a).await;
    let (_, secret_b) = scim_token(&env, &b).await;
    let spc = format!("/scim/v2/{a}/ServiceProviderConfig");

    // No token, a wrong token, another connection's token: 401 with an RFC 7644 error body.
    for (what, token) in [("no token", None), ("garbage", Some("nope")), ("B's token on A", Some(secret_b.as_str()))] {
        let (status, ct, www, body) = scim_get(&server, &spc, token).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(ct, "application/scim+json", "{what}");
        assert!(www.is_some_and(|w| w.starts_with("Bearer")), "{what}: WWW-Authenticate");
        assert_eq!(body["schemas"], json!(["urn:ietf:params:scim:api:messages:2.0:Error"]), "{what}");
        assert_eq!(body["status"], "401", "{what}");
    }

    // The right token: discovery documents.
    let (status, ct, _, body) = scim_get(&server, &spc, Some(&secret_a)).await;
    assert_eq!((status, ct.as_str()), (200, "application/scim+json"), "{body}");
    assert_eq!(body["patch"]["supported"], true);
    assert_eq!(body["bulk"]["supported"], false);
    assert_eq!(body["authenticationSchemes"][0]["type"], "oauthbearertoken");

    let (status, _, _, body) = scim_get(&server, &format!("/scim/v2/{a}/ResourceTypes"), Some(&secret_a)).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = body["Resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["User", "Group"]);
    assert!(body["Resources"][0]["meta"]["location"].as_str().unwrap().starts_with(&format!("{}/scim/v2/{a}/", server.base)));

    let (status, _, _, body) = scim_get(&server, &format!("/scim/v2/{a}/Schemas"), Some(&secret_a)).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = body["Resources"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"urn:ietf:params:scim:schemas:core:2.0:User"), "{ids:?}");
    assert!(ids.contains(&"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"), "{ids:?}");

    let (status, _, _, body) =
        scim_get(&server, &format!("/scim/v2/{a}/Schemas/urn:ietf:params:scim:schemas:core:2.0:Group"), Some(&secret_a)).await;
    assert_eq!(status, 200);
    assert_eq!(body["name"], "Group");
    let (status, _, _, body) = scim_get(&server, &format!("/scim/v2/{a}/ResourceTypes/Device"), Some(&secret_a)).await;
    assert_eq!(status, 404);
    assert!(body["detail"].as_str().unwrap().contains("Device"));
    // An endpoint that does not exist answers with a SCIM error too.
    let (status, ct, _, body) = scim_get(&server, &format!("/scim/v2/{a}/Devices"), Some(&secret_a)).await;
    assert_eq!((status, ct.as_str()), (404, "application/scim+json"), "{body}");
    assert_eq!(body["status"], "404");
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_keeps_the_old_token_for_the_overlap_and_revocation_is_immediate() {
    let env = TestEnv::new(BIN).await;
    let server = env.serve(&["--demo"]).await;
    let a = server.create_connection(&json!({"name": "onelogin", "connector": "custom-saml", "version": "1.0.0"})).await;
    let (old_id, old_secret) = scim_token(&env, &a).await;
    let spc = format!("/scim/v2/{a}/ServiceProviderConfig");
    assert_eq!(scim_get(&server, &spc, Some(&old_secret)).await.0, 200);

    // Rotation with a 24 h overlap: both work.
    let v = env.cli_json(&["scim-token", "rotate", "--connection", &a, &old_id]).await.ok_json();
    let (new_id, new_secret) = (v["token"]["id"].as_str().unwrap().to_string(), v["secret"].as_str().unwrap().to_string());
    assert_eq!(v["token"]["rotated_from"], old_id.as_str());
    assert_eq!(scim_get(&server, &spc, Some(&old_secret)).await.0, 200);
    assert_eq!(scim_get(&server, &spc, Some(&new_secret)).await.0, 200);

    // Rotation with no overlap: the replaced token stops at once.
    let v = env.cli_json(&["scim-token", "rotate", "--connection", &a, &new_id, "--overlap-hours", "0"]).await.ok_json();
    let newest = v["secret"].as_str().unwrap().to_string();
    assert_eq!(scim_get(&server, &spc, Some(&new_secret)).await.0, 401);
    assert_eq!(scim_get(&server, &spc, Some(&newest)).await.0, 200);

    // Revocation through the admin API: immediate.
    let newest_id = v["token"]["id"].as_str().unwrap().to_string();
    let r = server.post_json(&format!("/admin/v1/connections/{a}/scim-tokens/{newest_id}/revoke"), &json!({})).await;
    r.expect(200);
    assert_eq!(scim_get(&server, &spc, Some(&newest)).await.0, 401);

    // Listing shows ids and dates, never a secret or a hash.
    let list = server.get(&format!("/admin/v1/connections/{a}/scim-tokens")).await;
    list.expect(200);
    let text = list.body.to_string();
    assert_eq!(list.body["tokens"].as_array().unwrap().len(), 3);
    assert!(!text.contains("idp_scim_") && !text.contains("hash"), "{text}");

    // Unknown connection: the admin API says so.
    server.get("/admin/v1/connections/conn_nope/scim-tokens").await.expect(404);
}

async fn scim_send(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<&serde_json::Value>,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let mut rb = server.request(method, path, Some(token));
    if let Some(b) = body {
        rb = rb.header("content-type", "application/scim+json").body(b.to_string());
    }
    let resp = rb.send().await.expect("HTTP request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    (status, headers, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

/// A running server with two directories (Okta- and Entra-named) and a SCIM token for each.
async fn two_directories() -> (TestEnv, Server, (String, String), (String, String)) {
    let env = TestEnv::new(BIN).await;
    let server = env.serve(&["--demo"]).await;
    let a = server.create_connection(&json!({"name": "okta", "connector": "custom-saml", "version": "1.0.0"})).await;
    let b = server.create_connection(&json!({"name": "entra", "connector": "custom-saml", "version": "1.0.0"})).await;
    let (_, ta) = scim_token(&env, &a).await;
    let (_, tb) = scim_token(&env, &b).await;
    (env, server, (a, ta), (b, tb))
}

#[tokio::test(flavor = "multi_thread")]
async fn users_are_created_found_patched_replaced_and_deleted_through_the_connector() {
    use reqwest::Method;
    let (env, server, (a, ta), (b, tb)) = two_directories().await;
    let users = format!("/scim/v2/{a}/Users");

    // Okta's create (from its documentation).
    let okta_user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "Test.User@okta.local",
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": true, "value": "test.user@okta.local", "type": "work"}],
        "displayName": "Test User",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": true
    });
    let (status, headers, created) = scim_send(&server, Method::POST, &users, &ta, Some(&okta_user)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["userName"], "Test.User@okta.local");
    assert_eq!(created["meta"]["resourceType"], "User");
    assert_eq!(created["meta"]["version"], "W/\"1\"");
    assert!(created.get("password").is_none(), "password is never returned: {created}");
    // ... nor stored: the database file never sees it.
    if !env.is_postgres() {
        let mut bytes = Vec::new();
        for entry in std::fs::read_dir(env.data_dir()).unwrap().flatten() {
            if entry.file_name().to_string_lossy().starts_with("idplex.db") {
                bytes.extend(std::fs::read(entry.path()).unwrap());
            }
        }
        assert!(!bytes.is_empty());
        assert!(!bytes.windows(8).any(|w| w == b"1mz050nq"), "the password reached the database");
    }
    assert_eq!(headers["location"].to_str().unwrap(), format!("{}{users}/{id}", server.base));
    assert_eq!(headers["etag"].to_str().unwrap(), "W/\"1\"");

    // userName is unique per organization, case-insensitively: 409 uniqueness, also via B.
    let mut dup = okta_user.clone();
    dup["userName"] = json!("test.user@OKTA.local");
    let (status, _, body) = scim_send(&server, Method::POST, &users, &ta, Some(&dup)).await;
    assert_eq!((status, body["scimType"].as_str()), (409, Some("uniqueness")), "{body}");
    let (status, _, _) = scim_send(&server, Method::POST, &format!("/scim/v2/{b}/Users"), &tb, Some(&dup)).await;
    assert_eq!(status, 409);

    // Okta's lookup: filter on userName, case-insensitive; nothing for an unknown name.
    let q = format!("{users}?filter=userName%20eq%20%22test.user%40okta.local%22&startIndex=1&count=100");
    let (status, _, list) = scim_send(&server, Method::GET, &q, &ta, None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["totalResults"], 1);
    assert_eq!(list["Resources"][0]["id"], id.as_str());
    let q = format!("{users}?filter=userName%20eq%20%22nobody%40okta.local%22");
    assert_eq!(scim_send(&server, Method::GET, &q, &ta, None).await.2["totalResults"], 0);
    // A filter outside the indexes is still evaluated; an invalid one is a 400 invalidFilter.
    let q = format!("{users}?filter=emails%5Btype%20eq%20%22work%22%5D.value%20co%20%22okta%22");
    assert_eq!(scim_send(&server, Method::GET, &q, &ta, None).await.2["totalResults"], 1);
    let q = format!("{users}?filter=userName%20zz%20%22x%22");
    let (status, _, body) = scim_send(&server, Method::GET, &q, &ta, None).await;
    assert_eq!((status, body["scimType"].as_str()), (400, Some("invalidFilter")), "{body}");

    // Another connection cannot see the user, even with a valid token of its own.
    let (status, _, _) = scim_send(&server, Method::GET, &format!("/scim/v2/{b}/Users/{id}"), &tb, None).await;
    assert_eq!(status, 404);

    // Deactivate with PATCH (Okta's path-less replace of `active`), then a stale If-Match.
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"active": false}}]});
    let (status, headers, patched) = scim_send(&server, Method::PATCH, &format!("{users}/{id}"), &ta, Some(&patch)).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["active"], false);
    assert_eq!(headers["etag"].to_str().unwrap(), "W/\"2\"");
    let stale = server
        .request(Method::PATCH, &format!("{users}/{id}"), Some(&ta))
        .header("content-type", "application/scim+json")
        .header("if-match", "W/\"1\"")
        .body(patch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status().as_u16(), 412);

    // Replace (Okta's PUT), then delete; the user is gone.
    let mut put = okta_user.clone();
    put["name"]["givenName"] = json!("Another");
    put["active"] = json!(true);
    let (status, _, replaced) = scim_send(&server, Method::PUT, &format!("{users}/{id}"), &ta, Some(&put)).await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["name"]["givenName"], "Another");
    assert_eq!(replaced["active"], true);
    // A DELETE with a stale If-Match is refused and changes nothing; with the current one, or
    // none, it goes through (RFC 7644 §3.14).
    let delete_if = |etag: &'static str| {
        server.request(Method::DELETE, &format!("{users}/{id}"), Some(&ta)).header("if-match", etag).send()
    };
    let stale = delete_if("W/\"2\"").await.unwrap();
    assert_eq!(stale.status().as_u16(), 412);
    let body: serde_json::Value = stale.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("version 3"), "{body}");
    let (status, _, still) = scim_send(&server, Method::GET, &format!("{users}/{id}"), &ta, None).await;
    assert_eq!((status, &still["active"]), (200, &json!(true)), "a refused DELETE changes nothing: {still}");
    assert_eq!(delete_if("W/\"3\"").await.unwrap().status().as_u16(), 204);
    let (status, _, body) = scim_send(&server, Method::GET, &format!("{users}/{id}"), &ta, None).await;
    assert_eq!(status, 404, "{body}");

    // Malformed JSON: a 400 invalidSyntax that says where, and nothing is written.
    let resp = server
        .request(Method::POST, &users, Some(&ta))
        .header("content-type", "application/scim+json")
        .body("{\"userName\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["scimType"], "invalidSyntax");
    assert_eq!(scim_send(&server, Method::GET, &users, &ta, None).await.2["totalResults"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_hold_members_and_searches_sort_and_page() {
    use reqwest::Method;
    let (_env, server, (a, ta), (b, tb)) = two_directories().await;
    let base = format!("/scim/v2/{a}");
    let patch_op = |ops: serde_json::Value| json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops});

    let mut ids = Vec::new();
    for name in ["carol@x.test", "alice@x.test", "bob@x.test"] {
        let user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name});
        let (status, _, body) = scim_send(&server, Method::POST, &format!("{base}/Users"), &ta, Some(&user)).await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    let (carol, alice, bob) = (&ids[0], &ids[1], &ids[2]);
    let (_, _, foreign) = scim_send(
        &server,
        Method::POST,
        &format!("/scim/v2/{b}/Users"),
        &tb,
        Some(&json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "dave@x.test"})),
    )
    .await;

    // Okta's group push: create with a member.
    let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Engineering",
        "members": [{"value": carol, "display": "carol@x.test"}]});
    let (status, headers, created) = scim_send(&server, Method::POST, &format!("{base}/Groups"), &ta, Some(&group)).await;
    assert_eq!(status, 201, "{created}");
    let gid = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["meta"]["resourceType"], "Group");
    assert_eq!(created["members"][0]["value"], carol.as_str());
    assert_eq!(headers["location"].to_str().unwrap(), format!("{}{base}/Groups/{gid}", server.base));

    // Entra's lookup before create: displayName eq, members left out.
    let q = format!("{base}/Groups?filter=displayName%20eq%20%22engineering%22&excludedAttributes=members");
    let (status, _, list) = scim_send(&server, Method::GET, &q, &ta, None).await;
    assert_eq!((status, list["totalResults"].as_i64()), (200, Some(1)), "{list}");
    assert!(list["Resources"][0].get("members").is_none(), "{list}");

    // Okta adds members (value array), Entra removes one with a value filter.
    let add = patch_op(json!([{"op": "add", "path": "members", "value": [{"value": alice}, {"value": bob}]}]));
    let (status, _, g) = scim_send(&server, Method::PATCH, &format!("{base}/Groups/{gid}"), &ta, Some(&add)).await;
    assert_eq!(status, 200, "{g}");
    assert_eq!(g["members"].as_array().unwrap().len(), 3);
    let remove = patch_op(json!([{"op": "Remove", "path": format!("members[value eq \"{carol}\"]")}]));
    let (status, headers, g) = scim_send(&server, Method::PATCH, &format!("{base}/Groups/{gid}"), &ta, Some(&remove)).await;
    assert_eq!(status, 200, "{g}");
    let members: Vec<&str> = g["members"].as_array().unwrap().iter().map(|m| m["value"].as_str().unwrap()).collect();
    assert!(members.contains(&alice.as_str()) && members.contains(&bob.as_str()) && !members.contains(&carol.as_str()));
    assert_eq!(headers["etag"].to_str().unwrap(), "W/\"3\"");

    // A member is shown in the user's read-only `groups`; membership filters work.
    let (_, _, u) = scim_send(&server, Method::GET, &format!("{base}/Users/{alice}"), &ta, None).await;
    assert_eq!(u["groups"][0]["value"], gid.as_str(), "{u}");
    assert_eq!(u["groups"][0]["display"], "Engineering");
    let q = format!("{base}/Groups?filter=members%20eq%20%22{bob}%22");
    assert_eq!(scim_send(&server, Method::GET, &q, &ta, None).await.2["totalResults"], 1);

    // Members must be users of this directory; nested groups are refused; nothing changes.
    let other = patch_op(json!([{"op": "add", "path": "members", "value": [{"value": foreign["id"]}]}]));
    let (status, _, body) = scim_send(&server, Method::PATCH, &format!("{base}/Groups/{gid}"), &ta, Some(&other)).await;
    assert_eq!((status, body["scimType"].as_str()), (400, Some("invalidValue")), "{body}");
    let nested = patch_op(json!([{"op": "add", "path": "members", "value": [{"value": gid, "type": "Group"}]}]));
    let (status, _, body) = scim_send(&server, Method::PATCH, &format!("{base}/Groups/{gid}"), &ta, Some(&nested)).await;
    assert_eq!(status, 400, "{body}");
    let (_, _, g) = scim_send(&server, Method::GET, &format!("{base}/Groups/{gid}"), &ta, None).await;
    assert_eq!(g["members"].as_array().unwrap().len(), 2);
    // Another directory cannot see the group.
    assert_eq!(scim_send(&server, Method::GET, &format!("/scim/v2/{b}/Groups/{gid}"), &tb, None).await.0, 404);

    // Sorting and paging: userName descending, two per page, stable.
    let q = format!("{base}/Users?sortBy=userName&sortOrder=descending&count=2&startIndex=2");
    let (_, _, page) = scim_send(&server, Method::GET, &q, &ta, None).await;
    assert_eq!(page["totalResults"], 3);
    assert_eq!(page["itemsPerPage"], 2);
    let names: Vec<&str> = page["Resources"].as_array().unwrap().iter().map(|r| r["userName"].as_str().unwrap()).collect();
    assert_eq!(names, ["bob@x.test", "alice@x.test"]);

    // POST /.search, on a resource type and from the root.
    let search = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": "userName sw \"a\"", "attributes": ["userName"]});
    let (status, _, found) = scim_send(&server, Method::POST, &format!("{base}/Users/.search"), &ta, Some(&search)).await;
    assert_eq!((status, found["totalResults"].as_i64()), (200, Some(1)), "{found}");
    assert!(found["Resources"][0].get("groups").is_none(), "attributes honoured: {found}");
    let root = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "sortBy": "id"});
    let (status, _, found) = scim_send(&server, Method::POST, &format!("{base}/.search"), &ta, Some(&root)).await;
    assert_eq!((status, found["totalResults"].as_i64()), (200, Some(4)), "{found}");
    let bad = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": "nope eq"});
    let (status, _, body) = scim_send(&server, Method::POST, &format!("{base}/.search"), &ta, Some(&bad)).await;
    assert_eq!((status, body["scimType"].as_str()), (400, Some("invalidFilter")), "{body}");

    // PUT replaces the members too; DELETE removes the group, not its users.
    let put = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Eng", "members": [{"value": carol}]});
    let (status, _, g) = scim_send(&server, Method::PUT, &format!("{base}/Groups/{gid}"), &ta, Some(&put)).await;
    assert_eq!((status, g["displayName"].as_str()), (200, Some("Eng")), "{g}");
    assert_eq!(g["members"].as_array().unwrap().len(), 1);
    let stale = server
        .request(Method::DELETE, &format!("{base}/Groups/{gid}"), Some(&ta))
        .header("if-match", "W/\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status().as_u16(), 412, "the group changed since version 1");
    assert_eq!(scim_send(&server, Method::GET, &format!("{base}/Groups/{gid}"), &ta, None).await.0, 200);
    assert_eq!(scim_send(&server, Method::DELETE, &format!("{base}/Groups/{gid}"), &ta, None).await.0, 204);
    assert_eq!(scim_send(&server, Method::GET, &format!("{base}/Groups/{gid}"), &ta, None).await.0, 404);
    let (status, _, u) = scim_send(&server, Method::GET, &format!("{base}/Users/{carol}"), &ta, None).await;
    assert_eq!(status, 200);
    assert!(u.get("groups").is_none(), "{u}");

    // An oversized body is a SCIM 413 that says what to do.
    let huge = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "x".repeat(2 << 20)});
    let (status, _, body) = scim_send(&server, Method::POST, &format!("{base}/Users"), &ta, Some(&huge)).await;
    assert_eq!(status, 413, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("exceeds"), "{body}");
}
