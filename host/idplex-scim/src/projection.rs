//! `attributes` / `excludedAttributes` (RFC 7644 §3.9): which attributes a response
//! carries, honouring the schema's `returned` characteristic: `always` attributes (id,
//! schemas, meta) cannot be left out, `never` ones (password) are never returned,
//! `request` ones only when named in `attributes`.

use crate::error::ScimError;
use crate::path::AttrPath;
use crate::schema::{AttributeDef, ResourceType, Returned, Schema};
use serde_json::{Map, Value};

/// A parsed `attributes` / `excludedAttributes` pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    /// Attributes to return (with the `always` ones); empty means "the default set".
    pub attributes: Vec<AttrPath>,
    /// Attributes to leave out of the default set (ignored when `attributes` is given).
    pub excluded: Vec<AttrPath>,
}

impl Projection {
    /// Parses the comma-separated query parameters. Paths may be URN-qualified or name a
    /// whole extension URN. Malformed paths are `invalidPath`.
    pub fn from_params(
        attributes: Option<&str>,
        excluded_attributes: Option<&str>,
    ) -> Result<Self, ScimError> {
        let list = |s: Option<&str>| -> Result<Vec<AttrPath>, ScimError> {
            s.unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(AttrPath::parse)
                .collect()
        };
        Ok(Projection {
            attributes: list(attributes)?,
            excluded: list(excluded_attributes)?,
        })
    }

    /// Whether a response would carry (some of) the core attribute `name` of `rt`: lets a
    /// server skip loading derived attributes (a user's `groups`, a group's `members`) that
    /// the client left out.
    pub fn returns(&self, rt: &ResourceType, name: &str) -> bool {
        let probe = serde_json::json!({ name: [{"value": "", "display": "", "type": "", "$ref": ""}] });
        let mut probe_out = self.apply(rt, &probe);
        probe_out.as_object_mut().is_some_and(|o| o.remove(name).is_some())
    }

    /// Returns the projected copy of `resource` (of type `rt`).
    pub fn apply(&self, rt: &ResourceType, resource: &Value) -> Value {
        let Some(obj) = resource.as_object() else {
            return resource.clone();
        };
        let mut out = Map::new();
        for (key, value) in obj {
            if let Some(ext) = rt.extension(key) {
                let Some(inner) = value.as_object() else {
                    continue;
                };
                let whole = Selection {
                    included: self.attributes.iter().any(|p| names_extension(rt, p, ext)),
                    excluded: self.excluded.iter().any(|p| names_extension(rt, p, ext)),
                };
                let mut ext_out = Map::new();
                for (k, v) in inner {
                    if let Some(x) = self.project(rt, Some(ext), k, ext.attribute(k), v, whole) {
                        ext_out.insert(k.clone(), x);
                    }
                }
                if !ext_out.is_empty() {
                    out.insert(key.clone(), Value::Object(ext_out));
                }
            } else if let Some(x) = self.project(
                rt,
                None,
                key,
                rt.root_attribute(key),
                value,
                Selection::default(),
            ) {
                out.insert(key.clone(), x);
            }
        }
        Value::Object(out)
    }

