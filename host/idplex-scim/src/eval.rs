//! Filter evaluation over `serde_json::Value` resources (RFC 7644 §3.4.2.2), driven by the
//! schema: string comparisons honour `caseExact`, dateTimes compare as instants, a
//! multi-valued attribute matches when any of its values matches, and `pr` treats null,
//! `""` and `[]` as absent.
//!
//! Semantics chosen where the RFC is silent:
//! * `ne` is the negation of `eq` over the whole attribute (so an absent attribute is `ne`
//!   anything, and a multi-valued attribute is `ne x` only if no value equals `x`);
//! * `attr eq null` means "not present", `attr ne null` means "present";
//! * attributes unknown to the schema are looked up verbatim in the JSON and compared
//!   case-insensitively; [`Filter::validate_for`] rejects them up front if the caller wants
//!   strictness (the server should, to answer `invalidFilter`).

use crate::error::{ScimError, ScimType, err};
use crate::filter::{CompareOp, Filter};
use crate::path::AttrPath;
use crate::schema::{AttrType, AttributeDef, ResourceType};
use crate::value::{Comparable, get_ci, is_present, values_at};
use serde_json::Value;
use std::cmp::Ordering;

/// Where paths of a (sub-)filter are resolved: the resource root, or an element of a
/// multi-valued complex attribute (inside `attr[...]`).
#[derive(Clone, Copy)]
enum Scope {
    Resource,
    Element(Option<&'static AttributeDef>),
}

impl Filter {
    /// Whether `resource` (a resource of type `rt`) matches this filter.
    pub fn matches(&self, rt: &ResourceType, resource: &Value) -> bool {
        eval(self, rt, resource, Scope::Resource)
    }

    /// Whether one element of a multi-valued attribute (`parent`) matches this filter,
    /// whose paths name sub-attributes. Used by PATCH value-path selection.
    pub fn matches_element(
        &self,
        rt: &ResourceType,
        parent: &'static AttributeDef,
        element: &Value,
    ) -> bool {
        eval(self, rt, element, Scope::Element(Some(parent)))
    }

    /// Checks the filter against the schema: every attribute must exist, value paths must
    /// apply to complex attributes, and `gt/ge/lt/le` are refused on boolean, binary and
    /// complex attributes (RFC 7644 §3.4.2.2). Errors are `invalidFilter`.
    pub fn validate_for(&self, rt: &ResourceType) -> Result<(), ScimError> {
        validate(self, rt, None)
    }
}

fn eval(f: &Filter, rt: &ResourceType, target: &Value, scope: Scope) -> bool {
    match f {
        Filter::And(a, b) => eval(a, rt, target, scope) && eval(b, rt, target, scope),
        Filter::Or(a, b) => eval(a, rt, target, scope) || eval(b, rt, target, scope),
        Filter::Not(a) => !eval(a, rt, target, scope),
        Filter::Present(path) => lookup(rt, target, path, scope)
            .0
            .iter()
            .any(|v| is_present(v)),
        Filter::Compare { path, op, value } => {
            let (values, def) = lookup(rt, target, path, scope);
            compare_attr(*op, &values, value, def)
        }
        Filter::ValuePath { path, filter } => {
            let (elements, def) = lookup(rt, target, path, scope);
            elements
                .iter()
                .any(|e| eval(filter, rt, e, Scope::Element(def)))
        }
    }
}

/// Values designated by `path` in `target`, with the leaf definition when known.
fn lookup<'a>(
    rt: &ResourceType,
    target: &'a Value,
    path: &AttrPath,
    scope: Scope,
) -> (Vec<&'a Value>, Option<&'static AttributeDef>) {
    match scope {
        Scope::Resource => match rt.resolve(path) {
            Some(r) => (values_at(rt, target, &r), Some(r.leaf())),
            None => (raw_values(target, path), None),
        },
        Scope::Element(parent) => {
            let def = parent.and_then(|p| p.sub_attribute(&path.attr));
            let vals = target
                .as_object()
                .and_then(|o| get_ci(o, &path.attr))
                .map(flat)
                .unwrap_or_default();
            (vals, def)
        }
    }
}

/// Schema-less walk for attributes the schema does not know.
fn raw_values<'a>(target: &'a Value, path: &AttrPath) -> Vec<&'a Value> {
    let root = target.as_object();
    let container = match &path.urn {
        Some(u) => root.and_then(|o| get_ci(o, u)).and_then(Value::as_object),
        None => root,
    };
    let Some(top) = container.and_then(|o| get_ci(o, &path.attr)) else {
        return Vec::new();
    };
    let tops = flat(top);
    match &path.sub_attr {
        None => tops,
        Some(s) => tops
            .into_iter()
            .filter_map(|v| v.as_object().and_then(|o| get_ci(o, s)))
            .flat_map(flat)
            .collect(),
    }
}

