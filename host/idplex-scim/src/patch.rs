//! PATCH (RFC 7644 §3.5.2): parse a PatchOp request and apply its operations to a
//! resource atomically.
//!
//! Rules beyond the RFC text, all documented here and tested:
//! * Keys of a path-less `add`/`replace` value are attribute *paths* (Entra sends
//!   `"name.givenName"` and `"urn:...:User:employeeNumber"` keys); an extension URN key
//!   with an object value is merged into the extension.
//! * Path-less values silently skip readOnly attributes (Okta echoes `id` when renaming a
//!   group), like create/replace do; an explicit `path` to a readOnly attribute is a
//!   `mutability` error.
//! * `remove` with path `members` (any unfiltered multi-valued attribute) *and* a value
//!   list removes only the listed elements (Entra's legacy member removal) instead of
//!   clearing the attribute.
//! * `add` to a multi-valued attribute skips elements already present; when the
//!   attribute's `value` sub-attribute is immutable (Group `members`), elements are the
//!   same if their `value` is.
//! * Setting `primary: true` on an element sets it to `false` on the others; more than
//!   one new primary in one operation is `invalidValue`.
//! * `add` with a value filter that matches nothing creates the element from the filter's
//!   `eq` terms; `replace`/`remove` answer `noTarget` unless [`PatchOptions`] relaxes it.
//!
//! Bounded by [`Limits`]: at most `max_patch_operations` operations (`tooMany`), at most
//! `max_patch_work` element visits in all (`tooMany`; an operation costs one plus the
//! elements it scans, times the filter's size for a value filter), and no multi-valued
//! attribute may grow beyond `max_multi_valued` elements (`invalidValue`). Operations on
//! Group `members` (and any attribute whose `value` is its identity) de-duplicate and
//! remove by value through a hash set, so large membership changes stay linear.

use crate::coerce::{PatchOptions, coerce_attr, coerce_single};
use crate::error::{ScimError, ScimType, err};
use crate::filter::{CompareOp, Filter, PatchPath};
use crate::limits::Limits;
use crate::path::AttrPath;
use crate::schema::{AttributeDef, Mutability, ResolvedAttr, ResourceType};
use crate::value::{Comparable, extension_key, get_ci, insert_ci, is_present, key_ci, remove_ci};
use serde_json::{Map, Value};
use std::cell::Cell;
use std::collections::HashSet;

/// URN of the PatchOp request message.
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The three PATCH operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchOpKind {
    /// Add values (append for multi-valued attributes).
    Add,
    /// Replace values.
    Replace,
    /// Remove values.
    Remove,
}

/// One PATCH operation as sent by the client.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOperation {
    /// The operation (parsed case-insensitively: Entra sends `"Replace"`).
    pub op: PatchOpKind,
    /// Target path; optional for add/replace.
    pub path: Option<String>,
    /// Value; absent for most removes.
    pub value: Option<Value>,
}

impl PatchOperation {
    /// Parses a PatchOp request body (`schemas` must list the PatchOp URN, `Operations`
    /// must hold at least one operation) within [`Limits::DEFAULT`]. Errors are
    /// `invalidSyntax`, or `tooMany` for too many operations.
    pub fn parse_request(body: &Value) -> Result<Vec<PatchOperation>, ScimError> {
        Self::parse_request_with(body, &Limits::DEFAULT)
    }

    /// [`PatchOperation::parse_request`] within `limits`: more than
    /// `limits.max_patch_operations` operations is `tooMany` (400).
    pub fn parse_request_with(
        body: &Value,
        limits: &Limits,
    ) -> Result<Vec<PatchOperation>, ScimError> {
        let syntax = |m: &str| err(ScimType::InvalidSyntax, m.to_owned());
        let obj = body
            .as_object()
            .ok_or_else(|| syntax("PATCH body must be a JSON object"))?;
        let has_schema = get_ci(obj, "schemas")
            .and_then(Value::as_array)
            .is_some_and(|s| {
                s.iter().any(|u| {
                    u.as_str()
                        .is_some_and(|u| u.eq_ignore_ascii_case(PATCH_OP_SCHEMA))
                })
            });
        if !has_schema {
            return Err(syntax(
                "PATCH body must list schema urn:ietf:params:scim:api:messages:2.0:PatchOp",
            ));
        }
        let ops = get_ci(obj, "Operations")
            .and_then(Value::as_array)
            .ok_or_else(|| syntax("missing 'Operations' array"))?;
        if ops.is_empty() {
            return Err(syntax("'Operations' must contain at least one operation"));
        }
        check_op_count(ops.len(), limits)?;
        ops.iter()
            .enumerate()
            .map(|(i, o)| Self::parse_one(o).map_err(|e| e.context(format!("Operations[{i}]"))))
            .collect()
    }

    fn parse_one(v: &Value) -> Result<PatchOperation, ScimError> {
        let syntax = |m: String| err(ScimType::InvalidSyntax, m);
        let o = v
            .as_object()
            .ok_or_else(|| syntax("operation must be an object".into()))?;
        let op_text = get_ci(o, "op")
            .and_then(Value::as_str)
            .ok_or_else(|| syntax("missing 'op'".into()))?;
        let op = match op_text.to_ascii_lowercase().as_str() {
            "add" => PatchOpKind::Add,
            "replace" => PatchOpKind::Replace,
            "remove" => PatchOpKind::Remove,
            _ => return Err(syntax(format!("unknown op '{op_text}'"))),
        };
        let path = match get_ci(o, "path") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(syntax("'path' must be a string".into())),
        };
        Ok(PatchOperation {
            op,
            path,
            value: get_ci(o, "value").cloned(),
        })
    }
}

fn check_op_count(n: usize, limits: &Limits) -> Result<(), ScimError> {
    if n > limits.max_patch_operations {
        return Err(err(
            ScimType::TooMany,
            format!(
                "PATCH request has {n} operations, more than the limit of {}",
                limits.max_patch_operations
            ),
        ));
    }
    Ok(())
}

/// Applies `ops` in order to `resource` (of type `rt`) within [`Limits::DEFAULT`]. All or
/// nothing: on error the resource is left untouched. Returns whether the resource changed.
pub fn apply_patch(
    rt: &ResourceType,
    resource: &mut Value,
    ops: &[PatchOperation],
    options: &PatchOptions,
) -> Result<bool, ScimError> {
    apply_patch_with(rt, resource, ops, options, &Limits::DEFAULT)
}

