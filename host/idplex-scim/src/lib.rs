//! Pure SCIM 2.0 protocol logic for idplex (RFC 7643 / RFC 7644).
//!
//! Nothing here performs I/O: the HTTP server and the storage layer call these functions
//! with `serde_json::Value` resources and turn [`ScimError`] into responses.
//!
//! * [`schema`](ResourceType): User / Enterprise User / Group definitions and lookup;
//!   discovery documents ([`schemas_response`], [`resource_types_response`],
//!   [`service_provider_config`]).
//! * [`Filter`]: parse, [`Filter::validate_for`], [`Filter::matches`],
//!   [`Filter::as_simple_eq`] for indexed lookups.
//! * [`apply_patch`]: atomic PATCH with [`PatchOptions`] for IdP quirks.
//! * [`Projection`]: `attributes` / `excludedAttributes`.
//! * [`prepare_resource`]: create/replace validation and normalisation.
//! * [`sort_resources`], [`ListResponse`], [`page_window`]: query results.
//! * Request decoding: [`decode_query`], [`parse_if_match`], [`parse_request_body`],
//!   [`search_params`] (`/.search` bodies), [`member_delta`] (membership PATCHes).
//! * [`Limits`]: bounds on every input (filter size and nesting, PATCH operations and work,
//!   string lengths); the `*_with` functions take one, the others use [`Limits::DEFAULT`].
//!   [`canonical_user_name`], [`check_resource_strings`] and [`validate_resource_id`] are
//!   the checks a server runs before storing or looking up.
//!
//! # Design choices
//!
//! * **Case rules.** Attribute names, URNs, operators and PATCH `op` values are matched
//!   case-insensitively. Attribute *values* compare per the schema's `caseExact`:
//!   `id`, `externalId`, `members.value` exactly; `userName`, `emails.value`, `displayName`
//!   and attributes unknown to the schema case-insensitively. dateTimes compare as
//!   instants (offsets honoured), booleans stored as `"true"` strings compare as booleans.
//! * **Unknown attributes.** Create/replace rejects them (`invalidSyntax`, naming the
//!   attribute) — stricter than the RFC's "may ignore", and every Okta / Entra / OneLogin
//!   fixture body still passes; unknown URNs merely *listed* in `schemas` are tolerated.
//!   PATCH paths to unknown attributes are `invalidPath`. readOnly input is ignored in
//!   bodies and path-less PATCH values, refused (`mutability`) for explicit PATCH paths.
//! * **IdP quirks** are opt-in through [`PatchOptions`] (`STRICT` default; `HOST`, what the
//!   idplex host applies: strict plus idempotent removes; `IDP_COMPATIBLE` only for this
//!   crate's replays of raw IdP requests, since the host's connectors undo their IdP's quirks
//!   before it sees them); readings that do not conflict with the RFC (dotted and URN keys in
//!   path-less values, member removal by value list, the Entra
//!   `emails[type eq "work"].value eq "x"` filter) are always accepted. Pre-RFC
//!   `urn:scim:schemas:*` URNs are not: they are OneLogin's, and its connector rewrites them.

#![warn(missing_docs)]

mod coerce;
mod discovery;
mod error;
mod eval;
mod extension;
mod filter;
mod limits;
mod list;
mod patch;
mod path;
mod projection;
mod request;
mod schema;
mod validate;
mod value;

#[cfg(test)]
mod test_fixtures;

pub use coerce::PatchOptions;
pub use extension::{
    DeclaredExtension, MAX_DEFINITION_BYTES, MAX_EXTENSION_ATTRIBUTES, MAX_EXTENSIONS, MAX_INTERNED, MAX_URN_BYTES,
    resource_type_with,
};
pub use discovery::{
    MAX_RESULTS, RESOURCE_TYPE_SCHEMA, SCHEMA_SCHEMA, SERVICE_PROVIDER_CONFIG_SCHEMA,
    attribute_json, resource_type_resource, resource_types_response, schema_resource,
    resource_types_response_for, schemas_of, schemas_response, schemas_response_for, service_provider_config,
};
pub use error::{ERROR_SCHEMA, ScimError, ScimType};
pub use filter::{CompareOp, Filter, PatchPath};
pub use limits::Limits;
pub use list::{
    LIST_RESPONSE_SCHEMA, ListResponse, SortOrder, compare_sort_keys, page_window, sort_by_keys, sort_key,
    sort_resources,
};
pub use patch::{PATCH_OP_SCHEMA, PatchOpKind, PatchOperation, apply_patch, apply_patch_with};
pub use path::AttrPath;
pub use projection::Projection;
pub use request::{
    SCIM_MEDIA_TYPE, SEARCH_REQUEST_SCHEMA, decode_query, etag, member_delta, member_values,
    parse_if_match, parse_request_body, percent_decode, query_param, search_params,
};
pub use schema::*;
pub use validate::{
    canonical_user_name, check_resource_strings, prepare_resource, prepare_resource_with,
    validate_resource_id,
};
pub use value::{Comparable, parse_datetime};
