//! Pure SCIM 2.0 protocol logic for idplex (RFC 7643 / RFC 7644).
//!
//! Nothing here performs I/O: the HTTP server and the storage layer call these functions
//! with `serde_json::Value` resources and turn [`ScimError`] into responses.

mod error;
mod eval;
mod filter;
mod path;
mod schema;
mod value;

#[cfg(test)]
mod test_fixtures;

pub use error::{ERROR_SCHEMA, ScimError, ScimType};
pub use filter::{CompareOp, Filter, PatchPath};
pub use path::AttrPath;
pub use schema::*;
pub use value::{Comparable, parse_datetime};
