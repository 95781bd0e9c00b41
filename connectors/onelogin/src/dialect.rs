//! OneLogin's SCIM 2.0 dialect.
//!
//! OneLogin renders every user body from the admin's "SCIM JSON Template". Two quirks follow,
//! both undone here:
//!
//! * **Pre-RFC schema URNs.** The default templates list `urn:scim:schemas:core:2.0` and
//!   `urn:scim:schemas:extension:enterprise:2.0` (without `:User`). They become the RFC 7643
//!   URNs in bodies (`schemas` and extension keys, with the SDK's `rename_legacy_urns`, plus
//!   URN-qualified attribute keys), in PATCH paths that start with a legacy URN, and in the keys
//!   of path-less PATCH values.
//! * **A PUT without `active`.** User updates are full `PUT`s of the rendered template, which
//!   often has no `active`. A PUT is a full replace and the host treats a missing `active` as
//!   unset, which would deactivate the user on every profile change; but OneLogin deactivates
//!   only with `active: false` (its "Suspend" action) or with `DELETE`, never by omission. So a
//!   user PUT whose body has no `active` (or `"active": null`) gets `"active": true`.
//!
//! Group PATCHes (`members` add/remove) are RFC 7644 and pass as sent. OneLogin
//! `custom_fields` rendered into a template are left alone: the host refuses attributes it does
//! not know with a message naming them (schema extensions come later). Other IdPs' quirks are
//! not undone (an Entra-style `"False"` stays as sent; the strict host refuses it).

use idplex_connector_sdk::provisioning::{Operation, PatchOpKind, ScimRequest};
use idplex_connector_sdk::scim_dialect::{self, Body, Parsed, path_names, rename_legacy_urns};
use idplex_connector_sdk::serde_json::{Map, Value};
use idplex_connector_sdk::{ConnectorError, ResourceKind, scim};

/// OneLogin's pre-RFC core schema URN (no resource type suffix).
pub const LEGACY_CORE: &str = "urn:scim:schemas:core:2.0";
/// OneLogin's pre-RFC enterprise extension URN (no `:User`).
pub const LEGACY_ENTERPRISE: &str = "urn:scim:schemas:extension:enterprise:2.0";

/// Normalizes one request of OneLogin's dialect into RFC-correct operations.
pub fn normalize(request: &ScimRequest) -> Result<Vec<Operation>, ConnectorError> {
    let kind = request.resource;
    let mut parsed = scim_dialect::parse(request)?;
    match &mut parsed {
        Parsed::Create(body) => rename_in_body(body, kind),
        Parsed::Replace(_, body) => {
            rename_in_body(body, kind);
            if matches!(kind, ResourceKind::User) {
                keep_active(body);
            }
        }
        Parsed::Patch(_, ops) => {
            for op in ops.iter_mut() {
                if let Some(path) = op.path.as_deref().and_then(|p| rfc_path(p, kind)) {
                    op.path = Some(path);
                }
                if op.path.is_none()
                    && !matches!(op.op, PatchOpKind::Remove)
                    && let Some(Value::Object(value)) = op.value.as_mut()
                {
                    rename_object(value, kind);
                }
            }
        }
        Parsed::Delete(_) | Parsed::Get(_) | Parsed::Query(_) => {}
    }
    parsed.into_operations(kind)
}

/// Whether `text` starts with the pre-RFC `urn:scim:schemas:` prefix (ASCII case-insensitive).
fn is_legacy(text: &str) -> bool {
    const PREFIX: &str = "urn:scim:schemas:";
    text.get(..PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX))
}

/// Renames the legacy URNs of a body; leaves the body untouched (not re-encoded) if it has none.
fn rename_in_body(body: &mut Body, kind: ResourceKind) {
    if may_name_legacy_urns(body.text()) {
        body.edit(|object| rename_object(object, kind));
    }
}

/// Whether a body's text can hold a pre-RFC URN: it spells `urn:scim:schemas:` (in any ASCII
/// case), or it has an escape, behind which a URN could hide (`urn\u003ascim…`). A body with
/// neither is passed on without being parsed in full (the common case: an RFC template).
fn may_name_legacy_urns(text: &str) -> bool {
    const PREFIX: &[u8] = b"urn:scim:schemas:";
    text.contains('\\')
        || text.as_bytes().windows(PREFIX.len()).any(|w| w.eq_ignore_ascii_case(PREFIX))
}

/// `schemas` and extension keys (the SDK's `rename_legacy_urns`), then URN-qualified attribute
/// keys (`urn:scim:schemas:core:2.0:userName`). Whether anything was renamed.
fn rename_object(object: &mut Map<String, Value>, kind: ResourceKind) -> bool {
    let mut changed = rename_legacy_urns(object, kind);
    let qualified: Vec<String> = object.keys().filter(|k| is_legacy(k)).cloned().collect();
    for key in qualified {
        if let Some(new) = rfc_path(&key, kind)
            && let Some(value) = object.remove(&key)
        {
            object.insert(new, value);
            changed = true;
        }
    }
    changed
}

/// `path` with a leading pre-RFC URN replaced by the RFC 7643 one, `None` if it has none.
///
/// `urn:scim:schemas:extension:enterprise:2.0:department` and
/// `urn:scim:schemas:extension:enterprise:2.0:User:department` both become
/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`;
/// `urn:scim:schemas:core:2.0:name.givenName` becomes
/// `urn:ietf:params:scim:schemas:core:2.0:User:name.givenName` (or `:Group:` on `/Groups`).
/// The enterprise extension is only renamed on `/Users` (it has no meaning for a group).
pub fn rfc_path(path: &str, kind: ResourceKind) -> Option<String> {
    let strip = |prefix: &str| -> Option<&str> {
        let head = path.get(..prefix.len())?;
        let rest = &path[prefix.len()..];
        (head.eq_ignore_ascii_case(prefix) && (rest.is_empty() || rest.starts_with(':')))
            .then_some(rest)
    };
    let (rfc, resource, rest) = if let Some(rest) = strip(LEGACY_ENTERPRISE) {
        if !matches!(kind, ResourceKind::User) {
            return None;
        }
        (scim::ENTERPRISE_USER_SCHEMA, "User", rest)
    } else if let Some(rest) = strip(LEGACY_CORE) {
        let resource = match kind {
            ResourceKind::User => "User",
            ResourceKind::Group => "Group",
        };
        (scim::core_schema(kind), resource, rest)
    } else {
        return None;
    };
    // An optional `:User` / `:Group` right after the legacy URN is part of the schema name.
    let suffix_len = resource.len() + 1;
    let rest = match rest.get(..suffix_len) {
        Some(s)
            if s[1..].eq_ignore_ascii_case(resource)
                && (rest.len() == suffix_len || rest[suffix_len..].starts_with(':')) =>
        {
            &rest[suffix_len..]
        }
        _ => rest,
    };
    Some(format!("{rfc}{rest}"))
}

/// A user PUT without `active` (or with `"active": null`) keeps the user active.
fn keep_active(body: &mut Body) {
    let key = body
        .object()
        .keys()
        .find(|k| path_names(k, "active"))
        .cloned();
    match key {
        None => {
            body.object_mut().insert("active".into(), Value::Bool(true));
        }
        Some(key) if body.object()[&key].is_null() => {
            body.object_mut().insert(key, Value::Bool(true));
        }
        Some(_) => {}
    }
}
