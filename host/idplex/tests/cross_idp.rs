//! One person, five IdPs: Ada Lovelace arriving from Okta, Microsoft Entra ID, Google Workspace,
//! OneLogin and a generic SAML IdP — by SAML sign-in (each connector's `map-assertion`, through
//! the admin dry run) and, for the IdPs that push, by SCIM provisioning in each IdP's own
//! dialect — must be the same canonical user everywhere: user name, e-mail, given, family and
//! display name, active. Each row is what that IdP's documentation says it sends
//! (`tests/fixtures/idp-dialects/saml_claims.json`, the SCIM vectors beside it).

use idplex_tests::{Server, TestEnv};
use reqwest::Method;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_idplex");
const EMAIL: &str = "ada.lovelace@example.com";
const EMAIL_FORMAT: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
const CLAIMS: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims";
const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// `(connector, issuer, attributes)`: a typical assertion of each IdP for Ada.
fn assertions() -> Vec<(&'static str, Value)> {
    vec![
        ("okta", json!({
            "issuer": "http://www.okta.com/exk1fcia6d6EMsf331d8",
            "name_id": EMAIL, "name_id_format": EMAIL_FORMAT,
            "attributes": {"email": [EMAIL], "firstName": ["Ada"], "lastName": ["Lovelace"], "groups": ["Engineering"]},
        })),
        ("entra-id", json!({
            "issuer": "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/",
            "name_id": EMAIL, "name_id_format": EMAIL_FORMAT,
            "attributes": {
                format!("{CLAIMS}/givenname"): ["Ada"],
                format!("{CLAIMS}/surname"): ["Lovelace"],
                format!("{CLAIMS}/emailaddress"): [EMAIL],
                format!("{CLAIMS}/name"): [EMAIL],
                "http://schemas.microsoft.com/identity/claims/displayname": ["Ada Lovelace"],
                "http://schemas.microsoft.com/identity/claims/objectidentifier": ["0b5e3b8c-5a3e-4a8e-9f0e-1d2c3b4a5f60"],
                "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups": ["8a1c6e0d-4b4f-4c1e-9a3b-5d2e1f0a9b8c"],
            },
        })),
        ("google-workspace", json!({
            "issuer": "https://accounts.google.com/o/saml2?idpid=C01abcdef",
            "name_id": EMAIL, "name_id_format": EMAIL_FORMAT,
            "attributes": {"firstName": ["Ada"], "lastName": ["Lovelace"], "groups": ["engineering@example.com"]},
        })),
        ("onelogin", json!({
            "issuer": "https://app.onelogin.com/saml/metadata/1234567",
            "name_id": EMAIL, "name_id_format": EMAIL_FORMAT,
            "attributes": {"User.email": [EMAIL], "User.FirstName": ["Ada"], "User.LastName": ["Lovelace"], "memberOf": ["Engineering;Ops"]},
        })),
        ("custom-saml", json!({
            "issuer": "https://idp.example.com/saml",
            "name_id": EMAIL, "name_id_format": EMAIL_FORMAT,
            "attributes": {"email": [EMAIL], "firstName": ["Ada"], "lastName": ["Lovelace"]},
        })),
    ]
}

/// `(connector, SCIM create body)`: how each IdP that pushes provisions Ada.
fn scim_creates() -> Vec<(&'static str, Value)> {
    vec![
        ("okta", json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": EMAIL, "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"primary": true, "value": EMAIL, "type": "work"}],
            "displayName": "Ada Lovelace", "locale": "en-US", "externalId": "00u1ada", "groups": [],
            "password": "t1meMa$heen", "active": true,
        })),
        ("entra-id", json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT],
            "externalId": "0b5e3b8c-5a3e-4a8e-9f0e-1d2c3b4a5f60", "userName": EMAIL, "active": "True",
            "displayName": "Ada Lovelace",
            "emails": [{"primary": "True", "type": "work", "value": EMAIL}],
            "name": {"formatted": "Ada Lovelace", "familyName": "Lovelace", "givenName": "Ada"},
            ENT: {"department": "Analytical Engines", "manager": "271"},
            "roles": [{"primary": "False", "type": "WindowsAzureActiveDirectoryRole", "value": "{\"id\":\"7c2f\",\"value\":\"Admin\",\"displayName\":\"Admins\"}"}],
        })),
        ("onelogin", json!({
            "schemas": ["urn:scim:schemas:core:2.0", "urn:scim:schemas:extension:enterprise:2.0"],
            "userName": EMAIL, "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"value": EMAIL, "primary": true}], "displayName": "Ada Lovelace",
            "urn:scim:schemas:extension:enterprise:2.0": {"department": "Analytical Engines"},
        })),
        ("custom-saml", json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": EMAIL, "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"value": EMAIL, "type": "work", "primary": true}], "displayName": "Ada Lovelace", "active": true,
        })),
    ]
}

