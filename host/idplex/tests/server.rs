//! `idplex serve` over real HTTP on loopback: health, admin auth, installs, dry runs, a version
//! swap made by another process while it serves, sandbox faults answered as the documented
//! statuses, and graceful shutdown.

use std::time::Duration;

use idplex_bundled::testing::{ECHO_V1, ECHO_V2, HOSTILE};
use idplex_tests::{Server, TestEnv, eventually};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_idplex");

fn create_user() -> Value {
    json!({
        "method": "POST",
        "resource": "Users",
        "body": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "ada@example.com"}
    })
}

/// A request echo answers differently per version: it refuses PUT, naming its version.
fn replace_user() -> Value {
    json!({"method": "PUT", "resource": "Users", "id": "u1", "body": {"userName": "ada@example.com"}})
}

/// Which echo version served a dry run of this connection (from its refusal message).
async fn echo_version_serving(server: &Server, connection_id: &str) -> String {
    let r = server.dry_run_scim(connection_id, &replace_user()).await;
    r.expect(422);
    assert_eq!(r.error_code(), "connector_error", "{}", r.body);
    let msg = r.message();
    let v = msg
        .split("echo ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("no version in {msg:?}"));
    v.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn health_auth_install_dry_run_and_live_swap_from_the_cli() {
    let env = TestEnv::new(BIN).await;
    let server = env.serve(&["--demo"]).await;
    assert!(
        server
            .admin_token
            .as_deref()
            .is_some_and(|t| t.starts_with("idp_adm_")),
        "{:?}",
        server.stdout_lines
    );
    assert!(
        server
            .stdout_lines
            .iter()
            .any(|l| l.starts_with("demo connection: ")),
        "{:?}",
        server.stdout_lines
    );

    server.get_anon("/healthz").await.expect(200);
    server.get_anon("/readyz").await.expect(200);

    // Admin API: no token, wrong token → 401 with a JSON error.
    let r = server.get_anon("/admin/v1/connectors").await;
    r.expect(401);
    assert_eq!(r.error_code(), "unauthorized");
    let r = Server::send(server.request(
        reqwest::Method::GET,
        "/admin/v1/connectors",
        Some("idp_adm_wrong"),
    ))
    .await;
    r.expect(401);
    assert_eq!(r.error_code(), "unauthorized");

    // The demo connection runs the bundled custom-saml.
    let conns = server.get("/admin/v1/connections").await;
    conns.expect(200);
    assert_eq!(
        conns.body["connections"][0]["connector_name"], "custom-saml",
        "{}",
        conns.body
    );

    // Install over HTTP: 201 the first time, 200 for the same bytes again.
    let r = server.post_wasm("/admin/v1/connectors", ECHO_V1).await;
    r.expect(201);
    assert_eq!(r.body["outcome"], "installed");
    assert_eq!(
        (r.body["name"].as_str(), r.body["version"].as_str()),
        (Some("echo"), Some("1.0.0"))
    );
    let r = server.post_wasm("/admin/v1/connectors", ECHO_V1).await;
    r.expect(200);
    assert_eq!(r.body["outcome"], "already_installed");

    let r = server
        .post_json(
            "/admin/v1/connections",
            &json!({"name": "x", "connector": "echo", "version": "1.0.0"}),
        )
        .await;
    r.expect(201);
    assert_eq!(r.body["active_version"], "1.0.0");
    let id = r.body["id"].as_str().unwrap().to_string();

    // Dry run: echo maps POST to create(body).
    let r = server.dry_run_scim(&id, &create_user()).await;
    r.expect(200);
    assert_eq!(
        r.body["operations"],
        json!([{"op": "create", "resource": create_user()["body"]}])
    );
    assert_eq!(echo_version_serving(&server, &id).await, "1.0.0");

    // Another process (the CLI, same database) installs v2 and swaps the connection to it.
    env.install("echo-v2.wasm", ECHO_V2).await.expect_code(0);
    let c = env
        .cli_json(&["connector", "activate", "--connection", &id, "2.0.0"])
        .await
        .ok_json();
    assert_eq!(c["active_version"], "2.0.0");

    // The running server picks the swap up by itself, within seconds, without a restart.
    eventually(
        Duration::from_secs(10),
        "the server to serve echo 2.0.0",
        || async { (echo_version_serving(&server, &id).await == "2.0.0").then_some(()) },
    )
    .await;
    let r = server.get(&format!("/admin/v1/connections/{id}")).await;
    r.expect(200);
    assert_eq!(r.body["active_version"], "2.0.0");
    assert_eq!(r.body["previous_version"], "1.0.0");
    // And normal calls still work on the new version.
    server.dry_run_scim(&id, &create_user()).await.expect(200);

    // Rollback through the CLI is picked up the same way.
    env.cli_json(&["connector", "rollback", "--connection", &id])
        .await
        .expect_code(0);
    eventually(
        Duration::from_secs(10),
        "the server to serve echo 1.0.0 again",
        || async { (echo_version_serving(&server, &id).await == "1.0.0").then_some(()) },
    )
    .await;
    let h = server
        .get(&format!("/admin/v1/connections/{id}/history"))
        .await;
    h.expect(200);
    assert_eq!(
        h.body["history"].as_array().map(Vec::len),
        Some(3),
        "activate, activate, rollback: {}",
        h.body
    );

    assert_eq!(server.terminate(Duration::from_secs(20)).await, 0);
}

/// One misbehaving connection: its config/limits and what the admin must see.
struct Case {
    name: &'static str,
    config: Value,
    limits: Value,
    egress_allow: Value,
    status: u16,
    code: &'static str,
    /// Each must appear in the error message.
    mentions: &'static [&'static str],
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_connector_faults_are_contained_reported_and_recorded() {
    let env = TestEnv::new(BIN).await;
    let server = env.serve(&["--demo"]).await;
    server
        .post_wasm("/admin/v1/connectors", HOSTILE)
        .await
        .expect(201);
    server
        .post_wasm("/admin/v1/connectors", ECHO_V1)
        .await
        .expect(201);
    let healthy = server
        .create_connection(&json!({"name": "healthy", "connector": "echo", "version": "1.0.0"}))
        .await;

    let cases = [
        Case {
            name: "trap",
            config: json!({"mode": "trap"}),
            limits: json!({}),
            egress_allow: json!([]),
            status: 502,
            code: "trap",
            mentions: &["hostile@1.0.0", "crashed"],
        },
        Case {
            name: "loop",
            config: json!({"mode": "loop"}),
            limits: json!({"deadline_ms": 300}),
            egress_allow: json!([]),
            status: 504,
            code: "timeout",
            mentions: &["deadline of 300 ms"],
        },
        Case {
            name: "oom",
            config: json!({"mode": "oom"}),
            limits: json!({"memory_bytes": 32 << 20}),
            egress_allow: json!([]),
            status: 502,
            code: "memory",
            mentions: &["memory limit of 33554432 bytes"],
        },
        Case {
            name: "huge",
            config: json!({"mode": "huge"}),
            limits: json!({"memory_bytes": 268435456, "max_output_bytes": 1048576, "deadline_ms": 30000}),
            egress_allow: json!([]),
            status: 502,
            code: "output_too_large",
            mentions: &["limit of 1048576 bytes"],
        },
        Case {
            // The connector declares 127.0.0.1/localhost; the admin allows 127.0.0.1; it tries a
            // host neither allows.
            name: "egress",
            config: json!({"mode": "egress", "url": "http://192.0.2.10:8080/exfiltrate"}),
            limits: json!({}),
            egress_allow: json!(["127.0.0.1"]),
            status: 502,
            code: "egress_denied",
            mentions: &["192.0.2.10", "not allowed"],
        },
    ];

    let mut ids = Vec::new();
    for case in &cases {
        let id = server
            .create_connection(&json!({
                "name": format!("hostile-{}", case.name),
                "connector": "hostile",
                "version": "1.0.0",
                "config": case.config,
                "limits": case.limits,
                "egress_allow": case.egress_allow,
            }))
            .await;
        let started = std::time::Instant::now();
        let r = server.dry_run_scim(&id, &create_user()).await;
        assert_eq!(r.status, case.status, "{}: {}", case.name, r.body);
        assert_eq!(r.error_code(), case.code, "{}: {}", case.name, r.body);
        for m in case.mentions {
            assert!(
                r.message().contains(m),
                "{}: expected {m:?} in {:?}",
                case.name,
                r.message()
            );
        }
        if case.name == "loop" {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the deadline stopped the loop promptly"
            );
        }
        // The server is still up and other connections still work after each fault.
        server.get_anon("/healthz").await.expect(200);
        server
            .dry_run_scim(&healthy, &create_user())
            .await
            .expect(200);
        ids.push(id);
    }

    // Every fault is an event the admin can read, attributed to its connection.
    let all = server.get("/admin/v1/events").await;
    all.expect(200);
    let events = all.body["events"].as_array().expect("events array");
    for (case, id) in cases.iter().zip(&ids) {
        let e = events
            .iter()
            .find(|e| e["connection_id"] == id.as_str())
            .unwrap_or_else(|| panic!("no event for {}: {}", case.name, all.body));
        assert_eq!(e["kind"], case.code, "{}", case.name);
        assert_eq!(e["connector"], "hostile@1.0.0");
        let filtered = server
            .get(&format!("/admin/v1/events?connection={id}"))
            .await;
        assert_eq!(
            filtered.body["events"].as_array().map(Vec::len),
            Some(1),
            "{}: {}",
            case.name,
            filtered.body
        );
    }
    // The healthy connection has no events.
    let h = server
        .get(&format!("/admin/v1/events?connection={healthy}"))
        .await;
    assert_eq!(
        h.body["events"].as_array().map(Vec::len),
        Some(0),
        "{}",
        h.body
    );

    // Same faults seen from the CLI.
    let cli_events = env.cli_json(&["events"]).await.ok_json();
    let kinds: Vec<&str> = cli_events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for case in &cases {
        assert!(
            kinds.contains(&case.code),
            "`idplex events` lacks {}: {kinds:?}",
            case.code
        );
    }

    // A hostile connection in `ok` mode works: the sandbox, not the module, was the problem.
    let ok = server
        .create_connection(&json!({"name": "hostile-ok", "connector": "hostile", "version": "1.0.0", "config": {"mode": "ok"}}))
        .await;
    server.dry_run_scim(&ok, &create_user()).await.expect(200);
    server.get_anon("/readyz").await.expect(200);

    assert_eq!(server.terminate(Duration::from_secs(20)).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_requests_finish_and_exits_0() {
    let env = TestEnv::new(BIN).await;
    let server = env.serve(&["--demo"]).await;
    server
        .post_wasm("/admin/v1/connectors", HOSTILE)
        .await
        .expect(201);
    // A call that takes ~1.5 s (the loop runs until its deadline).
    let slow = server
        .create_connection(&json!({
            "name": "slow", "connector": "hostile", "version": "1.0.0",
            "config": {"mode": "loop"}, "limits": {"deadline_ms": 1500}
        }))
        .await;

    let request = server.request(
        reqwest::Method::POST,
        &format!("/admin/v1/connections/{slow}/dry-run/scim"),
        server.admin_token.as_deref(),
    );
    let in_flight = tokio::spawn(Server::send(request.json(&create_user())));
    // Let the request reach the server, then ask it to stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !in_flight.is_finished(),
        "the slow request should still be running"
    );
    let base = server.base.clone();
    let code = server.terminate(Duration::from_secs(20)).await;
    assert_eq!(code, 0, "graceful shutdown exits 0");

    // The in-flight request got its real answer, not a reset connection.
    let r = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("in-flight request done")
        .unwrap();
    r.expect(504);
    assert_eq!(r.error_code(), "timeout");

    // And the port no longer answers.
    let after = reqwest::Client::new()
        .get(format!("{base}/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(after.is_err(), "server still answering after shutdown");
}

/// The calls the `hostile` fixture (config `mode=count`) says its instance has served, seen
/// through the admin dry run (one SCIM request through the connection's connector).
async fn instance_calls(server: &Server, connection_id: &str) -> u64 {
    let r = server.dry_run_scim(connection_id, &create_user()).await;
    r.expect(200);
    r.body["operations"][0]["resource"]["calls"].as_u64().unwrap_or_else(|| panic!("a call count: {}", r.body))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_hands_its_instance_to_its_own_next_request_and_a_swap_starts_afresh() {
    let env = TestEnv::new(BIN).await;
    let server = env.serve(&["--demo"]).await;
    server.post_wasm("/admin/v1/connectors", HOSTILE).await.expect(201);
    let counting = |name: &str| json!({"name": name, "connector": "hostile", "version": "1.0.0", "config": {"mode": "count"}});
    let a = server.create_connection(&counting("count-a")).await;
    let b = server.create_connection(&counting("count-b")).await;

    // Requests in sequence continue in the connection's instance...
    for expected in 1..=3 {
        assert_eq!(instance_calls(&server, &a).await, expected);
    }
    // ...which no other connection ever gets.
    assert_eq!(instance_calls(&server, &b).await, 1);
    assert_eq!(instance_calls(&server, &a).await, 4);

    // Activating a version (here the same one again) publishes a new binding: fresh instances.
    server
        .post_json(&format!("/admin/v1/connections/{a}/activate"), &json!({"version": "1.0.0"}))
        .await
        .expect(200);
    assert_eq!(instance_calls(&server, &a).await, 1);
    assert_eq!(instance_calls(&server, &a).await, 2);
    assert_eq!(server.terminate(Duration::from_secs(20)).await, 0);

    // `--connector-instance-reuse 1`: a fresh instance for every request.
    let env = TestEnv::new(BIN).await;
    let server = env.serve(&["--demo", "--connector-instance-reuse", "1"]).await;
    server.post_wasm("/admin/v1/connectors", HOSTILE).await.expect(201);
    let c = server.create_connection(&counting("count-c")).await;
    for _ in 0..3 {
        assert_eq!(instance_calls(&server, &c).await, 1);
    }
    assert_eq!(server.terminate(Duration::from_secs(20)).await, 0);
}

/// A one-shot HTTP server on loopback that answers with the `Authorization` header it got.
fn authorization_echo() -> (String, std::thread::JoinHandle<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let url = format!("http://127.0.0.1:{}/whoami", listener.local_addr().unwrap().port());
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("the connector's request");
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).expect("read the request");
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&request);
        let authorization = text
            .lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("authorization")).map(|(_, v)| v.trim().to_string()))
            .unwrap_or_else(|| "(none)".into());
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{authorization}",
            authorization.len()
        );
        stream.write_all(response.as_bytes()).expect("write the response");
        authorization
    });
    (url, handle)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_secret_is_sealed_at_rest_and_reaches_only_the_egress_request() {
    let env = TestEnv::new(BIN).await;
    // Loopback over plain http is for tests only; without the flag egress is https only.
    let server = env.serve(&["--demo", "--insecure-egress-http-loopback"]).await;
    server.post_wasm("/admin/v1/connectors", HOSTILE).await.expect(201);
    let (url, echo) = authorization_echo();
    let port = url.split(':').nth(2).and_then(|rest| rest.split('/').next()).expect("port").to_string();
    let secret = "Bearer s3cr3t-9f8e7d";
    let id = server
        .create_connection(&json!({
            "name": "egress-with-credential", "connector": "hostile", "version": "1.0.0",
            "config": {"mode": "egress", "url": url, "secret.authorization": secret},
            "egress_allow": [format!("127.0.0.1:{port}")],
        }))
        .await;

    // The host attached the credential to the connector's allowed request, and the upstream
    // echoing it back does not hand it to the connector: it sees the token masked.
    let r = server.dry_run_scim(&id, &create_user()).await;
    r.expect(200);
    assert_eq!(r.body["operations"][0]["resource"]["status"], 200, "{}", r.body);
    assert_eq!(r.body["operations"][0]["resource"]["body"], format!("Bearer {}", "*".repeat("s3cr3t-9f8e7d".len())), "{}", r.body);
    assert!(!r.body.to_string().contains("s3cr3t"), "{}", r.body);
    assert_eq!(echo.join().unwrap(), secret, "the upstream received the credential");

    // Admins never read it back.
    let shown = server.get(&format!("/admin/v1/connections/{id}")).await;
    shown.expect(200);
    assert_eq!(shown.body["config"]["secret.authorization"], "<redacted>", "{}", shown.body);
    assert!(!shown.body.to_string().contains("s3cr3t"));

    // At rest it is sealed: the database alone does not give it away.
    let store = idplex_store::Store::open(env.db_url()).await.expect("open the server's store");
    let stored = store.get_connection(&id).await.unwrap();
    let sealed = stored.config["secret.authorization"].as_str().unwrap().to_string();
    assert!(sealed.starts_with(idplex_hub::secrets::SEALED_PREFIX), "{sealed}");
    assert!(!stored.config.to_string().contains("s3cr3t"));
    assert!(std::fs::metadata(env.data_dir().join("secret.key")).is_ok(), "the key lives beside, not in, the database");

    // Another key cannot open it, and says why.
    let other = idplex_hub::SecretKey::ephemeral();
    let err = other.open("secret.authorization", &sealed).unwrap_err();
    assert!(err.to_string().contains("cannot be opened with this secret key"), "{err}");
    assert_eq!(server.terminate(Duration::from_secs(20)).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_secret_key_fails_the_binding_with_a_reason_the_admin_sees_once() {
    let env = TestEnv::new(BIN).await;
    let server = env.serve(&["--demo"]).await;
    server.post_wasm("/admin/v1/connectors", HOSTILE).await.expect(201);
    let id = server
        .create_connection(&json!({
            "name": "sealed", "connector": "hostile", "version": "1.0.0",
            "config": {"mode": "egress", "url": "http://127.0.0.1:9/", "secret.authorization": "Bearer x"},
            "egress_allow": ["127.0.0.1"],
        }))
        .await;
    assert_eq!(server.terminate(Duration::from_secs(20)).await, 0);

    // The data dir is restored without its key file: a new key is not the old one.
    std::fs::write(env.data_dir().join("secret.key"), "ab".repeat(32)).unwrap();
    let mut server = env.serve(&[]).await;
    server.admin_token = Some(env.admin_token().await);

    let r = server.dry_run_scim(&id, &create_user()).await;
    assert_eq!(r.error_code(), "bind_failed", "{}", r.body);
    assert!(r.message().contains("cannot be opened with this secret key"), "{}", r.message());

    // The watcher retries every tick; the admin gets one event, not one per retry.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let events = server.get(&format!("/admin/v1/events?connection={id}")).await;
    events.expect(200);
    let failures: Vec<&Value> = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "bind_failed")
        .collect();
    assert_eq!(failures.len(), 1, "{}", events.body);
    assert!(failures[0]["message"].as_str().unwrap().contains("secret.authorization"), "{}", events.body);

    // Other connections are unaffected.
    let ok = server
        .create_connection(&json!({"name": "plain", "connector": "hostile", "version": "1.0.0", "config": {"mode": "ok"}}))
        .await;
    server.dry_run_scim(&ok, &create_user()).await.expect(200);
    assert_eq!(server.terminate(Duration::from_secs(20)).await, 0);
}