/// [`apply_patch`] within `limits`: more than `max_patch_operations` operations or more
/// than `max_patch_work` element visits is `tooMany` (400); a multi-valued attribute
/// growing beyond `max_multi_valued` elements is `invalidValue` (400). The result should
/// still go through [`crate::prepare_resource_with`] before being stored.
pub fn apply_patch_with(
    rt: &ResourceType,
    resource: &mut Value,
    ops: &[PatchOperation],
    options: &PatchOptions,
    limits: &Limits,
) -> Result<bool, ScimError> {
    check_op_count(ops.len(), limits)?;
    let mut work = resource.clone();
    let root = work
        .as_object_mut()
        .ok_or_else(|| err(ScimType::InvalidSyntax, "resource is not a JSON object"))?;
    let patcher = Patcher {
        rt,
        o: options,
        limits,
        work: Cell::new(0),
    };
    for (i, op) in ops.iter().enumerate() {
        patcher
            .apply(root, op)
            .map_err(|e| e.context(format!("operation {i} ({:?})", op.op)))?;
    }
    for a in rt.schema.attributes.iter().filter(|a| a.required) {
        if !get_ci(root, a.name).is_some_and(is_present) {
            return Err(err(
                ScimType::InvalidValue,
                format!("required attribute '{}' cannot be removed", a.name),
            ));
        }
    }
    sync_schemas(rt, root);
    let changed = work != *resource;
    *resource = work;
    Ok(changed)
}

/// Keeps `schemas` in line with the extension objects present.
fn sync_schemas(rt: &ResourceType, root: &mut Map<String, Value>) {
    for ext in rt.extensions {
        let present = extension_key(rt, root, ext.schema).is_some();
        let Some(Value::Array(schemas)) = root.get_mut("schemas") else {
            return;
        };
        let listed = schemas.iter().position(|s| {
            s.as_str()
                .and_then(|u| rt.extension(u))
                .is_some_and(|s| std::ptr::eq(s, ext.schema))
        });
        match (present, listed) {
            (true, None) => schemas.push(Value::String(ext.schema.id.to_owned())),
            (false, Some(i)) => {
                schemas.remove(i);
            }
            _ => {}
        }
    }
}

struct Patcher<'a> {
    rt: &'a ResourceType,
    o: &'a PatchOptions,
    limits: &'a Limits,
    /// Element visits so far (see [`Limits::max_patch_work`]).
    work: Cell<u64>,
}

/// Whether the operation came with an explicit path (strict) or from a path-less value.
#[derive(Clone, Copy, PartialEq)]
enum Origin {
    Path,
    PathlessValue,
}

