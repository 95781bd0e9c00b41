//! The connector's config schema (`connector-info.config-schema`, JSON Schema): checked at
//! install, enforced on every config an admin gives a connection.
//!
//! Built with the `jsonschema` crate without its network and file features and with an offline
//! retriever: a `$ref` to anything outside the schema itself (`https://…`, `file://…`) is refused
//! at install, never fetched. Patterns use the linear-time `regex` engine (no look-around or
//! back-references: a schema using them is refused at install), so no config value can make
//! validation backtrack for long.

use std::fmt::Write as _;

use jsonschema::{PatternOptions, ValidationError, Validator};
use serde_json::Value;

/// Config keys with this prefix are secrets: their values never appear in a message.
const SECRET_PREFIX: &str = "secret.";

/// Violations described in one error at most (the count of the others follows).
const MAX_REPORTED: usize = 5;

/// A compiled config schema.
pub(crate) struct ConfigSchema {
    validator: Validator,
}

impl std::fmt::Debug for ConfigSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConfigSchema")
    }
}

/// Why a connection's config does not satisfy its connector's schema: the first offending
/// field(s), never a `secret.*` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config does not match the schema of {connector}: {detail}")]
pub struct ConfigViolation {
    /// `name@version` of the connector whose schema refused the config.
    pub connector: String,
    /// The offending fields (config keys; `(config)` for the object as a whole), in order.
    pub fields: Vec<String>,
    /// What is wrong with each, `field: reason; …`.
    pub detail: String,
}

impl ConfigSchema {
    /// Parse and compile `text`; the reason it is unusable otherwise.
    pub(crate) fn compile(text: &str) -> Result<ConfigSchema, String> {
        let schema: Value = serde_json::from_str(text).map_err(|e| format!("config-schema is not JSON: {e}"))?;
        if !schema.is_object() {
            return Err("config-schema is not a JSON object".into());
        }
        let validator = jsonschema::options()
            .offline()
            .with_pattern_options(PatternOptions::regex())
            .build(&schema)
            .map_err(|e| format!("config-schema is not a valid JSON Schema (remote `$ref`s are not fetched): {e}"))?;
        Ok(ConfigSchema { validator })
    }

    /// Check `config` (the connection's config object, secrets in clear) against the schema.
    pub(crate) fn check(&self, connector: &str, config: &Value) -> Result<(), ConfigViolation> {
        let has_secrets = config.as_object().is_some_and(|o| o.keys().any(|k| k.starts_with(SECRET_PREFIX)));
        let mut fields = Vec::new();
        let mut detail = String::new();
        let mut total = 0usize;
        for error in self.validator.iter_errors(config) {
            total += 1;
            if fields.len() >= MAX_REPORTED {
                continue;
            }
            let (field, secret) = field_of(&error);
            // An error about a secret, or about the whole object while it holds secrets, is
            // described without the instance's value.
            let reason = if secret || (field == "(config)" && has_secrets) {
                error.masked_with("<redacted>").to_string()
            } else {
                error.to_string()
            };
            if !detail.is_empty() {
                detail.push_str("; ");
            }
            let _ = write!(detail, "`{field}`: {reason}");
            fields.push(field);
        }
        if total == 0 {
            return Ok(());
        }
        if total > fields.len() {
            let _ = write!(detail, " (and {} more)", total - fields.len());
        }
        Err(ConfigViolation { connector: connector.to_string(), fields, detail })
    }
}

/// The config key an error is about, and whether it is a secret.
fn field_of(error: &ValidationError<'_>) -> (String, bool) {
    use jsonschema::error::ValidationErrorKind as K;
    let path = error.instance_path().as_str();
    let first = path.strip_prefix('/').and_then(|p| p.split('/').next()).filter(|s| !s.is_empty());
    let field = match (first, error.kind()) {
        (Some(segment), _) => segment.replace("~1", "/").replace("~0", "~"),
        (None, K::Required { property, .. }) => property.as_str().map_or_else(|| property.to_string(), str::to_string),
        (None, K::AdditionalProperties { unexpected, .. }) => unexpected.join(", "),
        (None, _) => "(config)".to_string(),
    };
    let secret = field.starts_with(SECRET_PREFIX);
    (field, secret)
}