/// The canonical user Ada must be, whichever IdP she came from.
fn ada() -> Value {
    json!({"user_name": EMAIL, "email": EMAIL, "given_name": "Ada", "family_name": "Lovelace",
           "display_name": "Ada Lovelace", "active": true})
}

async fn connection(server: &Server, connector: &str, via: &str) -> String {
    let version = server.newest_version(connector).await;
    server
        .create_connection(&json!({"name": format!("{connector}-{via}"), "connector": connector, "version": version,
            "org_id": format!("org-{connector}-{via}")}))
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_person_from_every_idp_is_the_same_canonical_user() {
    let env = TestEnv::new(BIN).await;
    let server = env.serve(&["--demo"]).await;
    let mut rows = Vec::new();

    for (connector, assertion) in assertions() {
        let conn = connection(&server, connector, "saml").await;
        let r = server.post_json(&format!("/admin/v1/connections/{conn}/dry-run/sso"), &assertion).await;
        assert_eq!(r.status, 200, "{connector}: {}", r.body);
        let u = &r.body["user"];
        let primary = u["emails"].as_array().and_then(|e| e.iter().find(|e| e["primary"] == true)).map(|e| e["value"].clone());
        rows.push((format!("{connector} (SAML)"), json!({
            "user_name": u["user_name"], "email": primary.unwrap_or(Value::Null), "given_name": u["given_name"],
            "family_name": u["family_name"], "display_name": u["display_name"], "active": u["active"],
        })));
        assert!(r.body["groups"].as_array().is_some_and(|g| !g.is_empty()) || connector == "custom-saml",
            "{connector}: the groups claim was read: {}", r.body);
    }

    for (connector, body) in scim_creates() {
        let conn = connection(&server, connector, "scim").await;
        let t = server.post_json(&format!("/admin/v1/connections/{conn}/scim-tokens"), &json!({})).await;
        t.expect(201);
        let token = t.body["secret"].as_str().unwrap().to_string();
        let resp = server
            .request(Method::POST, &format!("/scim/v2/{conn}/Users"), Some(&token))
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let created: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 201, "{connector}: {created}");
        let id = created["id"].as_str().unwrap();
        let r = Server::send(server.request(Method::GET, &format!("/scim/v2/{conn}/Users/{id}"), Some(&token))).await;
        r.expect(200);
        let u = &r.body;
        assert!(u.get("password").is_none(), "{connector}: a password came back");
        let primary = u["emails"].as_array().and_then(|e| e.iter().find(|e| e["primary"] == true)).map(|e| e["value"].clone());
        rows.push((format!("{connector} (SCIM)"), json!({
            "user_name": u["userName"], "email": primary.unwrap_or(Value::Null), "given_name": u["name"]["givenName"],
            "family_name": u["name"]["familyName"], "display_name": u["displayName"],
            "active": u.get("active").cloned().unwrap_or(json!(true)),
        })));
    }

    let want = ada();
    let wrong: Vec<String> =
        rows.iter().filter(|(_, got)| *got != want).map(|(source, got)| format!("{source}: {got}")).collect();
    assert!(wrong.is_empty(), "not the canonical {want}:\n{}", wrong.join("\n"));
    assert_eq!(rows.len(), 9, "five SAML IdPs and four SCIM dialects");
}
