//! Install checks what it can before compiling, compiles off the async workers, and remembers
//! refusals; the connector's config schema is checked at install and enforced on configs.

use idplex_bundled::testing::{BAD_SCHEMA, HOSTILE};
use idplex_runtime::{InstallError, Runtime, RuntimeConfig};

fn runtime(dir: &std::path::Path) -> Runtime {
    let mut cfg = RuntimeConfig::new(dir);
    cfg.max_concurrent_instances = 8;
    Runtime::new(cfg).unwrap()
}

/// A component of about `mib` MiB (one core module with a large data segment) that exports no
/// idplex interface.
fn big_component_of_another_world(mib: usize) -> Vec<u8> {
    let data = "a".repeat(mib << 20);
    let text = format!(
        r#"(component
             (core module $m (memory 200) (data (i32.const 0) "{data}") (func (export "f")))
             (instance $i)
             (export "acme:thing/run@1.0.0" (instance $i)))"#
    );
    wat::parse_str(&text).expect("valid wat")
}

#[tokio::test]
async fn another_world_is_refused_before_compiling_and_its_refusal_is_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let bytes = big_component_of_another_world(12);
    assert!(bytes.len() > 12 << 20 && bytes.len() <= rt.config().max_module_bytes);

    let err = rt.install(&bytes).await.expect_err("another world");
    assert!(matches!(err, InstallError::WrongWorld { .. }), "{err}");
    assert!(err.to_string().contains("acme:thing/run"), "{err}");
    let stats = rt.cache_stats();
    assert_eq!((stats.compiled, stats.refusals_cached), (0, 0), "refused without compiling");

    // The same bytes again: the same refusal, from the refusal cache.
    let again = rt.install(&bytes).await.expect_err("still another world");
    assert_eq!(again.to_string(), err.to_string());
    let stats = rt.cache_stats();
    assert_eq!((stats.compiled, stats.refusals_cached), (0, 1));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no artifact for a refused module");
}

#[tokio::test]
async fn a_config_schema_with_a_remote_ref_is_refused_at_install() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let err = rt.install(BAD_SCHEMA).await.expect_err("remote $ref");
    assert_eq!(err.kind(), "bad_metadata", "{err}");
    assert!(err.to_string().contains("config-schema"), "{err}");
    assert!(err.to_string().contains("schemas.invalid"), "names the reference: {err}");
    // Remembered: the retry is refused without another compilation.
    let compiled = rt.cache_stats().compiled;
    rt.install(BAD_SCHEMA).await.expect_err("remote $ref");
    assert_eq!(rt.cache_stats().compiled, compiled);
    assert_eq!(rt.cache_stats().refusals_cached, 1);
}

#[tokio::test]
async fn the_config_schema_is_enforced_naming_the_field_and_never_showing_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let saml = &idplex_bundled::FIRST_PARTY.iter().find(|c| c.crate_name == "custom-saml").unwrap();
    let c = rt.install(saml.component).await.unwrap();

    c.check_config(&serde_json::json!({})).expect("empty config is valid");
    c.check_config(&serde_json::Value::Null).expect("no config is valid");
    c.check_config(&serde_json::json!({"user_name_source": "attribute"})).expect("valid config");

    let bad = c.check_config(&serde_json::json!({"user_name_source": "shoe-size"})).unwrap_err();
    assert_eq!(bad.fields, vec!["user_name_source".to_string()]);
    assert!(bad.to_string().contains("user_name_source"), "{bad}");

    // custom-saml allows no other keys: a secret it does not know is named, its value never shown.
    let secret = "tok_5up3r-s3cr3t";
    let bad = c
        .check_config(&serde_json::json!({"secret.authorization": secret, "user_name_source": 7}))
        .unwrap_err();
    assert!(bad.fields.contains(&"secret.authorization".to_string()), "{bad:?}");
    assert!(bad.fields.contains(&"user_name_source".to_string()), "{bad:?}");
    assert!(!bad.to_string().contains(secret) && !format!("{bad:?}").contains(secret), "{bad:?}");

    // Several violations: each field is named.
    let h = rt.install(HOSTILE).await.unwrap();
    h.check_config(&serde_json::json!({"mode": "loop"})).unwrap();
    let bad = h.check_config(&serde_json::json!({"mode": 5, "huge_bytes": "12x"})).unwrap_err();
    assert!(bad.fields.contains(&"mode".to_string()) && bad.fields.contains(&"huge_bytes".to_string()), "{bad:?}");
}