impl Patcher<'_> {
    /// Accounts for `units` element visits; `tooMany` past the limit.
    fn charge(&self, units: u64) -> Result<(), ScimError> {
        let total = self.work.get().saturating_add(units);
        self.work.set(total);
        if total > self.limits.max_patch_work {
            return Err(err(
                ScimType::TooMany,
                format!(
                    "PATCH request needs more than {} element visits (limit); split it into smaller requests",
                    self.limits.max_patch_work
                ),
            ));
        }
        Ok(())
    }

    fn apply(&self, root: &mut Map<String, Value>, op: &PatchOperation) -> Result<(), ScimError> {
        self.charge(1)?;
        let Some(path) = &op.path else {
            if op.op == PatchOpKind::Remove {
                return Err(err(ScimType::NoTarget, "remove requires a 'path'"));
            }
            let value = op
                .value
                .as_ref()
                .and_then(Value::as_object)
                .ok_or_else(|| {
                    err(
                        ScimType::InvalidValue,
                        "add/replace without 'path' requires an object 'value'",
                    )
                })?;
            return self.apply_object(root, op.op, None, value);
        };
        if let Some(ext) = self.rt.extension(path) {
            // The whole extension object.
            if op.op == PatchOpKind::Remove {
                if let Some(k) = extension_key(self.rt, root, ext) {
                    root.remove(&k);
                }
                return Ok(());
            }
            let value = op
                .value
                .as_ref()
                .and_then(Value::as_object)
                .ok_or_else(|| {
                    err(
                        ScimType::InvalidValue,
                        format!("'{path}' requires an object value"),
                    )
                })?;
            return self.apply_object(root, op.op, Some(ext.id), value);
        }
        let target = PatchPath::parse_with(path, self.limits)?;
        self.apply_target(root, op.op, &target, op.value.as_ref(), Origin::Path)
    }

    /// A path-less value (or a whole-extension value): each key is a path.
    fn apply_object(
        &self,
        root: &mut Map<String, Value>,
        kind: PatchOpKind,
        urn: Option<&str>,
        value: &Map<String, Value>,
    ) -> Result<(), ScimError> {
        for (key, v) in value {
            // `schemas` is the envelope's, also when a client repeats it inside a whole
            // extension object (`"path": "urn:...:enterprise:2.0:User", "value": {"schemas": ..}`):
            // `sync_schemas` keeps the resource's list right either way.
            if key.eq_ignore_ascii_case("schemas") {
                continue;
            }
            if urn.is_none()
                && let Some(ext) = self.rt.extension(key)
            {
                match v {
                    Value::Object(inner) => self.apply_object(root, kind, Some(ext.id), inner)?,
                    Value::Null => {}
                    _ => {
                        return Err(err(
                            ScimType::InvalidValue,
                            format!("'{key}' requires an object value"),
                        ));
                    }
                }
                continue;
            }
            self.charge(1)?;
            let mut target = PatchPath::parse_with(key, self.limits)?;
            if let Some(u) = urn {
                target.attr.urn = Some(u.to_owned());
            }
            self.apply_target(root, kind, &target, Some(v), Origin::PathlessValue)?;
        }
        Ok(())
    }

    fn apply_target(
        &self,
        root: &mut Map<String, Value>,
        kind: PatchOpKind,
        target: &PatchPath,
        value: Option<&Value>,
        origin: Origin,
    ) -> Result<(), ScimError> {
        let full = match target.sub_attr() {
            Some(s) => target.attr.with_sub(s),
            None => target.attr.clone(),
        };
        let r = self
            .rt
            .resolve(&full)
            .ok_or_else(|| err(ScimType::InvalidPath, format!("unknown attribute '{full}'")))?;
        if r.attr.is_read_only() || r.leaf().is_read_only() {
            return match origin {
                Origin::PathlessValue => Ok(()),
                Origin::Path => Err(err(
                    ScimType::Mutability,
                    format!("attribute '{full}' is readOnly"),
                )),
            };
        }
        let value = match (kind, value) {
            (PatchOpKind::Remove, v) => v,
            (_, Some(v)) => Some(v),
            (_, None) => {
                return Err(err(
                    ScimType::InvalidValue,
                    format!("'{full}': add/replace requires a 'value'"),
                ));
            }
        };
        let ext_key = match r.extension {
            None => None,
            Some(ext) => {
                let key = extension_key(self.rt, root, ext).unwrap_or_else(|| ext.id.to_owned());
                if kind == PatchOpKind::Remove && !root.contains_key(&key) {
                    return self.no_match_on_remove(target, &full);
                }
                root.entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                Some(key)
            }
        };
        let container = match &ext_key {
            None => &mut *root,
            Some(k) => root
                .get_mut(k)
                .and_then(Value::as_object_mut)
                .ok_or_else(|| {
                    err(
                        ScimType::InvalidValue,
                        format!("extension '{k}' is not an object"),
                    )
                })?,
        };
        let label = full.to_string();
        let result = match (r.attr.multi_valued, &target.filter) {
            (false, Some(_)) => Err(err(
                ScimType::InvalidPath,
                format!("'{label}' is single-valued: no value filter allowed"),
            )),
            (false, None) => self.single(container, &r, kind, value, &label),
            (true, filter) => self.multi(container, &r, kind, filter.as_ref(), value, &label),
        };
        // An extension left without attributes is removed altogether.
        if let Some(k) = ext_key
            && root
                .get(&k)
                .and_then(Value::as_object)
                .is_some_and(Map::is_empty)
        {
            root.remove(&k);
        }
        result
    }

    fn no_match_on_remove(&self, target: &PatchPath, full: &AttrPath) -> Result<(), ScimError> {
        if target.filter.is_some() && !self.o.ignore_unmatched_remove {
            Err(err(
                ScimType::NoTarget,
                format!("no value of '{full}' matches the filter"),
            ))
        } else {
            Ok(())
        }
    }

    /// Single-valued attribute, or a sub-attribute of a single-valued complex attribute.
    fn single(
        &self,
        container: &mut Map<String, Value>,
        r: &ResolvedAttr,
        kind: PatchOpKind,
        value: Option<&Value>,
        label: &str,
    ) -> Result<(), ScimError> {
        let name = r.attr.name;
        let Some(sub) = r.sub else {
            let new = match (kind, value) {
                (PatchOpKind::Remove, _) | (_, None) => None,
                (_, Some(v)) => coerce_attr(r.attr, v, self.o, label)?,
            };
            let Some(new) = new else {
                remove_ci(container, name);
                return Ok(());
            };
            check_immutable(r.attr, get_ci(container, name), &new, label)?;
            return match (get_ci(container, name).is_some_and(Value::is_object), new) {
                // Complex: the given sub-attributes replace/add, the others stay (§3.5.2.1/3).
                (true, Value::Object(subs)) => {
                    let existing = get_obj_mut(container, name);
                    subs.into_iter()
                        .for_each(|(k, v)| insert_ci(existing, &k, v));
                    Ok(())
                }
                (_, new) => {
                    insert_ci(container, name, new);
                    Ok(())
                }
            };
        };
        let new = match (kind, value) {
            (PatchOpKind::Remove, _) | (_, None) => None,
            (_, Some(v)) => coerce_attr(sub, v, self.o, label)?,
        };
        if new.is_none() && !get_ci(container, name).is_some_and(Value::is_object) {
            return Ok(());
        }
        if !get_ci(container, name).is_some_and(Value::is_object) {
            insert_ci(container, name, Value::Object(Map::new()));
        }
        let parent = get_obj_mut(container, name);
        set_sub(parent, sub, new, label)?;
        if parent.is_empty() {
            remove_ci(container, name);
        }
        Ok(())
    }

    /// Multi-valued attribute, optionally with value filter and/or sub-attribute.
    fn multi(
        &self,
        container: &mut Map<String, Value>,
        r: &ResolvedAttr,
        kind: PatchOpKind,
        filter: Option<&Filter>,
        value: Option<&Value>,
        label: &str,
    ) -> Result<(), ScimError> {
        let attr = r.attr;
        let mut items: Vec<Value> = match remove_ci(container, attr.name) {
            Some(Value::Array(a)) => a,
            Some(Value::Null) | None => Vec::new(),
            Some(other) => vec![other],
        };
        // Taking the array out and putting it back is cheap, but the clean-up below visits
        // every element once.
        self.charge(items.len() as u64)?;
        let mut touched: Vec<usize> = Vec::new();
        let outcome = (|| -> Result<(), ScimError> {
            match (filter, r.sub, kind) {
                (None, None, PatchOpKind::Add) => {
                    let new = value
                        .map(|v| coerce_attr(attr, v, self.o, label))
                        .transpose()?
                        .flatten();
                    let new = new.map(into_vec).unwrap_or_default();
                    self.charge((items.len() + new.len()) as u64)?;
                    // Hash set of the elements present: linear, not |items| × |new|.
                    let identity = has_value_identity(attr);
                    let mut present: HashSet<String> = items
                        .iter()
                        .filter_map(|e| element_key(identity, e))
                        .collect();
                    for element in new {
                        let fresh = match element_key(identity, &element) {
                            Some(k) => present.insert(k),
                            None => true,
                        };
                        if fresh {
                            items.push(element);
                            touched.push(items.len() - 1);
                        }
                    }
                }
                (None, None, PatchOpKind::Replace) => {
                    items = value
                        .map(|v| coerce_attr(attr, v, self.o, label))
                        .transpose()?
                        .flatten()
                        .map(into_vec)
                        .unwrap_or_default();
                    touched = (0..items.len()).collect();
                }
                (None, None, PatchOpKind::Remove) => match value.filter(|v| !v.is_null()) {
                    // Entra: remove listed elements only.
                    Some(v) => {
                        let listed = coerce_attr(attr, v, self.o, label)?
                            .map(into_vec)
                            .unwrap_or_default();
                        match listed_values(&listed) {
                            // The usual `[{"value": id}, ...]`: one hash set, linear.
                            Some(values) => {
                                self.charge((items.len() + listed.len()) as u64)?;
                                items.retain(|e| {
                                    !e.as_object()
                                        .and_then(|o| get_ci(o, "value"))
                                        .is_some_and(|v| values.contains(&v.to_string()))
                                });
                            }
                            None => {
                                self.charge(
                                    (items.len() as u64).saturating_mul(listed.len() as u64),
                                )?;
                                items.retain(|e| !listed.iter().any(|l| element_matches(e, l)));
                            }
                        }
                    }
                    None => items.clear(),
                },
                (None, Some(sub), PatchOpKind::Remove) => {
                    for e in items.iter_mut().filter_map(Value::as_object_mut) {
                        remove_ci(e, sub.name);
                    }
                }
                (None, Some(_), _) => {
                    return Err(err(
                        ScimType::InvalidPath,
                        format!(
                            "'{label}': a sub-attribute of a multi-valued attribute needs a value filter"
                        ),
                    ));
                }
                (Some(f), sub, kind) => {
                    self.charge((items.len() as u64).saturating_mul(f.node_count() as u64))?;
                    let selected: Vec<usize> = (0..items.len())
                        .filter(|&i| f.matches_element(self.rt, attr, &items[i]))
                        .collect();
                    if selected.is_empty() {
                        let create = kind == PatchOpKind::Add
                            || (kind == PatchOpKind::Replace && self.o.create_on_unmatched_filter);
                        if kind == PatchOpKind::Remove && self.o.ignore_unmatched_remove {
                            return Ok(());
                        }
                        if !create {
                            return Err(err(
                                ScimType::NoTarget,
                                format!("no value of '{}' matches the filter", attr.name),
                            ));
                        }
                        let element = self.new_element(attr, f, sub, value, label)?;
                        items.push(element);
                        touched.push(items.len() - 1);
                        return Ok(());
                    }
                    match (kind, sub) {
                        (PatchOpKind::Remove, None) => {
                            let mut keep = vec![true; items.len()];
                            for &i in &selected {
                                keep[i] = false;
                            }
                            let mut keep = keep.into_iter();
                            items.retain(|_| keep.next().unwrap_or(true));
                        }
                        (PatchOpKind::Remove, Some(sub)) => {
                            for &i in &selected {
                                if let Some(e) = items[i].as_object_mut() {
                                    remove_ci(e, sub.name);
                                }
                            }
                        }
                        (_, Some(sub)) => {
                            let new = value
                                .map(|v| coerce_attr(sub, v, self.o, label))
                                .transpose()?
                                .flatten();
                            for &i in &selected {
                                let e = items[i].as_object_mut().ok_or_else(|| {
                                    err(
                                        ScimType::InvalidValue,
                                        format!("'{}' element is not an object", attr.name),
                                    )
                                })?;
                                set_sub(e, sub, new.clone(), label)?;
                            }
                            touched = selected;
                        }
                        (kind, None) => {
                            let new = value
                                .map(|v| coerce_single(attr, v, self.o, label))
                                .transpose()?
                                .flatten();
                            let Some(Value::Object(new)) = new else {
                                return Err(err(
                                    ScimType::InvalidValue,
                                    format!("'{label}' requires an object value"),
                                ));
                            };
                            for &i in &selected {
                                let e = items[i].as_object_mut().ok_or_else(|| {
                                    err(
                                        ScimType::InvalidValue,
                                        format!("'{}' element is not an object", attr.name),
                                    )
                                })?;
                                if kind == PatchOpKind::Replace {
                                    check_immutable_subs(attr, e, &new, label)?;
                                    e.clear();
                                }
                                new.iter().for_each(|(k, v)| insert_ci(e, k, v.clone()));
                            }
                            touched = selected;
                        }
                    }
                }
            }
            Ok(())
        })();
        outcome?;
        if items.len() > self.limits.max_multi_valued {
            return Err(err(
                ScimType::InvalidValue,
                format!(
                    "'{label}' would have {} values, more than the limit of {}",
                    items.len(),
                    self.limits.max_multi_valued
                ),
            ));
        }
        enforce_single_primary(attr, &mut items, &touched, label)?;
        items.retain(|e| !e.is_null() && e.as_object().is_none_or(|o| !o.is_empty()));
        if !items.is_empty() {
            container.insert(attr.name.to_owned(), Value::Array(items));
        }
        Ok(())
    }

    /// Builds the element an unmatched value filter designates: its `eq` terms, plus the
    /// value (for the sub-attribute, or merged when it is an object).
    fn new_element(
        &self,
        attr: &'static AttributeDef,
        f: &Filter,
        sub: Option<&'static AttributeDef>,
        value: Option<&Value>,
        label: &str,
    ) -> Result<Value, ScimError> {
        let mut seed = Map::new();
        if !seed_from_filter(f, &mut seed) {
            return Err(err(
                ScimType::NoTarget,
                format!(
                    "no value of '{}' matches the filter, and it is not a plain 'eq' filter to create one from",
                    attr.name
                ),
            ));
        }
        match (sub, value) {
            (Some(s), Some(v)) => {
                seed.insert(s.name.to_owned(), v.clone());
            }
            (None, Some(Value::Object(o))) => seed.extend(o.clone()),
            (None, Some(_)) => {
                return Err(err(
                    ScimType::InvalidValue,
                    format!("'{label}' requires an object value"),
                ));
            }
            (_, None) => {}
        }
        coerce_single(attr, &Value::Object(seed), self.o, label)?
            .ok_or_else(|| err(ScimType::InvalidValue, format!("'{label}': nothing to add")))
    }
}

