//! In-process serialization of PATCHes without `If-Match` (see `resources::Ctx::patch`).

/// Striped locks keyed by (connection, resource id): two PATCHes of one resource without
/// `If-Match` take turns instead of failing each other's version check. Striped (a fixed set
/// of mutexes, chosen by hash) so the set never grows with the resources seen; two resources
/// sharing a stripe only take turns.
pub struct PatchLocks {
    stripes: Vec<tokio::sync::Mutex<()>>,
    hasher: std::collections::hash_map::RandomState,
}

impl PatchLocks {
    /// Number of stripes.
    pub const STRIPES: usize = 1024;

    pub(crate) fn new() -> Self {
        PatchLocks {
            stripes: (0..Self::STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// The lock of `(connection, id)`'s stripe, held until the guard drops.
    pub async fn lock(&self, connection: &str, id: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::BuildHasher;
        let i = (self.hasher.hash_one((connection, id)) as usize) % self.stripes.len();
        self.stripes[i].lock().await
    }
}
