//! The trust policy, trusted publisher keys and modules' publishers in the store
//! (`trust.rs`), each test run on SQLite (temp file) and PostgreSQL (fresh schema).

#[macro_use]
mod common;

use common::TestDb;
use idplex_store::{Admission, InsertOutcome, ModulePublisher, NewModule, NewTrustedKey, StoreError, TrustRule};
use serde_json::json;

on_both_backends!(
    the_policy_refuses_both_until_set_and_sets_parts,
    trusted_keys_add_list_remove,
    modules_record_their_publisher,
);

fn key(fingerprint: &str, public_key: &str) -> NewTrustedKey {
    NewTrustedKey {
        fingerprint: fingerprint.into(),
        publisher: "acme".into(),
        public_key: public_key.into(),
        added_by: "test".into(),
    }
}

async fn the_policy_refuses_both_until_set_and_sets_parts(db: TestDb) {
    let store = db.open().await;
    let policy = store.trust_policy().await.unwrap();
    assert_eq!((policy.unsigned, policy.untrusted), (TrustRule::Refuse, TrustRule::Refuse));
    assert_eq!(policy.updated_by, None);

    let policy = store.set_trust_policy(Some(TrustRule::Allow), None, "ops").await.unwrap();
    assert_eq!((policy.unsigned, policy.untrusted), (TrustRule::Allow, TrustRule::Refuse));
    assert_eq!(policy.updated_by.as_deref(), Some("ops"));
    assert!(policy.updated_at.is_some());

    // Only the part given changes.
    let policy = store.set_trust_policy(None, Some(TrustRule::Allow), "sec").await.unwrap();
    assert_eq!((policy.unsigned, policy.untrusted), (TrustRule::Allow, TrustRule::Allow));
    let policy = store.set_trust_policy(Some(TrustRule::Refuse), None, "sec").await.unwrap();
    assert_eq!((policy.unsigned, policy.untrusted), (TrustRule::Refuse, TrustRule::Allow));
    assert_eq!(policy.updated_by.as_deref(), Some("sec"));

    // It outlives the handle (replicas read the same row).
    drop(store);
    let store = db.open().await;
    assert_eq!(store.trust_policy().await.unwrap(), policy);
}

async fn trusted_keys_add_list_remove(db: TestDb) {
    let store = db.open().await;
    assert!(store.trusted_keys().await.unwrap().is_empty());
    let (k, added) = store.add_trusted_key(&key("0123456789abcdef", "KEY-A")).await.unwrap();
    assert!(added);
    assert_eq!((k.fingerprint.as_str(), k.publisher.as_str(), k.added_by.as_str()), ("0123456789abcdef", "acme", "test"));
    // The same key again: no change, not an error.
    let (again, added) = store.add_trusted_key(&key("0123456789abcdef", "KEY-A")).await.unwrap();
    assert!(!added);
    assert_eq!(again, k);
    // Another key under that fingerprint, or the same key under another one: conflicts.
    let err = store.add_trusted_key(&key("0123456789abcdef", "KEY-B")).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    let err = store.add_trusted_key(&key("fedcba9876543210", "KEY-A")).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    // Malformed fingerprints and names are refused before the database.
    for bad in ["0123", "0123456789ABCDEF", "0123456789abcdeg"] {
        let err = store.add_trusted_key(&key(bad, "KEY-C")).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidInput { .. }), "{bad}: {err}");
    }
    let mut nameless = key("1111111111111111", "KEY-D");
    nameless.publisher = " ".into();
    assert!(matches!(store.add_trusted_key(&nameless).await.unwrap_err(), StoreError::InvalidInput { .. }));

    store.add_trusted_key(&key("2222222222222222", "KEY-E")).await.unwrap();
    let listed: Vec<String> = store.trusted_keys().await.unwrap().into_iter().map(|k| k.fingerprint).collect();
    assert_eq!(listed, ["0123456789abcdef", "2222222222222222"]);
    assert_eq!(store.trusted_key("2222222222222222").await.unwrap().unwrap().public_key, "KEY-E");

    let removed = store.remove_trusted_key("0123456789abcdef").await.unwrap();
    assert_eq!(removed.public_key, "KEY-A");
    assert!(store.trusted_key("0123456789abcdef").await.unwrap().is_none());
    assert!(store.remove_trusted_key("0123456789abcdef").await.unwrap_err().is_not_found());
    assert_eq!(store.trusted_keys().await.unwrap().len(), 1);
}

async fn modules_record_their_publisher(db: TestDb) {
    let store = db.open().await;
    let module = |name: &str, bytes: &[u8]| NewModule {
        name: name.into(),
        version: "1.0.0".into(),
        contract_version: "1.2.0".into(),
        info: json!({}),
        component: bytes.to_vec(),
    };
    // Without a record (as before signatures were checked): None.
    let legacy = store.insert_module(&module("legacy", b"legacy bytes")).await.unwrap();
    assert_eq!(store.get_module_by_hash(legacy.sha256()).await.unwrap().publisher, None);

    let trusted = ModulePublisher {
        admitted_as: Admission::Trusted,
        publisher: Some("acme".into()),
        fingerprint: Some("0123456789abcdef".into()),
    };
    let signed = store.insert_module_with_publisher(&module("signed", b"signed bytes"), Some(&trusted)).await.unwrap();
    assert!(matches!(signed, InsertOutcome::Inserted { .. }));
    let got = store.get_module("signed", "1.0.0").await.unwrap();
    assert_eq!(got.publisher.as_ref(), Some(&trusted));
    assert_eq!(store.list_modules().await.unwrap().iter().find(|m| m.name == "signed").unwrap().publisher, Some(trusted.clone()));

    // The same bytes installed again, judged otherwise: the newest judgement is kept.
    let untrusted = ModulePublisher { admitted_as: Admission::Untrusted, ..trusted.clone() };
    let again = store.insert_module_with_publisher(&module("signed", b"signed bytes"), Some(&untrusted)).await.unwrap();
    assert!(matches!(again, InsertOutcome::AlreadyPresent { .. }));
    assert_eq!(store.get_module("signed", "1.0.0").await.unwrap().publisher, Some(untrusted));

    // A module from before gets its record when installed again.
    let first_party = ModulePublisher {
        admitted_as: Admission::FirstParty,
        publisher: Some("first-party (bundled)".into()),
        fingerprint: None,
    };
    store.insert_module_with_publisher(&module("legacy", b"legacy bytes"), Some(&first_party)).await.unwrap();
    assert_eq!(store.get_module("legacy", "1.0.0").await.unwrap().publisher, Some(first_party));

    let unsigned = ModulePublisher { admitted_as: Admission::Unsigned, publisher: None, fingerprint: None };
    assert!(store.set_module_publisher(legacy.sha256(), &unsigned).await.unwrap());
    assert!(!store.set_module_publisher(&"0".repeat(64), &unsigned).await.unwrap());
    assert_eq!(store.get_module("legacy", "1.0.0").await.unwrap().publisher, Some(unsigned));
}
