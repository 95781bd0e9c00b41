//! What a connector's answer costs the host: its size in host memory, and how many operations
//! it carries. Checked against [`Limits::max_output_bytes`](crate::Limits) and
//! [`Limits::max_operations`](crate::Limits) after every call.
//!
//! The size is the value's real footprint: every value counts its own in-memory size
//! (`size_of`, so a record, an enum, an empty string or an empty patch operation is never
//! free) plus the heap bytes it owns (string bytes, list elements, recursively). An empty patch
//! operation therefore costs 56 bytes, not 1. The answer has been lifted out of the guest's
//! memory when this runs — which bounds it by the guest's memory limit, about 2.5 times over in
//! the worst case — and the check comes before anything else in the host touches it.

use std::mem::size_of;

use crate::bindings::*;

/// Host memory held by a value returned from a connector, and the operations it carries.
pub(crate) trait OutputSize {
    /// Bytes of host memory: `size_of::<Self>()` plus the heap it owns.
    fn output_size(&self) -> u64;

    /// Operations and patch operations carried (only `normalize` returns any).
    fn operations(&self) -> u64 {
        0
    }
}

/// Heap bytes owned by a value (its in-memory size not included): what a container adds to
/// the slots it already counted.
trait Heap: OutputSize + Sized {
    fn heap(&self) -> u64 {
        self.output_size() - size_of::<Self>() as u64
    }
}

impl<T: OutputSize> Heap for T {}

impl OutputSize for String {
    fn output_size(&self) -> u64 {
        (size_of::<String>() + self.len()) as u64
    }
}

macro_rules! fixed_size {
    ($($t:ty),*) => { $(impl OutputSize for $t { fn output_size(&self) -> u64 { size_of::<$t>() as u64 } })* };
}
fixed_size!(bool, u32, u64, Capability, ConnectorErrorKind, PatchOp, ResourceKind, PassKind);

impl OutputSize for Member {
    fn output_size(&self) -> u64 {
        size_of::<Member>() as u64
            + match self {
                Member::User(id) | Member::Group(id) => id.heap(),
            }
    }
}

impl<T: OutputSize> OutputSize for Vec<T> {
    fn output_size(&self) -> u64 {
        size_of::<Vec<T>>() as u64 + self.iter().map(OutputSize::output_size).sum::<u64>()
    }

    fn operations(&self) -> u64 {
        self.iter().map(OutputSize::operations).sum()
    }
}

impl<T: OutputSize> OutputSize for Option<T> {
    fn output_size(&self) -> u64 {
        size_of::<Option<T>>() as u64 + self.as_ref().map_or(0, Heap::heap)
    }

    fn operations(&self) -> u64 {
        self.as_ref().map_or(0, OutputSize::operations)
    }
}

impl<A: OutputSize, B: OutputSize> OutputSize for (A, B) {
    fn output_size(&self) -> u64 {
        size_of::<(A, B)>() as u64 + self.0.heap() + self.1.heap()
    }

    fn operations(&self) -> u64 {
        self.0.operations() + self.1.operations()
    }
}

impl<T: OutputSize, E: OutputSize> OutputSize for Result<T, E> {
    fn output_size(&self) -> u64 {
        size_of::<Result<T, E>>() as u64
            + match self {
                Ok(v) => v.heap(),
                Err(e) => e.heap(),
            }
    }

    fn operations(&self) -> u64 {
        match self {
            Ok(v) => v.operations(),
            Err(e) => e.operations(),
        }
    }
}

/// A record: its own size plus its fields' heap.
macro_rules! record_size {
    ($($t:ty { $($f:ident),* })*) => {
        $(impl OutputSize for $t {
            fn output_size(&self) -> u64 { size_of::<$t>() as u64 $(+ self.$f.heap())* }
        })*
    };
}

record_size! {
    WitConnectorError { kind, message, scim_type }
    Email { value, kind, primary }
    CanonicalUser { external_id, user_name, given_name, family_name, display_name, emails, active, groups, attributes }
    CanonicalGroup { external_id, display_name, members }
    ConnectorInfo { name, vendor, version, description, capabilities, config_schema, egress_hosts }
    ListQuery { filter, start_index, count, sort_by, sort_descending, attributes, excluded_attributes }
    SyncPage { users, groups, removed_users, removed_groups, next_cursor }
    GroupMembers { group, added, removed }
    PullPage { kind, users, groups, members, removed_users, removed_groups, next, resume }
    SsoIdentity { user, groups }
    SchemaExtension { id, resource, required, definition }
    DiagnosticCheck { name, ok, detail }
}

impl OutputSize for PatchOperation {
    fn output_size(&self) -> u64 {
        size_of::<PatchOperation>() as u64 + self.op.heap() + self.path.heap() + self.value.heap()
    }

    fn operations(&self) -> u64 {
        1
    }
}

impl OutputSize for Operation {
    fn output_size(&self) -> u64 {
        size_of::<Operation>() as u64
            + match self {
                Operation::Create(json) | Operation::Delete(json) | Operation::Get(json) => json.heap(),
                Operation::Replace(pair) => pair.heap(),
                Operation::Patch(pair) => pair.heap(),
                Operation::Query(q) => q.heap(),
            }
    }

    fn operations(&self) -> u64 {
        1 + match self {
            Operation::Patch((_, ops)) => ops.operations(),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(n: usize) -> Operation {
        let op = PatchOperation { op: PatchOp::Add, path: None, value: None };
        Operation::Patch(("u1".to_string(), vec![op; n]))
    }

    #[test]
    fn every_value_costs_at_least_its_in_memory_size() {
        assert_eq!(String::new().output_size(), size_of::<String>() as u64);
        assert_eq!("abc".to_string().output_size(), size_of::<String>() as u64 + 3);
        let one = PatchOperation { op: PatchOp::Add, path: None, value: None }.output_size();
        assert!(one >= size_of::<PatchOperation>() as u64 && one >= 48, "{one}");
        let ops: Result<Vec<Operation>, WitConnectorError> = Ok(vec![patch(900_000)]);
        assert!(ops.output_size() >= 900_000 * size_of::<PatchOperation>() as u64, "{}", ops.output_size());
        assert_eq!(ops.operations(), 900_001);
        let text = Some("x".repeat(1000));
        assert_eq!(text.output_size(), size_of::<Option<String>>() as u64 + 1000);
        let create: Vec<Operation> = vec![Operation::Create("{}".into()); 3];
        assert_eq!(create.operations(), 3);
        assert_eq!(
            create.output_size(),
            size_of::<Vec<Operation>>() as u64 + 3 * (size_of::<Operation>() as u64 + 2)
        );
    }
}
