//! The connector contract as it evolves (`idplex:connector@1.1.0`), through the HTTP router in
//! process, with real components:
//!
//! * a component built against the released 1.0 contract (`connectors/testing/contract-1-0`,
//!   from the frozen `wit/v1.0.0`) installs and serves SCIM next to 1.1 ones, and its *test
//!   connection* says the check is not available;
//! * a 1.1 connector's declared SCIM schema extension (okta's custom app attributes, configured
//!   per connection) is advertised in `/Schemas` and `/ResourceTypes`, its attributes are
//!   type-checked, stored and returned; another connection does not see it;
//! * a declaration the host cannot use refuses the activation or config change that would
//!   bind it, naming the attribute, and the connection keeps serving as it was;
//! * *test connection* reports a connector's checks, and a connector fault there is an error
//!   and an event;
//! * the host knows only the RFC's schema URNs: a pre-RFC one a connector passes on is refused;
//! * a 1.3 connector's `scim-reads` (the kinds whose `GET`s it takes as sent) makes the host
//!   decode those reads itself, per binding, and only those.

use axum::http::{Method, StatusCode};
use idplex_bundled::testing::{CONTRACT_1_0, ECHO_V1, HOSTILE};
use idplex_hub::store::{ConnectionUpdate, NewConnection};
use serde_json::{Value, json};

mod common;
use common::env;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ACME: &str = "urn:example:params:scim:schemas:extension:acme:2.0:User";

fn okta() -> &'static [u8] {
    idplex_bundled::FIRST_PARTY.iter().find(|c| c.crate_name == "okta").expect("okta is bundled").component
}

