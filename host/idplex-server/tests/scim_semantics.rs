//! SCIM semantics through the HTTP router, in process (tower `oneshot`), on a real SQLite file
//! with real components (the `hostile` fixture, the bundled `custom-saml`):
//!
//! * a connector's error answers the status its kind documents (`wit/connector.wit`);
//! * a request succeeds or fails as a whole: a write whose render fails is not committed;
//! * `excludedAttributes=members` keeps the member list out of the sandbox;
//! * a group of 100,000 members takes membership PATCHes and is read without its members.

use axum::http::{Method, StatusCode};
use idplex_bundled::testing::HOSTILE;
use idplex_hub::store::{NewDirectoryGroup, NewDirectoryUser};
use serde_json::{Value, json};

mod common;
use common::{Env, env};

impl Env {
    /// Users created through the hub's store, `parallel` at a time; their ids in order.
    async fn users(&self, connection: &str, prefix: &str, n: usize) -> Vec<String> {
        let parallel = 32;
        let mut tasks = tokio::task::JoinSet::new();
        for lane in 0..parallel {
            let (hub, connection, prefix) = (self.hub.clone(), connection.to_string(), prefix.to_string());
            tasks.spawn(async move {
                let mut ids = Vec::new();
                for i in (lane..n).step_by(parallel) {
                    let user_name = format!("{prefix}{i}@x.test");
                    let new = NewDirectoryUser {
                        connection_id: connection.clone(),
                        user_name: user_name.clone(),
                        external_id: None,
                        active: true,
                        resource: json!({"schemas": [USER], "userName": user_name}),
                    };
                    ids.push((i, hub.store().create_user(&new).await.expect("user").id));
                }
                ids
            });
        }
        let mut all = Vec::with_capacity(n);
        while let Some(done) = tasks.join_next().await {
            all.extend(done.unwrap());
        }
        all.sort();
        all.into_iter().map(|(_, id)| id).collect()
    }

    async fn group(&self, connection: &str, name: &str, members: Vec<String>) -> String {
        let new = NewDirectoryGroup {
            connection_id: connection.into(),
            display_name: name.into(),
            external_id: None,
            resource: json!({"schemas": [GROUP], "displayName": name}),
            members,
        };
        self.hub.store().create_group(&new).await.expect("group").id
    }
}

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

fn user(name: &str) -> Value {
    json!({"schemas": [USER], "userName": name, "active": true})
}

