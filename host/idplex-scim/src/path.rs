//! Attribute paths (RFC 7644 §3.10 / the `attrPath` rule of §3.4.2.2):
//! `[URN ":"] ATTRNAME ["." subAttr]`.

use crate::error::{ScimError, ScimType, err};
use std::fmt;

/// A parsed attribute path such as `name.givenName` or
/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`.
///
/// Names are kept as written; resolution against a schema is case-insensitive
/// ([`crate::ResourceType::resolve`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttrPath {
    /// Schema URN prefix, if the path was fully qualified.
    pub urn: Option<String>,
    /// Top-level attribute name.
    pub attr: String,
    /// Sub-attribute name (`givenName` in `name.givenName`).
    pub sub_attr: Option<String>,
}

impl AttrPath {
    /// Path to a top-level attribute without URN.
    pub fn new(attr: impl Into<String>) -> Self {
        AttrPath {
            urn: None,
            attr: attr.into(),
            sub_attr: None,
        }
    }

    /// Parses `[URN:]attr[.sub]`. The URN is everything up to the last `:` (URNs contain
    /// dots, e.g. `2.0`, so sub-attributes are only looked for after it).
    pub fn parse(text: &str) -> Result<Self, ScimError> {
        let invalid = |why: &str| {
            err(
                ScimType::InvalidPath,
                format!("invalid attribute path '{text}': {why}"),
            )
        };
        // `get` rather than slicing: the text may hold multi-byte characters anywhere
        // (`abcé`), and a slice inside one would panic. `rfind` returns the index of an
        // ASCII ':', a character boundary, so `split_at` there is safe.
        let (urn, rest) = if text.len() > 4
            && text
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
            && let Some(idx) = text.rfind(':')
        {
            let (urn, rest) = text.split_at(idx);
            (Some(urn.to_owned()), &rest[1..])
        } else {
            (None, text)
        };
        let (attr, sub) = match rest.split_once('.') {
            Some((a, s)) => (a, Some(s)),
            None => (rest, None),
        };
        if !is_attr_name(attr) {
            return Err(invalid("bad attribute name"));
        }
        if let Some(s) = sub
            && !is_attr_name(s)
        {
            return Err(invalid("bad sub-attribute name"));
        }
        Ok(AttrPath {
            urn,
            attr: attr.to_owned(),
            sub_attr: sub.map(str::to_owned),
        })
    }

    /// The same path with a sub-attribute appended (used for `emails[...].value`).
    pub fn with_sub(&self, sub: impl Into<String>) -> Self {
        AttrPath {
            sub_attr: Some(sub.into()),
            ..self.clone()
        }
    }

    /// Whether both paths designate the same attribute (case-insensitive, URN ignored
    /// when only one side has it).
    pub fn same_attr(&self, other: &AttrPath) -> bool {
        let urn_ok = match (&self.urn, &other.urn) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            _ => true,
        };
        urn_ok && self.attr.eq_ignore_ascii_case(&other.attr)
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(u) = &self.urn {
            write!(f, "{u}:")?;
        }
        f.write_str(&self.attr)?;
        if let Some(s) = &self.sub_attr {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
}

/// `ATTRNAME = ALPHA *(nameChar)`, `nameChar = "-" / "_" / DIGIT / ALPHA`, plus the
/// reserved `$ref`.
pub(crate) fn is_attr_name(s: &str) -> bool {
    if s == "$ref" {
        return true;
    }
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let table: &[(&str, Option<&str>, &str, Option<&str>)] = &[
            ("userName", None, "userName", None),
            ("name.givenName", None, "name", Some("givenName")),
            ("members.$ref", None, "members", Some("$ref")),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
                Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"),
                "department",
                None,
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
                Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"),
                "manager",
                Some("value"),
            ),
        ];
        for (text, urn, attr, sub) in table {
            let p = AttrPath::parse(text).unwrap();
            assert_eq!(p.urn.as_deref(), *urn, "{text}");
            assert_eq!(p.attr, *attr, "{text}");
            assert_eq!(p.sub_attr.as_deref(), *sub, "{text}");
            assert_eq!(p.to_string(), *text);
        }
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "",
            "1abc",
            "a.b.c",
            "name.",
            "urn:x:",
            "a b",
            "emails[type eq \"x\"]",
            // Non-ASCII names are not ATTRNAMEs (and used to panic by slicing inside 'é').
            "abcé",
            "abé",
            "é",
            "urné:x",
            "name.givé",
            "urn:ietf:params:scim:schemas:core:2.0:User:usérName",
            "ｕｓｅｒＮａｍｅ",
        ] {
            let e = AttrPath::parse(bad).unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidPath), "{bad}");
        }
    }
}
