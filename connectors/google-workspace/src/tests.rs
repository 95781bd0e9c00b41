//! Native unit tests: unsupported provisioning and 1.0 pull, SAML mapping and the `domain` pin.
//! (The directory pull's tests are in `pull_tests.rs`.)

use crate::{GoogleWorkspace, PULL_IN_PASSES, saml};
use idplex_connector_sdk::directory_sync::Guest as _;
use idplex_connector_sdk::metadata::{Capability, Guest as _};
use idplex_connector_sdk::provisioning::{Guest as _, ScimRequest};
use idplex_connector_sdk::serde_json::{self, Value};
use idplex_connector_sdk::sso::VerifiedAssertion;
use idplex_connector_sdk::testing::{assert_config, assert_described_with_egress, attr, cfg, request_of};
use idplex_connector_sdk::{ConnectorError, ErrorKind, ResourceKind};

const GOOGLE: &str = include_str!("../../../tests/fixtures/idp-dialects/google_workspace.json");
const SAML_CLAIMS: &str = include_str!("../../../tests/fixtures/idp-dialects/saml_claims.json");

// ---------- helpers ----------

fn assert_unsupported_no_push(e: &ConnectorError) {
    assert!(matches!(e.kind, ErrorKind::Unsupported), "{e:?}");
    assert!(e.message.contains("does not push SCIM"), "{}", e.message);
    assert!(e.message.contains("Directory API"), "{}", e.message);
}

/// A typical Google Workspace assertion, from what `saml_claims.json` says: the `idpid` issuer,
/// the primary e-mail as NameID, the admin's attribute mapping (first/last name) and the
/// "Group membership" mapping as a multi-valued `groups` attribute. No e-mail attribute: Google's
/// guides map only the names, the NameID being the e-mail.
fn google_assertion() -> VerifiedAssertion {
    let claims: Value = serde_json::from_str(SAML_CLAIMS).unwrap();
    let g = &claims["google_workspace"];
    assert!(
        g["nameid"]["value"]
            .as_str()
            .unwrap()
            .contains("Primary email")
    );
    assert!(g["attributes"].as_str().unwrap().contains("multi-valued"));
    VerifiedAssertion {
        issuer: g["issuer"]
            .as_str()
            .unwrap()
            .replace("<idpid>", "C01abcd2e"),
        name_id: "alice@example.com".into(),
        name_id_format: Some("urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified".into()),
        session_index: None,
        authn_context: Some("urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified".into()),
        attributes: vec![
            attr("firstName", &["Alice"]),
            attr("lastName", &["Liddell"]),
            attr("groups", &["Engineering", "All Staff", "engineering"]),
        ],
    }
}

// ---------- provisioning, pull, describe ----------

#[test]
fn the_only_scim_vector_answers_unsupported() {
    let file: Value = serde_json::from_str(GOOGLE).unwrap();
    let scim: Vec<(String, ScimRequest)> = file["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| request_of(v).map(|r| (v["id"].as_str().unwrap().to_string(), r)))
        .collect();
    assert_eq!(scim.len(), 1, "the other vectors are Directory API calls");
    assert_eq!(scim[0].0, "google-scim-01");
    assert_unsupported_no_push(&GoogleWorkspace::normalize(scim[0].1.clone()).unwrap_err());
}

#[test]
fn any_scim_request_answers_unsupported() {
    for (method, id, body) in [
        (
            "POST",
            None,
            Some(r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"a"}"#),
        ),
        ("PATCH", Some("1"), Some("not json")),
        ("DELETE", Some("1"), None),
        ("GET", Some("1"), None),
    ] {
        let req = ScimRequest {
            method: method.into(),
            resource: ResourceKind::User,
            id: id.map(Into::into),
            query: Vec::new(),
            body: body.map(Into::into),
        };
        assert_unsupported_no_push(&GoogleWorkspace::normalize(req).unwrap_err());
    }
}

#[test]
fn render_leaves_resources_to_the_host() {
    // `unsupported` from `render` (contract 1.1): the host serves its own resource unchanged
    // and stops calling `render`.
    let r = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"id":"g","displayName":"x"}"#;
    let e = GoogleWorkspace::render(ResourceKind::Group, r.into()).unwrap_err();
    assert_eq!(e.kind, idplex_connector_sdk::ErrorKind::Unsupported, "{}", e.message);
}

#[test]
fn the_1_0_pull_answers_unsupported_pointing_at_directory_pull() {
    for cursor in [None, Some("c".to_string())] {
        let e = GoogleWorkspace::pull(cursor).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Unsupported), "{e:?}");
        assert_eq!(e.message, PULL_IN_PASSES);
    }
}

#[test]
fn describe_declares_directory_sync_and_sso_with_a_closed_documented_schema() {
    let info = GoogleWorkspace::describe();
    let schema = assert_described_with_egress(&info, "google-workspace", env!("CARGO_PKG_VERSION"), &["admin.googleapis.com"]);
    assert!(matches!(info.capabilities[..], [Capability::DirectorySync, Capability::Sso]));
    assert_eq!(schema["properties"]["customer"]["default"], "my_customer");
    assert!(schema["patternProperties"].get("^secret\\.").is_some(), "the service account key is configured as `secret.service_account_key`");
    assert!(schema["patternProperties"].get("^credential\\.").is_some(), "`credential.kind`, `credential.subject`, `credential.scopes`");
    let p = &schema["properties"];
    assert_eq!(p["domain"]["pattern"], saml::DOMAIN_PATTERN);
    assert!(p["domain"].get("default").is_none());
    assert_eq!(p["attribute.email"]["default"], "email");
    assert_eq!(p["attribute.given_name"]["default"], "firstName");
    assert_eq!(p["attribute.family_name"]["default"], "lastName");
    assert_eq!(p["attribute.groups"]["default"], "groups");
    assert_eq!(p["user_name_source"]["default"], "name-id");
}