fn get_obj_mut<'a>(
    container: &'a mut Map<String, Value>,
    name: &str,
) -> &'a mut Map<String, Value> {
    let k = key_ci(container, name).expect("checked present");
    container
        .get_mut(&k)
        .and_then(Value::as_object_mut)
        .expect("checked object")
}

fn into_vec(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        other => vec![other],
    }
}

/// Sets (or with `None`, removes) a sub-attribute, enforcing immutability.
fn set_sub(
    parent: &mut Map<String, Value>,
    sub: &AttributeDef,
    new: Option<Value>,
    label: &str,
) -> Result<(), ScimError> {
    match new {
        None => {
            remove_ci(parent, sub.name);
        }
        Some(v) => {
            check_immutable(sub, get_ci(parent, sub.name), &v, label)?;
            insert_ci(parent, sub.name, v);
        }
    }
    Ok(())
}

/// RFC 7643 §7: an immutable attribute may be set once, never changed.
fn check_immutable(
    def: &AttributeDef,
    old: Option<&Value>,
    new: &Value,
    label: &str,
) -> Result<(), ScimError> {
    match old {
        Some(o) if def.mutability == Mutability::Immutable && !o.is_null() && o != new => Err(err(
            ScimType::Mutability,
            format!("attribute '{label}' is immutable"),
        )),
        _ => Ok(()),
    }
}

fn check_immutable_subs(
    attr: &AttributeDef,
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    label: &str,
) -> Result<(), ScimError> {
    for sub in attr
        .sub_attributes
        .iter()
        .filter(|s| s.mutability == Mutability::Immutable)
    {
        if let Some(n) = get_ci(new, sub.name) {
            check_immutable(
                sub,
                get_ci(old, sub.name),
                n,
                &format!("{label}.{}", sub.name),
            )?;
        }
    }
    Ok(())
}

