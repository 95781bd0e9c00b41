//! The runtime against real components: the first-party connector, and hostile fixtures built
//! from `connectors/testing/` (see `idplex_bundled::testing`).

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use idplex_bundled::testing::{ECHO_V1, ECHO_V2, HOSTILE};
use idplex_runtime::{
    Binding, CallContext, CallError, Capability, Credential, EgressPolicy, Limits,
    InstanceReuse, LoadedConnector, Registry, ResourceKind, Runtime, RuntimeConfig, ScimRequest, Warm,
};

fn runtime_in(cache: &Path) -> Runtime {
    let mut cfg = RuntimeConfig::new(cache);
    cfg.max_concurrent_instances = 64;
    Runtime::new(cfg).expect("runtime")
}

/// One cache directory for the whole test binary, so each component compiles once.
fn shared_runtime() -> Runtime {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    runtime_in(dir.path())
}

fn ctx(config: &[(&str, &str)], limits: Limits) -> CallContext {
    CallContext {
        connection_id: Some("conn_test".into()),
        config: Arc::new(config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()),
        egress: Arc::new(EgressPolicy::deny_all()),
        limits,
    }
}

async fn hostile(rt: &Runtime) -> LoadedConnector {
    rt.install(HOSTILE).await.expect("hostile fixture installs")
}

fn wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).expect("valid wat")
}

#[tokio::test]
async fn refuses_what_is_not_a_connector_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = RuntimeConfig::new(dir.path());
    cfg.max_module_bytes = 1 << 20;
    cfg.max_concurrent_instances = 8;
    let rt = Runtime::new(cfg).unwrap();

    let mut too_large = b"\0asm\x0d\0\x01\0".to_vec();
    too_large.resize((1 << 20) + 1, 0);
    let other_world = wat(r#"(component (instance $i) (export "acme:thing/api@1.0.0" (instance $i)))"#);
    let next_major = wat(r#"(component (instance $i) (export "idplex:connector/metadata@2.0.0" (instance $i)))"#);
    let wants_fs = wat(
        r#"(component (import "wasi:filesystem/types@0.2.0" (instance))
                      (instance $i) (export "idplex:connector/metadata@1.0.0" (instance $i)))"#,
    );
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        ("random bytes", b"definitely not wasm".to_vec(), "not_wasm", "not a WebAssembly binary"),
        ("core module without WIT", wat("(module)"), "not_a_component", "core WebAssembly module"),
        ("another world", other_world, "wrong_world", "acme:thing/api@1.0.0"),
        ("contract 2.0.0", next_major, "incompatible_contract", "idplex:connector@2.0.0"),
        ("filesystem import", wants_fs, "forbidden_import", "no filesystem"),
        ("over the size limit", too_large, "too_large", "limit is 1048576 bytes"),
        ("truncated component", ECHO_V1[..ECHO_V1.len() / 2].to_vec(), "invalid", "invalid component"),
    ];
    for (what, bytes, kind, needle) in cases {
        let err = rt.install(&bytes).await.expect_err(what);
        assert_eq!(err.kind(), kind, "{what}: {err}");
        assert!(err.to_string().contains(needle), "{what}: message {err:?} should mention {needle:?}");
    }
    // Nothing refused was compiled into the cache.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn installs_the_first_party_connector_and_reuses_the_compiled_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let saml = idplex_bundled::FIRST_PARTY.iter().find(|c| c.crate_name == "custom-saml").unwrap();

    let rt = runtime_in(dir.path());
    let loaded = rt.install(saml.component).await.unwrap();
    assert_eq!(loaded.info().name, "custom-saml");
    assert!(loaded.has(Capability::Provisioning) && loaded.has(Capability::Sso));
    assert_eq!(loaded.contract_version(), idplex_runtime::CONTRACT_VERSION);
    assert_eq!(loaded.hash().0.len(), 64);
    assert_eq!(rt.cache_stats().compiled, 1);

    // A restarted process (new runtime, same cache dir) does not recompile.
    let rt2 = runtime_in(dir.path());
    let again = rt2.load(loaded.component_bytes().clone()).await.unwrap();
    assert_eq!(again.hash(), loaded.hash());
    assert_eq!(rt2.cache_stats().compiled, 0);
    assert_eq!(rt2.cache_stats().cache_hits, 1);

    // A corrupt artifact is discarded and rebuilt, not trusted.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
    }
    // The runtimes that loaded the old artifact keep working (they hold it in memory).
    let info = again.describe(&ctx(&[], Limits::default())).await.unwrap();
    assert_eq!(info.name, "custom-saml");
    let rt3 = runtime_in(dir.path());
    rt3.load(loaded.component_bytes().clone()).await.unwrap();
    assert_eq!(rt3.cache_stats().compiled, 1);
}

