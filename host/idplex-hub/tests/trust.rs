//! Signed modules and the trust policy at install (`idplex_hub::trust`): each refusal, what is
//! admitted and how it is recorded, and that the runtime and the store carry the signature
//! section unchanged.

use std::sync::Arc;

use idplex_bundled::testing::{ECHO_V1, ECHO_V2};
use idplex_hub::trust::{PublisherKey, SIGNATURE_SECTION, TrustRefusal, append_signature, sign_module, strip_signature};
use idplex_hub::{ErrorClass, Hub, HubError};
use idplex_runtime::{Runtime, RuntimeConfig};
use idplex_store::{Admission, EventKind, Store, TrustRule};
use sha2::{Digest, Sha256};

async fn hub() -> (Arc<Hub>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = RuntimeConfig::new(dir.path().join("cache"));
    cfg.max_concurrent_instances = 8;
    let runtime = Runtime::new(cfg).unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("idplex.db").display())).await.unwrap();
    (Hub::new(store, runtime), dir)
}

/// `bytes` with a custom section `name` carrying `data` appended.
fn with_custom_section(bytes: &[u8], name: &str, data: &[u8]) -> Vec<u8> {
    fn leb(mut v: usize, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    let mut content = Vec::new();
    leb(name.len(), &mut content);
    content.extend_from_slice(name.as_bytes());
    content.extend_from_slice(data);
    let mut out = bytes.to_vec();
    out.push(0);
    leb(content.len(), &mut out);
    out.extend_from_slice(&content);
    out
}

/// `ECHO_V1` (echo@1.0.0) signed by `key` as `publisher`.
fn signed_v1(key: &PublisherKey, publisher: &str) -> Vec<u8> {
    append_signature(ECHO_V1, key, publisher, "echo", "1.0.0")
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn trust(hub: &Hub, key: &PublisherKey, publisher: &str) -> String {
    let (record, added) = hub.trust_publisher_key(&key.public(publisher).line(), "test").await.unwrap();
    assert!(added);
    record.fingerprint
}

async fn allow_everything(hub: &Hub) {
    hub.set_trust_policy(Some(TrustRule::Allow), Some(TrustRule::Allow), "test").await.unwrap();
}

/// The `install_refused` events' messages, newest first.
async fn refusals(hub: &Hub) -> Vec<String> {
    let events = hub.events(None, 100).await.unwrap();
    events.into_iter().filter(|e| e.kind == EventKind::InstallRefused).map(|e| e.message).collect()
}

#[track_caller]
fn refusal(result: Result<idplex_hub::InstallReport, HubError>) -> TrustRefusal {
    match result {
        Err(HubError::Trust(r)) => r,
        Err(other) => panic!("expected a trust refusal, got {other}"),
        Ok(r) => panic!("expected a trust refusal, got an install of {}@{}", r.name, r.version),
    }
}

#[tokio::test]
async fn an_unsigned_module_is_refused_by_default_with_an_event() {
    let (hub, _dir) = hub().await;
    let policy = hub.trust_policy().await.unwrap();
    assert_eq!((policy.unsigned, policy.untrusted), (TrustRule::Refuse, TrustRule::Refuse), "refuse both by default");
    let err = hub.install(ECHO_V1).await.expect_err("unsigned");
    assert_eq!(err.code(), "unsigned_module", "{err}");
    assert_eq!(err.class(), ErrorClass::Invalid);
    assert!(err.to_string().contains("echo@1.0.0 is not signed"), "{err}");
    assert!(hub.connectors().await.unwrap().is_empty(), "nothing stored");
    let events = refusals(&hub).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].contains("not signed"), "{events:?}");
    let event = &hub.events(None, 10).await.unwrap()[0];
    assert_eq!(event.connector, "echo@1.0.0");
}

