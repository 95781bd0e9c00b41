//! A vendor's view of the SDK's mock host: a connector crate (this test is a crate of its own,
//! as a vendor's would be) exports itself with `export_connector!`, and its native tests call
//! the very `Guest` functions the component exports, with the imports (config, log, clock,
//! egress) answered by `testing::MockHost`.

use idplex_connector_sdk::directory_pull::{PassKind, PullPage, PullRequest};
use idplex_connector_sdk::http::Response;
use idplex_connector_sdk::log::Level;
use idplex_connector_sdk::provisioning::Operation;
use idplex_connector_sdk::saml_mapping::GENERIC;
use idplex_connector_sdk::serde_json::{Value, json};
use idplex_connector_sdk::sso::VerifiedAssertion;
use idplex_connector_sdk::testing::{self, FakeHttp, MockHost};
use idplex_connector_sdk::{
    CanonicalUser, ConnectorError, ErrorKind, Json, ResourceKind, clock, config, diagnostics, directory_pull,
    directory_sync, export_connector, http, log, metadata, provisioning, schemas, scim_dialect, scim_reads, sso,
};

/// A small connector for "Acme IdP", written as a vendor would.
struct Acme;

const NAME: &str = "acme";

fn api(path: &str) -> Result<String, ConnectorError> {
    Ok(format!("https://{}/api{path}", config::require("domain")?))
}

impl metadata::Guest for Acme {
    fn describe() -> metadata::ConnectorInfo {
        metadata::ConnectorInfo {
            name: NAME.into(),
            vendor: "Acme".into(),
            version: "0.1.0".into(),
            description: "Acme IdP".into(),
            capabilities: vec![metadata::Capability::Provisioning, metadata::Capability::Sso],
            config_schema: r#"{"type":"object"}"#.into(),
            egress_hosts: vec!["acme.example".into()],
        }
    }
}

impl provisioning::Guest for Acme {
    fn normalize(request: provisioning::ScimRequest) -> Result<Vec<Operation>, ConnectorError> {
        if config::get_bool("read_only")? == Some(true) && request.method != "GET" {
            log::warn(&format!("refused a {} while read_only", request.method));
            return Err(ConnectorError::unsupported("this connection is read-only (config key `read_only`)"));
        }
        log::debug(&format!("normalizing a {}", request.method));
        scim_dialect::normalize(&request)
    }

    fn render(_kind: ResourceKind, resource: Json) -> Result<Json, ConnectorError> {
        let mut value = idplex_connector_sdk::json::parse_object(&resource, "resource")?;
        value.insert("renderedAt".into(), json!(clock::now_unix_millis()));
        idplex_connector_sdk::json::to_json(&value)
    }
}

impl directory_sync::Guest for Acme {
    fn pull(_: Option<String>) -> Result<directory_sync::SyncPage, ConnectorError> {
        Err(ConnectorError::unsupported_capability(NAME, "directory-sync"))
    }
}

impl sso::Guest for Acme {
    fn map_assertion(assertion: VerifiedAssertion) -> Result<sso::SsoIdentity, ConnectorError> {
        GENERIC.map_assertion(&assertion, &config::get)
    }
}

impl schemas::Guest for Acme {
    fn extensions() -> Result<Vec<schemas::SchemaExtension>, ConnectorError> {
        schemas::from_config(&config::get)
    }
}

impl diagnostics::Guest for Acme {
    fn test_connection() -> Result<Vec<diagnostics::Check>, ConnectorError> {
        let url = api("/users?page=1")?;
        Ok(diagnostics::api_checks("acme.example", "Acme users", http::get_json(&url)))
    }
}

impl directory_pull::Guest for Acme {
    /// One API page per pull page; the cursor is the next page number.
    fn pull(request: PullRequest) -> Result<PullPage, ConnectorError> {
        let page_no = request.cursor.as_deref().unwrap_or("1");
        let url = api(&format!("/users?page={page_no}"))?;
        let body = http::check("Acme users", http::get_json(&url)?)?.into_json("Acme users")?;
        let mut page = PullPage::new(PassKind::Full);
        for u in body["users"].as_array().into_iter().flatten() {
            page.users.push(CanonicalUser {
                external_id: u["id"].as_str().map(Into::into),
                user_name: u["email"].as_str().unwrap_or_default().into(),
                given_name: None,
                family_name: None,
                display_name: None,
                emails: Vec::new(),
                active: true,
                groups: Vec::new(),
                attributes: Vec::new(),
            });
        }
        page.next = body["next"].as_u64().map(|n| n.to_string());
        Ok(page)
    }
}

