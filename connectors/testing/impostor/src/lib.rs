//! TEST FIXTURE `custom-saml@99.0.0` from a vendor: claims a first-party name, which the host
//! reserves (see `connectors/testing/odd-describe/connector.rs`).
const NAME: &str = "custom-saml";
const SCHEMA: &str = r#"{"type":"object"}"#;
include!("../../odd-describe/connector.rs");
