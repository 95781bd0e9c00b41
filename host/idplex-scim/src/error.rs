//! SCIM error responses (RFC 7644 §3.12).
//!
//! Every fallible function of this crate returns [`ScimError`], which already carries the
//! HTTP status and the `scimType` keyword, so the HTTP layer only has to serialise it with
//! [`ScimError::to_json`].

use serde_json::{Value, json};

/// URN of the SCIM error message schema.
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// The `scimType` keywords of RFC 7644 §3.12, Table 9: they tell a client *why* a
/// request failed so it can react without parsing the human-readable detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScimType {
    /// The filter syntax was invalid or the filter is not supported.
    InvalidFilter,
    /// The operation would return or affect too many resources.
    TooMany,
    /// A unique attribute value is already in use.
    Uniqueness,
    /// The request tried to modify a readOnly or immutable attribute.
    Mutability,
    /// The request body did not conform to the schema or message structure.
    InvalidSyntax,
    /// The PATCH `path` is malformed or names an unknown attribute.
    InvalidPath,
    /// A PATCH path or value filter did not select anything.
    NoTarget,
    /// A value is missing or has the wrong type for its attribute.
    InvalidValue,
    /// The protocol version is not supported.
    InvalidVers,
    /// The request cannot be completed because it would expose sensitive data (e.g. in a URL).
    Sensitive,
}

impl ScimType {
    /// The keyword exactly as it appears on the wire (`"invalidFilter"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
            ScimType::InvalidVers => "invalidVers",
            ScimType::Sensitive => "sensitive",
        }
    }

    /// The HTTP status RFC 7644 Table 9 associates with this keyword
    /// (409 for `uniqueness`, 403 for `sensitive`, 400 otherwise).
    pub fn http_status(self) -> u16 {
        match self {
            ScimType::Uniqueness => 409,
            ScimType::Sensitive => 403,
            _ => 400,
        }
    }
}

/// A SCIM protocol error: HTTP status, optional `scimType` and a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SCIM error {status}{}: {detail}", scim_type.map(|t| format!(" ({})", t.as_str())).unwrap_or_default())]
pub struct ScimError {
    /// HTTP status code to answer with.
    pub status: u16,
    /// Machine-readable reason, when one of the RFC keywords applies.
    pub scim_type: Option<ScimType>,
    /// Human-readable explanation (names the attribute / filter position at fault).
    pub detail: String,
}

impl ScimError {
    /// An error with a `scimType`; the status is the one the RFC assigns to that type.
    pub fn new(scim_type: ScimType, detail: impl Into<String>) -> Self {
        ScimError {
            status: scim_type.http_status(),
            scim_type: Some(scim_type),
            detail: detail.into(),
        }
    }

    /// An error without `scimType` (404, 401, 500, ...).
    pub fn with_status(status: u16, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type: None,
            detail: detail.into(),
        }
    }

    /// Prefixes the detail with some context (e.g. which PATCH operation failed).
    pub fn context(mut self, prefix: impl std::fmt::Display) -> Self {
        self.detail = format!("{prefix}: {}", self.detail);
        self
    }

    /// The RFC 7644 §3.12 error body; `status` is emitted as a string as the RFC examples do.
    pub fn to_json(&self) -> Value {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = Value::String(t.as_str().to_owned());
        }
        body
    }
}

/// Shorthand constructors used throughout the crate.
pub(crate) fn err(scim_type: ScimType, detail: impl Into<String>) -> ScimError {
    ScimError::new(scim_type, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_keywords() {
        let table = [
            (ScimType::InvalidFilter, "invalidFilter", 400),
            (ScimType::TooMany, "tooMany", 400),
            (ScimType::Uniqueness, "uniqueness", 409),
            (ScimType::Mutability, "mutability", 400),
            (ScimType::InvalidSyntax, "invalidSyntax", 400),
            (ScimType::InvalidPath, "invalidPath", 400),
            (ScimType::NoTarget, "noTarget", 400),
            (ScimType::InvalidValue, "invalidValue", 400),
            (ScimType::InvalidVers, "invalidVers", 400),
            (ScimType::Sensitive, "sensitive", 403),
        ];
        for (t, s, status) in table {
            assert_eq!(t.as_str(), s);
            assert_eq!(ScimError::new(t, "x").status, status);
        }
    }

    #[test]
    fn json_body() {
        let e = ScimError::new(ScimType::Uniqueness, "userName taken");
        assert_eq!(
            e.to_json(),
            json!({"schemas": [ERROR_SCHEMA], "status": "409", "scimType": "uniqueness", "detail": "userName taken"})
        );
        let nf = ScimError::with_status(404, "no such user").to_json();
        assert_eq!(nf["status"], "404");
        assert!(nf.get("scimType").is_none());
        assert_eq!(e.to_string(), "SCIM error 409 (uniqueness): userName taken");
    }
}