/// Whether the attribute's `value` is immutable, i.e. an element's identity (Group
/// `members`).
fn has_value_identity(attr: &AttributeDef) -> bool {
    attr.sub_attribute("value")
        .is_some_and(|v| v.mutability == Mutability::Immutable)
}

/// De-duplication key on add: two elements are "the same" when their keys are equal.
/// With a `value` identity, objects are keyed by their `value` (an object without one is
/// never a duplicate: `None`); otherwise, and for non-objects, by their whole JSON (maps
/// are ordered, so equal values serialise equally).
fn element_key(identity: bool, e: &Value) -> Option<String> {
    match (identity, e.as_object()) {
        (true, Some(o)) => get_ci(o, "value").map(|v| format!("v{v}")),
        _ => Some(format!("j{e}")),
    }
}

/// When every pattern of a value-list removal is exactly `{"value": x}`, the set of the
/// `x` (as JSON text), so matching is a hash lookup.
fn listed_values(listed: &[Value]) -> Option<HashSet<String>> {
    listed
        .iter()
        .map(|l| match l.as_object() {
            Some(o) if o.len() == 1 => get_ci(o, "value").map(Value::to_string),
            _ => None,
        })
        .collect()
}

/// Whether `element` has every sub-attribute value listed in `pattern`.
fn element_matches(element: &Value, pattern: &Value) -> bool {
    match (element.as_object(), pattern.as_object()) {
        (Some(e), Some(p)) => p.iter().all(|(k, v)| get_ci(e, k) == Some(v)),
        _ => element == pattern,
    }
}

/// Collects `sub eq literal` terms of a conjunction; false if the filter has anything else.
fn seed_from_filter(f: &Filter, seed: &mut Map<String, Value>) -> bool {
    match f {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value,
        } if path.urn.is_none() && path.sub_attr.is_none() => {
            seed.insert(path.attr.clone(), value.clone());
            true
        }
        Filter::And(a, b) => seed_from_filter(a, seed) && seed_from_filter(b, seed),
        _ => false,
    }
}

