//! The SCIM provisioning service: the use case behind `/scim/v2/{connection}/Users`, `/Groups`
//! and the `/.search` endpoints, with no HTTP framework in sight.
//!
//! A front end (the axum server, a test) authenticates the IdP, decodes the request into a
//! [`ScimCall`] and encodes the [`ScimReply`] or [`ScimError`] it gets back. In between,
//! [`ScimService::serve`]: the connection's connector normalizes the IdP's dialect into one RFC
//! operation; the host applies RFC 7643/7644 semantics from `idplex-scim` (validation,
//! uniqueness, PATCH, ETags, filters, sorting, paging); the connector renders the result
//! (projected first, before anything is committed); the store commits; and the request is
//! written to the directory's sync log ([`sync_log`]). See [`resources`] for the details.

use std::sync::Arc;
use std::time::Instant;

use http::{Method, StatusCode};
use idplex_runtime::ResourceKind;
use idplex_scim::{GROUP_RESOURCE_TYPE, ResourceType, ScimError, USER_RESOURCE_TYPE};
use idplex_store::{ScimResourceType, SyncOperation};
use serde_json::Value;

use crate::Hub;

mod errors;
mod locks;
mod reads;
mod resources;
pub mod sync_log;

pub use errors::{connector_failure, hub_failure};
pub use locks::PatchLocks;
pub use reads::read_as_sent;
pub use resources::MAX_LIST_RESPONSE_BYTES;
pub(crate) use resources::keep_host_owned;
pub use sync_log::SyncLogger;

/// What a SCIM request addresses under `/scim/v2/{connection}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScimTarget {
    /// `/Users` or `/Groups`: list (GET) or create (POST).
    Collection(ResourceKind),
    /// `/Users/{id}` or `/Groups/{id}`: get, replace, patch, delete.
    Resource(ResourceKind, String),
    /// `POST /Users/.search`, `/Groups/.search`, or `/.search` from the root (`None`: both).
    Search(Option<ResourceKind>),
}

/// A decoded SCIM request: what a front end hands to [`ScimService::serve`] after it
/// authenticated the IdP for `connection`.
#[derive(Debug)]
pub struct ScimCall<'a> {
    /// The connection (directory) whose SCIM token authenticated the request.
    pub connection: &'a str,
    /// The HTTP method (`HEAD` is served as `GET`; the front end drops the body).
    pub method: Method,
    /// The path below the connection.
    pub target: ScimTarget,
    /// The query string as sent, still percent-encoded (`""` when there is none).
    pub raw_query: &'a str,
    /// The `If-Match` header, if any.
    pub if_match: Option<&'a str>,
    /// The `Content-Type` header, if any.
    pub content_type: Option<&'a str>,
    /// The body, or why the front end could not read it (413 for an oversized body): the
    /// failure is answered and logged like any other.
    pub body: Result<&'a [u8], ScimError>,
    /// The connection's SCIM base URL as the client addressed it
    /// (`https://host/scim/v2/{connection}`), for `meta.location` and `$ref`s.
    pub base_url: &'a str,
    /// The `User-Agent` header, for the sync log.
    pub user_agent: Option<&'a str>,
}

/// A SCIM answer: what the front end encodes as an `application/scim+json` response.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimReply {
    /// 200, 201 or 204.
    pub status: StatusCode,
    /// The resource's `ETag` (`W/"7"`), for single-resource answers.
    pub etag: Option<String>,
    /// The `Location` of a created resource.
    pub location: Option<String>,
    /// The JSON body; `None` for 204.
    pub body: Option<Value>,
}

impl ScimReply {
    fn json(status: StatusCode, body: Value) -> Self {
        ScimReply { status, etag: None, location: None, body: Some(body) }
    }

    fn no_content() -> Self {
        ScimReply { status: StatusCode::NO_CONTENT, etag: None, location: None, body: None }
    }
}

/// Seconds a client should wait before retrying a request answered `error`: `Some(1)` for a 503
/// (a busy connection, a store hiccup, a PATCH that kept losing: transient by definition here).
pub fn retry_after(error: &ScimError) -> Option<u32> {
    (error.status == 503).then_some(1)
}

/// The SCIM provisioning service of a [`Hub`]: one per process (cheap to clone). Owns the
/// sync log writer and the PATCH locks.
#[derive(Clone)]
pub struct ScimService {
    hub: Arc<Hub>,
    sync_log: SyncLogger,
    patch_locks: Arc<PatchLocks>,
}

impl ScimService {
    /// The service over `hub`; starts the sync log writer, so it must be called inside a Tokio
    /// runtime.
    pub fn new(hub: Arc<Hub>) -> Self {
        let sync_log = SyncLogger::spawn(hub.store.clone());
        ScimService { hub, sync_log, patch_locks: Arc::new(PatchLocks::new()) }
    }

