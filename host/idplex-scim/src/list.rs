//! Query results: `sortBy`/`sortOrder` (RFC 7644 §3.4.2.3) and the ListResponse message
//! with pagination (§3.4.2.4).

use crate::path::AttrPath;
use crate::schema::{ResolvedAttr, ResourceType};
use crate::value::{Comparable, get_ci, values_at};
use serde_json::{Value, json};
use std::cmp::Ordering;

/// URN of the ListResponse message.
pub const LIST_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// A page of query results.
#[derive(Debug, Clone, PartialEq)]
pub struct ListResponse {
    /// Number of results matching the query (all pages).
    pub total_results: usize,
    /// 1-based index of the first resource of this page.
    pub start_index: usize,
    /// The resources of this page (already projected).
    pub resources: Vec<Value>,
}

impl ListResponse {
    /// A single page holding every result (discovery endpoints).
    pub fn complete(resources: Vec<Value>) -> Self {
        ListResponse {
            total_results: resources.len(),
            start_index: 1,
            resources,
        }
    }

    /// Cuts one page out of the full, ordered result list. Per RFC 7644 §3.4.2.4 a
    /// `startIndex` below 1 means 1 and a negative `count` means 0; `count` defaults to
    /// (and is capped at) `max_count`.
    pub fn page(
        all: Vec<Value>,
        start_index: Option<i64>,
        count: Option<i64>,
        max_count: usize,
    ) -> Self {
        let (start, count) = page_window(start_index, count, max_count);
        let total_results = all.len();
        let resources = all.into_iter().skip(start - 1).take(count).collect();
        ListResponse {
            total_results,
            start_index: start,
            resources,
        }
    }

    /// The ListResponse body; `itemsPerPage` is the number of resources in this page and
    /// all counters are JSON integers (Okta rejects strings).
    pub fn to_json(&self) -> Value {
        json!({
            "schemas": [LIST_RESPONSE_SCHEMA],
            "totalResults": self.total_results,
            "itemsPerPage": self.resources.len(),
            "startIndex": self.start_index,
            "Resources": self.resources,
        })
    }
}

/// The window a page asks for: its 1-based first index and its size. Per RFC 7644 §3.4.2.4 a
/// `startIndex` below 1 means 1 and a negative `count` means 0; `count` defaults to (and is
/// capped at) `max_count`.
pub fn page_window(start_index: Option<i64>, count: Option<i64>, max_count: usize) -> (usize, usize) {
    let start = usize::try_from(start_index.unwrap_or(1).max(1)).unwrap_or(usize::MAX);
    let count = count.map_or(max_count, |c| usize::try_from(c.max(0)).unwrap_or(usize::MAX).min(max_count));
    (start, count)
}

/// `sortOrder`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortOrder {
    /// Default.
    #[default]
    Ascending,
    /// `sortOrder=descending`.
    Descending,
}

impl SortOrder {
    /// Parses the `sortOrder` parameter (case-insensitive; absent or unknown → ascending).
    pub fn from_param(p: Option<&str>) -> Self {
        match p {
            Some(s) if s.eq_ignore_ascii_case("descending") => SortOrder::Descending,
            _ => SortOrder::Ascending,
        }
    }
}

/// The comparable value of `path` in `resource`, for `sortBy`: strings are case-folded
/// unless caseExact, dateTimes are instants; for a multi-valued attribute the primary
/// element (else the first) is used, as RFC 7644 §3.4.2.3 prescribes. `None` when the
/// attribute is absent or unknown to the schema.
pub fn sort_key(rt: &ResourceType, resource: &Value, path: &AttrPath) -> Option<Comparable> {
    let r = rt.resolve(path)?;
    let elements = values_at(rt, resource, &ResolvedAttr { sub: None, ..r });
    let primary = elements.iter().find(|e| {
        e.as_object()
            .and_then(|o| get_ci(o, "primary"))
            .and_then(|p| Comparable::from_json(p, r.attr.sub_attribute("primary")))
            == Some(Comparable::Bool(true))
    });
    let element = primary.or(elements.first())?;
    let v = match r.sub {
        Some(sub) => element.as_object().and_then(|o| get_ci(o, sub.name))?,
        None => element,
    };
    Comparable::from_json(v, Some(r.leaf()))
}