// ---------- SAML ----------

#[test]
fn typical_google_assertion_maps_with_defaults() {
    let id = saml::map_assertion(&google_assertion(), &|_| None).unwrap();
    let u = &id.user;
    assert_eq!(u.user_name, "alice@example.com");
    assert_eq!(u.emails.len(), 1, "the NameID is the primary e-mail");
    assert_eq!(u.emails[0].value, "alice@example.com");
    assert!(u.emails[0].primary);
    assert_eq!(u.emails[0].kind.as_deref(), Some("work"));
    assert_eq!(u.given_name.as_deref(), Some("Alice"));
    assert_eq!(u.family_name.as_deref(), Some("Liddell"));
    assert_eq!(u.display_name.as_deref(), Some("Alice Liddell"));
    assert_eq!(u.external_id, None);
    assert_eq!(id.groups, ["Engineering", "All Staff", "engineering"]);
    assert_eq!(u.groups, id.groups);
}

#[test]
fn an_email_attribute_wins_over_the_name_id() {
    let mut a = google_assertion();
    a.attributes
        .push(attr("email", &["alice.liddell@example.com"]));
    let id = saml::map_assertion(&a, &|_| None).unwrap();
    assert_eq!(id.user.user_name, "alice@example.com");
    assert_eq!(id.user.emails.len(), 1);
    assert_eq!(id.user.emails[0].value, "alice.liddell@example.com");
    // user name from the attribute instead of the NameID.
    let id = saml::map_assertion(&a, &cfg(&[("user_name_source", "attribute")])).unwrap();
    assert_eq!(id.user.user_name, "alice.liddell@example.com");
}

#[test]
fn a_persistent_opaque_name_id_is_no_email() {
    let mut a = google_assertion();
    a.name_id = "103456789012345678901".into();
    a.name_id_format = Some("urn:oasis:names:tc:SAML:2.0:nameid-format:persistent".into());
    let id = saml::map_assertion(&a, &|_| None).unwrap();
    assert!(id.user.emails.is_empty());
    assert_eq!(
        id.user.external_id.as_deref(),
        Some("103456789012345678901")
    );
}

#[test]
fn domain_pins_the_workspace() {
    let pinned = cfg(&[("domain", "example.com")]);
    let mut a = google_assertion();
    assert!(saml::map_assertion(&a, &pinned).is_ok());
    a.name_id = "Bob@EU.Example.COM".into();
    assert!(
        saml::map_assertion(&a, &pinned).is_ok(),
        "subdomains and any case"
    );
    assert!(saml::map_assertion(&a, &cfg(&[("domain", " Example.COM ")])).is_ok());

    for (name_id, email) in [
        ("mallory@evil.com", None),
        ("mallory@notexample.com", None),
        ("mallory@example.com.evil.com", None),
        ("alice@example.com", Some("alice@evil.com")),
    ] {
        let mut a = google_assertion();
        a.name_id = name_id.into();
        if let Some(e) = email {
            a.attributes.push(attr("email", &[e]));
        }
        let e = saml::map_assertion(&a, &pinned).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::InvalidRequest), "{e:?}");
        let bad = email.unwrap_or(name_id);
        assert!(
            e.message.contains(bad) && e.message.contains("`example.com`"),
            "{}",
            e.message
        );
        // Without the pin, the same assertion signs in.
        assert!(saml::map_assertion(&a, &|_| None).is_ok());
    }
    // Nothing to check: refused while pinned.
    let mut a = google_assertion();
    a.name_id = "103456789012345678901".into();
    let e = saml::map_assertion(&a, &pinned).unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::InvalidRequest) && e.message.contains("`example.com`"),
        "{e:?}"
    );
    a.attributes.push(attr("email", &["alice@example.com"]));
    assert!(saml::map_assertion(&a, &pinned).is_ok());
}

#[test]
fn domain_matching() {
    assert!(saml::in_domain("a@example.com", "example.com"));
    assert!(saml::in_domain("a@x.y.example.com", "example.com"));
    assert!(!saml::in_domain("a@example.co", "example.com"));
    assert!(!saml::in_domain("a@myexample.com", "example.com"));
    assert!(!saml::in_domain("a@.example.com", "example.com"));
    assert!(!saml::in_domain("@example.com", "example.com"));
    assert!(!saml::in_domain("example.com", "example.com"));
}

#[test]
fn wrong_config_is_a_config_error_naming_the_key() {
    let a = google_assertion();
    for bad in [
        "",
        "example",
        "@example.com",
        "https://example.com",
        "example.com.",
        "exa mple.com",
        "-example.com",
        "example..com",
        "alice@example.com",
    ] {
        let e = saml::map_assertion(&a, &move |k: &str| (k == "domain").then(|| bad.to_string()))
            .unwrap_err();
        assert_config(&e, "domain");
    }
    assert_config(
        &saml::map_assertion(&a, &cfg(&[("user_name_source", "mail")])).unwrap_err(),
        "user_name_source",
    );
}