fn acme_config() -> Value {
    json!({"scim_extension_urn": ACME, "scim_extension_attributes": "costCenter, badge:integer, hired:dateTime"})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_built_against_contract_1_0_runs_next_to_current_ones() {
    let env = env().await;
    let (old, old_token) = env.connection("legacy", CONTRACT_1_0, json!({})).await;
    let (new, new_token) = env.connection("okta", okta(), json!({})).await;
    let admin = env.admin_token().await;

    let (status, module) = env.admin(&admin, Method::GET, "/connectors/contract-1-0/1.0.0", None).await;
    assert_eq!(status, StatusCode::OK, "{module}");
    assert_eq!(module["contract_version"], "1.0.0", "{module}");
    let (_, okta) = env.admin(&admin, Method::GET, "/connectors/okta", None).await;
    let okta_contract = okta["versions"][0]["contract_version"].as_str().map(str::to_string);
    assert_eq!(okta_contract.as_deref(), Some(idplex_hub::runtime::CONTRACT_VERSION), "{okta}");

    for (conn, token, name) in [(&old, &old_token, "ada@example.com"), (&new, &new_token, "grace@example.com")] {
        let body = json!({"schemas": [USER], "userName": name, "active": true});
        let (status, created) = env.send(token, Method::POST, &format!("/scim/v2/{conn}/Users"), Some(&body)).await;
        assert_eq!(status, StatusCode::CREATED, "{conn}: {created}");
        let id = created["id"].as_str().expect("id");
        let (status, got) = env.send(token, Method::GET, &format!("/scim/v2/{conn}/Users/{id}"), None).await;
        assert_eq!((status, got["userName"].as_str()), (StatusCode::OK, Some(name)), "{got}");
        // The 1.0 component declares no extensions: discovery is the core.
        let (_, types) = env.send(token, Method::GET, &format!("/scim/v2/{conn}/ResourceTypes/User"), None).await;
        assert_eq!(types["schemaExtensions"].as_array().map(Vec::len), Some(1), "enterprise only: {types}");
    }

    let (status, report) = env.admin(&admin, Method::POST, &format!("/connections/{old}/test"), None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!((report["available"].as_bool(), report["ok"].as_bool()), (Some(false), Some(false)), "{report}");
    assert!(report["message"].as_str().unwrap().contains("contract 1.0.0, before test-connection (1.1)"), "{report}");

    let (status, report) = env.admin(&admin, Method::POST, &format!("/connections/{new}/test"), None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!((report["available"].as_bool(), report["ok"].as_bool()), (Some(true), Some(true)), "{report}");
    assert_eq!(report["contract_version"].as_str().map(str::to_string), okta_contract);
    let names: Vec<&str> = report["checks"].as_array().unwrap().iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["config", "scim extension", "reachability"], "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_declared_schema_extension_is_advertised_checked_stored_and_kept_to_its_connection() {
    let env = env().await;
    let (conn, token) = env.connection("okta-acme", okta(), acme_config()).await;
    let (plain, plain_token) = env.connection("okta-plain", okta(), json!({})).await;

    let (_, schemas) = env.send(&token, Method::GET, &format!("/scim/v2/{conn}/Schemas"), None).await;
    let ids: Vec<&str> = schemas["Resources"].as_array().unwrap().iter().filter_map(|s| s["id"].as_str()).collect();
    assert!(ids.contains(&ACME), "{ids:?}");
    let (status, acme) = env.send(&token, Method::GET, &format!("/scim/v2/{conn}/Schemas/{ACME}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let badge = acme["attributes"].as_array().unwrap().iter().find(|a| a["name"] == "badge").expect("badge");
    assert_eq!(badge["type"], "integer");
    let (_, user_type) = env.send(&token, Method::GET, &format!("/scim/v2/{conn}/ResourceTypes/User"), None).await;
    assert!(user_type["schemaExtensions"].as_array().unwrap().iter().any(|e| e["schema"] == ACME), "{user_type}");

    let body = json!({"schemas": [USER, ACME], "userName": "ada@example.com", "active": true,
                      ACME: {"costCenter": "CC-7", "badge": 42, "hired": "2024-03-01T09:00:00Z"}});
    let (status, created) = env.send(&token, Method::POST, &format!("/scim/v2/{conn}/Users"), Some(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap();
    let (_, got) = env.send(&token, Method::GET, &format!("/scim/v2/{conn}/Users/{id}"), None).await;
    assert_eq!(got[ACME]["badge"], 42, "{got}");
    assert_eq!(got[ACME]["costCenter"], "CC-7", "{got}");
    assert!(got["schemas"].as_array().unwrap().iter().any(|s| s == ACME), "{got}");
    // A PATCH through the extension's path works like a core attribute's.
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                       "Operations": [{"op": "replace", "path": format!("{ACME}:costCenter"), "value": "CC-9"}]});
    let (status, patched) = env.send(&token, Method::PATCH, &format!("/scim/v2/{conn}/Users/{id}"), Some(&patch)).await;
    assert_eq!((status, &patched[ACME]["costCenter"]), (StatusCode::OK, &json!("CC-9")), "{patched}");

    // Checked like core attributes: a wrong type, an attribute it does not define.
    let wrong = json!({"schemas": [USER, ACME], "userName": "bob@example.com", ACME: {"badge": "forty-two"}});
    let (status, error) = env.send(&token, Method::POST, &format!("/scim/v2/{conn}/Users"), Some(&wrong)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(error["detail"].as_str().unwrap().contains("badge"), "{error}");
    let unknown = json!({"schemas": [USER, ACME], "userName": "bob@example.com", ACME: {"shoeSize": 44}});
    let (status, error) = env.send(&token, Method::POST, &format!("/scim/v2/{conn}/Users"), Some(&unknown)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(error["detail"].as_str().unwrap().contains("shoeSize"), "{error}");

    // Another connection of the same connector without the config knows nothing of it.
    let (_, schemas) = env.send(&plain_token, Method::GET, &format!("/scim/v2/{plain}/Schemas"), None).await;
    assert!(!schemas.to_string().contains(ACME), "{schemas}");
    let (status, error) = env.send(&plain_token, Method::POST, &format!("/scim/v2/{plain}/Users"), Some(&body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(error["detail"].as_str().unwrap().contains(ACME), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unusable_declaration_refuses_the_binding_and_the_connection_keeps_serving() {
    let env = env().await;
    let report = env.hub.install(HOSTILE).await.expect("install");
    let conn = env
        .hub
        .create_connection(NewConnection {
            id: None,
            org_id: "default".into(),
            name: "bad-schemas".into(),
            connector_name: report.name.clone(),
            config: json!({"mode": "schemas_bad"}),
            egress_allow: Vec::new(),
            limits: json!({}),
        })
        .await
        .expect("connection");
    let e = env.hub.activate(&conn.id, &report.version, "test").await.expect_err("refused");
    let message = e.to_string();
    assert!(message.contains("schema extensions") && message.contains("attribute hue: unknown type \"colour\""), "{message}");
    assert_eq!(env.hub.connection(&conn.id).await.unwrap().active_version, None, "not activated");

    let trap = env
        .hub
        .update_connection(&conn.id, ConnectionUpdate { config: Some(json!({"mode": "schemas_trap"})), ..Default::default() })
        .await
        .expect("no active version: only the config changes");
    let e = env.hub.activate(&trap.id, &report.version, "test").await.expect_err("a trap refuses it too");
    assert!(e.to_string().contains("trap"), "{e}");

    // Active and serving; a config change to an unusable declaration is refused, and the
    // connection keeps its config and keeps serving.
    let (ok_conn, token) = env.connection("ok", HOSTILE, json!({"mode": "ok"})).await;
    let e = env
        .hub
        .update_connection(&ok_conn, ConnectionUpdate { config: Some(json!({"mode": "schemas_bad"})), ..Default::default() })
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("colour"), "{e}");
    assert_eq!(env.hub.connection(&ok_conn).await.unwrap().config, json!({"mode": "ok"}));
    let body = json!({"schemas": [USER], "userName": "still@example.com"});
    let (status, created) = env.send(&token, Method::POST, &format!("/scim/v2/{ok_conn}/Users"), Some(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connector_fault_during_test_connection_is_an_error_and_an_event() {
    let env = env().await;
    let (conn, _) = env.connection("trapping", HOSTILE, json!({"mode": "trap"})).await;
    let admin = env.admin_token().await;
    let (status, body) = env.admin(&admin, Method::POST, &format!("/connections/{conn}/test"), None).await;
    assert!(status.is_server_error(), "{status} {body}");
    assert_eq!(body["error"], "trap", "{body}");
    // The SDK's panic hook sent the panic to the host log before the trap: the admin reads why.
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("; panicked at ") && message.ends_with(": hostile connector: mode=trap"), "{body}");
    let events = env.hub.events(Some(&conn), 10).await.unwrap();
    assert!(events.iter().any(|e| e.message.contains("trap") && e.message.contains("hostile connector: mode=trap")), "{events:?}");

    let (status, body) = env.admin(&admin, Method::POST, "/connections/nope/test", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pre_rfc_urn_passed_on_by_a_connector_is_refused_naming_the_rfc_urn() {
    // contract-1-0 passes bodies through untouched, as a careless vendor connector would; the
    // host knows only the RFC's URNs (the onelogin connector rewrites OneLogin's old ones).
    let env = env().await;
    let (conn, token) = env.connection("passthrough", CONTRACT_1_0, json!({})).await;
    let legacy = json!({"schemas": ["urn:scim:schemas:core:2.0"], "userName": "old@example.com"});
    let (status, error) = env.send(&token, Method::POST, &format!("/scim/v2/{conn}/Users"), Some(&legacy)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(error["detail"].as_str().unwrap().contains(USER), "{error}");
    let legacy_ext = json!({"schemas": [USER], "userName": "old@example.com",
                            "urn:scim:schemas:extension:enterprise:2.0": {"department": "Eng"}});
    let (status, error) = env.send(&token, Method::POST, &format!("/scim/v2/{conn}/Users"), Some(&legacy_ext)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(error["detail"].as_str().unwrap().contains("urn:scim:schemas:extension:enterprise:2.0"), "{error}");
}

/// `echo`'s `normalize` refuses every `GET` (501) and takes `reads_as_sent` from its config, so a
/// `GET` that is answered was decoded by the host without the connector.
#[tokio::test(flavor = "multi_thread")]
async fn reads_a_connector_takes_as_sent_are_decoded_by_the_host_and_only_those() {
    let env = env().await;
    let (conn, token) = env.connection("echo-reads", ECHO_V1, json!({"reads_as_sent": "user"})).await;
    let body = json!({"schemas": [USER], "userName": "ada@example.com"});
    let (status, created) = env.send(&token, Method::POST, &format!("/scim/v2/{conn}/Users"), Some(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_string();

    // (echo renders every resource it is shown into something else, so these reads are chosen
    // to need no rendering: a count of 0, an id that does not exist.)
    let filter = "/Users?filter=userName%20eq%20%22ADA@example.com%22&attributes=userName&count=0";
    let (status, list) = env.send(&token, Method::GET, &format!("/scim/v2/{conn}{filter}"), None).await;
    assert_eq!((status, list["totalResults"].as_u64()), (StatusCode::OK, Some(1)), "{list}");
    let (status, error) = env.send(&token, Method::GET, &format!("/scim/v2/{conn}/Users/no-such-user"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
    // The host's decoding refuses what the generic dialect refuses, with its message.
    let (status, error) = env.send(&token, Method::GET, &format!("/scim/v2/{conn}/Users?count=many"), None).await;
    assert_eq!((status, error["scimType"].as_str()), (StatusCode::BAD_REQUEST, Some("invalidValue")), "{error}");
    assert!(error["detail"].as_str().unwrap().contains("`count` must be an integer"), "{error}");
    // Groups are not listed: their reads still go to the connector, which refuses them.
    let (status, error) = env.send(&token, Method::GET, &format!("/scim/v2/{conn}/Groups"), None).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{error}");
    assert!(error["detail"].as_str().unwrap().contains("echo 1.0.0: GET not handled"), "{error}");
    // Writes always go through the connector.
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "active", "value": false}]});
    let (status, _) = env.send(&token, Method::PATCH, &format!("/scim/v2/{conn}/Users/{id}"), Some(&patch)).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);

    // The answer holds per binding: a config change rebinds, and then the connector decides.
    env.hub
        .update_connection(&conn, ConnectionUpdate { config: Some(json!({})), ..Default::default() })
        .await
        .expect("config change");
    let (status, error) = env.send(&token, Method::GET, &format!("/scim/v2/{conn}/Users/no-such-user"), None).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{error}");
    let (status, _) = env.send(&token, Method::GET, &format!("/scim/v2/{conn}{filter}"), None).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    // Another connection of the same module, without the key, never had it.
    let (other, other_token) = env.connection("echo-plain", ECHO_V1, json!({})).await;
    let (status, _) = env.send(&other_token, Method::GET, &format!("/scim/v2/{other}/Users"), None).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
}
