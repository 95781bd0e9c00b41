//! `/scim/v2/{connection}/Users`, `/Groups` and the `/.search` endpoints.
//!
//! Every request goes through the connection's connector, which normalizes the IdP's dialect
//! into one RFC operation; the host then applies RFC 7643/7644 semantics (validation,
//! uniqueness, PATCH, ETags, filters, sorting, paging) and stores the result. Users and groups
//! share one handler: what differs between them is [`Kind`] (schema, endpoint, store calls) and
//! the attribute derived from memberships (a user's `groups`, a group's `members`).
//!
//! Query cost: `userName`/`externalId` (users) and `displayName`/`externalId` (groups) `eq`
//! filters are index lookups; a list without filter or sort is one store page; any other
//! filter or a `sortBy` is evaluated over the connection's resources.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use idplex_hub::{HubError, rfc3339};
use idplex_runtime::{CallError, ListQuery, Operation, PatchOp, ResourceKind, ScimRequest};
use idplex_scim::{
    AttrPath, Filter, GROUP_RESOURCE_TYPE, GROUP_SCHEMA_URN, PatchOpKind, PatchPath, ListResponse, PatchOperation, PatchOptions, Projection,
    ResourceType, ScimError, ScimType, USER_RESOURCE_TYPE, apply_patch,
    SortOrder, compare_sort_keys, prepare_resource, sort_key,
};
use idplex_store::{
    DirectoryGroup, DirectoryGroupRef, DirectoryUser, NewDirectoryGroup, NewDirectoryUser,
    ScimResourceType, StoreError, SyncOperation,
};
use serde_json::{Value, json};

use crate::AppState;
use crate::scim::{ScimFailure, ScimJson, ScimPath, base_url, parse_body};
use crate::sync_log::{SyncNote, record};

/// Largest page a list request returns (also advertised as `filter.maxResults`).
const MAX_RESULTS: usize = idplex_scim::MAX_RESULTS;

/// IdP quirks the host accepts after the connector normalized a request.
const OPTIONS: PatchOptions = PatchOptions::IDP_COMPATIBLE;

/// How often a PATCH without `If-Match` is applied again when another replica changed the
/// resource between its read and its write (see [`Ctx::patch`]).
const PATCH_ATTEMPTS: u32 = 8;

/// A list response stops adding resources once their JSON passes this many bytes (at least one
/// resource is always returned). RFC 7644 §3.4.2.4 lets a page hold fewer resources than
/// `count`; the client continues from `startIndex + itemsPerPage`. Bounds the memory of one
/// list request whatever the resources' sizes.
pub const MAX_LIST_RESPONSE_BYTES: usize = 4 << 20;

/// URN of the `/.search` request message (RFC 7644 §3.4.3).
const SEARCH_REQUEST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

type ScimResult = Result<Response, ScimFailure>;

/// A request body, or why it could not be read (too large, most often).
type Body = Result<Bytes, BytesRejection>;

fn read_body(body: Body) -> Result<Bytes, ScimFailure> {
    body.map_err(|e| {
        let status = e.status().as_u16();
        ScimFailure(if status == 413 {
            ScimError::with_status(
                413,
                format!("the request body exceeds {} bytes; send smaller requests", crate::scim::MAX_BODY),
            )
        } else {
            ScimError::new(ScimType::InvalidSyntax, format!("the request body could not be read: {e}"))
        })
    })
}

/// The two SCIM resource types idplex serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    User,
    Group,
}

impl Kind {
    fn rt(self) -> &'static ResourceType {
        match self {
            Kind::User => &USER_RESOURCE_TYPE,
            Kind::Group => &GROUP_RESOURCE_TYPE,
        }
    }

    fn runtime(self) -> ResourceKind {
        match self {
            Kind::User => ResourceKind::User,
            Kind::Group => ResourceKind::Group,
        }
    }

    /// `Users` or `Groups`.
    pub fn endpoint(self) -> &'static str {
        match self {
            Kind::User => "Users",
            Kind::Group => "Groups",
        }
    }

    /// `User` or `Group` (`meta.resourceType`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::User => "User",
            Kind::Group => "Group",
        }
    }

    fn log_type(self) -> ScimResourceType {
        match self {
            Kind::User => ScimResourceType::User,
            Kind::Group => ScimResourceType::Group,
        }
    }

    /// The read-only attribute derived from memberships.
    fn derived(self) -> &'static str {
        match self {
            Kind::User => "groups",
            Kind::Group => "members",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Routes

/// `/Users` (list, create).
pub async fn users(
    State(s): State<AppState>,
    ScimPath(connection): ScimPath<String>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(&s, Kind::User, &connection, method, None, query, &headers, body).await
}

/// `/Users/{id}` (get, replace, patch, delete).
pub async fn user(
    State(s): State<AppState>,
    ScimPath((connection, id)): ScimPath<(String, String)>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(&s, Kind::User, &connection, method, Some(id), query, &headers, body).await
}

/// `/Groups` (list, create).
pub async fn groups(
    State(s): State<AppState>,
    ScimPath(connection): ScimPath<String>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(&s, Kind::Group, &connection, method, None, query, &headers, body).await
}

/// `/Groups/{id}` (get, replace, patch, delete).
pub async fn group(
    State(s): State<AppState>,
    ScimPath((connection, id)): ScimPath<(String, String)>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(&s, Kind::Group, &connection, method, Some(id), query, &headers, body).await
}

/// `POST /Users/.search`.
pub async fn users_search(
    State(s): State<AppState>,
    ScimPath(connection): ScimPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    search(&s, &connection, &[Kind::User], "/Users/.search", &headers, body).await
}

/// `POST /Groups/.search`.
pub async fn groups_search(
    State(s): State<AppState>,
    ScimPath(connection): ScimPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    search(&s, &connection, &[Kind::Group], "/Groups/.search", &headers, body).await
}

/// `POST /.search`: users and groups together (RFC 7644 §3.4.3, search from the root).
pub async fn root_search(
    State(s): State<AppState>,
    ScimPath(connection): ScimPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    search(&s, &connection, &[Kind::User, Kind::Group], "/.search", &headers, body).await
}

// ---------------------------------------------------------------------------------------------
// Request handling

#[allow(clippy::too_many_arguments)]
async fn handle(
    s: &AppState,
    kind: Kind,
    connection: &str,
    method: Method,
    id: Option<String>,
    raw_query: Option<String>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    // HEAD is a GET whose body is dropped (RFC 9110 §9.3.2): the connector sees a GET.
    let method = if method == Method::HEAD { Method::GET } else { method };
    let path = match &id {
        Some(id) => format!("/{}/{id}", kind.endpoint()),
        None => format!("/{}", kind.endpoint()),
    };
    let mut note = SyncNote::new(method.as_str(), path, Some(kind.log_type()), id.clone(), headers);
    let result = Ctx::new(s, connection, headers)
        .handle(kind, &method, id, raw_query.as_deref().unwrap_or(""), body, &mut note)
        .await;
    record(s, connection, note, result, started)
}

async fn search(
    s: &AppState,
    connection: &str,
    kinds: &[Kind],
    path: &str,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let resource_type = (kinds.len() == 1).then(|| kinds[0].log_type());
    let mut note = SyncNote::new("POST", path.to_string(), resource_type, None, headers);
    note.operation = SyncOperation::Search;
    let result = Ctx::new(s, connection, headers).search(kinds, body).await;
    record(s, connection, note, result, started)
}

/// One request's context.
struct Ctx<'a> {
    s: &'a AppState,
    connection: &'a str,
    headers: &'a HeaderMap,
    base: String,
    /// The connection's connector for this request, bound on first use: one binding and one
    /// instance for the request's `normalize` and all its `render`s. Taken out for a call and
    /// put back after it (a call never overlaps another of the same request).
    connector: std::sync::Mutex<Option<idplex_hub::Provisioning<'a>>>,
}

