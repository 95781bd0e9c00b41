//! TEST FIXTURE `bad-schema@1.0.0`: its config schema `$ref`s a remote document, which the host
//! must refuse at install without fetching it (see `connectors/testing/odd-describe/connector.rs`).
const NAME: &str = "bad-schema";
const SCHEMA: &str = r#"{"type":"object","properties":{"tenant":{"$ref":"https://schemas.invalid/tenant.json"}}}"#;
include!("../../odd-describe/connector.rs");