#[tokio::test(flavor = "multi_thread")]
async fn connector_errors_answer_the_status_of_their_kind() {
    let env = env().await;
    // (kind, scim_type, status, scimType answered)
    let table: &[(&str, Option<&str>, u16, Option<&str>)] = &[
        ("invalid-request", None, 400, None),
        ("invalid-request", Some("invalidValue"), 400, Some("invalidValue")),
        ("invalid-request", Some("uniqueness"), 409, Some("uniqueness")),
        ("unsupported", None, 501, None),
        ("upstream", None, 502, None),
        ("config", None, 500, None),
        ("internal", Some("invalidPath"), 500, Some("invalidPath")),
    ];
    for (i, (kind, scim_type, status, answered)) in table.iter().enumerate() {
        let mut config = json!({"mode": "error", "kind": kind});
        if let Some(t) = scim_type {
            config["scim_type"] = json!(t);
        }
        let (conn, token) = env.connection(&format!("error-{i}"), HOSTILE, config).await;
        let (got, body) = env.send(&token, Method::POST, &format!("/scim/v2/{conn}/Users"), Some(&user("a@x.test"))).await;
        assert_eq!(got.as_u16(), *status, "{kind} {scim_type:?}: {body}");
        assert_eq!(body["scimType"].as_str(), *answered, "{kind}: {body}");
        assert_eq!(body["detail"], format!("hostile: {kind}"), "{body}");
        assert_eq!(body["status"], status.to_string(), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_whose_render_fails_is_not_committed() {
    let env = env().await;
    let (failing, failing_token) = env.connection("render-fail", HOSTILE, json!({"mode": "render_fail"})).await;
    let (ok, ok_token) = env.connection("ok", HOSTILE, json!({"mode": "ok"})).await;

    let (status, body) =
        env.send(&failing_token, Method::POST, &format!("/scim/v2/{failing}/Users"), Some(&user("alice@x.test"))).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    // Nothing was written: not in the failing directory, and the userName (unique in the
    // organization) is still free for the IdP's retry.
    let (users, total) = env.hub.directory_users(&failing, 0, 10).await.unwrap();
    assert_eq!((users.len(), total), (0, 0));
    let (status, body) = env.send(&ok_token, Method::POST, &format!("/scim/v2/{ok}/Users"), Some(&user("alice@x.test"))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // A replace whose render fails leaves the stored version as it was.
    let id = env.users(&failing, "bob", 1).await.remove(0);
    let replaced = json!({"schemas": [USER], "userName": "bob0@x.test", "displayName": "Changed"});
    let (status, _) = env.send(&failing_token, Method::PUT, &format!("/scim/v2/{failing}/Users/{id}"), Some(&replaced)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let stored = env.hub.store().get_user(&failing, &id).await.unwrap();
    assert_eq!((stored.version, stored.resource.get("displayName")), (1, None));
}

#[tokio::test(flavor = "multi_thread")]
async fn excluded_members_never_reach_the_connector() {
    let env = env().await;
    // `small` refuses to render anything over 4 KiB: a group of 100 members is far more.
    let (conn, token) = env.connection("small", HOSTILE, json!({"mode": "small", "max_bytes": "4096"})).await;
    let members = env.users(&conn, "m", 100).await;
    let gid = env.group(&conn, "big", members).await;

    let (status, body) = env.send(&token, Method::GET, &format!("/scim/v2/{conn}/Groups/{gid}"), None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "the members were rendered: {body}");
    assert!(body["detail"].as_str().unwrap().contains("render received"), "{body}");

    let path = format!("/scim/v2/{conn}/Groups/{gid}?excludedAttributes=members");
    let (status, body) = env.send(&token, Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["displayName"], "big");
    assert_eq!(body["id"], gid.as_str());
    assert!(body.get("members").is_none(), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_of_100000_members_takes_membership_patches() {
    let env = env().await;
    let saml = idplex_bundled::FIRST_PARTY.iter().find(|c| c.crate_name == "custom-saml").unwrap();
    let (conn, token) = env.connection("large", saml.component, json!({})).await;
    let members = env.users(&conn, "m", 100_000).await;
    let added = env.users(&conn, "n", 1_000).await;
    let gid = env.group(&conn, "everyone", members.clone()).await;

    let patch = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "add", "path": "members", "value": added.iter().map(|id| json!({"value": id})).collect::<Vec<_>>()},
            {"op": "remove", "path": format!("members[value eq \"{}\"]", members[0])},
        ],
    });
    let (status, body) = env.send(&token, Method::PATCH, &format!("/scim/v2/{conn}/Groups/{gid}"), Some(&patch)).await;
    assert!(status == StatusCode::OK || status == StatusCode::NO_CONTENT, "{status}: {}", body.to_string().chars().take(500).collect::<String>());
    if status == StatusCode::OK {
        assert_eq!(body["members"].as_array().map(Vec::len), Some(100_999), "the committed member list");
    }

    let path = format!("/scim/v2/{conn}/Groups/{gid}?excludedAttributes=members");
    let (status, body) = env.send(&token, Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("members").is_none());
    assert_eq!(body["meta"]["version"], "W/\"2\"");

    let group = env.hub.store().get_group(&conn, &gid).await.unwrap();
    assert_eq!(group.members.len(), 100_999);
    assert!(group.members.contains(&added[999]) && !group.members.contains(&members[0]));
}
