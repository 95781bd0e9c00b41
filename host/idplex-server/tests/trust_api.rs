//! The admin API of the trust policy and the trusted publisher keys (`/admin/v1/trust/…`), and
//! what an upload meets there: a module signed by a trusted key installs with its publisher
//! shown by `GET /connectors/{name}/{version}`; refusals are 422 with a specific code.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use idplex_bundled::testing::{ECHO_V1, ECHO_V2};
use idplex_hub::trust::{PublisherKey, append_signature};
use serde_json::{Value, json};
use tower::ServiceExt;

/// `POST /admin/v1/connectors` with `bytes` as the body.
async fn upload(env: &common::Env, token: &str, bytes: &[u8]) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(Method::POST)
        .uri("/admin/v1/connectors")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/wasm")
        .body(Body::from(bytes.to_vec()))
        .unwrap();
    let resp = env.app.clone().oneshot(request).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_trust_policy_and_keys_through_the_admin_api() {
    let env = common::env().await; // its policy allows unsigned modules (the fixtures are)
    let admin = env.admin_token().await;

    // The policy: set back to refuse both, one part at a time.
    let (status, policy) = env.admin(&admin, Method::PUT, "/trust/policy", Some(&json!({"unsigned": "refuse"}))).await;
    assert_eq!(status, StatusCode::OK, "{policy}");
    assert_eq!((policy["unsigned"].as_str(), policy["untrusted"].as_str()), (Some("refuse"), Some("refuse")));
    assert_eq!(policy["updated_by"], "admin-api");
    let (status, _) = env.admin(&admin, Method::PUT, "/trust/policy", Some(&json!({"unsigned": "maybe"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = env.admin(&admin, Method::PUT, "/trust/policy", Some(&json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, policy) = env.admin(&admin, Method::GET, "/trust/policy", None).await;
    assert_eq!(policy["unsigned"], "refuse");

    // Keys: add (201, then 200 again), list, a bad one (422).
    let (key, _) = PublisherKey::generate().unwrap();
    let line = key.public("acme").line();
    let (status, added) = env.admin(&admin, Method::POST, "/trust/keys", Some(&json!({"public_key": line}))).await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(added["fingerprint"], key.fingerprint());
    assert_eq!(added["publisher"], "acme");
    let (status, _) = env.admin(&admin, Method::POST, "/trust/keys", Some(&json!({"public_key": line}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, bad) = env.admin(&admin, Method::POST, "/trust/keys", Some(&json!({"public_key": "nope"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    let (_, keys) = env.admin(&admin, Method::GET, "/trust/keys", None).await;
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);

    // An unsigned upload is refused; a signed one installs and shows its publisher.
    let (status, refused) = upload(&env, &admin, ECHO_V2).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["error"], "unsigned_module");
    let signed = append_signature(ECHO_V1, &key, "acme", "echo", "1.0.0");
    let (status, report) = upload(&env, &admin, &signed).await;
    assert_eq!(status, StatusCode::CREATED, "{report}");
    assert_eq!(report["publisher"]["admitted_as"], "trusted");
    let (_, module) = env.admin(&admin, Method::GET, "/connectors/echo/1.0.0", None).await;
    assert_eq!(module["publisher"], json!({"admitted_as": "trusted", "publisher": "acme", "fingerprint": key.fingerprint()}));

    // Removed: 200, then 404; a later signed upload is refused as untrusted.
    let path = format!("/trust/keys/{}", key.fingerprint());
    let (status, _) = env.admin(&admin, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = env.admin(&admin, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, refused) = upload(&env, &admin, &append_signature(ECHO_V2, &key, "acme", "echo", "2.0.0")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["error"], "untrusted_publisher");

    // The changes are in the events.
    let (_, events) = env.admin(&admin, Method::GET, "/events", None).await;
    let kinds: Vec<&str> = events["events"].as_array().unwrap().iter().filter_map(|e| e["kind"].as_str()).collect();
    for kind in ["trust_policy_set", "trust_key_added", "trust_key_removed", "install_refused"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
}