#[tokio::test]
async fn a_module_signed_by_an_untrusted_key_is_refused_naming_the_key() {
    let (hub, _dir) = hub().await;
    let (key, _) = PublisherKey::generate().unwrap();
    let refused = refusal(hub.install(&signed_v1(&key, "acme")).await);
    assert!(matches!(refused, TrustRefusal::UntrustedKey { .. }), "{refused}");
    assert_eq!(refused.kind(), "untrusted_publisher");
    assert!(refused.to_string().contains(&key.fingerprint()), "{refused}");
    assert!(refused.to_string().contains("acme"), "{refused}");
    // Another trusted key does not help.
    let (other, _) = PublisherKey::generate().unwrap();
    trust(&hub, &other, "acme").await;
    assert_eq!(refusal(hub.install(&signed_v1(&key, "acme")).await).kind(), "untrusted_publisher");
    assert_eq!(refusals(&hub).await.len(), 2);
    assert!(hub.connectors().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_module_signed_by_a_trusted_key_installs_signed_bytes_and_shows_its_publisher() {
    let (hub, dir) = hub().await;
    let (key, _) = PublisherKey::generate().unwrap();
    let fingerprint = trust(&hub, &key, "acme").await;
    assert_eq!(fingerprint, key.fingerprint());
    // `sign_module` describes the module itself (its own runtime, no database).
    let signed = sign_module(ECHO_V1, &key, "acme").await.unwrap();
    assert_eq!((signed.name.as_str(), signed.version.as_str()), ("echo", "1.0.0"));
    assert_eq!(signed.unsigned_sha256, sha256(ECHO_V1));
    assert!(!signed.componentized && !signed.replaced_signature);
    let report = hub.install(&signed.bytes).await.unwrap();
    assert_eq!(report.outcome, "installed");
    assert_eq!(report.publisher.admitted_as, Admission::Trusted);
    assert_eq!(report.publisher.publisher.as_deref(), Some("acme"));
    assert_eq!(report.publisher.fingerprint.as_deref(), Some(fingerprint.as_str()));
    // The store keeps the signed bytes, under their own sha256.
    assert_eq!(report.sha256, sha256(&signed.bytes));
    assert_eq!(report.sha256, signed.sha256);
    assert_eq!(hub.store().module_bytes(&report.sha256).await.unwrap(), signed.bytes);
    // Inspect (and list) show the publisher.
    let module = hub.connector_module("echo", "1.0.0").await.unwrap();
    assert_eq!(module.publisher.as_ref(), Some(&report.publisher));
    assert_eq!(module.publisher.unwrap().to_string(), format!("acme (key {fingerprint}, trusted)"));
    assert_eq!(hub.connectors().await.unwrap()[0].publisher.as_ref(), Some(&report.publisher));
    // The runtime loads the stored bytes as they are (wasmtime ignores the custom section) ...
    let fresh = Runtime::new(RuntimeConfig { max_concurrent_instances: 8, ..RuntimeConfig::new(dir.path().join("cache2")) }).unwrap();
    let loaded = fresh.load(signed.bytes.clone().into()).await.unwrap();
    assert_eq!(loaded.info().name, "echo");
    assert_eq!(loaded.component_bytes().as_ref(), &signed.bytes[..]);
    // ... and the same signed bytes again are already installed; re-signing replaces the
    // signature rather than adding one.
    assert_eq!(hub.install(&signed.bytes).await.unwrap().outcome, "already_installed");
    let again = sign_module(&signed.bytes, &key, "acme").await.unwrap();
    assert!(again.replaced_signature);
    assert_eq!(strip_signature(&again.bytes).unwrap(), ECHO_V1);
}

#[tokio::test]
async fn bytes_changed_after_signing_are_refused_even_when_everything_is_allowed() {
    let (hub, _dir) = hub().await;
    allow_everything(&hub).await;
    let (key, _) = PublisherKey::generate().unwrap();
    trust(&hub, &key, "acme").await;
    let signed = signed_v1(&key, "acme");
    let section = &signed[ECHO_V1.len()..];
    // A section slipped in before the signature: still a valid component, other bytes.
    let mut tampered = with_custom_section(ECHO_V1, "tamper", b"evil");
    tampered.extend_from_slice(section);
    let refused = refusal(hub.install(&tampered).await);
    assert!(matches!(refused, TrustRefusal::SignatureInvalid { .. }), "{refused}");
    assert!(refused.to_string().contains(&sha256(ECHO_V1)), "names the signed sha256: {refused}");
    assert!(refused.to_string().contains("changed after it was signed"), "{refused}");
    // A signature whose bytes were flipped.
    let mut forged = signed.clone();
    let at = forged.len() - 10; // inside the base64 signature of the JSON payload
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let refused = refusal(hub.install(&forged).await);
    assert!(matches!(refused, TrustRefusal::SignatureInvalid { .. } | TrustRefusal::Malformed { .. }), "{refused}");
    assert!(hub.connectors().await.unwrap().is_empty());
    assert_eq!(refusals(&hub).await.len(), 2);
}

#[tokio::test]
async fn a_signature_moved_to_another_module_is_refused() {
    let (hub, _dir) = hub().await;
    allow_everything(&hub).await;
    let (key, _) = PublisherKey::generate().unwrap();
    trust(&hub, &key, "acme").await;
    let signed = signed_v1(&key, "acme");
    let mut moved = ECHO_V2.to_vec();
    moved.extend_from_slice(&signed[ECHO_V1.len()..]);
    let refused = refusal(hub.install(&moved).await);
    assert!(matches!(refused, TrustRefusal::SignatureInvalid { .. }), "{refused}");
    assert_eq!(refused.kind(), "signature_invalid");
}

#[tokio::test]
async fn a_signature_for_another_name_or_version_is_refused() {
    let (hub, _dir) = hub().await;
    allow_everything(&hub).await;
    let (key, _) = PublisherKey::generate().unwrap();
    trust(&hub, &key, "acme").await;
    // A valid signature over echo@2.0.0's bytes, made for echo@1.0.0.
    let wrong_version = append_signature(ECHO_V2, &key, "acme", "echo", "1.0.0");
    let refused = refusal(hub.install(&wrong_version).await);
    assert!(matches!(refused, TrustRefusal::WrongModule { .. }), "{refused}");
    assert!(refused.to_string().contains("made for echo@1.0.0"), "{refused}");
    assert!(refused.to_string().contains("echo@2.0.0"), "{refused}");
    let wrong_name = append_signature(ECHO_V1, &key, "acme", "other", "1.0.0");
    assert_eq!(refusal(hub.install(&wrong_name).await).kind(), "signature_wrong_module");
    assert!(hub.connectors().await.unwrap().is_empty());
}

#[tokio::test]
async fn malformed_and_duplicated_signature_sections_are_refused() {
    let (hub, _dir) = hub().await;
    allow_everything(&hub).await;
    let (key, _) = PublisherKey::generate().unwrap();
    trust(&hub, &key, "acme").await;
    let signed = signed_v1(&key, "acme");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("two signature sections", append_signature(&signed, &key, "acme", "echo", "1.0.0")),
        ("a section after the signature", with_custom_section(&signed, "after", b"x")),
        ("not JSON", with_custom_section(ECHO_V1, SIGNATURE_SECTION, b"not json")),
        ("unknown format version", {
            let text = String::from_utf8_lossy(&signed[ECHO_V1.len()..]).into_owned();
            let json_start = text.find('{').unwrap();
            let payload = text[json_start..].replace("\"v\":1", "\"v\":2");
            with_custom_section(ECHO_V1, SIGNATURE_SECTION, payload.as_bytes())
        }),
        ("a key that is not 32 bytes", {
            let text = String::from_utf8_lossy(&signed[ECHO_V1.len()..]).into_owned();
            let mut payload: serde_json::Value = serde_json::from_str(&text[text.find('{').unwrap()..]).unwrap();
            payload["key"] = "AAAA".into();
            with_custom_section(ECHO_V1, SIGNATURE_SECTION, payload.to_string().as_bytes())
        }),
    ];
    for (what, bytes) in cases {
        let refused = refusal(hub.install(&bytes).await);
        assert!(matches!(refused, TrustRefusal::Malformed { .. }), "{what}: {refused}");
        assert_eq!(refused.kind(), "signature_malformed", "{what}");
    }
    assert!(hub.connectors().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_policy_can_let_unsigned_and_untrusted_modules_in_marked_as_such() {
    let (hub, _dir) = hub().await;
    let policy = hub.set_trust_policy(Some(TrustRule::Allow), None, "ops").await.unwrap();
    assert_eq!((policy.unsigned, policy.untrusted), (TrustRule::Allow, TrustRule::Refuse));
    assert_eq!(policy.updated_by.as_deref(), Some("ops"));
    let report = hub.install(ECHO_V1).await.unwrap();
    assert_eq!(report.publisher.admitted_as, Admission::Unsigned);
    assert_eq!(report.publisher.to_string(), "unsigned");
    let module = hub.connector_module("echo", "1.0.0").await.unwrap();
    assert_eq!(module.publisher.unwrap().admitted_as, Admission::Unsigned);
    // A signed module by an unknown key is still refused; then allowed, with the claimed name.
    let (key, _) = PublisherKey::generate().unwrap();
    let signed_v2 = append_signature(ECHO_V2, &key, "acme", "echo", "2.0.0");
    assert_eq!(refusal(hub.install(&signed_v2).await).kind(), "untrusted_publisher");
    hub.set_trust_policy(None, Some(TrustRule::Allow), "ops").await.unwrap();
    let report = hub.install(&signed_v2).await.unwrap();
    assert_eq!(report.publisher.admitted_as, Admission::Untrusted);
    assert_eq!(report.publisher.fingerprint, Some(key.fingerprint()));
    assert!(report.publisher.to_string().contains("not trusted"), "{}", report.publisher);
    // Every change is in the events.
    let kinds: Vec<String> = hub.events(None, 100).await.unwrap().into_iter().map(|e| e.kind.to_string()).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "trust_policy_set").count(), 2, "{kinds:?}");
}

#[tokio::test]
async fn bundled_connectors_install_whatever_the_policy() {
    let (hub, _dir) = hub().await;
    let reports = hub.install_bundled().await.unwrap();
    assert!(!reports.is_empty());
    for report in &reports {
        assert_eq!(report.publisher.admitted_as, Admission::FirstParty, "{}", report.name);
        assert_eq!(report.publisher.to_string(), "first-party (bundled)");
    }
    // The bundled bytes from a file are first-party too: the binary vouches for them.
    let saml = idplex_bundled::FIRST_PARTY.iter().find(|c| c.crate_name == "custom-saml").unwrap();
    let again = hub.install(saml.component).await.unwrap();
    assert_eq!(again.outcome, "already_installed");
    assert_eq!(again.publisher.admitted_as, Admission::FirstParty);
    let module = hub.connector_module("custom-saml", &again.version).await.unwrap();
    assert_eq!(module.publisher.unwrap().admitted_as, Admission::FirstParty);
}

#[tokio::test]
async fn removing_a_key_refuses_later_installs_and_keeps_earlier_ones() {
    let (hub, _dir) = hub().await;
    let (key, _) = PublisherKey::generate().unwrap();
    let fingerprint = trust(&hub, &key, "acme").await;
    hub.install(&signed_v1(&key, "acme")).await.unwrap();
    // Trusting it again is not an error and changes nothing.
    let (_, added) = hub.trust_publisher_key(&key.public("acme").line(), "test").await.unwrap();
    assert!(!added);
    let removed = hub.untrust_publisher_key(&fingerprint.to_uppercase(), "ops").await.unwrap();
    assert_eq!(removed.publisher, "acme");
    assert!(hub.trusted_keys().await.unwrap().is_empty());
    let signed_v2 = append_signature(ECHO_V2, &key, "acme", "echo", "2.0.0");
    let refused = refusal(hub.install(&signed_v2).await);
    assert_eq!(refused.kind(), "untrusted_publisher");
    assert!(refused.to_string().contains(&fingerprint), "{refused}");
    // echo@1.0.0 stays installed and is not judged again.
    let v1 = hub.connector_module("echo", "1.0.0").await.unwrap();
    assert_eq!(v1.publisher.unwrap().admitted_as, Admission::Trusted);
    hub.connector(&v1.sha256).await.unwrap();
    // Removing it again: not found.
    let err = hub.untrust_publisher_key(&fingerprint, "ops").await.expect_err("gone");
    assert_eq!(err.class(), ErrorClass::NotFound);
    let kinds: Vec<String> = hub.events(None, 100).await.unwrap().into_iter().map(|e| e.kind.to_string()).collect();
    assert!(kinds.contains(&"trust_key_added".to_string()) && kinds.contains(&"trust_key_removed".to_string()), "{kinds:?}");
}

#[tokio::test]
async fn public_key_files_that_are_not_keys_are_refused() {
    let (hub, _dir) = hub().await;
    for bad in ["", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI acme", "idplex-ed25519 AAAA acme", "idplex-ed25519 x"] {
        let err = hub.trust_publisher_key(bad, "test").await.expect_err(bad);
        assert_eq!(err.class(), ErrorClass::Invalid, "{bad:?}: {err}");
    }
}