impl<'a> Ctx<'a> {
    fn new(s: &'a AppState, connection: &'a str, headers: &'a HeaderMap) -> Self {
        Ctx {
            s,
            connection,
            headers,
            base: base_url(headers, connection),
            connector: std::sync::Mutex::new(None),
        }
    }

    /// The request's connector (see [`Ctx::connector`]), bound now if it is not yet; give it
    /// back with [`Ctx::keep_connector`].
    fn take_connector(&self) -> Result<idplex_hub::Provisioning<'a>, ScimFailure> {
        let kept = self.connector.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        match kept {
            Some(p) => Ok(p),
            None => self.s.hub.provisioning(self.connection).map_err(hub_failure),
        }
    }

    /// Gives the request's instance back to its binding's idle ones (a later call of this
    /// request binds again).
    fn release_connector(&self) {
        let kept = self.connector.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        drop(kept);
    }

    fn keep_connector(&self, p: idplex_hub::Provisioning<'a>) {
        *self.connector.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(p);
    }

    fn store(&self) -> &idplex_store::Store {
        self.s.hub.store()
    }

    async fn handle(
        &self,
        kind: Kind,
        method: &Method,
        id: Option<String>,
        raw_query: &str,
        body: Body,
        note: &mut SyncNote,
    ) -> ScimResult {
        if let Some(id) = &id {
            check_resource_id(kind, id)?;
        }
        let query = decode_query(raw_query);
        let body = match *method {
            Method::POST | Method::PUT | Method::PATCH => Some(parse_body(self.headers, &read_body(body)?)?),
            _ => None,
        };
        if *method == Method::PATCH
            && let Some(ops) = body.as_ref().and_then(|b| b.get("Operations")).and_then(Value::as_array)
            && ops.len() > idplex_scim::Limits::DEFAULT.max_patch_operations
        {
            // Counted before the connector parses them: a PATCH bomb costs the sandbox nothing.
            return Err(ScimFailure(ScimError::new(
                ScimType::TooMany,
                format!(
                    "a PATCH request may hold at most {} operations; this one has {}",
                    idplex_scim::Limits::DEFAULT.max_patch_operations,
                    ops.len()
                ),
            )));
        }
        let request = ScimRequest {
            method: method.as_str().to_string(),
            resource: kind.runtime(),
            id,
            query: query.clone(),
            body: body.as_ref().map(Value::to_string),
        };
        let op = self.normalize(request).await?;
        let projection =
            Projection::from_params(param(&query, "attributes"), param(&query, "excludedAttributes"))?;
        note.operation = match &op {
            Operation::Create(_) => SyncOperation::Create,
            Operation::Get(_) => SyncOperation::Get,
            Operation::Replace(_) => SyncOperation::Replace,
            Operation::Patch(_) => SyncOperation::Patch,
            Operation::Delete(_) => SyncOperation::Delete,
            Operation::Query(_) => SyncOperation::Query,
        };
        match op {
            Operation::Create(json) => {
                let prepared = prepare_resource(kind.rt(), &connector_json(&json)?, &OPTIONS)?;
                let stored = self.create(kind, prepared).await?;
                note.resource_id = Some(stored.id.clone());
                self.respond(&stored, StatusCode::CREATED, &projection).await
            }
            Operation::Get(id) => {
                let stored = self.load(kind, &id, projection.returns(kind.rt(), kind.derived())).await?;
                self.respond(&stored, StatusCode::OK, &projection).await
            }
            Operation::Replace((id, json)) => {
                note.resource_id = Some(id.clone());
                let prepared = prepare_resource(kind.rt(), &connector_json(&json)?, &OPTIONS)?;
                let stored = self.replace(kind, &id, if_match(self.headers)?, prepared).await?;
                self.respond(&stored, StatusCode::OK, &projection).await
            }
            Operation::Patch((id, patch)) => {
                note.resource_id = Some(id.clone());
                let ops = PatchOperation::parse_request(&json!({
                    "schemas": [idplex_scim::PATCH_OP_SCHEMA],
                    "Operations": patch.iter().map(|p| Ok(json!({
                        "op": match p.op { PatchOp::Add => "add", PatchOp::Replace => "replace", PatchOp::Remove => "remove" },
                        "path": p.path,
                        "value": p.value.as_deref().map(connector_json).transpose()?,
                    }))).collect::<Result<Vec<_>, ScimFailure>>()?,
                }))?;
                if kind == Kind::Group
                    && let Some((add, remove)) = member_delta(&ops)
                {
                    for member in add.iter().chain(&remove) {
                        idplex_scim::validate_resource_id(member, &idplex_scim::Limits::DEFAULT)?;
                    }
                    // A membership change: applied as a delta, not by rewriting the member list.
                    let group = self
                        .store()
                        .change_group_members(self.connection, &id, if_match(self.headers)?, &add, &remove)
                        .await
                        .map_err(|e| store_failure(kind, e))?;
                    return self.respond(&Stored::group(group, true), StatusCode::OK, &projection).await;
                }
                let stored = self.patch(kind, &id, ops).await?;
                self.respond(&stored, StatusCode::OK, &projection).await
            }
            Operation::Delete(id) => {
                note.resource_id = Some(id.clone());
                // A user follows the directory's delete policy (deactivate and hide, or delete);
                // either way the IdP sees it gone (RFC 7644 §3.6). `If-Match` makes it
                // conditional (§3.14: 412 if the resource changed since).
                let expected = if_match(self.headers)?;
                match kind {
                    Kind::User => self.store().scim_delete_user(self.connection, &id, expected).await.map(|_| ()),
                    Kind::Group => self.store().delete_group(self.connection, &id, expected).await,
                }
                .map_err(|e| store_failure(kind, e))?;
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            Operation::Query(q) => {
                let found = self.query(kind, &q, true).await?;
                self.list_response(found, &q).await
            }
        }
    }

    /// `POST .../.search`: the body's parameters go through the connector as a query.
    async fn search(&self, kinds: &[Kind], body: Body) -> ScimResult {
        let body = parse_body(self.headers, &read_body(body)?)?;
        let params = search_params(&body)?;
        let mut queries = Vec::with_capacity(kinds.len());
        for kind in kinds {
            let request = ScimRequest {
                method: "GET".into(),
                resource: kind.runtime(),
                id: None,
                query: params.clone(),
                body: None,
            };
            match self.normalize(request).await? {
                Operation::Query(q) => queries.push((*kind, q)),
                other => {
                    return Err(ScimFailure(ScimError::with_status(
                        502,
                        format!("the connector turned a search into {}", crate::operation_json(&other)["op"]),
                    )));
                }
            }
        }
        if let [(kind, q)] = &queries[..] {
            let found = self.query(*kind, q, true).await?;
            return self.list_response(found, q).await;
        }
        // From the root: every resource type the filter makes sense for (a filter naming an
        // attribute only users have skips groups, and the other way round).
        let mut found = Found::default();
        let mut refused = Vec::new();
        for (kind, q) in &queries {
            match self.query(*kind, &ListQuery { sort_by: None, ..q.clone() }, false).await {
                Ok(f) => {
                    found.total += f.total;
                    found.items.extend(f.items);
                }
                Err(e) if e.0.scim_type == Some(ScimType::InvalidFilter) => refused.push(e),
                Err(e) => return Err(e),
            }
        }
        if refused.len() == queries.len()
            && let Some(e) = refused.into_iter().next()
        {
            return Err(e);
        }
        let q = &queries[0].1;
        if let Some(by) = &q.sort_by {
            sort_mixed(&mut found.items, &AttrPath::parse(by)?, &self.base, q.sort_descending);
        }
        self.list_response(found, q).await
    }

    /// The connector's single operation for `request`.
    async fn normalize(&self, request: ScimRequest) -> Result<Operation, ScimFailure> {
        let mut connector = self.take_connector()?;
        let ops = connector.normalize(request).await;
        self.keep_connector(connector);
        let ops = ops.map_err(hub_failure)?;
        <[Operation; 1]>::try_from(ops).map(|[op]| op).map_err(|ops| {
            ScimFailure(ScimError::with_status(
                502,
                format!(
                    "the connector turned one request into {} operations; idplex applies exactly one",
                    ops.len()
                ),
            ))
        })
    }

    /// A general PATCH: load, apply, store if unchanged since loaded.
    ///
    /// With `If-Match` the client's version is the precondition (412 when it is stale, RFC 7644
    /// §3.14). Without it the client asked for no precondition, so a concurrent change of the
    /// same resource must not fail the request: PATCHes of one resource run one at a time in
    /// this process ([`crate::PatchLocks`]), and a change made meanwhile by another replica
    /// makes it load and apply again, up to [`PATCH_ATTEMPTS`] times.
    ///
    /// Applying runs on a blocking thread: its cost grows with the resource and the operations
    /// (bounded by the PATCH limits of `idplex-scim`), and must not hold an async worker that
    /// other tenants' requests need.
    async fn patch(&self, kind: Kind, id: &str, ops: Vec<PatchOperation>) -> Result<Stored, ScimFailure> {
        let explicit = if_match(self.headers)?;
        let _serialized = match explicit {
            None => {
                // Waiting for the lock holds no sandbox instance: a burst of PATCHes of one
                // resource must not take the connection's instances from its other requests.
                self.release_connector();
                Some(self.s.patch_locks.lock(self.connection, id).await)
            }
            Some(_) => None,
        };
        let ops = std::sync::Arc::new(ops);
        let mut attempt = 1;
        loop {
            // Groups need their members to patch them; users' groups are read-only.
            let current = self.load(kind, id, kind == Kind::Group).await?;
            let expected = explicit.unwrap_or(current.version);
            let resource = current.document(&self.base);
            let patch_ops = ops.clone();
            let prepared = tokio::task::spawn_blocking(move || -> Result<Value, ScimError> {
                let mut resource = resource;
                apply_patch(kind.rt(), &mut resource, &patch_ops, &OPTIONS)?;
                prepare_resource(kind.rt(), &resource, &OPTIONS)
            })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "PATCH application failed on its blocking thread");
                ScimFailure(ScimError::with_status(500, "the PATCH could not be applied (internal error)"))
            })??;
            match self.replace(kind, id, Some(expected), prepared).await {
                Err(e) if explicit.is_none() && e.0.status == 412 => {
                    if attempt == PATCH_ATTEMPTS {
                        tracing::warn!(connection = %self.connection, id, "PATCH kept losing to concurrent changes");
                        return Err(ScimFailure(ScimError::with_status(
                            503,
                            format!(
                                "the resource changed {PATCH_ATTEMPTS} times while this PATCH was applied; retry later"
                            ),
                        )));
                    }
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    // -- store access ---------------------------------------------------------------------------

    async fn create(&self, kind: Kind, prepared: Value) -> Result<Stored, ScimFailure> {
        let prepared = without_password(prepared);
        let store = self.store();
        match kind {
            Kind::User => {
                let (user_name, external_id, active) = user_keys(&prepared)?;
                let user = store
                    .create_user(&NewDirectoryUser {
                        connection_id: self.connection.to_string(),
                        user_name,
                        external_id,
                        active,
                        resource: prepared,
                    })
                    .await
                    .map_err(|e| store_failure(kind, e))?;
                Ok(Stored::user(user, Some(Vec::new())))
            }
            Kind::Group => {
                let (display_name, external_id, members, resource) = group_parts(prepared)?;
                let group = store
                    .create_group(&NewDirectoryGroup {
                        connection_id: self.connection.to_string(),
                        display_name,
                        external_id,
                        resource,
                        members,
                    })
                    .await
                    .map_err(|e| store_failure(kind, e))?;
                Ok(Stored::group(group, true))
            }
        }
    }

    /// The resource `id`, with its derived attribute when `derived`.
    async fn load(&self, kind: Kind, id: &str, derived: bool) -> Result<Stored, ScimFailure> {
        let store = self.store();
        match kind {
            Kind::User => {
                let user = store.get_user(self.connection, id).await.map_err(|e| store_failure(kind, e))?;
                let mut stored = vec![Stored::user(user, None)];
                if derived {
                    self.attach_groups(&mut stored).await?;
                }
                Ok(stored.remove(0))
            }
            Kind::Group => {
                let group = store.get_group(self.connection, id).await.map_err(|e| store_failure(kind, e))?;
                Ok(Stored::group(group, derived))
            }
        }
    }

    async fn replace(&self, kind: Kind, id: &str, expected: Option<i64>, prepared: Value) -> Result<Stored, ScimFailure> {
        let prepared = without_password(prepared);
        let store = self.store();
        match kind {
            Kind::User => {
                let (user_name, external_id, active) = user_keys(&prepared)?;
                let user = store
                    .replace_user(self.connection, id, expected, &user_name, external_id.as_deref(), active, &prepared)
                    .await
                    .map_err(|e| store_failure(kind, e))?;
                let mut stored = vec![Stored::user(user, None)];
                self.attach_groups(&mut stored).await?;
                Ok(stored.remove(0))
            }
            Kind::Group => {
                let (display_name, external_id, members, resource) = group_parts(prepared)?;
                let group = store
                    .replace_group(
                        self.connection,
                        id,
                        expected,
                        &display_name,
                        external_id.as_deref(),
                        &resource,
                        Some(members),
                    )
                    .await
                    .map_err(|e| store_failure(kind, e))?;
                Ok(Stored::group(group, true))
            }
        }
    }

    /// Loads the `groups` of the users among `items` (one query for the lot).
    async fn attach_groups(&self, items: &mut [Stored]) -> Result<(), ScimFailure> {
        let ids: Vec<&str> = items.iter().filter(|i| i.kind == Kind::User).map(|i| i.id.as_str()).collect();
        if ids.is_empty() {
            return Ok(());
        }
        let mut groups =
            self.store().groups_of_users(self.connection, &ids).await.map_err(|e| store_failure(Kind::User, e))?;
        for item in items.iter_mut().filter(|i| i.kind == Kind::User) {
            item.groups = Some(groups.remove(&item.id).unwrap_or_default());
        }
        Ok(())
    }

    /// Every resource of `kind` the query selects, in a stable order (creation order, or
    /// `sortBy`); only one page of it when `store_paging` and neither a filter nor a sort asks
    /// for more.
    async fn query(&self, kind: Kind, q: &ListQuery, store_paging: bool) -> Result<Found, ScimFailure> {
        let projection = query_projection(q)?;
        let wants_derived = projection.returns(kind.rt(), kind.derived());
        let filter = q.filter.as_deref().map(Filter::parse).transpose()?;
        if let Some(f) = &filter {
            f.validate_for(kind.rt())?;
        }
        if filter.is_none() && q.sort_by.is_none() && store_paging {
            // One store page, in creation order.
            let start = u64::from(q.start_index.unwrap_or(1).max(1)) - 1;
            let count = q.count.map_or(MAX_RESULTS, |c| (c as usize).min(MAX_RESULTS)) as u32;
            let (items, total) = self.page(kind, start, count, wants_derived).await?;
            return Ok(Found { items, total: usize::try_from(total).unwrap_or(0), paged: true });
        }
        // A filter on the derived attribute needs it loaded to be evaluated.
        let text = q.filter.as_deref().unwrap_or_default().to_ascii_lowercase();
        let derived_in_filter = filter.is_some() && text.contains(kind.derived());
        if let Some(filter) = &filter
            && let Some(candidates) = self.indexed(kind, filter, wants_derived || derived_in_filter).await?
        {
            let items: Vec<Stored> =
                candidates.into_iter().filter(|c| filter.matches(kind.rt(), &c.to_scim(&self.base))).collect();
            let mut found = Found { total: items.len(), items, paged: false };
            self.sort(&mut found, q)?;
            return Ok(found);
        }
        // A group's members come with its row; a user's groups are attached for the page shown.
        let load_derived = derived_in_filter || (kind == Kind::Group && wants_derived);
        // Evaluated a store page at a time, keeping only what the answer needs: the matches of
        // the requested window (all matches are counted), or with `sortBy` the first
        // `startIndex + count` matches in sort order. A request then holds one store page plus
        // its window, whatever the directory's size.
        let window = store_paging.then(|| {
            let start = q.start_index.unwrap_or(1).max(1) as usize - 1;
            let count = q.count.map_or(MAX_RESULTS, |c| (c as usize).min(MAX_RESULTS));
            (start, count)
        });
        let sort_path = q.sort_by.as_deref().map(AttrPath::parse).transpose()?;
        let mut items: Vec<Stored> = Vec::new();
        let (mut seen, mut matched) = (0u64, 0usize);
        loop {
            let (page, total) =
                self.page(kind, seen, idplex_store::MAX_DIRECTORY_LIST_LIMIT, load_derived).await?;
            let done = page.is_empty();
            seen += page.len() as u64;
            for c in page {
                if let Some(filter) = &filter
                    && !filter.matches(kind.rt(), &c.to_scim(&self.base))
                {
                    continue;
                }
                let keep = match (window, &sort_path) {
                    (Some((start, count)), None) => matched >= start && matched < start.saturating_add(count),
                    _ => true,
                };
                matched += 1;
                if keep {
                    items.push(c);
                }
            }
            if let (Some((start, count)), Some(path)) = (window, &sort_path) {
                let keep = start.saturating_add(count);
                if items.len() > keep.saturating_mul(2).max(1024) {
                    sort_mixed(&mut items, path, &self.base, q.sort_descending);
                    items.truncate(keep);
                }
            }
            if done || seen as i64 >= total {
                break;
            }
        }
        if let Some(path) = &sort_path {
            sort_mixed(&mut items, path, &self.base, q.sort_descending);
        }
        match window {
            Some((start, count)) if sort_path.is_some() => {
                let page = items.into_iter().skip(start).take(count).collect();
                Ok(Found { items: page, total: matched, paged: true })
            }
            Some(_) => Ok(Found { items, total: matched, paged: true }),
            None => Ok(Found { total: matched, items, paged: false }),
        }
    }

    fn sort(&self, found: &mut Found, q: &ListQuery) -> Result<(), ScimFailure> {
        if let Some(by) = &q.sort_by {
            sort_mixed(&mut found.items, &AttrPath::parse(by)?, &self.base, q.sort_descending);
        }
        Ok(())
    }

    /// Candidates for an `eq` filter on an indexed attribute; `None` when the filter is not one.
    async fn indexed(&self, kind: Kind, filter: &Filter, derived: bool) -> Result<Option<Vec<Stored>>, ScimFailure> {
        let Some((path, value)) = filter.as_simple_eq() else { return Ok(None) };
        let Some(value) = value.as_str() else { return Ok(None) };
        if path.sub_attr.is_some() {
            return Ok(None);
        }
        if value.contains('\0') {
            // No stored value holds NUL (it is refused on write; PostgreSQL cannot even compare it).
            return Ok(Some(Vec::new()));
        }
        let store = self.store();
        let c = self.connection;
        let attr = path.attr.to_ascii_lowercase();
        let fail = |e| store_failure(kind, e);
        let items = match (kind, attr.as_str()) {
            (Kind::User, "username") => store.find_users_by_user_name(c, value).await.map_err(fail)?,
            (Kind::User, "externalid") => store.find_users_by_external_id(c, value).await.map_err(fail)?,
            (Kind::User, "id") => match store.get_user(c, value).await {
                Ok(u) => vec![u],
                Err(e) if e.is_not_found() => vec![],
                Err(e) => return Err(fail(e)),
            },
            (Kind::Group, "displayname") => {
                let groups = store.find_groups_by_display_name(c, value, derived).await.map_err(fail)?;
                return Ok(Some(groups.into_iter().map(|g| Stored::group(g, derived)).collect()));
            }
            (Kind::Group, "externalid") => {
                let groups = store.find_groups_by_external_id(c, value, derived).await.map_err(fail)?;
                return Ok(Some(groups.into_iter().map(|g| Stored::group(g, derived)).collect()));
            }
            (Kind::Group, "id") => {
                return match store.get_group(c, value).await {
                    Ok(g) => Ok(Some(vec![Stored::group(g, derived)])),
                    Err(e) if e.is_not_found() => Ok(Some(vec![])),
                    Err(e) => Err(fail(e)),
                };
            }
            _ => return Ok(None),
        };
        let mut items: Vec<Stored> = items.into_iter().map(|u| Stored::user(u, None)).collect();
        if derived {
            self.attach_groups(&mut items).await?;
        }
        Ok(Some(items))
    }

    /// One store page of `kind`, in creation order, with the total count.
    async fn page(&self, kind: Kind, offset: u64, limit: u32, derived: bool) -> Result<(Vec<Stored>, i64), ScimFailure> {
        let store = self.store();
        match kind {
            Kind::User => {
                if limit == 0 {
                    let (_, total) = store.list_users(self.connection, 0, 1).await.map_err(|e| store_failure(kind, e))?;
                    return Ok((Vec::new(), total));
                }
                let (users, total) =
                    store.list_users(self.connection, offset, limit).await.map_err(|e| store_failure(kind, e))?;
                let mut items: Vec<Stored> = users.into_iter().map(|u| Stored::user(u, None)).collect();
                if derived {
                    self.attach_groups(&mut items).await?;
                }
                Ok((items, total))
            }
            Kind::Group => {
                let (groups, total) = store
                    .list_groups(self.connection, offset, limit.max(1), derived)
                    .await
                    .map_err(|e| store_failure(kind, e))?;
                let items = if limit == 0 { Vec::new() } else { groups.into_iter().map(|g| Stored::group(g, derived)).collect() };
                Ok((items, total))
            }
        }
    }

    // -- responses ------------------------------------------------------------------------------

    async fn list_response(&self, found: Found, q: &ListQuery) -> ScimResult {
        let projection = query_projection(q)?;
        let (total, start, page) = if found.paged {
            (found.total, q.start_index.unwrap_or(1).max(1) as usize, found.items)
        } else {
            let start = q.start_index.unwrap_or(1).max(1) as usize;
            let count = q.count.map_or(MAX_RESULTS, |c| (c as usize).min(MAX_RESULTS));
            let total = found.total;
            (total, start, found.items.into_iter().skip(start - 1).take(count).collect())
        };
        let mut page = page;
        // Derived attributes for the page only, when they will be shown and are not loaded yet.
        if page.iter().any(|i| i.kind == Kind::User && i.groups.is_none())
            && projection.returns(Kind::User.rt(), Kind::User.derived())
        {
            self.attach_groups(&mut page).await?;
        }
        let mut resources = Vec::with_capacity(page.len());
        let mut bytes = 0usize;
        for item in &page {
            let rendered = self.render(item.kind, &item.to_scim(&self.base)).await?;
            let resource = projection.apply(item.kind.rt(), &rendered);
            if page.len() > 1 {
                // A shorter page rather than an unbounded response (MAX_LIST_RESPONSE_BYTES).
                bytes = bytes.saturating_add(json_size(&resource));
                if bytes > MAX_LIST_RESPONSE_BYTES && !resources.is_empty() {
                    break;
                }
            }
            resources.push(resource);
        }
        let list = ListResponse { total_results: total, start_index: start, resources };
        Ok(ScimJson(StatusCode::OK, list.to_json()).into_response())
    }

    async fn respond(&self, stored: &Stored, status: StatusCode, projection: &Projection) -> ScimResult {
        let rendered = self.render(stored.kind, &stored.to_scim(&self.base)).await?;
        let mut resp = ScimJson(status, projection.apply(stored.kind.rt(), &rendered)).into_response();
        if let Ok(v) = HeaderValue::from_str(&etag(stored.version)) {
            resp.headers_mut().insert(header::ETAG, v);
        }
        if status == StatusCode::CREATED
            && let Ok(v) = HeaderValue::from_str(&stored.location(&self.base))
        {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        Ok(resp)
    }

    /// The connector's rendering of a stored resource, checked to still be the same resource.
    async fn render(&self, kind: Kind, resource: &Value) -> Result<Value, ScimFailure> {
        let mut connector = self.take_connector()?;
        let out = connector.render(kind.runtime(), resource.to_string()).await;
        self.keep_connector(connector);
        let out = out.map_err(hub_failure)?;
        let mut v = connector_json(&out)?;
        if v.get("id") != resource.get("id") {
            return Err(ScimFailure(ScimError::with_status(502, "the connector's rendering changed the resource id")));
        }
        keep_host_owned(kind, resource, &mut v)?;
        Ok(v)
    }
}

/// Attributes of a rendered resource that only the host may set: identity, ETag and location
/// (`meta`), the keys the IdP matches resources by, and the attributes derived from memberships.
/// A connector shapes everything else for its IdP.
fn host_owned(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::User => &["id", "schemas", "meta", "userName", "externalId", "active", "groups", "members"],
        Kind::Group => &["id", "schemas", "meta", "displayName", "externalId", "members", "groups"],
    }
}

/// Puts the host's values of [`host_owned`] attributes back into `rendered` (attribute names
/// compared without case, as SCIM does): a value the host did not send is removed, a value it
/// sent replaces whatever the connector made of it.
fn keep_host_owned(kind: Kind, host: &Value, rendered: &mut Value) -> Result<(), ScimFailure> {
    let Some(out) = rendered.as_object_mut() else {
        return Err(ScimFailure(ScimError::with_status(502, "the connector rendered a resource that is not a JSON object")));
    };
    let names = host_owned(kind);
    out.retain(|k, _| !names.iter().any(|n| k.eq_ignore_ascii_case(n)));
    for name in names {
        if let Some(v) = host.get(*name) {
            out.insert((*name).to_string(), v.clone());
        }
    }
    Ok(())
}

/// What a query found: all matches (`paged == false`), or one store page of them.
#[derive(Default)]
struct Found {
    items: Vec<Stored>,
    total: usize,
    paged: bool,
}

/// Sorts resources (possibly of both kinds) by `path`, stably; missing values last when
/// ascending (RFC 7644 §3.4.2.3).
fn sort_mixed(items: &mut Vec<Stored>, path: &AttrPath, base: &str, descending: bool) {
    let mut keyed: Vec<_> = std::mem::take(items)
        .into_iter()
        .map(|i| (sort_key(i.kind.rt(), &i.to_scim(base), path), i))
        .collect();
    let order = if descending { SortOrder::Descending } else { SortOrder::Ascending };
    keyed.sort_by(|(a, _), (b, _)| compare_sort_keys(a.as_ref(), b.as_ref(), order));
    items.extend(keyed.into_iter().map(|(_, i)| i));
}

/// A stored user or group as the handler works with it.
struct Stored {
    kind: Kind,
    id: String,
    version: i64,
    created_at: i64,
    updated_at: i64,
    /// The stored document with `id` (and a user's `active`) applied; no `meta`, no derived
    /// attribute.
    body: Value,
    /// A group's member user ids, when loaded.
    members: Option<Vec<String>>,
    /// A user's groups, when loaded.
    groups: Option<Vec<DirectoryGroupRef>>,
}

impl Stored {
    fn user(user: DirectoryUser, groups: Option<Vec<DirectoryGroupRef>>) -> Self {
        let mut body = match user.resource {
            Value::Object(o) => Value::Object(o),
            _ => json!({}),
        };
        body["id"] = Value::String(user.id.clone());
        // The column is authoritative; a resource that never carried `active` (or had it
        // removed by PATCH) shows none while the user is active.
        if body.get("active").is_some() || !user.active {
            body["active"] = Value::Bool(user.active);
        }
        Stored {
            kind: Kind::User,
            id: user.id,
            version: user.version,
            created_at: user.created_at,
            updated_at: user.updated_at,
            body,
            members: None,
            groups,
        }
    }

    fn group(group: DirectoryGroup, with_members: bool) -> Self {
        let mut body = match group.resource {
            Value::Object(o) => Value::Object(o),
            _ => json!({}),
        };
        body["id"] = Value::String(group.id.clone());
        body["displayName"] = Value::String(group.display_name);
        if let Some(o) = body.as_object_mut() {
            o.remove("members");
        }
        Stored {
            kind: Kind::Group,
            id: group.id,
            version: group.version,
            created_at: group.created_at,
            updated_at: group.updated_at,
            body,
            members: with_members.then_some(group.members),
            groups: None,
        }
    }

    fn location(&self, base: &str) -> String {
        format!("{base}/{}/{}", self.kind.endpoint(), self.id)
    }

    /// The resource with its derived attribute (when loaded), without `meta`: what PATCH edits.
    fn document(&self, base: &str) -> Value {
        let mut r = self.body.clone();
        if let Some(members) = &self.members
            && !members.is_empty()
        {
            r["members"] = members
                .iter()
                .map(|m| json!({"value": m, "$ref": format!("{base}/Users/{m}"), "type": "User"}))
                .collect();
        }
        if let Some(groups) = &self.groups
            && !groups.is_empty()
        {
            r["groups"] = groups
                .iter()
                .map(|g| {
                    json!({"value": g.id, "$ref": format!("{base}/Groups/{}", g.id), "display": g.display_name, "type": "direct"})
                })
                .collect();
        }
        r
    }

    /// The RFC 7643 resource: the document plus `meta`.
    fn to_scim(&self, base: &str) -> Value {
        let mut r = self.document(base);
        r["meta"] = json!({
            "resourceType": self.kind.name(),
            "created": rfc3339(self.created_at),
            "lastModified": rfc3339(self.updated_at),
            "location": self.location(base),
            "version": etag(self.version),
        });
        r
    }
}

/// Longest resource id in a request path. idplex issues 32-hex-digit ids; an IdP echoes them.
const MAX_RESOURCE_ID: usize = 256;

/// A resource id from the path that no resource can have (control characters such as NUL,
/// which PostgreSQL cannot even compare, or an absurd length) is answered 404 before any store
/// or connector work.
fn check_resource_id(kind: Kind, id: &str) -> Result<(), ScimFailure> {
    if id.is_empty() || id.len() > MAX_RESOURCE_ID || id.chars().any(char::is_control) {
        let shown: String = id.chars().take(64).flat_map(char::escape_debug).collect();
        return Err(ScimFailure(ScimError::with_status(
            404,
            format!(
                "{} \"{shown}\" does not exist: resource ids are at most {MAX_RESOURCE_ID} bytes without control characters",
                kind.name()
            ),
        )));
    }
    Ok(())
}

/// The length of `v` serialized, without building the text.
fn json_size(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// The resource without `password`. idplex authenticates people through their IdP (SAML), never
/// with a password of its own, so a password an IdP pushes (Okta's password sync) is accepted
/// and discarded: never stored, returned or logged (`changePassword` is advertised as
/// unsupported).
fn without_password(mut resource: Value) -> Value {
    if let Some(o) = resource.as_object_mut() {
        o.retain(|k, _| !k.eq_ignore_ascii_case("password"));
    }
    resource
}

/// `userName`, `externalId` and `active` of a prepared user.
fn user_keys(resource: &Value) -> Result<(String, Option<String>, bool), ScimFailure> {
    let user_name = resource
        .get("userName")
        .and_then(Value::as_str)
        .ok_or_else(|| ScimError::new(ScimType::InvalidValue, "userName is required"))?
        .to_string();
    let external_id = resource.get("externalId").and_then(Value::as_str).map(str::to_string);
    let active = resource.get("active").and_then(Value::as_bool).unwrap_or(true);
    Ok((user_name, external_id, active))
}

/// A group PATCH that only adds or removes members, as IdPs send membership changes (Okta's
/// `add members [..]`, Entra's `remove members[value eq ".."]`, the legacy `remove members`
/// with a value list): the (added, removed) user ids. `None` for anything else, including an id
/// both added and removed (order would matter), which then goes through the general PATCH.
fn member_delta(ops: &[PatchOperation]) -> Option<(Vec<String>, Vec<String>)> {
    let (mut add, mut remove) = (Vec::new(), Vec::new());
    for op in ops {
        let target = PatchPath::parse(op.path.as_deref()?).ok()?;
        let core = target.attr.urn.as_deref().is_none_or(|u| u.eq_ignore_ascii_case(GROUP_SCHEMA_URN));
        if !core || !target.attr.attr.eq_ignore_ascii_case("members") || target.sub_attr().is_some() {
            return None;
        }
        match (op.op, &target.filter) {
            (PatchOpKind::Add, None) => add.extend(member_values(op.value.as_ref()?)?),
            (PatchOpKind::Remove, None) => remove.extend(member_values(op.value.as_ref()?)?),
            (PatchOpKind::Remove, Some(filter)) => {
                let (path, value) = filter.as_simple_eq()?;
                if !path.attr.eq_ignore_ascii_case("value") || path.sub_attr.is_some() {
                    return None;
                }
                remove.push(value.as_str()?.to_string());
            }
            _ => return None,
        }
    }
    if add.iter().any(|a| remove.contains(a)) {
        return None;
    }
    Some((add, remove))
}

/// The user ids of a `members` value (an array of, or one, `{"value": id}` of type User).
fn member_values(value: &Value) -> Option<Vec<String>> {
    let items = match value {
        Value::Array(items) => items.iter().collect::<Vec<_>>(),
        Value::Object(_) => vec![value],
        _ => return None,
    };
    items
        .into_iter()
        .map(|m| {
            let user = m.get("type").and_then(Value::as_str).is_none_or(|t| t.eq_ignore_ascii_case("User"));
            user.then(|| m.get("value").and_then(Value::as_str).map(str::to_string)).flatten()
        })
        .collect()
}

/// `displayName`, `externalId`, member user ids and the document to store (without
/// `members`, which the store keeps as rows) of a prepared group.
fn group_parts(mut resource: Value) -> Result<(String, Option<String>, Vec<String>, Value), ScimFailure> {
    let display_name = resource
        .get("displayName")
        .and_then(Value::as_str)
        .ok_or_else(|| ScimError::new(ScimType::InvalidValue, "displayName is required"))?
        .to_string();
    let external_id = resource.get("externalId").and_then(Value::as_str).map(str::to_string);
    let mut members = Vec::new();
    if let Some(Value::Array(items)) = resource.as_object_mut().and_then(|o| o.remove("members")) {
        for (i, m) in items.iter().enumerate() {
            let value = m.get("value").and_then(Value::as_str).ok_or_else(|| {
                ScimError::new(ScimType::InvalidValue, format!("members[{i}] has no `value` (the member's id)"))
            })?;
            if let Some(t) = m.get("type").and_then(Value::as_str)
                && !t.eq_ignore_ascii_case("User")
            {
                return Err(ScimFailure(ScimError::new(
                    ScimType::InvalidValue,
                    format!("members[{i}] is a {t}; idplex groups hold users only (nested groups are not supported)"),
                )));
            }
            members.push(value.to_string());
        }
    }
    Ok((display_name, external_id, members, resource))
}

/// The `attributes`/`excludedAttributes` of a list query.
fn query_projection(q: &ListQuery) -> Result<Projection, ScimFailure> {
    Ok(Projection::from_params(
        (!q.attributes.is_empty()).then(|| q.attributes.join(",")).as_deref(),
        (!q.excluded_attributes.is_empty()).then(|| q.excluded_attributes.join(",")).as_deref(),
    )?)
}

/// A SearchRequest body (RFC 7644 §3.4.3) as the query parameters of the equivalent GET.
fn search_params(body: &Value) -> Result<Vec<(String, String)>, ScimFailure> {
    let obj = body.as_object().cloned().unwrap_or_default();
    if let Some(schemas) = obj.get("schemas") {
        let listed = schemas
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(SEARCH_REQUEST_SCHEMA))));
        if !listed {
            return Err(ScimFailure(ScimError::new(
                ScimType::InvalidSyntax,
                format!("a search request's `schemas` must list {SEARCH_REQUEST_SCHEMA}"),
            )));
        }
    }
    let mut params = Vec::new();
    for (key, value) in &obj {
        let name = match key.to_ascii_lowercase().as_str() {
            "schemas" => continue,
            "filter" => "filter",
            "startindex" => "startIndex",
            "count" => "count",
            "sortby" => "sortBy",
            "sortorder" => "sortOrder",
            "attributes" => "attributes",
            "excludedattributes" => "excludedAttributes",
            _ => {
                return Err(ScimFailure(ScimError::new(
                    ScimType::InvalidSyntax,
                    format!("`{key}` is not a SearchRequest attribute (RFC 7644 §3.4.3)"),
                )));
            }
        };
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Array(items) => items
                .iter()
                .map(|i| {
                    i.as_str().map(str::to_string).ok_or_else(|| {
                        ScimFailure(ScimError::new(ScimType::InvalidValue, format!("`{key}` must list strings")))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            Value::Null => continue,
            other => {
                return Err(ScimFailure(ScimError::new(
                    ScimType::InvalidValue,
                    format!("`{key}` must be a string or a number, not {other}"),
                )));
            }
        };
        params.push((name.to_string(), text));
    }
    Ok(params)
}

fn connector_json(text: &str) -> Result<Value, ScimFailure> {
    serde_json::from_str(text)
        .map_err(|e| ScimFailure(ScimError::with_status(502, format!("the connector returned invalid JSON: {e}"))))
}

/// `If-Match: W/"7"` → Some(7).
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ScimFailure> {
    let Some(v) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let text = v.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    text.trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .map(Some)
        .map_err(|_| ScimFailure(ScimError::with_status(400, format!("If-Match {text:?} is not an ETag this server issued"))))
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Decode `a=b&c=d` (percent-encoding and `+`).
fn decode_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A store error as the SCIM error an IdP can act on. A missing *user* while writing a group
/// is a bad member reference (400), not a missing group.
fn store_failure(kind: Kind, e: StoreError) -> ScimFailure {
    let detail = e.to_string();
    ScimFailure(match e {
        StoreError::NotFound { what: "user", key } if kind == Kind::Group => ScimError::new(
            ScimType::InvalidValue,
            format!("member {key:?} is not a user of this directory"),
        ),
        StoreError::NotFound { .. } => ScimError::with_status(404, detail),
        StoreError::Conflict { .. } => ScimError::new(ScimType::Uniqueness, detail),
        StoreError::PreconditionFailed { .. } => ScimError::with_status(412, detail),
        StoreError::InvalidInput { .. } => ScimError::new(ScimType::InvalidValue, detail),
        other => {
            tracing::error!(error = %other, "SCIM request failed in the store");
            ScimError::with_status(503, "the directory store is unavailable; retry later")
        }
    })
}

fn hub_failure(e: HubError) -> ScimFailure {
    let detail = e.to_string();
    ScimFailure(match e {
        HubError::Call(CallError::Connector { error, .. }) => {
            let scim_type = error.scim_type.as_deref().and_then(scim_type_named);
            match scim_type {
                Some(t) => ScimError::new(t, error.message),
                None => ScimError::with_status(400, error.message),
            }
        }
        HubError::Call(CallError::Timeout { .. }) => ScimError::with_status(504, detail),
        HubError::Call(CallError::Busy { .. }) => ScimError::with_status(503, detail),
        HubError::Config(_) => ScimError::with_status(503, detail),
        HubError::Call(_) => ScimError::with_status(502, detail),
        HubError::NotBound(_) | HubError::BindFailed { .. } | HubError::MissingCapability { .. } => {
            ScimError::with_status(503, detail)
        }
        HubError::Store(e) => return store_failure(Kind::User, e),
        other => ScimError::with_status(500, other.to_string()),
    })
}

fn scim_type_named(name: &str) -> Option<ScimType> {
    use ScimType::*;
    [InvalidFilter, TooMany, Uniqueness, Mutability, InvalidSyntax, InvalidPath, NoTarget, InvalidValue, InvalidVers, Sensitive]
        .into_iter()
        .find(|t| t.as_str() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode() {
        assert_eq!(
            decode_query("filter=userName%20eq%20%22a%2Bb%40x%22&count=2&x"),
            vec![
                ("filter".into(), "userName eq \"a+b@x\"".into()),
                ("count".into(), "2".into()),
                ("x".into(), String::new())
            ]
        );
        assert_eq!(percent_decode("a%2"), "a%2");
    }

    #[test]
    fn search_bodies_become_query_parameters() {
        let body = json!({
            "schemas": [SEARCH_REQUEST_SCHEMA],
            "filter": "userName sw \"a\"",
            "startIndex": 2,
            "count": 5,
            "attributes": ["userName", "emails"],
        });
        let params = search_params(&body).unwrap();
        assert!(params.contains(&("filter".into(), "userName sw \"a\"".into())));
        assert!(params.contains(&("startIndex".into(), "2".into())));
        assert!(params.contains(&("attributes".into(), "userName,emails".into())));
        let e = search_params(&json!({"schemas": ["x"]})).unwrap_err();
        assert_eq!(e.0.scim_type, Some(ScimType::InvalidSyntax));
        let e = search_params(&json!({"filterr": "x"})).unwrap_err();
        assert!(e.0.detail.contains("filterr"), "{}", e.0.detail);
    }

    #[test]
    fn membership_patches_become_deltas() {
        let ops = |v: Value| PatchOperation::parse_request(&json!({"schemas": [idplex_scim::PATCH_OP_SCHEMA], "Operations": v})).unwrap();
        let okta = ops(json!([
            {"op": "remove", "path": "members[value eq \"u9\"]"},
            {"op": "add", "path": "members", "value": [{"value": "u1", "display": "a"}, {"value": "u2"}]}
        ]));
        assert_eq!(member_delta(&okta), Some((vec!["u1".into(), "u2".into()], vec!["u9".into()])));
        let legacy = ops(json!([{"op": "Remove", "path": "members", "value": [{"value": "u3"}]}]));
        assert_eq!(member_delta(&legacy), Some((vec![], vec!["u3".into()])));
        for general in [
            json!([{"op": "replace", "path": "members", "value": [{"value": "u1"}]}]),
            json!([{"op": "remove", "path": "members"}]),
            json!([{"op": "add", "path": "members", "value": [{"value": "g1", "type": "Group"}]}]),
            json!([{"op": "replace", "path": "displayName", "value": "x"}]),
            json!([{"op": "add", "path": "members", "value": [{"value": "u1"}]}, {"op": "remove", "path": "members[value eq \"u1\"]"}]),
        ] {
            assert_eq!(member_delta(&ops(general.clone())), None, "{general}");
        }
    }

    #[test]
    fn group_members_must_be_users() {
        let (name, _, members, doc) = group_parts(json!({
            "displayName": "Eng", "members": [{"value": "u1"}, {"value": "u2", "type": "User"}]
        }))
        .unwrap();
        assert_eq!(name, "Eng");
        assert_eq!(members, ["u1", "u2"]);
        assert!(doc.get("members").is_none());
        let e = group_parts(json!({"displayName": "Eng", "members": [{"value": "g1", "type": "Group"}]})).unwrap_err();
        assert!(e.0.detail.contains("nested groups"), "{}", e.0.detail);
    }
}