    /// The hub the service runs on.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Serves one SCIM request and records it in the directory's sync log.
    pub async fn serve(&self, call: ScimCall<'_>) -> Result<ScimReply, ScimError> {
        let started = Instant::now();
        // HEAD is a GET whose body is dropped (RFC 9110 §9.3.2): the connector sees a GET.
        let method = if call.method == Method::HEAD { Method::GET } else { call.method.clone() };
        let (path, resource_type, id) = match &call.target {
            ScimTarget::Collection(kind) => (format!("/{}", kind.endpoint()), Some(*kind), None),
            ScimTarget::Resource(kind, id) => (format!("/{}/{id}", kind.endpoint()), Some(*kind), Some(id.clone())),
            ScimTarget::Search(Some(kind)) => (format!("/{}/.search", kind.endpoint()), Some(*kind), None),
            ScimTarget::Search(None) => ("/.search".to_string(), None, None),
        };
        let mut note =
            sync_log::SyncNote::new(method.as_str(), path, resource_type.map(log_type), id, call.user_agent);
        let ctx = resources::Ctx::new(self, &call);
        let result = match &call.target {
            ScimTarget::Collection(kind) => ctx.handle(*kind, &method, None, &call, &mut note).await,
            ScimTarget::Resource(kind, id) => ctx.handle(*kind, &method, Some(id.clone()), &call, &mut note).await,
            ScimTarget::Search(kind) => {
                note.operation = SyncOperation::Search;
                let kinds: &[ResourceKind] = match kind {
                    Some(ResourceKind::User) => &[ResourceKind::User],
                    Some(ResourceKind::Group) => &[ResourceKind::Group],
                    None => &[ResourceKind::User, ResourceKind::Group],
                };
                ctx.search(kinds, &call).await
            }
        };
        drop(ctx);
        sync_log::record(&self.sync_log, call.connection, note, &result, started);
        result
    }

    /// Waits until every sync log entry queued so far is written (graceful shutdown).
    pub async fn flush_sync_log(&self) {
        self.sync_log.flush().await;
    }

    /// Sync log entries dropped because the writer's queue was full, since start.
    pub fn sync_log_dropped(&self) -> u64 {
        self.sync_log.dropped()
    }
}

/// What differs between the two SCIM resource types idplex serves. The kind itself is the
/// contract's [`ResourceKind`], shared by the connector runtime, the hub and the front end; the
/// store keeps its own ([`ScimResourceType`], converted by [`log_type`]) because it knows
/// nothing of Wasm.
pub trait KindExt: Copy {
    /// The core resource type's schema (`idplex-scim`), without a connection's declared
    /// extensions (a request uses its binding's [`ScimTypes`]).
    fn rt(self) -> &'static ResourceType;
    /// `Users` or `Groups`.
    fn endpoint(self) -> &'static str;
    /// `User` or `Group` (`meta.resourceType`).
    fn name(self) -> &'static str;
    /// The read-only attribute derived from memberships: a user's `groups`, a group's `members`.
    fn derived(self) -> &'static str;
}

impl KindExt for ResourceKind {
    fn rt(self) -> &'static ResourceType {
        match self {
            ResourceKind::User => &USER_RESOURCE_TYPE,
            ResourceKind::Group => &GROUP_RESOURCE_TYPE,
        }
    }

    fn endpoint(self) -> &'static str {
        match self {
            ResourceKind::User => "Users",
            ResourceKind::Group => "Groups",
        }
    }

    fn name(self) -> &'static str {
        match self {
            ResourceKind::User => "User",
            ResourceKind::Group => "Group",
        }
    }

    fn derived(self) -> &'static str {
        match self {
            ResourceKind::User => "groups",
            ResourceKind::Group => "members",
        }
    }
}

/// A connection's SCIM resource types: the core User and Group types with the schema
/// extensions its connector declared (contract 1.1 `schemas.extensions`), made when the
/// connection is bound and kept with the binding ([`idplex_runtime::Binding::derived`]).
#[derive(Clone, Copy, Debug)]
pub struct ScimTypes {
    /// `/Users`.
    pub user: &'static ResourceType,
    /// `/Groups`.
    pub group: &'static ResourceType,
}

impl ScimTypes {
    /// The core types, without declared extensions.
    pub const CORE: ScimTypes = ScimTypes { user: &USER_RESOURCE_TYPE, group: &GROUP_RESOURCE_TYPE };