/// At most one element may have `primary: true` (RFC 7643 §2.4): elements touched by the
/// operation win, the others are set to false.
fn enforce_single_primary(
    attr: &AttributeDef,
    items: &mut [Value],
    touched: &[usize],
    label: &str,
) -> Result<(), ScimError> {
    let Some(primary_def) = attr.sub_attribute("primary") else {
        return Ok(());
    };
    let is_primary = |v: &Value| {
        v.as_object()
            .and_then(|o| get_ci(o, "primary"))
            .and_then(|p| Comparable::from_json(p, Some(primary_def)))
            == Some(Comparable::Bool(true))
    };
    let winners: Vec<usize> = touched
        .iter()
        .copied()
        .filter(|&i| is_primary(&items[i]))
        .collect();
    match winners.as_slice() {
        [] => Ok(()),
        [w] => {
            for (i, e) in items.iter_mut().enumerate() {
                if i != *w && is_primary(e) {
                    insert_ci(
                        e.as_object_mut().expect("primary implies object"),
                        "primary",
                        Value::Bool(false),
                    );
                }
            }
            Ok(())
        }
        _ => Err(err(
            ScimType::InvalidValue,
            format!("'{label}': more than one value has primary=true"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{GROUP_RESOURCE_TYPE, USER_RESOURCE_TYPE};
    use crate::test_fixtures;
    use serde_json::json;

    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn user() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT],
            "id": "5171a35d82074e068ce2",
            "userName": "bjensen@example.com",
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "active": true,
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@home.org", "type": "home"}
            ],
            "addresses": [{"postalCode": "12345", "type": "work", "primary": true}],
            "groups": [{"value": "g1", "display": "Admins"}],
            "meta": {"resourceType": "User"},
            ENT: {"employeeNumber": "701984", "department": "Tour Operations"}
        })
    }

    fn group() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "id": "a99962b9f99d4c4fac67",
            "displayName": "Admins",
            "members": [
                {"value": "89bb1940-b905-4575-9e7f-6f887cfb368e"},
                {"value": "7f4bc1a3-285e-48ae-8202-5accb43efb0e"},
                {"value": "f648f8d5ea4e4cd38e9c"}
            ]
        })
    }

    fn op(kind: PatchOpKind, path: Option<&str>, value: Option<Value>) -> PatchOperation {
        PatchOperation {
            op: kind,
            path: path.map(str::to_owned),
            value,
        }
    }
    use PatchOpKind::{Add, Remove, Replace};

    fn run(
        rt: &ResourceType,
        base: Value,
        ops: &[PatchOperation],
        o: &PatchOptions,
    ) -> Result<(Value, bool), ScimError> {
        let mut r = base;
        let before = r.clone();
        match apply_patch(rt, &mut r, ops, o) {
            Ok(changed) => Ok((r, changed)),
            Err(e) => {
                assert_eq!(r, before, "resource must be untouched on error");
                Err(e)
            }
        }
    }

    fn check(rt: &ResourceType, resource: &Value, filter: &str) -> bool {
        Filter::parse(filter).unwrap().matches(rt, resource)
    }

    /// (description, ops, filters that must hold afterwards)
    #[test]
    fn user_operations() {
        let s = PatchOptions::STRICT;
        let table: Vec<(&str, Vec<PatchOperation>, Vec<&str>)> = vec![
            (
                "simple replace",
                vec![op(Replace, Some("displayName"), Some(json!("Babs")))],
                vec!["displayName eq \"Babs\""],
            ),
            (
                "sub-attribute",
                vec![op(Replace, Some("name.givenName"), Some(json!("B")))],
                vec!["name.givenName eq \"B\"", "name.familyName eq \"Jensen\""],
            ),
            (
                "case-insensitive path",
                vec![op(Replace, Some("NAME.GIVENNAME"), Some(json!("C")))],
                vec!["name.givenName eq \"C\""],
            ),
            (
                "complex merge",
                vec![op(Add, Some("name"), Some(json!({"middleName": "M"})))],
                vec!["name.middleName eq \"M\"", "name.givenName eq \"Barbara\""],
            ),
            (
                "pathless merge",
                vec![op(
                    Replace,
                    None,
                    Some(json!({"active": false, "name": {"givenName": "X"}})),
                )],
                vec![
                    "active eq false",
                    "name.givenName eq \"X\"",
                    "name.familyName pr",
                ],
            ),
            (
                "pathless dotted and urn keys",
                vec![op(
                    Replace,
                    None,
                    Some(json!({"name.familyName": "F", (format!("{ENT}:employeeNumber")): "42"})),
                )],
                vec![
                    "name.familyName eq \"F\"",
                    "employeeNumber eq \"42\"",
                    "department pr",
                ],
            ),
            (
                "pathless extension object",
                vec![op(Add, None, Some(json!({ENT: {"costCenter": "CC"}})))],
                vec!["costCenter eq \"CC\"", "employeeNumber eq \"701984\""],
            ),
            (
                "urn path",
                vec![op(
                    Replace,
                    Some(&format!("{ENT}:department")),
                    Some(json!("Sales")),
                )],
                vec!["department eq \"Sales\""],
            ),
            (
                "manager sub-path",
                vec![op(
                    Add,
                    Some(&format!("{ENT}:manager.value")),
                    Some(json!("m1")),
                )],
                vec!["manager.value eq \"m1\""],
            ),
            (
                "filtered sub replace",
                vec![op(
                    Replace,
                    Some("emails[type eq \"work\"].value"),
                    Some(json!("new@x.com")),
                )],
                vec![
                    "emails[type eq \"work\"].value eq \"new@x.com\"",
                    "emails[type eq \"home\"].value eq \"babs@home.org\"",
                ],
            ),
            (
                "filtered remove",
                vec![op(Remove, Some("emails[type eq \"home\"]"), None)],
                vec!["not (emails[type eq \"home\"])", "emails[type eq \"work\"]"],
            ),
            (
                "filtered sub remove",
                vec![op(Remove, Some("emails[type eq \"home\"].type"), None)],
                vec![
                    "emails.value eq \"babs@home.org\"",
                    "not (emails.type eq \"home\")",
                ],
            ),
            (
                "append to multi",
                vec![op(
                    Add,
                    Some("emails"),
                    Some(json!([{"value": "third@x.com", "type": "other"}])),
                )],
                vec![
                    "emails.value eq \"third@x.com\"",
                    "emails.value eq \"babs@home.org\"",
                ],
            ),
            (
                "add existing is no-op",
                vec![op(
                    Add,
                    Some("emails"),
                    Some(json!([{"value": "babs@home.org", "type": "home"}])),
                )],
                vec![],
            ),
            (
                "new primary demotes old",
                vec![op(
                    Add,
                    Some("emails"),
                    Some(json!({"value": "p@x.com", "primary": true})),
                )],
                vec![
                    "emails[value eq \"p@x.com\" and primary eq true]",
                    "emails[type eq \"work\" and primary eq false]",
                ],
            ),
            (
                "primary via filter path",
                vec![op(
                    Replace,
                    Some("emails[type eq \"home\"].primary"),
                    Some(json!(true)),
                )],
                vec![
                    "emails[type eq \"home\" and primary eq true]",
                    "emails[type eq \"work\" and primary eq false]",
                ],
            ),
            (
                "add with unmatched filter creates",
                vec![op(
                    Add,
                    Some("phoneNumbers[type eq \"mobile\"].value"),
                    Some(json!("+1 555")),
                )],
                vec!["phoneNumbers[type eq \"mobile\" and value eq \"+1 555\"]"],
            ),
            (
                "replace whole multi",
                vec![op(
                    Replace,
                    Some("emails"),
                    Some(json!([{"value": "only@x.com"}])),
                )],
                vec![
                    "emails.value eq \"only@x.com\"",
                    "not (emails.value eq \"babs@home.org\")",
                ],
            ),
            (
                "remove whole attribute",
                vec![op(Remove, Some("emails"), None)],
                vec!["not (emails pr)"],
            ),
            (
                "remove extension attr",
                vec![op(Remove, Some("department"), None)],
                vec!["not (department pr)", "employeeNumber pr"],
            ),
            (
                "null value unassigns",
                vec![op(Replace, Some("name.givenName"), Some(Value::Null))],
                vec!["not (name.givenName pr)"],
            ),
            (
                "op order matters",
                vec![
                    op(Remove, Some("emails"), None),
                    op(Add, Some("emails"), Some(json!([{"value": "z@x.com"}]))),
                ],
                vec![
                    "emails.value eq \"z@x.com\"",
                    "not (emails.value eq \"babs@home.org\")",
                ],
            ),
            (
                "replace missing single creates",
                vec![op(Replace, Some("nickName"), Some(json!("Babs")))],
                vec!["nickName eq \"Babs\""],
            ),
            (
                "pathless ignores readOnly",
                vec![op(
                    Replace,
                    None,
                    Some(
                        json!({"id": "other", "groups": [], "meta": {}, "displayName": "Y", "schemas": []}),
                    ),
                )],
                vec![
                    "id eq \"5171a35d82074e068ce2\"",
                    "groups pr",
                    "displayName eq \"Y\"",
                ],
            ),
        ];
        for (what, ops, holds) in table {
            let (after, changed) = run(&USER_RESOURCE_TYPE, user(), &ops, &s)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(changed, after != user(), "{what}");
            assert_eq!(changed, !holds.is_empty(), "{what}: changed flag");
            for f in holds {
                assert!(
                    check(&USER_RESOURCE_TYPE, &after, f),
                    "{what}: {f} on {after:#}"
                );
            }
            let primaries = after["emails"].as_array().map_or(0, |a| {
                a.iter().filter(|e| e["primary"] == json!(true)).count()
            });
            assert!(primaries <= 1, "{what}: {primaries} primaries");
        }
    }

    #[test]
    fn removing_the_last_extension_attribute_drops_the_extension() {
        let ops = [op(Remove, Some(ENT), None)];
        let (after, _) = run(&USER_RESOURCE_TYPE, user(), &ops, &PatchOptions::STRICT).unwrap();
        assert!(after.get(ENT).is_none());
        assert_eq!(
            after["schemas"],
            json!(["urn:ietf:params:scim:schemas:core:2.0:User"])
        );
        let mut u = user();
        u.as_object_mut().unwrap().remove(ENT);
        u["schemas"] = json!(["urn:ietf:params:scim:schemas:core:2.0:User"]);
        let (after, _) = run(
            &USER_RESOURCE_TYPE,
            u,
            &[op(Add, Some("department"), Some(json!("D")))],
            &PatchOptions::STRICT,
        )
        .unwrap();
        assert_eq!(after[ENT], json!({"department": "D"}));
        assert_eq!(after["schemas"][1], json!(ENT));
    }

    /// scim2-tester (and some IdPs) send the whole extension object with its own `schemas`
    /// list inside; that list is envelope, not an attribute of the extension.
    #[test]
    fn whole_extension_value_may_repeat_schemas() {
        for kind in [Add, Replace] {
            let value = json!({"schemas": [ENT], "employeeNumber": "42", "department": "R&D"});
            let (after, changed) = run(
                &USER_RESOURCE_TYPE,
                user(),
                &[op(kind, Some(ENT), Some(value))],
                &PatchOptions::STRICT,
            )
            .unwrap();
            assert!(changed);
            assert_eq!(after[ENT]["employeeNumber"], json!("42"));
            assert_eq!(after[ENT]["department"], json!("R&D"));
            assert!(after[ENT].get("schemas").is_none(), "{after:#}");
        }
    }
    /// (description, ops, options, scimType, detail fragment)
    #[test]
    fn errors() {
        let s = PatchOptions::STRICT;
        let l = PatchOptions::IDP_COMPATIBLE;
        let table: Vec<(&str, Vec<PatchOperation>, PatchOptions, ScimType, &str)> = vec![
            (
                "unknown attribute",
                vec![op(Replace, Some("doesNotExist"), Some(json!("x")))],
                s,
                ScimType::InvalidPath,
                "unknown attribute 'doesNotExist'",
            ),
            (
                "unknown pathless key",
                vec![op(Replace, None, Some(json!({"doesNotExist": 1})))],
                s,
                ScimType::InvalidPath,
                "doesNotExist",
            ),
            (
                "bad path syntax",
                vec![op(Replace, Some("emails[type eq"), Some(json!("x")))],
                s,
                ScimType::InvalidPath,
                "position",
            ),
            (
                "readOnly id",
                vec![op(Replace, Some("id"), Some(json!("x")))],
                s,
                ScimType::Mutability,
                "'id' is readOnly",
            ),
            (
                "readOnly meta sub",
                vec![op(
                    Replace,
                    Some("meta.created"),
                    Some(json!("2011-05-13T04:42:34Z")),
                )],
                s,
                ScimType::Mutability,
                "readOnly",
            ),
            (
                "readOnly groups",
                vec![op(Add, Some("groups"), Some(json!([{"value": "g2"}])))],
                s,
                ScimType::Mutability,
                "'groups' is readOnly",
            ),
            (
                "remove without path",
                vec![op(Remove, None, None)],
                s,
                ScimType::NoTarget,
                "requires a 'path'",
            ),
            (
                "replace unmatched filter",
                vec![op(
                    Replace,
                    Some("emails[type eq \"other\"].value"),
                    Some(json!("x")),
                )],
                s,
                ScimType::NoTarget,
                "matches the filter",
            ),
            (
                "remove unmatched filter",
                vec![op(Remove, Some("emails[type eq \"other\"]"), None)],
                s,
                ScimType::NoTarget,
                "matches the filter",
            ),
            (
                "create needs eq filter",
                vec![op(
                    Add,
                    Some("emails[type ne \"work\" and type ne \"home\"].value"),
                    Some(json!("x")),
                )],
                l,
                ScimType::NoTarget,
                "plain 'eq' filter",
            ),
            (
                "boolean string strict",
                vec![op(Replace, Some("active"), Some(json!("False")))],
                s,
                ScimType::InvalidValue,
                "'active' requires a value of type boolean",
            ),
            (
                "wrong type",
                vec![op(Replace, Some("userName"), Some(json!(42)))],
                s,
                ScimType::InvalidValue,
                "'userName' requires",
            ),
            (
                "required removal",
                vec![op(Remove, Some("userName"), None)],
                s,
                ScimType::InvalidValue,
                "required attribute 'userName'",
            ),
            (
                "missing value",
                vec![op(Add, Some("nickName"), None)],
                s,
                ScimType::InvalidValue,
                "requires a 'value'",
            ),
            (
                "pathless non-object",
                vec![op(Replace, None, Some(json!("x")))],
                s,
                ScimType::InvalidValue,
                "object 'value'",
            ),
            (
                "filter on single-valued",
                vec![op(
                    Replace,
                    Some("name[givenName eq \"B\"].familyName"),
                    Some(json!("x")),
                )],
                s,
                ScimType::InvalidPath,
                "single-valued",
            ),
            (
                "sub of multi without filter",
                vec![op(Replace, Some("emails.value"), Some(json!("x")))],
                s,
                ScimType::InvalidPath,
                "needs a value filter",
            ),
            (
                "two new primaries",
                vec![op(
                    Add,
                    Some("emails"),
                    Some(
                        json!([{"value": "a@x", "primary": true}, {"value": "b@x", "primary": true}]),
                    ),
                )],
                s,
                ScimType::InvalidValue,
                "more than one",
            ),
            (
                "unknown sub in value",
                vec![op(
                    Add,
                    Some("emails"),
                    Some(json!([{"value": "a@x", "kind": "x"}])),
                )],
                s,
                ScimType::InvalidSyntax,
                "emails.kind",
            ),
            (
                "manager shorthand strict",
                vec![op(Add, Some(&format!("{ENT}:manager")), Some(json!("271")))],
                s,
                ScimType::InvalidValue,
                "complex",
            ),
            (
                "atomic: second op fails",
                vec![
                    op(Replace, Some("displayName"), Some(json!("ok"))),
                    op(Replace, Some("id"), Some(json!("x"))),
                ],
                s,
                ScimType::Mutability,
                "operation 1",
            ),
        ];
        for (what, ops, o, ty, frag) in table {
            let e = run(&USER_RESOURCE_TYPE, user(), &ops, &o).expect_err(what);
            assert_eq!(e.scim_type, Some(ty), "{what}: {e}");
            assert!(e.detail.contains(frag), "{what}: {}", e.detail);
        }
    }

    #[test]
    fn group_members() {
        let s = PatchOptions::STRICT;
        let members = |g: &Value| -> Vec<String> {
            g["members"].as_array().map_or(vec![], |a| {
                a.iter()
                    .map(|m| m["value"].as_str().unwrap().to_owned())
                    .collect()
            })
        };
        // Dedup by value even when display differs.
        let ops = [op(
            Add,
            Some("members"),
            Some(json!([{"value": "f648f8d5ea4e4cd38e9c", "display": "x"}, {"value": "new"}])),
        )];
        let (g, changed) = run(&GROUP_RESOURCE_TYPE, group(), &ops, &s).unwrap();
        assert!(changed);
        assert_eq!(members(&g).len(), 4);
        // readOnly display dropped from input.
        assert!(g["members"][3].get("display").is_none());
        // Filtered removal.
        let ops = [op(
            Remove,
            Some("members[value eq \"f648f8d5ea4e4cd38e9c\"]"),
            None,
        )];
        assert_eq!(
            members(&run(&GROUP_RESOURCE_TYPE, group(), &ops, &s).unwrap().0).len(),
            2
        );
        // Entra legacy: remove path members with a value list removes those only.
        let ops = [op(
            Remove,
            Some("members"),
            Some(json!([{"$ref": null, "value": "f648f8d5ea4e4cd38e9c"}])),
        )];
        assert_eq!(
            members(&run(&GROUP_RESOURCE_TYPE, group(), &ops, &s).unwrap().0).len(),
            2
        );
        // RFC: remove without value clears.
        let (g, _) = run(
            &GROUP_RESOURCE_TYPE,
            group(),
            &[op(Remove, Some("members"), None)],
            &s,
        )
        .unwrap();
        assert!(g.get("members").is_none());
        // Immutable member value.
        let ops = [op(
            Replace,
            Some("members[value eq \"f648f8d5ea4e4cd38e9c\"].value"),
            Some(json!("other")),
        )];
        assert_eq!(
            run(&GROUP_RESOURCE_TYPE, group(), &ops, &s)
                .unwrap_err()
                .scim_type,
            Some(ScimType::Mutability)
        );
        // Stale member removal: noTarget strictly, ignored leniently.
        let ops = [op(Remove, Some("members[value eq \"gone\"]"), None)];
        assert_eq!(
            run(&GROUP_RESOURCE_TYPE, group(), &ops, &s)
                .unwrap_err()
                .scim_type,
            Some(ScimType::NoTarget)
        );
        let (g, changed) = run(
            &GROUP_RESOURCE_TYPE,
            group(),
            &ops,
            &PatchOptions::IDP_COMPATIBLE,
        )
        .unwrap();
        assert!(!changed);
        assert_eq!(g, group());
    }

    #[test]
    fn lenient_options() {
        let l = PatchOptions::IDP_COMPATIBLE;
        let (u, _) = run(
            &USER_RESOURCE_TYPE,
            user(),
            &[op(Replace, Some("active"), Some(json!("False")))],
            &l,
        )
        .unwrap();
        assert_eq!(u["active"], json!(false));
        let (u, _) = run(
            &USER_RESOURCE_TYPE,
            user(),
            &[op(Add, Some(&format!("{ENT}:manager")), Some(json!("271")))],
            &l,
        )
        .unwrap();
        assert_eq!(u[ENT]["manager"], json!({"value": "271"}));
        let ops = [op(
            Replace,
            Some("phoneNumbers[type eq \"work\"].value"),
            Some(json!("555")),
        )];
        let (u, _) = run(&USER_RESOURCE_TYPE, user(), &ops, &l).unwrap();
        assert_eq!(u["phoneNumbers"], json!([{"type": "work", "value": "555"}]));
    }

    #[test]
    fn parse_request() {
        let body = json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [{"op": "Replace", "path": "active", "value": false}, {"OP": "remove", "path": "x"}]});
        let ops = PatchOperation::parse_request(&body).unwrap();
        assert_eq!(ops[0], op(Replace, Some("active"), Some(json!(false))));
        assert_eq!(ops[1].op, Remove);
        for (bad, frag) in [
            (json!({"Operations": []}), "PatchOp"),
            (
                json!({"schemas": [PATCH_OP_SCHEMA]}),
                "missing 'Operations'",
            ),
            (
                json!({"schemas": [PATCH_OP_SCHEMA], "Operations": []}),
                "at least one",
            ),
            (
                json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [{"op": "move"}]}),
                "Operations[0]: unknown op 'move'",
            ),
            (
                json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [{"op": "add", "path": 3}]}),
                "'path' must be a string",
            ),
            (json!([]), "JSON object"),
        ] {
            let e = PatchOperation::parse_request(&bad).unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
            assert!(e.detail.contains(frag), "{}", e.detail);
        }
    }

    /// Every PATCH vector of the IdP fixtures: 2xx vectors apply (with the IdP-compatible
    /// options) and produce their canonical effect; 4xx vectors are refused.
    #[test]
    fn fixture_vectors() {
        let mut seen = 0;
        for (id, v) in test_fixtures::vectors() {
            let req = &v["request"];
            if req["method"] != "PATCH" {
                continue;
            }
            seen += 1;
            let is_group = req["path"].as_str().unwrap().contains("/Groups");
            let (rt, base) = if is_group {
                (&GROUP_RESOURCE_TYPE, group())
            } else {
                (&USER_RESOURCE_TYPE, user())
            };
            let ops =
                PatchOperation::parse_request(&req["body"]).unwrap_or_else(|e| panic!("{id}: {e}"));
            let ok_expected = v["expected_response"]["status"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s.as_u64().unwrap() < 300);
            let result = run(rt, base, &ops, &PatchOptions::IDP_COMPATIBLE);
            if !ok_expected {
                assert!(result.is_err(), "{id} should fail");
                continue;
            }
            let (after, _) = result.unwrap_or_else(|e| panic!("{id}: {e}"));
            let effect = &v["canonical_effect"];
            let holds = |f: String| assert!(check(rt, &after, &f), "{id}: {f} on {after:#}");
            match effect["op"].as_str().unwrap() {
                "set_active" => holds(format!("active eq {}", effect["active"])),
                "set_attrs" => {
                    for (k, val) in effect["set"].as_object().into_iter().flatten() {
                        let path = match k.as_str() {
                            "primary_email" => "emails[primary eq true].value",
                            "family_name" => "name.familyName",
                            "given_name" => "name.givenName",
                            "user_name" => "userName",
                            "display_name" => "displayName",
                            "nick_name" => "nickName",
                            "employee_number" => "employeeNumber",
                            other => panic!("{id}: unmapped {other}"),
                        };
                        holds(format!("{path} eq {val}"));
                    }
                }
                "set_manager" => holds(format!("manager.value eq {}", effect["manager_id"])),
                "set_roles" => holds("roles pr".into()),
                "set_password" => holds("password pr".into()),
                "remove_email" => holds(format!("not (emails[type eq {}])", effect["type"])),
                "rename_group" => holds("displayName pr".into()),
                "membership_delta" => {
                    for m in effect["add"].as_array().into_iter().flatten() {
                        holds(format!("members[value eq {m}]"));
                    }
                    for m in effect["remove"].as_array().into_iter().flatten() {
                        holds(format!("not (members[value eq {m}])"));
                    }
                }
                "membership_set" => {
                    let want: Vec<&Value> = effect["members"].as_array().unwrap().iter().collect();
                    let got: Vec<&Value> = after["members"]
                        .as_array()
                        .map_or(vec![], |a| a.iter().map(|m| &m["value"]).collect());
                    assert_eq!(got, want, "{id}");
                }
                other => panic!("{id}: unhandled effect {other}"),
            }
        }
        assert!(seen >= 20, "only {seen} PATCH vectors");
    }
}