impl scim_reads::Guest for Acme {
    fn as_sent() -> Vec<ResourceKind> {
        scim_reads::BOTH.to_vec()
    }
}

export_connector!(Acme);

fn user_create(name: &str) -> provisioning::ScimRequest {
    testing::request(
        "POST",
        ResourceKind::User,
        None,
        json!({"schemas": [idplex_connector_sdk::scim::USER_SCHEMA], "userName": name}),
    )
}

#[test]
fn normalize_reads_config_and_logs_through_the_mock_host() {
    let host = MockHost::new().config("read_only", "false").install();
    let ops = <Acme as provisioning::Guest>::normalize(user_create("ada@example.com")).unwrap();
    assert_eq!(testing::body_of(&ops)["userName"], "ada@example.com");
    assert_eq!(host.take_logs().iter().map(ToString::to_string).collect::<Vec<_>>(), ["DEBUG normalizing a POST"]);

    // The admin switches the connection to read-only between two calls.
    host.set_config("read_only", Some("true"));
    let e = <Acme as provisioning::Guest>::normalize(user_create("bob@example.com")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported);
    let logs = host.logs();
    assert_eq!((logs.len(), logs[0].level, logs[0].message.as_str()), (1, Level::Warn, "refused a POST while read_only"));

    host.set_config("read_only", Some("sometimes"));
    let e = <Acme as provisioning::Guest>::normalize(user_create("eve@example.com")).unwrap_err();
    testing::assert_config(&e, "read_only");
}

#[test]
fn render_reads_the_mock_clock() {
    let host = MockHost::new().clock(1_767_225_600_000).install();
    let out = <Acme as provisioning::Guest>::render(ResourceKind::User, r#"{"userName":"a"}"#.into()).unwrap();
    let v: Value = idplex_connector_sdk::serde_json::from_str(&out).unwrap();
    assert_eq!(v, json!({"userName": "a", "renderedAt": 1_767_225_600_000_u64}));
    host.advance_clock(1_000);
    assert_eq!(clock::now_unix_millis(), 1_767_225_601_000);
    host.set_clock(5);
    assert_eq!(clock::now_unix_millis(), 5);
}

#[test]
fn map_assertion_follows_the_connections_mapping() {
    let assertion = VerifiedAssertion {
        issuer: "https://acme.example".into(),
        name_id: "0042".into(),
        name_id_format: None,
        session_index: None,
        authn_context: None,
        attributes: vec![testing::attr("mail", &["ada@example.com"]), testing::attr("email", &["other@example.com"])],
    };
    let _host = MockHost::new()
        .configs(&[("user_name_source", "attribute"), ("attribute.user_name", "mail")])
        .install();
    let identity = <Acme as sso::Guest>::map_assertion(assertion.clone()).unwrap();
    assert_eq!(identity.user.user_name, "ada@example.com");

    let _defaults = MockHost::new().config("user_name_source", "attribute").install();
    let identity = <Acme as sso::Guest>::map_assertion(assertion).unwrap();
    assert_eq!(identity.user.user_name, "other@example.com", "the generic default attribute `email`");
}

#[test]
fn a_directory_pull_pass_runs_against_recorded_api_pages() {
    let host = MockHost::new()
        .config("domain", "acme.example")
        .egress(
            FakeHttp::new()
                .on_json("https://acme.example/api/users?page=1", json!({"users": [{"id": "u1", "email": "ada@example.com"}], "next": 2}))
                .on_json("https://acme.example/api/users?page=2", json!({"users": [{"id": "u2", "email": "bob@example.com"}]})),
        )
        .install();
    let pages = testing::run_pass(
        |cursor| <Acme as directory_pull::Guest>::pull(PullRequest { cursor: cursor.map(Into::into) }),
        None,
        10,
    );
    let names: Vec<&str> = pages.iter().flat_map(|p| &p.users).map(|u| u.user_name.as_str()).collect();
    assert_eq!(names, ["ada@example.com", "bob@example.com"]);
    assert_eq!(host.requests(), ["https://acme.example/api/users?page=1", "https://acme.example/api/users?page=2"]);

    // Throttled: the connector's answer is the upstream error the host retries on.
    host.respond(
        "https://acme.example/api/users?page=3",
        Response::json(429, json!({"message": "slow down"})).with_header("Retry-After", "30"),
    );
    let e = <Acme as directory_pull::Guest>::pull(PullRequest { cursor: Some("3".into()) }).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Upstream);
    assert_eq!(e.message, "Acme users answered HTTP 429: slow down (throttled; Retry-After: 30)");
}

