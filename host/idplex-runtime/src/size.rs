//! How many bytes a connector returned: the sum of its strings and list elements. Checked
//! against [`Limits::max_output_bytes`](crate::Limits) after every call.

use crate::bindings::*;

/// Bytes of data carried by a value returned from a connector.
pub(crate) trait OutputSize {
    fn output_size(&self) -> u64;
}

impl OutputSize for String {
    fn output_size(&self) -> u64 {
        self.len() as u64
    }
}

macro_rules! fixed_size {
    ($($t:ty),*) => { $(impl OutputSize for $t { fn output_size(&self) -> u64 { std::mem::size_of::<$t>() as u64 } })* };
}
fixed_size!(bool, u32, u64, Capability, ConnectorErrorKind, PatchOp, ResourceKind);

impl<T: OutputSize> OutputSize for Vec<T> {
    fn output_size(&self) -> u64 {
        self.iter().map(OutputSize::output_size).sum()
    }
}

impl<T: OutputSize> OutputSize for Option<T> {
    fn output_size(&self) -> u64 {
        self.as_ref().map_or(0, OutputSize::output_size)
    }
}

impl<A: OutputSize, B: OutputSize> OutputSize for (A, B) {
    fn output_size(&self) -> u64 {
        self.0.output_size() + self.1.output_size()
    }
}

impl<T: OutputSize, E: OutputSize> OutputSize for Result<T, E> {
    fn output_size(&self) -> u64 {
        match self {
            Ok(v) => v.output_size(),
            Err(e) => e.output_size(),
        }
    }
}

/// Sum the sizes of a record's fields.
macro_rules! record_size {
    ($($t:ty { $($f:ident),* })*) => {
        $(impl OutputSize for $t {
            fn output_size(&self) -> u64 { 0 $(+ self.$f.output_size())* }
        })*
    };
}

record_size! {
    WitConnectorError { kind, message, scim_type }
    Email { value, kind, primary }
    CanonicalUser { external_id, user_name, given_name, family_name, display_name, emails, active, groups, attributes }
    CanonicalGroup { external_id, display_name, members }
    ConnectorInfo { name, vendor, version, description, capabilities, config_schema, egress_hosts }
    PatchOperation { op, path, value }
    ListQuery { filter, start_index, count, sort_by, sort_descending, attributes, excluded_attributes }
    SyncPage { users, groups, removed_users, removed_groups, next_cursor }
    SsoIdentity { user, groups }
}

impl OutputSize for Operation {
    fn output_size(&self) -> u64 {
        match self {
            Operation::Create(json) | Operation::Delete(json) | Operation::Get(json) => {
                json.output_size()
            }
            Operation::Replace(pair) => pair.output_size(),
            Operation::Patch(pair) => pair.output_size(),
            Operation::Query(q) => q.output_size(),
        }
    }
}
