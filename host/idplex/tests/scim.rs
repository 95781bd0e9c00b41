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