    fn project(
        &self,
        rt: &ResourceType,
        ext: Option<&Schema>,
        name: &str,
        def: Option<&'static AttributeDef>,
        value: &Value,
        parent: Selection,
    ) -> Option<Value> {
        let returned = def.map_or(Returned::Default, |d| d.returned);
        match returned {
            Returned::Never => return None,
            Returned::Always => return Some(value.clone()),
            _ => {}
        }
        // (whole attribute selected, sub-attributes selected) for a list of paths.
        let select = |paths: &[AttrPath]| -> (bool, Vec<String>) {
            let mut whole = false;
            let mut subs = Vec::new();
            for p in paths.iter().filter(|p| designates(rt, p, ext, name, def)) {
                match &p.sub_attr {
                    None => whole = true,
                    Some(s) => subs.push(s.clone()),
                }
            }
            (whole, subs)
        };
        if !self.attributes.is_empty() {
            let (whole, subs) = select(&self.attributes);
            return if whole || parent.included {
                Some(value.clone())
            } else if !subs.is_empty() {
                keep_subs(value, def, |s| {
                    subs.iter().any(|x| x.eq_ignore_ascii_case(s))
                })
            } else {
                None
            };
        }
        let (whole, subs) = select(&self.excluded);
        if returned == Returned::Request || whole || parent.excluded {
            return None;
        }
        if subs.is_empty() {
            Some(value.clone())
        } else {
            keep_subs(value, def, |s| {
                !subs.iter().any(|x| x.eq_ignore_ascii_case(s))
            })
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Selection {
    included: bool,
    excluded: bool,
}

/// Whether `p` is the URN of extension `ext` itself (`urn:...:enterprise:2.0:User`).
fn names_extension(rt: &ResourceType, p: &AttrPath, ext: &Schema) -> bool {
    p.sub_attr.is_none()
        && p.urn
            .as_ref()
            .and_then(|u| rt.extension(&format!("{u}:{}", p.attr)))
            .is_some_and(|s| std::ptr::eq(s, ext))
}

/// Whether path `p` designates the attribute `name` (defined by `def`, living in `ext`).
fn designates(
    rt: &ResourceType,
    p: &AttrPath,
    ext: Option<&Schema>,
    name: &str,
    def: Option<&'static AttributeDef>,
) -> bool {
    match (
        def,
        rt.resolve(&AttrPath {
            sub_attr: None,
            ..p.clone()
        }),
    ) {
        (Some(d), Some(r)) => {
            std::ptr::eq(r.attr, d)
                && r.extension.map(|s| s as *const Schema) == ext.map(|s| s as *const Schema)
        }
        (None, None) => p.attr.eq_ignore_ascii_case(name),
        _ => false,
    }
}

/// Keeps the sub-attributes accepted by `keep` (plus `always` ones) of a complex value or
/// of each element of a multi-valued one; `None` if nothing is left.
fn keep_subs(
    value: &Value,
    def: Option<&AttributeDef>,
    keep: impl Fn(&str) -> bool,
) -> Option<Value> {
    let always = |k: &str| {
        def.and_then(|d| d.sub_attribute(k))
            .is_some_and(|s| s.returned == Returned::Always)
    };
    let filter_obj = |o: &Map<String, Value>| -> Map<String, Value> {
        o.iter()
            .filter(|(k, _)| keep(k) || always(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    match value {
        Value::Object(o) => Some(filter_obj(o))
            .filter(|m| !m.is_empty())
            .map(Value::Object),
        Value::Array(a) => {
            let items: Vec<Value> = a
                .iter()
                .filter_map(|e| match e {
                    Value::Object(o) => Some(filter_obj(o))
                        .filter(|m| !m.is_empty())
                        .map(Value::Object),
                    _ => None,
                })
                .collect();
            (!items.is_empty()).then_some(Value::Array(items))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ENTERPRISE_USER_URN as ENT, GROUP_RESOURCE_TYPE, USER_RESOURCE_TYPE};
    use serde_json::json;

    fn user() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT],
            "id": "u1",
            "userName": "bjensen",
            "password": "secret",
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "emails": [{"value": "a@x", "type": "work"}, {"value": "b@x", "type": "home"}],
            "meta": {"resourceType": "User"},
            ENT: {"department": "Ops", "manager": {"value": "m1"}}
        })
    }

    fn keys(v: &Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    }

    #[test]
    fn returns_tells_whether_derived_attributes_are_needed() {
        let p = |a: Option<&str>, x: Option<&str>| Projection::from_params(a, x).unwrap();
        let g = &GROUP_RESOURCE_TYPE;
        assert!(p(None, None).returns(g, "members"));
        assert!(!p(None, Some("members")).returns(g, "members"));
        assert!(!p(Some("displayName"), None).returns(g, "members"));
        assert!(p(Some("members.value"), None).returns(g, "members"));
        assert!(p(None, None).returns(&USER_RESOURCE_TYPE, "groups"));
        assert!(!p(Some("userName"), None).returns(&USER_RESOURCE_TYPE, "groups"));
    }

    /// (attributes, excludedAttributes, expected top-level keys)
    #[test]
    fn projection_table() {
        let table: &[(Option<&str>, Option<&str>, &[&str])] = &[
            (
                None,
                None,
                &["emails", "id", "meta", "name", "schemas", "userName", ENT],
            ),
            (
                Some("userName"),
                None,
                &["id", "meta", "schemas", "userName"],
            ),
            (
                Some("USERNAME, name.givenName"),
                None,
                &["id", "meta", "name", "schemas", "userName"],
            ),
            (Some("password"), None, &["id", "meta", "schemas"]),
            (Some("department"), None, &["id", "meta", "schemas", ENT]),
            (Some(ENT), None, &["id", "meta", "schemas", ENT]),
            (
                None,
                Some("emails,name"),
                &["id", "meta", "schemas", "userName", ENT],
            ),
            (
                None,
                Some("id,meta,schemas"),
                &["emails", "id", "meta", "name", "schemas", "userName", ENT],
            ),
            (
                None,
                Some(ENT),
                &["emails", "id", "meta", "name", "schemas", "userName"],
            ),
            (
                None,
                Some(
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department,manager",
                ),
                &["emails", "id", "meta", "name", "schemas", "userName"],
            ),
            (
                Some("userName"),
                Some("userName"),
                &["id", "meta", "schemas", "userName"],
            ),
        ];
        for (inc, exc, expected) in table {
            let p = Projection::from_params(*inc, *exc).unwrap();
            let out = p.apply(&USER_RESOURCE_TYPE, &user());
            let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
            expected.sort();
            assert_eq!(keys(&out), expected, "{inc:?} {exc:?}");
            assert!(out.get("password").is_none());
        }
    }

    #[test]
    fn sub_attributes() {
        let p = Projection::from_params(Some("name.givenName,emails.value"), None).unwrap();
        let out = p.apply(&USER_RESOURCE_TYPE, &user());
        assert_eq!(out["name"], json!({"givenName": "Barbara"}));
        assert_eq!(out["emails"], json!([{"value": "a@x"}, {"value": "b@x"}]));
        let p = Projection::from_params(None, Some("emails.type,manager.value")).unwrap();
        let out = p.apply(&USER_RESOURCE_TYPE, &user());
        assert_eq!(out["emails"], json!([{"value": "a@x"}, {"value": "b@x"}]));
        assert_eq!(out[ENT], json!({"department": "Ops"}));
        assert_eq!(
            p.apply(&USER_RESOURCE_TYPE, &user())["name"],
            user()["name"]
        );
    }

    #[test]
    fn group_members_excluded() {
        let g = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "g", "displayName": "G", "members": [{"value": "u"}]});
        let out = Projection::from_params(None, Some("members"))
            .unwrap()
            .apply(&GROUP_RESOURCE_TYPE, &g);
        assert_eq!(keys(&out), ["displayName", "id", "schemas"]);
        let out = Projection::from_params(Some("displayName"), None)
            .unwrap()
            .apply(&GROUP_RESOURCE_TYPE, &g);
        assert_eq!(keys(&out), ["displayName", "id", "schemas"]);
        assert!(Projection::from_params(Some("a b"), None).is_err());
    }
}
