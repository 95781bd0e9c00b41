//! Access to the IdP request vectors in `tests/fixtures/idp-dialects` (test only).

use serde_json::Value;
use std::path::PathBuf;

fn dir() -> PathBuf {
    match std::env::var_os("IDPLEX_IDP_FIXTURES") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/idp-dialects"
        )),
    }
}

/// The vectors of the SCIM dialect files this crate reads as sent, as (vector id, vector):
/// all but those carrying a pre-RFC `urn:scim:schemas:*` URN (OneLogin's templates), which
/// the onelogin connector rewrites before the host sees them (replayed through it in
/// `host/idplex/tests/idp_replay.rs`).
pub fn vectors() -> Vec<(String, Value)> {
    all_vectors().into_iter().filter(|(_, v)| !v["request"].to_string().contains("urn:scim:schemas:")).collect()
}

/// Every vector of the SCIM dialect files, as (vector id, vector).
fn all_vectors() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for name in ["okta", "entra", "onelogin", "generic_rfc7644"] {
        let path = dir().join(format!("{name}.json"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let doc: Value = serde_json::from_str(&text).expect("fixture is JSON");
        for v in doc["vectors"].as_array().expect("vectors") {
            out.push((v["id"].as_str().expect("id").to_owned(), v.clone()));
        }
    }
    out
}

/// Every `filter` query parameter of the vectors.
pub fn all_filters() -> Vec<(String, String)> {
    vectors()
        .into_iter()
        .filter_map(|(id, v)| {
            v["request"]["query"]["filter"]
                .as_str()
                .map(|f| (id, f.to_owned()))
        })
        .collect()
}
