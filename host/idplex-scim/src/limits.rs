//! Resource limits on client input: every recursion, loop and allocation driven by a
//! request is bounded by one of these values, and exceeding one answers a specific SCIM
//! error (400) naming the limit instead of exhausting the stack, the CPU or the database.
//!
//! The plain entry points ([`crate::Filter::parse`], [`crate::PatchPath::parse`],
//! [`crate::apply_patch`], [`crate::prepare_resource`], ...) use [`Limits::DEFAULT`]; the
//! `*_with` variants take a [`Limits`] so an operator can configure other values.

/// Bounds on client input. `Default` is [`Limits::DEFAULT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest filter (or PATCH path) text, in bytes. IdPs send filters of a few dozen
    /// bytes. Exceeding it: `invalidFilter` (`invalidPath` for a PATCH path).
    pub max_filter_bytes: usize,
    /// Deepest nesting of a filter, both in the text (every `(` and value filter `[` opens
    /// a level; this bounds the parser's recursion) and in the parsed tree (every `and`,
    /// `or`, `not` and value filter is a level; chains of `and`/`or` are built as balanced
    /// trees, so a chain of n terms adds log2(n) levels). Bounds every recursion over a
    /// filter. Exceeding it: `invalidFilter` (`invalidPath` in a PATCH path).
    pub max_filter_depth: usize,
    /// Most attribute expressions (`attr op value`, `attr pr`, `attr[...]`) in one filter.
    /// Exceeding it: `invalidFilter`.
    pub max_filter_terms: usize,
    /// Most operations in one PATCH request. Exceeding it: `tooMany`.
    pub max_patch_operations: usize,
    /// Most work one PATCH request may do, counted in element visits: an operation costs
    /// one plus the elements of the multi-valued attribute it scans (filter selection,
    /// de-duplication, value-list removal). Exceeding it: `tooMany`.
    pub max_patch_work: u64,
    /// Most elements a multi-valued attribute may hold after a PATCH or in a created /
    /// replaced resource. Exceeding it: `invalidValue`.
    pub max_multi_valued: usize,
    /// Longest value, in bytes, of an identifier-like string: `id`, `userName`,
    /// `externalId`, `displayName`, and `value` of multi-valued elements (member ids,
    /// emails). PostgreSQL indexes these; its b-tree row limit is ~2.7 KB. Exceeding it:
    /// `invalidValue`.
    pub max_identifier_bytes: usize,
    /// Longest value, in bytes, of any other string of a resource. Exceeding it:
    /// `invalidValue`.
    pub max_string_bytes: usize,
    /// Longest resource id accepted in a URL path segment (`/Users/{id}`), in bytes.
    pub max_resource_id_bytes: usize,
}

impl Limits {
    /// The defaults: generous for every IdP we know of, small enough that no request can
    /// hurt the host.
    pub const DEFAULT: Limits = Limits {
        max_filter_bytes: 16 * 1024,
        max_filter_depth: 64,
        max_filter_terms: 1_000,
        max_patch_operations: 1_000,
        max_patch_work: 10_000_000,
        max_multi_valued: 100_000,
        max_identifier_bytes: 1_024,
        max_string_bytes: 64 * 1024,
        max_resource_id_bytes: 256,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}
