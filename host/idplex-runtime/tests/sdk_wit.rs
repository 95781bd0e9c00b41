//! The connector SDK carries its own copy of the contract (`connectors/idplex-connector-sdk/wit/
//! connector.wit`), so that a vendor's crate outside this repository can depend on the SDK by
//! path or git and still generate its bindings. That copy must be the contract this host
//! speaks, `wit/connector.wit`, byte for byte: a connector built against a stale copy would
//! export a contract version the host did not test.

use std::path::{Path, PathBuf};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    let path = repository().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn the_sdk_carries_the_contract_the_host_speaks() {
    let contract = read("wit/connector.wit");
    let copy = read("connectors/idplex-connector-sdk/wit/connector.wit");
    if copy != contract {
        let line = contract.lines().zip(copy.lines()).position(|(a, b)| a != b).map_or_else(
            || format!("one file is a prefix of the other ({} vs {} lines)", contract.lines().count(), copy.lines().count()),
            |i| format!("first difference at line {}", i + 1),
        );
        panic!(
            "connectors/idplex-connector-sdk/wit/connector.wit differs from wit/connector.wit ({line}).\n\
             After changing the contract, copy it into the SDK:\n  \
             cp wit/connector.wit connectors/idplex-connector-sdk/wit/connector.wit"
        );
    }
    // And it is the version this host was built for.
    let package = format!("package idplex:connector@{};", idplex_runtime::CONTRACT_VERSION);
    assert!(copy.contains(&package), "the SDK's contract should declare `{package}`");
}

#[test]
fn the_sdk_generates_its_bindings_from_its_own_copy() {
    let lib = read("connectors/idplex-connector-sdk/src/lib.rs");
    assert!(lib.contains(r#"path: "wit","#), "the SDK's `generate!` should read `wit` inside the crate, not a path outside it");
    let manifest = read("connectors/idplex-connector-sdk/Cargo.toml");
    assert!(!manifest.contains(".workspace = true"), "the SDK's Cargo.toml must not inherit from the connectors workspace:\n{manifest}");
}