    /// The type of `kind`.
    pub fn of(&self, kind: ResourceKind) -> &'static ResourceType {
        match kind {
            ResourceKind::User => self.user,
            ResourceKind::Group => self.group,
        }
    }

    /// Both, in `/ResourceTypes` order.
    pub fn all(&self) -> [&'static ResourceType; 2] {
        [self.user, self.group]
    }

    /// The core types with `declared` added; the error names the extension and attribute at
    /// fault.
    pub fn with_declared(declared: &[idplex_runtime::SchemaExtension]) -> Result<ScimTypes, String> {
        let of_kind = |kind: ResourceKind| -> Vec<idplex_scim::DeclaredExtension> {
            declared
                .iter()
                .filter(|d| d.resource == kind)
                .map(|d| idplex_scim::DeclaredExtension {
                    id: d.id.clone(),
                    required: d.required,
                    definition: d.definition.clone(),
                })
                .collect()
        };
        Ok(ScimTypes {
            user: idplex_scim::resource_type_with(&USER_RESOURCE_TYPE, &of_kind(ResourceKind::User))?,
            group: idplex_scim::resource_type_with(&GROUP_RESOURCE_TYPE, &of_kind(ResourceKind::Group))?,
        })
    }

    /// The types a binding was made with ([`ScimTypes::CORE`] for one made without).
    pub fn of_binding(binding: &idplex_runtime::Binding) -> ScimTypes {
        BindingExtras::of(binding).map_or(ScimTypes::CORE, |e| e.types)
    }
}

/// What the hub keeps with a binding ([`idplex_runtime::Binding::derived`]): the SCIM resource
/// types made when it was bound, and, per resource kind, whether its connector said it serves
/// that kind unchanged (a 1.1 `render` answering `unsupported`), so later requests skip the
/// call.
#[derive(Debug)]
pub(crate) struct BindingExtras {
    pub(crate) types: ScimTypes,
    unchanged: [std::sync::atomic::AtomicBool; 2],
    /// Per kind, whether the connector takes its reads as sent (contract 1.3 `scim-reads`).
    as_sent: [bool; 2],
}

impl BindingExtras {
    pub(crate) fn new(types: ScimTypes, reads_as_sent: &[ResourceKind]) -> Self {
        let mut as_sent = [false; 2];
        for kind in reads_as_sent {
            as_sent[Self::slot(*kind)] = true;
        }
        BindingExtras { types, unchanged: Default::default(), as_sent }
    }

    /// Whether `GET`s of `kind` are decoded by the host ([`read_as_sent`]).
    pub(crate) fn reads_as_sent(&self, kind: ResourceKind) -> bool {
        self.as_sent[Self::slot(kind)]
    }

    pub(crate) fn of(binding: &idplex_runtime::Binding) -> Option<&BindingExtras> {
        binding.derived.downcast_ref::<BindingExtras>()
    }

    fn slot(kind: ResourceKind) -> usize {
        match kind {
            ResourceKind::User => 0,
            ResourceKind::Group => 1,
        }
    }

    /// Whether resources of `kind` are served without calling `render`.
    pub(crate) fn serves_unchanged(&self, kind: ResourceKind) -> bool {
        self.unchanged[Self::slot(kind)].load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Remembers that resources of `kind` are served unchanged.
    pub(crate) fn mark_unchanged(&self, kind: ResourceKind) {
        self.unchanged[Self::slot(kind)].store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The store's name for a resource kind (the store boundary).
fn log_type(kind: ResourceKind) -> ScimResourceType {
    match kind {
        ResourceKind::User => ScimResourceType::User,
        ResourceKind::Group => ScimResourceType::Group,
    }
}

/// A normalized operation as JSON, for dry runs and error messages.
pub fn operation_json(op: &idplex_runtime::Operation) -> Value {
    use idplex_runtime::{Operation, PatchOp};
    use serde_json::json;
    let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::Null);
    match op {
        Operation::Create(body) => json!({"op": "create", "resource": parse(body)}),
        Operation::Replace((id, body)) => json!({"op": "replace", "id": id, "resource": parse(body)}),
        Operation::Patch((id, ops)) => json!({"op": "patch", "id": id, "operations": ops.iter().map(|p| json!({
            "op": match p.op { PatchOp::Add => "add", PatchOp::Replace => "replace", PatchOp::Remove => "remove" },
            "path": p.path,
            "value": p.value.as_deref().map(parse),
        })).collect::<Vec<_>>()}),
        Operation::Delete(id) => json!({"op": "delete", "id": id}),
        Operation::Get(id) => json!({"op": "get", "id": id}),
        Operation::Query(q) => json!({
            "op": "query",
            "filter": q.filter,
            "start_index": q.start_index,
            "count": q.count,
            "sort_by": q.sort_by,
            "sort_descending": q.sort_descending,
            "attributes": q.attributes,
            "excluded_attributes": q.excluded_attributes,
        }),
    }
}