#[test]
fn test_connection_reports_what_the_api_answered() {
    let host = MockHost::new().config("domain", "acme.example").install();
    host.respond("https://acme.example/api/users?page=1", Response::json(401, json!({"message": "bad token"})));
    let checks = <Acme as diagnostics::Guest>::test_connection().unwrap();
    assert_eq!(checks.iter().map(|c| (c.name.as_str(), c.ok)).collect::<Vec<_>>(), [("reachability acme.example", true), ("credentials", false)]);
    assert!(checks[1].detail.contains("HTTP 401: bad token"), "{}", checks[1].detail);
    drop(host);

    // Without a domain the connector names the key, as the admin needs.
    let _empty = MockHost::new().install();
    testing::assert_config(&<Acme as diagnostics::Guest>::test_connection().unwrap_err(), "domain");
}

#[test]
fn without_a_mock_host_the_imports_answer_as_an_empty_host() {
    assert_eq!(config::get("domain"), None);
    assert!(config::entries().is_empty());
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    assert!(clock::now_unix_millis() >= before, "the machine's clock");
    log::info("goes to stderr, and must not abort the test");
    let e = http::get_json("https://acme.example/api/users?token=secret").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Internal);
    assert!(e.message.contains("MockHost") && e.message.contains("acme.example/api/users"), "{}", e.message);
    assert!(!e.message.contains("secret"), "{}", e.message);
    // A mock host without egress refuses the same way.
    let _host = MockHost::new().install();
    assert_eq!(http::get_json("https://acme.example/").unwrap_err().kind, ErrorKind::Internal);
}

#[test]
fn mock_hosts_nest_per_thread_and_config_entries_are_sorted() {
    let outer = MockHost::new().configs(&[("zone", "eu"), ("domain", "acme.example")]).install();
    assert_eq!(config::entries(), [("domain".into(), "acme.example".into()), ("zone".into(), "eu".into())]);

    let inner = MockHost::new().config("domain", "inner.example").install();
    assert_eq!(config::get("domain").as_deref(), Some("inner.example"), "the innermost host answers");
    assert_eq!(config::get("zone"), None, "hosts do not merge");
    log::info("to the inner host");
    // Another thread (another test) sees no host at all.
    std::thread::spawn(|| assert_eq!(config::get("domain"), None)).join().unwrap();

    drop(outer); // out of order: the inner host stays installed
    assert_eq!(config::get("domain").as_deref(), Some("inner.example"));
    assert!(inner.logged("to the inner host"));
    drop(inner);
    assert_eq!(config::get("domain"), None);
}

#[test]
#[should_panic(expected = "FakeHttp: nothing recorded for\n  https://acme.example/api/users?page=1")]
fn an_unrecorded_request_fails_the_test_naming_the_url() {
    let _host = MockHost::new().config("domain", "acme.example").egress(FakeHttp::new()).install();
    let _ = <Acme as directory_pull::Guest>::pull(PullRequest { cursor: None });
}

#[test]
fn a_config_snapshot_answers_every_key_as_the_host_does() {
    let host = MockHost::new()
        .configs(&[
            ("attribute.email", "mail"),
            ("attribute.email_verified", "verified"),
            ("Attribute.Email", "upper"),
            ("user_name_source", "attribute"),
            ("", "empty key"),
            ("zz", ""),
        ])
        .install();
    let snapshot = config::Snapshot::read();
    for key in [
        "attribute.email",
        "attribute.email_verified",
        "Attribute.Email",
        "user_name_source",
        "",
        "zz",
        "attribute.emai",
        "attribute.email ",
        "tenant_id",
        "zzz",
    ] {
        assert_eq!(snapshot.get(key), config::get(key), "key {key:?}");
    }
    // A snapshot is what the config was when it was read.
    host.set_config("tenant_id", Some("72f988bf"));
    assert_eq!(snapshot.get("tenant_id"), None);
    assert_eq!(config::Snapshot::read().get("tenant_id").as_deref(), Some("72f988bf"));
    drop(host);
    assert_eq!(config::Snapshot::read().get("attribute.email"), None, "no host: an empty config");
}