fn flat(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().filter(|x| !x.is_null()).collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

fn compare_attr(
    op: CompareOp,
    values: &[&Value],
    literal: &Value,
    def: Option<&AttributeDef>,
) -> bool {
    let any_eq = || {
        values
            .iter()
            .any(|v| compare_one(CompareOp::Eq, v, literal, def))
    };
    match (op, literal) {
        (CompareOp::Eq, Value::Null) => !values.iter().any(|v| is_present(v)),
        (CompareOp::Ne, Value::Null) => values.iter().any(|v| is_present(v)),
        (CompareOp::Ne, _) => !any_eq(),
        _ => values.iter().any(|v| compare_one(op, v, literal, def)),
    }
}

fn compare_one(op: CompareOp, actual: &Value, literal: &Value, def: Option<&AttributeDef>) -> bool {
    let (Some(a), Some(l)) = (
        Comparable::from_json(actual, def),
        Comparable::from_json(literal, def),
    ) else {
        return false;
    };
    match op {
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => match (&a, &l) {
            (Comparable::Text(a), Comparable::Text(l)) => match op {
                CompareOp::Co => a.contains(l.as_str()),
                CompareOp::Sw => a.starts_with(l.as_str()),
                _ => a.ends_with(l.as_str()),
            },
            _ => false,
        },
        _ => a.partial_cmp_same(&l).is_some_and(|ord| match op {
            CompareOp::Eq => ord == Ordering::Equal,
            CompareOp::Ne => ord != Ordering::Equal,
            CompareOp::Gt => ord == Ordering::Greater,
            CompareOp::Ge => ord != Ordering::Less,
            CompareOp::Lt => ord == Ordering::Less,
            _ => ord != Ordering::Greater, // Le
        }),
    }
}

fn validate(
    f: &Filter,
    rt: &ResourceType,
    parent: Option<&'static AttributeDef>,
) -> Result<(), ScimError> {
    let def_of = |path: &AttrPath| -> Result<&'static AttributeDef, ScimError> {
        let found = match parent {
            None => rt.resolve(path).map(|r| r.leaf()),
            Some(p) => p.sub_attribute(&path.attr),
        };
        found.ok_or_else(|| {
            err(
                ScimType::InvalidFilter,
                format!("unknown attribute '{path}' in filter"),
            )
        })
    };
    match f {
        Filter::And(a, b) | Filter::Or(a, b) => {
            validate(a, rt, parent)?;
            validate(b, rt, parent)
        }
        Filter::Not(a) => validate(a, rt, parent),
        Filter::Present(p) => def_of(p).map(|_| ()),
        Filter::Compare { path, op, .. } => {
            let def = def_of(path)?;
            if op.is_ordering()
                && matches!(
                    def.ty,
                    AttrType::Boolean | AttrType::Binary | AttrType::Complex
                )
            {
                return Err(err(
                    ScimType::InvalidFilter,
                    format!(
                        "operator '{}' is not supported on {} attribute '{path}'",
                        op.as_str(),
                        def.ty.as_str()
                    ),
                ));
            }
            Ok(())
        }
        Filter::ValuePath { path, filter } => {
            let def = def_of(path)?;
            if def.ty != AttrType::Complex {
                return Err(err(
                    ScimType::InvalidFilter,
                    format!("'{path}' is not a complex attribute"),
                ));
            }
            validate(filter, rt, Some(def))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{GROUP_RESOURCE_TYPE, USER_RESOURCE_TYPE};
    use serde_json::json;

    fn user() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "externalId": "BJensen",
            "userName": "Bjensen@Example.com",
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "title": "",
            "nickName": null,
            "active": true,
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "phoneNumbers": [],
            "addresses": [{"postalCode": "12345", "primary": "true"}],
            "x509Certificates": [{"value": "MIIDQzCC"}],
            "meta": {"resourceType": "User", "lastModified": "2011-05-13T04:42:34Z", "created": "2010-01-23T04:56:22+02:00"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "employeeNumber": "701984", "department": "Tour Operations", "manager": {"value": "26118915"}
            },
            "loginCount": 17
        })
    }

    #[test]
    fn evaluation_table() {
        let u = user();
        let table: &[(&str, bool)] = &[
            ("userName eq \"bjensen@example.com\"", true), // caseExact=false
            ("USERNAME EQ \"BJENSEN@EXAMPLE.COM\"", true),
            ("userName sw \"BJ\"", true),
            ("userName ew \".COM\"", true),
            ("userName co \"@exam\"", true),
            ("userName co \"nope\"", false),
            ("id eq \"2819C223-7F76-453A-919D-413861904646\"", false), // caseExact=true
            ("id eq \"2819c223-7f76-453a-919d-413861904646\"", true),
            ("externalId eq \"bjensen\"", false),
            ("externalId eq \"BJensen\"", true),
            ("emails.value eq \"BABS@jensen.org\"", true), // any element
            ("emails eq \"babs@jensen.org\"", true),       // complex compares on value
            ("emails[type eq \"work\" and value co \"@example\"]", true),
            ("emails[type eq \"home\" and value co \"@example\"]", false),
            (
                "emails[type eq \"work\"].value eq \"bjensen@example.com\"",
                true,
            ),
            (
                "emails[type eq \"home\"].value eq \"bjensen@example.com\"",
                false,
            ),
            (
                "emails[primary eq true].value eq \"bjensen@example.com\"",
                true,
            ),
            ("addresses[primary eq true]", true), // stored "true" string compared leniently
            ("name.givenName eq \"barbara\"", true),
            ("title pr", false),
            ("nickName pr", false),
            ("phoneNumbers pr", false),
            ("emails pr", true),
            ("active pr", true),
            ("active eq true", true),
            ("active ne true", false),
            ("active eq false", false),
            ("title eq null", true),
            ("userName ne null", true),
            ("nickName ne \"x\"", true),
            ("emails.type ne \"home\"", false),
            ("meta.lastModified gt \"2011-05-13T04:42:33Z\"", true),
            ("meta.lastModified gt \"2011-05-13T06:42:33+02:00\"", true),
            ("meta.lastModified ge \"2011-05-13T06:42:34+02:00\"", true),
            ("meta.lastModified lt \"2011-05-13T04:42:34Z\"", false),
            ("meta.created lt \"2010-01-23T03:00:00Z\"", true),
            ("loginCount gt 10", true),
            ("loginCount le 16.5", false),
            ("userName gt \"a\" and userName lt \"c\"", true),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq \"tour operations\"",
                true,
            ),
            ("department sw \"Tour\"", true),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq \"26118915\"",
                true,
            ),
            (
                "not (userName eq \"x\") and (title pr or active eq true)",
                true,
            ),
            ("userName eq \"x\" or not (emails pr)", false),
            ("x509Certificates.value eq \"MIIDQzCC\"", true),
        ];
        for (f, expected) in table {
            let filter = Filter::parse(f).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert_eq!(filter.matches(&USER_RESOURCE_TYPE, &u), *expected, "{f}");
        }
    }

    #[test]
    fn schema_validation() {
        let ok = [
            "userName eq \"a\"",
            "emails[type eq \"work\"].value eq \"a\"",
            "meta.created gt \"2011-01-01T00:00:00Z\"",
            "manager.value pr",
        ];
        for f in ok {
            Filter::parse(f)
                .unwrap()
                .validate_for(&USER_RESOURCE_TYPE)
                .unwrap_or_else(|e| panic!("{f}: {e}"));
        }
        let bad = [
            ("nope eq \"a\"", "unknown attribute 'nope'"),
            ("emails[nope eq \"a\"]", "unknown attribute 'nope'"),
            ("active gt true", "not supported on boolean"),
            ("userName[value eq \"a\"]", "not a complex attribute"),
        ];
        for (f, frag) in bad {
            let e = Filter::parse(f)
                .unwrap()
                .validate_for(&USER_RESOURCE_TYPE)
                .unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidFilter));
            assert!(e.detail.contains(frag), "{f}: {}", e.detail);
        }
    }

    #[test]
    fn group_members() {
        let g = json!({"displayName": "Admins", "members": [{"value": "u1", "type": "User"}, {"value": "U2"}]});
        let f = |s: &str| Filter::parse(s).unwrap().matches(&GROUP_RESOURCE_TYPE, &g);
        assert!(f("members[value eq \"u1\"]"));
        assert!(!f("members[value eq \"u2\"]")); // members.value is caseExact
        assert!(f("displayName eq \"admins\""));
    }

    /// The lookups the IdP fixtures send, against the user they should find.
    #[test]
    fn fixture_lookups() {
        let u = json!({
            "userName": "test.user@okta.local",
            "externalId": "jyoung",
            "emails": [{"value": "user@contoso.com", "type": "work"}]
        });
        for f in [
            "userName eq \"TEST.USER@OKTA.LOCAL\"",
            "emails[type eq \"work\"].value eq \"user@contoso.com\"",
            "externalId eq \"jyoung\"",
            "externalId eq jyoung",
        ] {
            assert!(
                Filter::parse(f).unwrap().matches(&USER_RESOURCE_TYPE, &u),
                "{f}"
            );
        }
        for (id, f) in crate::test_fixtures::all_filters() {
            if let Ok(filter) = Filter::parse(&f) {
                filter
                    .validate_for(&USER_RESOURCE_TYPE)
                    .or_else(|_| filter.validate_for(&GROUP_RESOURCE_TYPE))
                    .unwrap_or_else(|e| panic!("{id}: {e}"));
            }
        }
    }
}