/// The order of two [`sort_key`]s: resources without a value sort last when ascending and
/// first when descending (RFC 7644 §3.4.2.3).
pub fn compare_sort_keys(a: Option<&Comparable>, b: Option<&Comparable>, order: SortOrder) -> Ordering {
    let ord = match (a, b) {
        (Some(a), Some(b)) => a.partial_cmp_same(b).unwrap_or(Ordering::Equal),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    if order == SortOrder::Descending { ord.reverse() } else { ord }
}

/// Sorts resources by `path` (stable). Resources without a value sort last when
/// ascending and first when descending.
pub fn sort_resources(
    rt: &ResourceType,
    resources: &mut [Value],
    path: &AttrPath,
    order: SortOrder,
) {
    sort_by_keys(resources, |r| sort_key(rt, r, path), order);
}

/// Sorts `items` (stable) by the [`sort_key`] `key` computes for each, once per item, in the
/// order of [`compare_sort_keys`]: how a server sorts its own representation of resources
/// (of one or several resource types) without turning them into JSON twice.
pub fn sort_by_keys<T>(items: &mut [T], key: impl Fn(&T) -> Option<Comparable>, order: SortOrder) {
    let mut keyed: Vec<(Option<Comparable>, usize)> = items.iter().enumerate().map(|(i, r)| (key(r), i)).collect();
    keyed.sort_by(|(a, _), (b, _)| compare_sort_keys(a.as_ref(), b.as_ref(), order));
    // Apply the permutation in place: `dest[k]` is where the item now at `k` goes.
    let mut dest = vec![0; keyed.len()];
    for (to, (_, from)) in keyed.iter().enumerate() {
        dest[*from] = to;
    }
    for k in 0..dest.len() {
        while dest[k] != k {
            let d = dest[k];
            items.swap(k, d);
            dest.swap(k, d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::USER_RESOURCE_TYPE;

    fn users() -> Vec<Value> {
        vec![
            json!({"id": "1", "userName": "bob", "meta": {"created": "2020-01-01T10:00:00+02:00"},
                   "emails": [{"value": "z@x"}, {"value": "A@x", "primary": true}]}),
            json!({"id": "2", "userName": "Alice", "meta": {"created": "2020-01-01T09:00:00Z"},
                   "emails": [{"value": "m@x"}]}),
            json!({"id": "3", "meta": {"created": "2019-12-31T23:00:00Z"}}),
            json!({"id": "4", "userName": "carol", "meta": {"created": "2020-01-01T08:30:00Z"}}),
        ]
    }

    fn ids(v: &[Value]) -> Vec<&str> {
        v.iter().map(|r| r["id"].as_str().unwrap()).collect()
    }

    #[test]
    fn sorting_table() {
        let table: &[(&str, SortOrder, &[&str])] = &[
            ("userName", SortOrder::Ascending, &["2", "1", "4", "3"]), // case-insensitive, missing last
            ("userName", SortOrder::Descending, &["3", "4", "1", "2"]),
            ("meta.created", SortOrder::Ascending, &["3", "1", "4", "2"]), // instants, not strings
            ("emails.value", SortOrder::Ascending, &["1", "2", "3", "4"]), // primary element "A@x"; missing: stable
            ("id", SortOrder::Descending, &["4", "3", "2", "1"]),
            ("unknownAttr", SortOrder::Ascending, &["1", "2", "3", "4"]), // stable
        ];
        for (path, order, expected) in table {
            let mut list = users();
            sort_resources(
                &USER_RESOURCE_TYPE,
                &mut list,
                &AttrPath::parse(path).unwrap(),
                *order,
            );
            assert_eq!(ids(&list), *expected, "{path} {order:?}");
        }
        assert_eq!(
            SortOrder::from_param(Some("DESCENDING")),
            SortOrder::Descending
        );
        assert_eq!(SortOrder::from_param(None), SortOrder::Ascending);
    }

    #[test]
    fn sort_key_case_rules() {
        let u = json!({"id": "AbC", "userName": "AbC"});
        let key = |p: &str| sort_key(&USER_RESOURCE_TYPE, &u, &AttrPath::parse(p).unwrap());
        assert_eq!(key("id"), Some(Comparable::Text("AbC".into())));
        assert_eq!(key("userName"), Some(Comparable::Text("abc".into())));
        assert_eq!(key("displayName"), None);
    }

    #[test]
    fn pagination_table() {
        // (startIndex, count, max, expected ids, startIndex echoed)
        type Row = (
            Option<i64>,
            Option<i64>,
            usize,
            &'static [&'static str],
            usize,
        );
        let table: &[Row] = &[
            (None, None, 200, &["1", "2", "3", "4"], 1),
            (Some(1), Some(2), 200, &["1", "2"], 1),
            (Some(3), Some(2), 200, &["3", "4"], 3),
            (Some(0), Some(1), 200, &["1"], 1),
            (Some(-5), None, 200, &["1", "2", "3", "4"], 1),
            (Some(1), Some(-1), 200, &[], 1),
            (Some(1), Some(0), 200, &[], 1),
            (Some(9), Some(5), 200, &[], 9),
            (None, Some(100), 3, &["1", "2", "3"], 1),
        ];
        for (start, count, max, expected, echoed) in table {
            let page = ListResponse::page(users(), *start, *count, *max);
            assert_eq!(ids(&page.resources), *expected, "{start:?} {count:?}");
            let body = page.to_json();
            assert_eq!(body["totalResults"], 4);
            assert_eq!(body["itemsPerPage"], expected.len());
            assert_eq!(body["startIndex"], *echoed);
            assert_eq!(body["schemas"], json!([LIST_RESPONSE_SCHEMA]));
        }
    }
}