#[tokio::test]
async fn a_trapping_connector_fails_only_that_call() {
    let rt = shared_runtime();
    let h = hostile(&rt).await;
    let err = h.render(&ctx(&[("mode", "trap")], Limits::default()), ResourceKind::User, "{}".into()).await.unwrap_err();
    assert!(matches!(err, CallError::Trap { .. }), "{err:?}");
    assert_eq!(err.kind(), "trap");
    assert!(err.to_string().contains("hostile@1.0.0"), "{err}");
    // The same module keeps serving healthy calls.
    let ok = h.render(&ctx(&[("mode", "ok")], Limits::default()), ResourceKind::User, r#"{"a":1}"#.into()).await.unwrap();
    assert_eq!(ok, r#"{"a":1}"#);
}

#[tokio::test]
async fn a_panicking_connector_says_why_in_its_error_and_in_the_host_log() {
    let rt = shared_runtime();
    let h = hostile(&rt).await;
    let buffer = LogBuffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // The SDK's panic hook (installed by `export_connector!`) logs the panic before the trap;
    // the host adds that line to the trap's error, which is what the admin reads (the
    // connector event's message, the admin API's `message`).
    let err = h.render(&ctx(&[("mode", "trap")], Limits::default()), ResourceKind::User, "{}".into()).await.unwrap_err();
    assert_eq!(err.kind(), "trap");
    let message = err.to_string();
    assert!(message.starts_with("connector hostile@1.0.0 crashed (trap): wasm trap: "), "{message}");
    assert!(message.contains("; panicked at ") && message.contains("hostile/src/lib.rs:"), "{message}");
    assert!(message.ends_with(": hostile connector: mode=trap"), "{message}");

    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let line = text.lines().find(|l| l.contains("hostile connector: mode=trap")).unwrap_or_else(|| panic!("no panic line in the host log: {text}"));
    assert!(line.contains("ERROR") && line.contains("hostile@1.0.0") && line.contains("panicked at "), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_connector_is_stopped_at_its_deadline_while_others_keep_running() {
    let rt = shared_runtime();
    let h = Arc::new(hostile(&rt).await);
    let echo = rt.install(ECHO_V1).await.unwrap();
    let limits = Limits { deadline_ms: 1_500, ..Limits::default() };

    let looping = {
        let h = h.clone();
        tokio::spawn(async move { h.render(&ctx(&[("mode", "loop")], limits), ResourceKind::User, "{}".into()).await })
    };
    let healthy = ctx(&[], Limits::default());
    for i in 0..200 {
        let out = echo.render(&healthy, ResourceKind::User, format!(r#"{{"n":{i}}}"#)).await.unwrap();
        assert!(out.contains(&format!(r#""n":{i}"#)));
    }
    assert!(!looping.is_finished(), "200 healthy calls completed while the loop was still running");
    let err = looping.await.unwrap().unwrap_err();
    assert!(matches!(err, CallError::Timeout { limit_ms: 1_500, .. }), "{err:?}");
    assert!(err.to_string().contains("1500 ms"), "{err}");
}

#[tokio::test]
async fn a_memory_bomb_hits_the_connection_memory_limit() {
    let rt = shared_runtime();
    let h = hostile(&rt).await;
    let limits = Limits { memory_bytes: 32 << 20, ..Limits::default() };
    let err = h.render(&ctx(&[("mode", "oom")], limits), ResourceKind::User, "{}".into()).await.unwrap_err();
    match &err {
        CallError::MemoryLimit { limit, requested, .. } => {
            assert_eq!(*limit, 32 << 20);
            assert!(*requested > 32 << 20);
        }
        other => panic!("expected MemoryLimit, got {other:?}"),
    }
    assert_eq!(err.kind(), "memory");
}

#[tokio::test]
async fn a_100_mb_answer_is_refused_by_the_output_cap() {
    let rt = shared_runtime();
    let h = hostile(&rt).await;
    // Generous deadline: this test is about size, and building 100 MB takes a while on a
    // loaded machine.
    let limits = Limits { memory_bytes: 256 << 20, max_output_bytes: 1 << 20, deadline_ms: 30_000, ..Limits::default() };
    let err = h.render(&ctx(&[("mode", "huge")], limits), ResourceKind::User, "{}".into()).await.unwrap_err();
    match &err {
        CallError::OutputTooLarge { size, limit, .. } => {
            assert!(*size >= 100 << 20, "size {size}");
            assert_eq!(*limit, 1 << 20);
        }
        other => panic!("expected OutputTooLarge, got {other:?}"),
    }
    // With the default memory limit (64 MiB) the guest cannot even build it.
    let limits = Limits { deadline_ms: 30_000, ..Limits::default() };
    let err = h.render(&ctx(&[("mode", "huge")], limits), ResourceKind::User, "{}".into()).await.unwrap_err();
    assert_eq!(err.kind(), "memory", "{err}");
}

/// A one-shot HTTP/1.1 server on loopback that records the request head it received.
fn local_idp_api() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(mut s) = stream else { break };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            log.lock().unwrap().push(String::from_utf8_lossy(&buf).to_string());
            let body = r#"{"users":[]}"#;
            let _ = write!(s, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
        }
    });
    (port, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_goes_only_to_allowed_hosts_and_carries_the_host_credential() {
    let rt = shared_runtime();
    let h = hostile(&rt).await;
    let (port, seen) = local_idp_api();
    let declared = h.info().egress_hosts.clone();
    let credential = Credential {
        header: http::header::AUTHORIZATION,
        value: http::HeaderValue::from_static("Bearer idp-api-secret"),
    };

    // Allowed: declared by the connector and allowed by the admin (plain http to loopback only
    // with the test switch; see `plain_http_and_ports_not_listed_are_refused`).
    let admin = [format!("127.0.0.1:{port}")];
    let mut allowed = ctx(&[("mode", "egress"), ("url", &format!("http://127.0.0.1:{port}/users"))], Limits::default());
    allowed.egress = Arc::new(EgressPolicy::new(&declared, &admin, Some(credential.clone())).allow_plain_http_to_loopback());
    let out = h.render(&allowed, ResourceKind::User, "{}".into()).await.unwrap();
    let out: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["status"], 200);
    assert_eq!(out["body"], r#"{"users":[]}"#);
    let head = seen.lock().unwrap()[0].to_ascii_lowercase();
    assert!(head.starts_with("get /users"), "{head}");
    assert!(head.contains("authorization: bearer idp-api-secret"), "host attached the credential: {head}");

    // Declared by the connector but not allowed by the admin: refused, nothing sent.
    let mut denied = ctx(&[("mode", "egress"), ("url", &format!("http://localhost:{port}/users"))], Limits::default());
    denied.egress = Arc::new(EgressPolicy::new(&declared, &admin, Some(credential)).allow_plain_http_to_loopback());
    let err = h.render(&denied, ResourceKind::User, "{}".into()).await.unwrap_err();
    match &err {
        CallError::EgressDenied { destination, allowed, .. } => {
            assert_eq!(destination, &format!("http://localhost:{port}"));
            assert_eq!(allowed, &format!("127.0.0.1:{port}"));
        }
        other => panic!("expected EgressDenied, got {other:?}"),
    }
    assert_eq!(seen.lock().unwrap().len(), 1, "the denied request never left the host");

    // No policy at all: refused too.
    let none = ctx(&[("mode", "egress"), ("url", &format!("http://127.0.0.1:{port}/"))], Limits::default());
    let err = h.render(&none, ResourceKind::User, "{}".into()).await.unwrap_err();
    assert!(err.to_string().contains("allowed: no destinations"), "{err}");
}

#[tokio::test]
async fn connector_config_reaches_the_connector_and_invalid_input_is_its_error() {
    let rt = shared_runtime();
    let h = hostile(&rt).await;
    let err = h.render(&ctx(&[("mode", "nonsense")], Limits::default()), ResourceKind::User, "{}".into()).await.unwrap_err();
    match &err {
        CallError::Connector { error, .. } => assert!(error.message.contains("`nonsense`"), "{}", error.message),
        other => panic!("expected the connector's own config error, got {other:?}"),
    }
    assert!(!err.is_connector_fault());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_100_times_under_concurrent_calls_fails_nothing() {
    let rt = shared_runtime();
    let v1 = Arc::new(rt.install(ECHO_V1).await.unwrap());
    let v2 = Arc::new(rt.install(ECHO_V2).await.unwrap());
    let registry = Arc::new(Registry::new());
    let bind = |c: &Arc<LoadedConnector>, stamp| {
        Binding::new("conn_swap".into(), c.clone(), Arc::new(ctx(&[], Limits::default())), stamp)
    };
    registry.bind(bind(&v1, 0));

    // An in-flight snapshot keeps its version across a swap.
    let snapshot = registry.get("conn_swap").unwrap();
    registry.bind(bind(&v2, 1));
    let out = snapshot.connector.render(&snapshot.context, ResourceKind::User, "{}".into()).await.unwrap();
    assert!(out.contains(r#""served_by":"1.0.0""#), "{out}");
    registry.bind(bind(&v1, 2));

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut callers = Vec::new();
    for worker in 0..4 {
        let registry = registry.clone();
        let stop = stop.clone();
        callers.push(tokio::spawn(async move {
            let (mut ok, mut versions) = (0u64, HashSet::new());
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || i < 50 {
                i += 1;
                let b = registry.get("conn_swap").expect("always bound");
                let out = b
                    .connector
                    .render(&b.context, ResourceKind::User, format!(r#"{{"w":{worker},"i":{i}}}"#))
                    .await
                    .unwrap_or_else(|e| panic!("call failed during swaps: {e}"));
                let v: serde_json::Value = serde_json::from_str(&out).unwrap();
                assert_eq!(v["input"]["i"], i, "answer belongs to this call");
                versions.insert(v["served_by"].as_str().unwrap().to_string());
                ok += 1;
                tokio::task::yield_now().await;
            }
            (ok, versions)
        }));
    }
    for n in 0..100 {
        let next = if n % 2 == 0 { &v2 } else { &v1 };
        registry.bind(bind(next, 3 + n));
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    let mut seen = HashSet::new();
    for c in callers {
        let (ok, versions) = c.await.expect("caller did not panic");
        total += ok;
        seen.extend(versions);
    }
    assert!(total >= 200, "{total} calls");
    assert!(seen.iter().all(|v| v == "1.0.0" || v == "2.0.0"), "{seen:?}");
    assert_eq!(seen.len(), 2, "both versions served calls during the swaps: {seen:?}");
}

/// What `hostile` in `count` mode answered: the calls its instance had served.
fn calls_served(json: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(json).expect("count mode answers JSON");
    v["calls"].as_u64().expect("a call count")
}

#[tokio::test]
async fn the_calls_of_one_request_share_an_instance_and_a_failed_one_is_discarded() {
    let rt = shared_runtime();
    let c = hostile(&rt).await;
    let ctx = ctx(&[("mode", "count")], Limits::default());
    let get = ScimRequest {
        method: "GET".into(),
        resource: ResourceKind::User,
        id: Some("u1".into()),
        query: Vec::new(),
        body: None,
    };

    // Without a Warm every call is a fresh instance: nothing carries over.
    for _ in 0..3 {
        assert_eq!(calls_served(&c.render(&ctx, ResourceKind::User, "{}".into()).await.unwrap()), 1);
    }

    // One request: normalize, then renders, in the same instance.
    let mut warm = Warm::default();
    let ops = c.normalize_in(&mut warm, &ctx, get.clone()).await.unwrap();
    let idplex_runtime::Operation::Create(first) = &ops[0] else { panic!("count mode answers a create: {ops:?}") };
    assert_eq!(calls_served(first), 1);
    for expected in 2..=4 {
        let out = c.render_in(&mut warm, &ctx, ResourceKind::User, "{}".into()).await.unwrap();
        assert_eq!(calls_served(&out), expected);
    }

    // A trap fails that call only; the next call of the request gets a fresh instance.
    let err = c.render_in(&mut warm, &ctx, ResourceKind::User, "\"trap\"".into()).await.unwrap_err();
    assert_eq!(err.kind(), "trap", "{err}");
    let out = c.render_in(&mut warm, &ctx, ResourceKind::User, "{}".into()).await.unwrap();
    assert_eq!(calls_served(&out), 1, "the trapped instance must not be reused");

    // So does an answer the host cannot use (invalid JSON).
    assert_eq!(calls_served(&c.render_in(&mut warm, &ctx, ResourceKind::User, "{}".into()).await.unwrap()), 2);
    let err = c.render_in(&mut warm, &ctx, ResourceKind::User, "\"garbage\"".into()).await.unwrap_err();
    assert_eq!(err.kind(), "invalid_output", "{err}");
    let out = c.render_in(&mut warm, &ctx, ResourceKind::User, "{}".into()).await.unwrap();
    assert_eq!(calls_served(&out), 1, "an instance that answered garbage must not be reused");

    // A Warm used with another context (another connection's config) starts over.
    let other = self::ctx(&[("mode", "count")], Limits::default());
    let out = c.render_in(&mut warm, &other, ResourceKind::User, "{}".into()).await.unwrap();
    assert_eq!(calls_served(&out), 1, "an instance never serves another context");

    // A new request (a new Warm) never sees the previous one's state.
    let mut next = Warm::default();
    let out = c.render_in(&mut next, &ctx, ResourceKind::User, "{}".into()).await.unwrap();
    assert_eq!(calls_served(&out), 1);
}

/// A runtime of its own, with `reuse` for instance reuse.
fn runtime_with_reuse(reuse: InstanceReuse) -> (Runtime, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = RuntimeConfig::new(dir.path());
    cfg.max_concurrent_instances = 64;
    // These tests give several bindings one context (one connection id): lift its cap.
    cfg.max_instances_per_connection = 64;
    cfg.instance_reuse = reuse;
    (Runtime::new(cfg).expect("runtime"), dir)
}

/// One SCIM request on `binding` that renders once: the count its instance answered.
async fn one_request(binding: &Binding, resource: &str) -> Result<u64, CallError> {
    let mut warm = binding.idle.take();
    let out = binding.connector.render_in(&mut warm, &binding.context, ResourceKind::User, resource.into()).await;
    binding.idle.put(warm);
    out.map(|json| calls_served(&json))
}

#[tokio::test]
async fn a_binding_hands_a_healthy_instance_to_its_next_request_and_to_no_one_else() {
    let (rt, _dir) = runtime_with_reuse(InstanceReuse::default());
    let c = Arc::new(hostile(&rt).await);
    let context = Arc::new(ctx(&[("mode", "count")], Limits::default()));
    let binding = Binding::new("conn_test".into(), c.clone(), context.clone(), 0);

    // Requests in sequence continue in one instance.
    assert!(binding.idle.is_empty());
    assert_eq!(one_request(&binding, "{}").await.unwrap(), 1);
    assert_eq!(binding.idle.len(), 1, "a healthy instance waits for the next request");
    assert_eq!(one_request(&binding, "{}").await.unwrap(), 2);
    assert_eq!(one_request(&binding, "{}").await.unwrap(), 3);

    // Two requests at once never share: the second gets a fresh instance.
    let mut first = binding.idle.take();
    let mut second = binding.idle.take();
    assert!(first.is_started() && !second.is_started());
    let out = c.render_in(&mut second, &context, ResourceKind::User, "{}".into()).await.unwrap();
    assert_eq!(calls_served(&out), 1);
    let out = c.render_in(&mut first, &context, ResourceKind::User, "{}".into()).await.unwrap();
    assert_eq!(calls_served(&out), 4);
    binding.idle.put(second);
    binding.idle.put(first);
    assert_eq!(binding.idle.len(), 2);
    assert_eq!(one_request(&binding, "{}").await.unwrap(), 5, "the most recently returned goes first");

    // A request whose call trapped returns nothing: the next request starts afresh.
    let before = binding.idle.len();
    let mut warm = binding.idle.take();
    let err = c.render_in(&mut warm, &context, ResourceKind::User, "\"trap\"".into()).await.unwrap_err();
    assert_eq!(err.kind(), "trap", "{err}");
    binding.idle.put(warm);
    assert_eq!(binding.idle.len(), before - 1, "a trapped instance is never kept");
    // The same for an answer the host could not use.
    while !binding.idle.is_empty() {
        drop(binding.idle.take());
    }
    assert_eq!(one_request(&binding, "{}").await.unwrap(), 1);
    let err = one_request(&binding, "\"garbage\"").await.unwrap_err();
    assert_eq!(err.kind(), "invalid_output", "{err}");
    assert!(binding.idle.is_empty(), "an instance that answered garbage is never kept");
    assert_eq!(one_request(&binding, "{}").await.unwrap(), 1);

    // Another binding — another connection, or this one after a hot swap — never gets it.
    let swapped = Binding::new("conn_test".into(), c.clone(), context.clone(), 1);
    assert!(!swapped.idle.take().is_started());
    assert_eq!(one_request(&swapped, "{}").await.unwrap(), 1);
    let other_connection = Binding::new("conn_other".into(), c.clone(), Arc::new(ctx(&[("mode", "count")], Limits::default())), 0);
    assert_eq!(one_request(&other_connection, "{}").await.unwrap(), 1);
    assert_eq!(one_request(&binding, "{}").await.unwrap(), 2, "the first binding's own instance is intact");
}

#[tokio::test]
async fn kept_instances_are_retired_by_age_in_requests_memory_and_idle_time() {
    // After `max_requests` requests an instance is retired.
    let (rt, _dir) = runtime_with_reuse(InstanceReuse { max_requests: 3, ..InstanceReuse::default() });
    let c = Arc::new(hostile(&rt).await);
    let context = Arc::new(ctx(&[("mode", "count")], Limits::default()));
    let binding = Binding::new("conn_test".into(), c.clone(), context.clone(), 0);
    let served: Vec<u64> = {
        let mut v = Vec::new();
        for _ in 0..7 {
            v.push(one_request(&binding, "{}").await.unwrap());
        }
        v
    };
    assert_eq!(served, [1, 2, 3, 1, 2, 3, 1]);

    // `max_requests = 1`: a fresh instance for every request, nothing kept.
    let (rt, _dir) = runtime_with_reuse(InstanceReuse { max_requests: 1, ..InstanceReuse::default() });
    let c = Arc::new(hostile(&rt).await);
    let binding = Binding::new("conn_test".into(), c, context.clone(), 0);
    for _ in 0..3 {
        assert_eq!(one_request(&binding, "{}").await.unwrap(), 1);
        assert!(binding.idle.is_empty());
    }

    // An instance whose memory grew past the ceiling is not kept (the fixture's memory starts
    // at 17 pages of 64 KiB).
    let (rt, _dir) = runtime_with_reuse(InstanceReuse { max_memory_bytes: 1 << 20, ..InstanceReuse::default() });
    let c = Arc::new(hostile(&rt).await);
    let binding = Binding::new("conn_test".into(), c, context.clone(), 0);
    assert_eq!(one_request(&binding, "{}").await.unwrap(), 1);
    assert!(binding.idle.is_empty());
    assert_eq!(one_request(&binding, "{}").await.unwrap(), 1);

    // Idle past the timeout: released by a sweep, or passed over by the next request.
    let (rt, _dir) = runtime_with_reuse(InstanceReuse { idle_timeout: Duration::from_millis(50), ..InstanceReuse::default() });
    let c = Arc::new(hostile(&rt).await);
    let registry = Registry::new();
    registry.bind(Binding::new("conn_test".into(), c, context.clone(), 0));
    let binding = registry.get("conn_test").unwrap();
    assert_eq!(one_request(&binding, "{}").await.unwrap(), 1);
    assert_eq!(one_request(&binding, "{}").await.unwrap(), 2);
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(one_request(&binding, "{}").await.unwrap(), 1, "an expired instance is not handed out");
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(binding.idle.len(), 1);
    assert_eq!(registry.sweep_idle(), 1);
    assert!(binding.idle.is_empty());
}

#[tokio::test]
async fn idle_instances_never_take_more_than_their_share_of_the_pool() {
    // 64 pool slots: at most 16 idle in all, and at most 4 per binding here.
    let (rt, _dir) = runtime_with_reuse(InstanceReuse { max_idle_per_binding: 4, ..InstanceReuse::default() });
    let c = Arc::new(hostile(&rt).await);
    let context = Arc::new(ctx(&[("mode", "count")], Limits::default()));
    let bindings: Vec<Binding> =
        (0..6).map(|i| Binding::new(format!("conn_{i}"), c.clone(), context.clone(), 0)).collect();
    for b in &bindings {
        // Eight requests at once, then all return.
        let mut warms: Vec<Warm> = (0..8).map(|_| b.idle.take()).collect();
        for w in &mut warms {
            c.render_in(w, &context, ResourceKind::User, "{}".into()).await.unwrap();
        }
        for w in warms {
            b.idle.put(w);
        }
        assert!(b.idle.len() <= 4, "{}", b.idle.len());
    }
    let total: usize = bindings.iter().map(|b| b.idle.len()).sum();
    assert_eq!(total, 16, "a quarter of the pool");
    // Instances leave with their binding, and free the share for others.
    drop(bindings);
    let b = Binding::new("conn_next".into(), c.clone(), context.clone(), 0);
    let mut warms: Vec<Warm> = (0..4).map(|_| b.idle.take()).collect();
    for w in &mut warms {
        c.render_in(w, &context, ResourceKind::User, "{}".into()).await.unwrap();
    }
    for w in warms {
        b.idle.put(w);
    }
    assert_eq!(b.idle.len(), 4);
}

// ---------------------------------------------------------------------------------------------
// The per-call sandbox state: credential, sockets, host resources, output accounting, logs.
// ---------------------------------------------------------------------------------------------

const TOKEN: &str = "tok-7f3a9c2e51d84b06";

fn bearer() -> Credential {
    Credential { header: http::header::AUTHORIZATION, value: http::HeaderValue::from_static("Bearer tok-7f3a9c2e51d84b06") }
}

/// A loopback HTTP/1.1 server that answers every request with its own request head: each
/// request header echoed as a response header `x-echo-<name>`, and the whole head as the body.
/// Returns the port and the heads it received.
fn echo_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut s) = stream else { break };
            let head = read_head(&mut s);
            log.lock().unwrap().push(head.clone());
            let mut response = String::from("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n");
            for line in head.lines().skip(1).filter(|l| !l.is_empty()) {
                if let Some((name, value)) = line.split_once(':') {
                    response.push_str(&format!("x-echo-{}: {}\r\n", name.trim(), value.trim()));
                }
            }
            response.push_str(&format!("content-length: {}\r\n\r\n{head}", head.len()));
            let _ = s.write_all(response.as_bytes());
        }
    });
    (port, seen)
}

fn read_head(s: &mut std::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&buf).to_string()
}

fn loopback_egress(h: &LoadedConnector, admin: &str, credential: Option<Credential>) -> Arc<EgressPolicy> {
    Arc::new(EgressPolicy::new(&h.info().egress_hosts, &[admin.to_string()], credential).allow_plain_http_to_loopback())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credential_goes_out_but_never_comes_back_to_the_connector() {
    let rt = shared_runtime();
    let h = hostile(&rt).await;
    let (port, seen) = echo_server();
    let mut c = ctx(&[("mode", "egress"), ("url", &format!("http://127.0.0.1:{port}/echo"))], Limits::default());
    c.egress = loopback_egress(&h, &format!("127.0.0.1:{port}"), Some(bearer()));

    let out = h.render(&c, ResourceKind::User, "{}".into()).await.unwrap();
    // The IdP got the credential...
    let head = seen.lock().unwrap()[0].clone();
    assert!(head.to_ascii_lowercase().contains(&format!("authorization: bearer {TOKEN}")), "{head}");
    // ...and the connector got the echo, with the token overwritten in headers and body.
    assert!(!out.contains(TOKEN), "the connector read the credential: {out}");
    let out: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["status"], 200);
    let stars = "*".repeat(TOKEN.len());
    assert_eq!(out["headers"]["x-echo-authorization"], format!("Bearer {stars}"), "{out}");
    assert!(out["body"].as_str().unwrap().contains(&format!("Bearer {stars}")), "{out}");
    assert!(out["body"].as_str().unwrap().contains("GET /echo"), "the rest of the body is intact: {out}");
    // The host asked for an uncompressed answer (which it can redact); the connector could not
    // have chosen otherwise.
    assert!(head.to_ascii_lowercase().contains("accept-encoding: identity"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_and_ports_not_listed_are_refused() {
    let rt = shared_runtime();
    let h = hostile(&rt).await;
    let (port, seen) = echo_server();
    let url = format!("http://127.0.0.1:{port}/admin");
    let cases: Vec<(&str, Arc<EgressPolicy>, &str)> = vec![
        (
            "plain http, default policy",
            Arc::new(EgressPolicy::new(&h.info().egress_hosts, &[format!("127.0.0.1:{port}")], Some(bearer()))),
            "only https is allowed",
        ),
        // An entry without a port is the default port only: it does not open the loopback
        // port idplex (or anything else) listens on.
        ("portless entry, another port", loopback_egress(&h, "127.0.0.1", Some(bearer())), ""),
        ("portless entry, no credential", loopback_egress(&h, "127.0.0.1", None), ""),
    ];
    for (what, policy, why) in cases {
        let mut c = ctx(&[("mode", "egress"), ("url", &url)], Limits::default());
        c.egress = policy;
        let err = h.render(&c, ResourceKind::User, "{}".into()).await.unwrap_err();
        match &err {
            CallError::EgressDenied { destination, .. } => {
                assert!(destination.starts_with(&format!("http://127.0.0.1:{port}")), "{what}: {destination}");
                assert!(destination.contains(why), "{what}: {destination}");
            }
            other => panic!("{what}: expected EgressDenied, got {other:?}"),
        }
        assert_eq!(err.kind(), "egress_denied");
    }
    assert!(seen.lock().unwrap().is_empty(), "no refused request reached the server");
}

/// A loopback server that answers each request's head (promising a large body it never sends)
/// and then waits for the client to close. Returns the port, the connections accepted and the
/// connections the client closed.
fn stalling_server() -> (u16, Arc<std::sync::atomic::AtomicUsize>, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let (a, c) = (accepted.clone(), closed.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { break };
            a.fetch_add(1, Ordering::SeqCst);
            let c = c.clone();
            std::thread::spawn(move || {
                read_head(&mut s);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\npartial");
                // Returns when the client closes (EOF or reset); the socket is closed here too.
                let mut buf = [0u8; 1024];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
                c.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (port, accepted, closed)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Wait (bounded) until `f` holds.
async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within 10 s: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_a_connector_leaves_open_are_closed_when_its_call_ends() {
    use std::sync::atomic::Ordering;
    let rt = shared_runtime();
    let h = hostile(&rt).await;
    let (port, accepted, closed) = stalling_server();
    let mut c = ctx(&[("mode", "leak"), ("requests", "8"), ("url", &format!("http://127.0.0.1:{port}/slow"))], Limits::default());
    c.egress = loopback_egress(&h, &format!("127.0.0.1:{port}"), None);

    // The instance is kept (as between the SCIM requests of a binding), yet its sockets close.
    let mut warm = Warm::default();
    let out = h.render_in(&mut warm, &c, ResourceKind::User, "{}".into()).await.unwrap();
    assert_eq!(out, r#"{"leaked":8}"#);
    assert!(warm.is_started(), "a successful call keeps its instance");
    assert_eq!(accepted.load(Ordering::SeqCst), 8);
    eventually("the 8 leaked connections are closed", || closed.load(Ordering::SeqCst) == 8).await;
    let baseline = open_fds();

    // Many calls in the same instance: no socket survives its call.
    for _ in 0..20 {
        h.render_in(&mut warm, &c, ResourceKind::User, "{}".into()).await.unwrap();
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 8 * 21);
    eventually("every leaked connection is closed", || closed.load(Ordering::SeqCst) == 8 * 21).await;
    // (Other tests of this binary open files and sockets meanwhile: the slack is for them; the
    // 160 connections, 320 descriptors, of a leak are not.)
    eventually("no file descriptor growth", || open_fds() < baseline + 40).await;

    // More requests in flight at once than a call may have: refused with the limit.
    let mut c9 = ctx(&[("mode", "leak"), ("requests", "9"), ("url", &format!("http://127.0.0.1:{port}/slow"))], Limits::default());
    c9.egress = c.egress.clone();
    let err = h.render(&c9, ResourceKind::User, "{}".into()).await.unwrap_err();
    assert_eq!(err.kind(), "egress_denied", "{err}");
    assert!(err.to_string().contains("more than 8 requests in flight at once"), "{err}");
    // The limit is the connection's to set.
    let c9 = CallContext { limits: Limits { max_requests_in_flight: 9, ..Limits::default() }, ..c9 };
    assert_eq!(h.render(&c9, ResourceKind::User, "{}".into()).await.unwrap(), r#"{"leaked":9}"#);
    eventually("all closed", || closed.load(Ordering::SeqCst) == accepted.load(Ordering::SeqCst)).await;
}

#[tokio::test]
async fn host_resources_are_bounded_per_call_and_freed_after_it() {
    let rt = shared_runtime();
    let h = hostile(&rt).await;

    // Without egress a connector gets a handful of host resources, not thousands of fields.
    let err = h.render(&ctx(&[("mode", "fields")], Limits::default()), ResourceKind::User, "{}".into()).await.unwrap_err();
    assert!(matches!(err, CallError::HostResources { limit: 16, .. }), "{err:?}");
    assert_eq!(err.kind(), "memory");
    assert!(err.to_string().contains("16 live host resources"), "{err}");

    // With egress, the connection's limit applies.
    let mut c = ctx(&[("mode", "fields")], Limits { max_host_resources: 100, ..Limits::default() });
    c.egress = loopback_egress(&h, "127.0.0.1:9", None);
    let err = h.render(&c, ResourceKind::User, "{}".into()).await.unwrap_err();
    assert!(matches!(err, CallError::HostResources { limit: 100, .. }), "{err:?}");

    // A header section over the limit fails the call, and the instance is not kept.
    let mut warm = Warm::default();
    let big = ctx(&[("mode", "fields"), ("fields", "1"), ("header_bytes", "100000")], Limits::default());
    let err = h.render_in(&mut warm, &big, ResourceKind::User, "{}".into()).await.unwrap_err();
    assert!(matches!(err, CallError::HeadersTooLarge { limit: 65536, .. }), "{err:?}");
    assert_eq!(err.kind(), "memory");
    assert!(!warm.is_started(), "a failed instance is discarded");

    // What a call leaves behind is freed when it ends: a kept instance does not accumulate.
    let some = ctx(&[("mode", "fields"), ("fields", "12"), ("header_bytes", "60000")], Limits::default());
    for _ in 0..50 {
        let out = h.render_in(&mut warm, &some, ResourceKind::User, "{}".into()).await.unwrap();
        assert_eq!(out, r#"{"created":12}"#);
    }
    assert!(warm.is_started());
}

#[tokio::test]
async fn a_flood_of_empty_patch_operations_is_refused_by_count_and_by_real_size() {
    let rt = shared_runtime();
    let h = hostile(&rt).await;
    let patch = ScimRequest {
        method: "PATCH".into(),
        resource: ResourceKind::User,
        id: Some("u1".into()),
        query: Vec::new(),
        body: Some("{}".into()),
    };
    // Memory for the guest to build them (its own copy and the returned list).
    let limits = Limits { deadline_ms: 30_000, memory_bytes: 128 << 20, ..Limits::default() };
    let err = h.normalize(&ctx(&[("mode", "ops")], limits), patch.clone()).await.unwrap_err();
    match &err {
        CallError::TooManyOperations { count, limit, .. } => {
            assert_eq!(*count, 900_001);
            assert_eq!(*limit, 10_000);
        }
        other => panic!("expected TooManyOperations, got {other:?}"),
    }
    assert_eq!(err.kind(), "output_too_large");

    // Past the count, each empty operation still costs its in-memory size (not ~1 byte).
    let limits = Limits { max_operations: 1_000_000, ..limits };
    let err = h.normalize(&ctx(&[("mode", "ops")], limits), patch.clone()).await.unwrap_err();
    match &err {
        CallError::OutputTooLarge { size, limit, .. } => {
            assert!(*size >= 900_000 * 48, "size {size}");
            assert_eq!(*limit, 4 << 20);
        }
        other => panic!("expected OutputTooLarge, got {other:?}"),
    }

    // Within the limits it goes through.
    let ops = h.normalize(&ctx(&[("mode", "ops"), ("ops", "100")], Limits::default()), patch).await.unwrap();
    assert!(matches!(&ops[0], idplex_runtime::Operation::Patch((_, p)) if p.len() == 100));
}

/// Collects what the text log would print.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_connector_log_message_stays_one_escaped_line_and_lines_are_capped() {
    let rt = shared_runtime();
    let h = hostile(&rt).await;
    let buffer = LogBuffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let forged = "user synced\n2026-12-01T10:00:00.000000Z ERROR idplex: admin token rotated\r\x1b[2Kdone\u{202e}";
    let c = ctx(&[("mode", "log"), ("message", forged), ("log_lines", "1000")], Limits::default());
    h.render(&c, ResourceKind::User, "{}".into()).await.unwrap();

    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let connector_lines: Vec<&&str> = lines.iter().filter(|l| l.contains("user synced")).collect();
    assert_eq!(connector_lines.len(), 64, "{text}");
    assert!(!lines.iter().any(|l| l.starts_with("2026-12-01T10:00:00")), "a forged line: {text}");
    assert!(!text.contains('\r') && !text.contains('\x1b') && !text.contains('\u{202e}'), "{text:?}");
    assert!(
        connector_lines[0].contains(r"user synced\n2026-12-01T10:00:00.000000Z ERROR idplex: admin token rotated\r\u{1b}[2Kdone\u{202e}"),
        "{}",
        connector_lines[0]
    );
    assert!(text.contains("936 more log lines of this call dropped"), "{text}");

    // A long message is cut.
    buffer.0.lock().unwrap().clear();
    let long = "x".repeat(100_000);
    let c = ctx(&[("mode", "log"), ("message", &long)], Limits::default());
    h.render(&c, ResourceKind::User, "{}".into()).await.unwrap();
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(text.len() < 4096, "{} bytes logged", text.len());
    assert!(text.contains("xxx…"), "{text}");
}
