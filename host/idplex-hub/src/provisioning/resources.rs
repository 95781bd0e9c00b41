//! `/Users`, `/Groups` and the `/.search` endpoints of [`super::ScimService`].
//!
//! Every request goes through the connection's connector, which normalizes the IdP's dialect
//! into one RFC operation; the host then applies RFC 7643/7644 semantics (validation,
//! uniqueness, PATCH, ETags, filters, sorting, paging) and stores the result. Users and groups
//! share one code path: what differs between them is the [`ResourceKind`] ([`KindExt`]: schema,
//! endpoint, store calls) and the attribute derived from memberships (a user's `groups`, a
//! group's `members`).
//!
//! **A request succeeds or fails as a whole.** A write is rendered by the connector *before* it
//! is committed: the connector renders the prepared resource (what will be stored, with the
//! host-owned attributes known before the commit), the store commits, and the committed
//! host-owned attributes (`id`, `meta`, the derived `groups`/`members`, see [`host_owned`]) are
//! put into the rendering ([`keep_host_owned`]). A render that fails answers an error and
//! nothing was written, so the IdP's retry succeeds instead of meeting a 409. The projection
//! (`attributes`/`excludedAttributes`) is applied before the render, so an excluded attribute
//! (a large group's `members`) never crosses the sandbox, and again after it (a connector cannot
//! add back what the client excluded).
//!
//! Query cost: `userName`/`externalId` (users) and `displayName`/`externalId` (groups) `eq`
//! filters are index lookups; a list without filter or sort is one store page; any other
//! filter or a `sortBy` is evaluated over the connection's resources.

use http::{Method, StatusCode};
use idplex_runtime::{ListQuery, Operation, PatchOp, ResourceKind, ScimRequest};
use idplex_scim::{
    AttrPath, Filter, ListResponse, ResourceType, PatchOperation, PatchOptions, Projection, ScimError, ScimType, SortOrder,
    apply_patch, etag, member_delta, page_window, parse_if_match, prepare_resource, query_param,
    sort_by_keys, sort_key,
};
use idplex_store::{
    DirectoryGroup, DirectoryGroupRef, DirectoryUser, NewDirectoryGroup, NewDirectoryUser, Store, StoreError, SyncOperation,
    UserLookup,
};
use serde_json::{Value, json};

use super::errors::{hub_failure, store_failure};
use super::sync_log::SyncNote;
use super::{KindExt, ScimCall, ScimReply, ScimService, ScimTypes};
use super::operation_json;
use crate::{Provisioning, rfc3339};

/// Largest page a list request returns (also advertised as `filter.maxResults`).
const MAX_RESULTS: usize = idplex_scim::MAX_RESULTS;

/// RFC 7644 semantics as the host applies them after the connector normalized a request
/// ([`PatchOptions::HOST`]: strict, with idempotent removes; IdP quirks are the connectors').
const OPTIONS: PatchOptions = PatchOptions::HOST;

/// How often a PATCH without `If-Match` is applied again when another replica changed the
/// resource between its read and its write (see [`Ctx::patch`]).
const PATCH_ATTEMPTS: u32 = 8;

/// A list response stops adding resources once their JSON passes this many bytes (at least one
/// resource is always returned). RFC 7644 §3.4.2.4 lets a page hold fewer resources than
/// `count`; the client continues from `startIndex + itemsPerPage`. Bounds the memory of one
/// list request whatever the resources' sizes.
pub const MAX_LIST_RESPONSE_BYTES: usize = 4 << 20;

/// One request's context.
pub(super) struct Ctx<'a> {
    service: &'a ScimService,
    connection: &'a str,
    if_match: Option<&'a str>,
    base: &'a str,
    /// The connection's connector for this request, bound on first use: one binding for the
    /// request's `normalize` and all its `render`s, and an instance while calls can still come
    /// (see [`Ctx::normalize`]). Taken out for a call and put back after it (a call never
    /// overlaps another of the same request).
    connector: std::sync::Mutex<Option<Provisioning<'a>>>,
    /// The resource types of the binding the request's first connector call pinned (the
    /// connection's declared extensions included); the core ones until then.
    types: std::sync::OnceLock<ScimTypes>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(service: &'a ScimService, call: &ScimCall<'a>) -> Self {
        Ctx {
            service,
            connection: call.connection,
            if_match: call.if_match,
            base: call.base_url,
            connector: std::sync::Mutex::new(None),
            types: std::sync::OnceLock::new(),
        }
    }

    /// The request's connector (see [`Ctx::connector`]), bound now if it is not yet; give it
    /// back with [`Ctx::keep_connector`].
    fn take_connector(&self) -> Result<Provisioning<'a>, ScimError> {
        let kept = self.connector.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        match kept {
            Some(p) => Ok(p),
            None => {
                let p = self.service.hub.provisioning(self.connection).map_err(hub_failure)?;
                let _ = self.types.set(p.scim_types());
                Ok(p)
            }
        }
    }

    /// Gives the request's instance back to its binding's idle ones (a later call of this
    /// request binds again).
    fn release_connector(&self) {
        let kept = self.connector.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        drop(kept);
    }

    fn keep_connector(&self, p: Provisioning<'a>) {
        *self.connector.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(p);
    }

    fn store(&self) -> &'a Store {
        &self.service.hub.store
    }

    /// This request's resource types (see [`Ctx::rt`]).
    fn types(&self) -> ScimTypes {
        *self.types.get().unwrap_or(&ScimTypes::CORE)
    }

    /// The resource type of `kind` on this request's binding.
    fn rt(&self, kind: ResourceKind) -> &'static ResourceType {
        self.types.get().unwrap_or(&ScimTypes::CORE).of(kind)
    }

    fn if_match(&self) -> Result<Option<i64>, ScimError> {
        parse_if_match(self.if_match)
    }

    pub(super) async fn handle(
        &self,
        kind: ResourceKind,
        method: &Method,
        id: Option<String>,
        call: &ScimCall<'_>,
        note: &mut SyncNote,
    ) -> Result<ScimReply, ScimError> {
        if let Some(id) = &id {
            // A resource id no resource can have (control characters such as NUL, which
            // PostgreSQL cannot even compare, or an absurd length) is answered 404 before any
            // store or connector work.
            idplex_scim::validate_resource_id(id, &idplex_scim::Limits::DEFAULT).map_err(|e| {
                let shown: String = id.chars().take(64).flat_map(char::escape_debug).collect();
                ScimError::with_status(404, format!("{} \"{shown}\" does not exist: {}", kind.name(), e.detail))
            })?;
        }
        let query = idplex_scim::decode_query(call.raw_query);
        let body = match *method {
            Method::POST | Method::PUT | Method::PATCH => {
                Some(idplex_scim::parse_request_body(call.content_type, call.body.clone()?)?)
            }
            _ => None,
        };
        if *method == Method::PATCH
            && let Some(ops) = body.as_ref().and_then(|b| b.get("Operations")).and_then(Value::as_array)
            && ops.len() > idplex_scim::Limits::DEFAULT.max_patch_operations
        {
            // Counted before the connector parses them: a PATCH bomb costs the sandbox nothing.
            return Err(ScimError::new(
                ScimType::TooMany,
                format!(
                    "a PATCH request may hold at most {} operations; this one has {}",
                    idplex_scim::Limits::DEFAULT.max_patch_operations,
                    ops.len()
                ),
            ));
        }
        let request = ScimRequest {
            method: method.as_str().to_string(),
            resource: kind,
            id,
            query: query.clone(),
            body: body.as_ref().map(Value::to_string),
        };
        let op = self.normalize(request).await?;
        let projection =
            Projection::from_params(query_param(&query, "attributes"), query_param(&query, "excludedAttributes"))?;
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
                let prepared = without_password(prepare_resource(self.rt(kind), &connector_json(&json)?, &OPTIONS)?);
                let rendered = self.render_prepared(kind, None, &prepared, &projection).await?;
                let stored = self.create(kind, prepared).await?;
                note.resource_id = Some(stored.id.clone());
                Ok(self.finish(stored, rendered, StatusCode::CREATED, &projection))
            }
            Operation::Get(id) => {
                let stored = self.load(kind, &id, projection.returns(self.rt(kind), kind.derived())).await?;
                let resource = self.render_stored(&stored, &projection).await?;
                Ok(reply(&stored, resource, StatusCode::OK, self.base))
            }
            Operation::Replace((id, json)) => {
                note.resource_id = Some(id.clone());
                let prepared = without_password(prepare_resource(self.rt(kind), &connector_json(&json)?, &OPTIONS)?);
                let rendered = self.render_prepared(kind, Some(&id), &prepared, &projection).await?;
                let stored = self.replace(kind, &id, self.if_match()?, prepared).await?;
                Ok(self.finish(stored, rendered, StatusCode::OK, &projection))
            }
            Operation::Patch((id, patch)) => {
                note.resource_id = Some(id.clone());
                let ops = PatchOperation::parse_request(&json!({
                    "schemas": [idplex_scim::PATCH_OP_SCHEMA],
                    "Operations": patch.iter().map(|p| Ok(json!({
                        "op": match p.op { PatchOp::Add => "add", PatchOp::Replace => "replace", PatchOp::Remove => "remove" },
                        "path": p.path,
                        "value": p.value.as_deref().map(connector_json).transpose()?,
                    }))).collect::<Result<Vec<_>, ScimError>>()?,
                }))?;
                if kind == ResourceKind::Group
                    && let Some((add, remove)) = member_delta(&ops)
                {
                    return self.change_members(&id, &add, &remove, &projection).await;
                }
                let (stored, rendered) = self.patch(kind, &id, ops, &projection).await?;
                Ok(self.finish(stored, rendered, StatusCode::OK, &projection))
            }
            Operation::Delete(id) => {
                note.resource_id = Some(id.clone());
                // A user follows the directory's delete policy (deactivate and hide, or delete);
                // either way the IdP sees it gone (RFC 7644 §3.6). `If-Match` makes it
                // conditional (§3.14: 412 if the resource changed since).
                let expected = self.if_match()?;
                match kind {
                    ResourceKind::User => {
                        self.store().scim_delete_user(self.connection, &id, expected).await.map(|_| ())
                    }
                    ResourceKind::Group => self.store().delete_group(self.connection, &id, expected).await,
                }
                .map_err(|e| store_failure(kind, e))?;
                Ok(ScimReply::no_content())
            }
            Operation::Query(q) => {
                let found = self.query(kind, &q, true).await?;
                self.list_response(found, &q).await
            }
        }
    }

    /// `POST .../.search`: the body's parameters go through the connector as a query.
    pub(super) async fn search(&self, kinds: &[ResourceKind], call: &ScimCall<'_>) -> Result<ScimReply, ScimError> {
        let body = idplex_scim::parse_request_body(call.content_type, call.body.clone()?)?;
        let params = idplex_scim::search_params(&body)?;
        let mut queries = Vec::with_capacity(kinds.len());
        for kind in kinds {
            let request = ScimRequest {
                method: "GET".into(),
                resource: *kind,
                id: None,
                query: params.clone(),
                body: None,
            };
            match self.normalize(request).await? {
                Operation::Query(q) => queries.push((*kind, q)),
                other => {
                    return Err(ScimError::with_status(
                        502,
                        format!("the connector turned a search into {}", operation_json(&other)["op"]),
                    ));
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
                Err(e) if e.scim_type == Some(ScimType::InvalidFilter) => refused.push(e),
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
            sort_mixed(&mut found.items, &AttrPath::parse(by)?, self.base, q.sort_descending, self.types());
        }
        self.list_response(found, q).await
    }

    /// The connector's single operation for `request`.
    async fn normalize(&self, request: ScimRequest) -> Result<Operation, ScimError> {
        let mut connector = self.take_connector()?;
        let ops = connector.normalize(request).await;
        if connector.renders_nothing() {
            // No later call of this request needs the instance: it goes back to the binding now
            // rather than wait out the request's store work. The binding stays pinned. Under
            // load a few instances then serve every request (warm in the CPU caches) instead of
            // one per request in flight.
            connector.release_instance();
        }
        self.keep_connector(connector);
        let ops = ops.map_err(hub_failure)?;
        <[Operation; 1]>::try_from(ops).map(|[op]| op).map_err(|ops| {
            ScimError::with_status(
                502,
                format!("the connector turned one request into {} operations; idplex applies exactly one", ops.len()),
            )
        })
    }

    /// A membership PATCH of a group, applied as a delta (one transaction, no rewrite of the
    /// member list): the group is rendered first (its document, without members: those the host
    /// attaches after the commit), then the delta is committed. The member list of the reply
    /// (unless the client excluded it) is read after the commit, outside the store's write lock:
    /// a large group's list is a read like a GET's, not a stall of every other write. It is the
    /// group as committed or as changed since, with the matching version.
    async fn change_members(
        &self,
        id: &str,
        add: &[String],
        remove: &[String],
        projection: &Projection,
    ) -> Result<ScimReply, ScimError> {
        let kind = ResourceKind::Group;
        for member in add.iter().chain(remove) {
            idplex_scim::validate_resource_id(member, &idplex_scim::Limits::DEFAULT)?;
        }
        let expected = self.if_match()?;
        let current = self.load(kind, id, false).await?;
        let rendered = self.render_prepared(kind, Some(id), &current.body, projection).await?;
        let group = self
            .store()
            .change_group_members_with(self.connection, id, expected, add, remove, false)
            .await
            .map_err(|e| store_failure(kind, e))?;
        let stored = if projection.returns(self.rt(kind), kind.derived()) {
            self.load(kind, id, true).await?
        } else {
            Stored::group(group, false)
        };
        Ok(self.finish(stored, rendered, StatusCode::OK, projection))
    }

    /// A general PATCH: load, apply, render, store if unchanged since loaded. Returns the stored
    /// resource and its rendering (made before the commit).
    ///
    /// With `If-Match` the client's version is the precondition (412 when it is stale, RFC 7644
    /// §3.14). Without it the client asked for no precondition, so a concurrent change of the
    /// same resource must not fail the request: PATCHes of one resource run one at a time in
    /// this process ([`super::PatchLocks`]), and a change made meanwhile by another replica
    /// makes it load and apply again, up to [`PATCH_ATTEMPTS`] times.
    ///
    /// Applying runs on a blocking thread: its cost grows with the resource and the operations
    /// (bounded by the PATCH limits of `idplex-scim`), and must not hold an async worker that
    /// other tenants' requests need.
    async fn patch(
        &self,
        kind: ResourceKind,
        id: &str,
        ops: Vec<PatchOperation>,
        projection: &Projection,
    ) -> Result<(Stored, Value), ScimError> {
        let explicit = self.if_match()?;
        let _serialized = match explicit {
            None => {
                // Waiting for the lock holds no sandbox instance: a burst of PATCHes of one
                // resource must not take the connection's instances from its other requests.
                self.release_connector();
                Some(self.service.patch_locks.lock(self.connection, id).await)
            }
            Some(_) => None,
        };
        let ops = std::sync::Arc::new(ops);
        let mut attempt = 1;
        loop {
            // Groups need their members to patch them; users' groups are read-only.
            let current = self.load(kind, id, kind == ResourceKind::Group).await?;
            let expected = explicit.unwrap_or(current.version);
            let resource = current.document(self.base);
            let patch_ops = ops.clone();
            let rt = self.rt(kind);
            let prepared = tokio::task::spawn_blocking(move || -> Result<Value, ScimError> {
                let mut resource = resource;
                apply_patch(rt, &mut resource, &patch_ops, &OPTIONS)?;
                prepare_resource(rt, &resource, &OPTIONS)
            })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "PATCH application failed on its blocking thread");
                ScimError::with_status(500, "the PATCH could not be applied (internal error)")
            })??;
            let prepared = without_password(prepared);
            let rendered = self.render_prepared(kind, Some(id), &prepared, projection).await?;
            match self.replace(kind, id, Some(expected), prepared).await {
                Err(e) if explicit.is_none() && e.status == 412 => {
                    if attempt == PATCH_ATTEMPTS {
                        tracing::warn!(connection = %self.connection, id, "PATCH kept losing to concurrent changes");
                        return Err(ScimError::with_status(
                            503,
                            format!("the resource changed {PATCH_ATTEMPTS} times while this PATCH was applied; retry later"),
                        ));
                    }
                    attempt += 1;
                }
                Err(e) => return Err(e),
                Ok(stored) => return Ok((stored, rendered)),
            }
        }
    }

    // -- store access ---------------------------------------------------------------------------

    async fn create(&self, kind: ResourceKind, prepared: Value) -> Result<Stored, ScimError> {
        let store = self.store();
        match kind {
            ResourceKind::User => {
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
            ResourceKind::Group => {
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
    async fn load(&self, kind: ResourceKind, id: &str, derived: bool) -> Result<Stored, ScimError> {
        let store = self.store();
        match kind {
            ResourceKind::User if derived => {
                let found = self.users_with_groups(UserLookup::Id(id)).await?;
                found.into_iter().next().ok_or_else(|| store_failure(kind, StoreError::NotFound { what: "user", key: id.to_string() }))
            }
            ResourceKind::User => {
                let user = store.get_user(self.connection, id).await.map_err(|e| store_failure(kind, e))?;
                Ok(Stored::user(user, None))
            }
            ResourceKind::Group => {
                let group = store
                    .get_group_with(self.connection, id, derived)
                    .await
                    .map_err(|e| store_failure(kind, e))?;
                Ok(Stored::group(group, derived))
            }
        }
    }

    async fn replace(&self, kind: ResourceKind, id: &str, expected: Option<i64>, prepared: Value) -> Result<Stored, ScimError> {
        let store = self.store();
        match kind {
            ResourceKind::User => {
                let (user_name, external_id, active) = user_keys(&prepared)?;
                let user = store
                    .replace_user(self.connection, id, expected, &user_name, external_id.as_deref(), active, &prepared)
                    .await
                    .map_err(|e| store_failure(kind, e))?;
                let mut stored = vec![Stored::user(user, None)];
                self.attach_groups(&mut stored).await?;
                Ok(stored.remove(0))
            }
            ResourceKind::Group => {
                let (display_name, external_id, members, resource) = group_parts(prepared)?;
                let group = store
                    .replace_group(self.connection, id, expected, &display_name, external_id.as_deref(), &resource, Some(members))
                    .await
                    .map_err(|e| store_failure(kind, e))?;
                Ok(Stored::group(group, true))
            }
        }
    }

    /// The user(s) `lookup` selects, each with its `groups`, read in one go (one read
    /// transaction on SQLite).
    async fn users_with_groups(&self, lookup: UserLookup<'_>) -> Result<Vec<Stored>, ScimError> {
        let found = self
            .store()
            .users_with_groups(self.connection, lookup)
            .await
            .map_err(|e| store_failure(ResourceKind::User, e))?;
        Ok(found.into_iter().map(|(user, groups)| Stored::user(user, Some(groups))).collect())
    }

    /// Loads the `groups` of the users among `items` (one query for the lot).
    async fn attach_groups(&self, items: &mut [Stored]) -> Result<(), ScimError> {
        let ids: Vec<&str> = items.iter().filter(|i| i.kind == ResourceKind::User).map(|i| i.id.as_str()).collect();
        if ids.is_empty() {
            return Ok(());
        }
        let mut groups = self
            .store()
            .groups_of_users(self.connection, &ids)
            .await
            .map_err(|e| store_failure(ResourceKind::User, e))?;
        for item in items.iter_mut().filter(|i| i.kind == ResourceKind::User) {
            item.groups = Some(groups.remove(&item.id).unwrap_or_default());
        }
        Ok(())
    }

    /// Every resource of `kind` the query selects, in a stable order (creation order, or
    /// `sortBy`); only one page of it when `store_paging` and neither a filter nor a sort asks
    /// for more.
    async fn query(&self, kind: ResourceKind, q: &ListQuery, store_paging: bool) -> Result<Found, ScimError> {
        let projection = query_projection(q)?;
        let wants_derived = projection.returns(self.rt(kind), kind.derived());
        let filter = q.filter.as_deref().map(Filter::parse).transpose()?;
        if let Some(f) = &filter {
            f.validate_for(self.rt(kind))?;
        }
        let (start, count) = window(q);
        if filter.is_none() && q.sort_by.is_none() && store_paging {
            // One store page, in creation order.
            let (items, total) = self.page(kind, start as u64 - 1, count as u32, wants_derived).await?;
            return Ok(Found { items, total: usize::try_from(total).unwrap_or(0), paged: true });
        }
        // A filter on the derived attribute needs it loaded to be evaluated.
        let text = q.filter.as_deref().unwrap_or_default().to_ascii_lowercase();
        let derived_in_filter = filter.is_some() && text.contains(kind.derived());
        if let Some(filter) = &filter
            && let Some(candidates) = self.indexed(kind, filter, wants_derived || derived_in_filter).await?
        {
            let items: Vec<Stored> =
                candidates.into_iter().filter(|c| filter.matches(self.rt(kind), &c.to_scim(self.base))).collect();
            let mut found = Found { total: items.len(), items, paged: false };
            if let Some(by) = &q.sort_by {
                sort_mixed(&mut found.items, &AttrPath::parse(by)?, self.base, q.sort_descending, self.types());
            }
            return Ok(found);
        }
        // A group's members come with its row; a user's groups are attached for the page shown.
        let load_derived = derived_in_filter || (kind == ResourceKind::Group && wants_derived);
        // Evaluated a store page at a time, keeping only what the answer needs: the matches of
        // the requested window (all matches are counted), or with `sortBy` the first
        // `startIndex + count` matches in sort order. A request then holds one store page plus
        // its window, whatever the directory's size.
        let window = store_paging.then_some((start - 1, count));
        let sort_path = q.sort_by.as_deref().map(AttrPath::parse).transpose()?;
        let mut items: Vec<Stored> = Vec::new();
        let (mut seen, mut matched) = (0u64, 0usize);
        loop {
            let (page, total) = self.page(kind, seen, idplex_store::MAX_DIRECTORY_LIST_LIMIT, load_derived).await?;
            let done = page.is_empty();
            seen += page.len() as u64;
            for c in page {
                if let Some(filter) = &filter
                    && !filter.matches(self.rt(kind), &c.to_scim(self.base))
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
                    sort_mixed(&mut items, path, self.base, q.sort_descending, self.types());
                    items.truncate(keep);
                }
            }
            if done || seen as i64 >= total {
                break;
            }
        }
        if let Some(path) = &sort_path {
            sort_mixed(&mut items, path, self.base, q.sort_descending, self.types());
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

    /// Candidates for an `eq` filter on an indexed attribute; `None` when the filter is not one.
    async fn indexed(&self, kind: ResourceKind, filter: &Filter, derived: bool) -> Result<Option<Vec<Stored>>, ScimError> {
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
            (ResourceKind::User, "username") if derived => return self.users_with_groups(UserLookup::UserName(value)).await.map(Some),
            (ResourceKind::User, "id") if derived => return self.users_with_groups(UserLookup::Id(value)).await.map(Some),
            (ResourceKind::User, "username") => store.find_users_by_user_name(c, value).await.map_err(fail)?,
            (ResourceKind::User, "externalid") => store.find_users_by_external_id(c, value).await.map_err(fail)?,
            (ResourceKind::User, "id") => match store.get_user(c, value).await {
                Ok(u) => vec![u],
                Err(e) if e.is_not_found() => vec![],
                Err(e) => return Err(fail(e)),
            },
            (ResourceKind::Group, "displayname") => {
                let groups = store.find_groups_by_display_name(c, value, derived).await.map_err(fail)?;
                return Ok(Some(groups.into_iter().map(|g| Stored::group(g, derived)).collect()));
            }
            (ResourceKind::Group, "externalid") => {
                let groups = store.find_groups_by_external_id(c, value, derived).await.map_err(fail)?;
                return Ok(Some(groups.into_iter().map(|g| Stored::group(g, derived)).collect()));
            }
            (ResourceKind::Group, "id") => {
                return match store.get_group_with(c, value, derived).await {
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
    async fn page(&self, kind: ResourceKind, offset: u64, limit: u32, derived: bool) -> Result<(Vec<Stored>, i64), ScimError> {
        let store = self.store();
        match kind {
            ResourceKind::User => {
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
            ResourceKind::Group => {
                let (groups, total) = store
                    .list_groups(self.connection, offset, limit.max(1), derived)
                    .await
                    .map_err(|e| store_failure(kind, e))?;
                let items =
                    if limit == 0 { Vec::new() } else { groups.into_iter().map(|g| Stored::group(g, derived)).collect() };
                Ok((items, total))
            }
        }
    }

    // -- responses ------------------------------------------------------------------------------

    async fn list_response(&self, found: Found, q: &ListQuery) -> Result<ScimReply, ScimError> {
        let projection = query_projection(q)?;
        let (start, count) = window(q);
        let (total, page) = if found.paged {
            (found.total, found.items)
        } else {
            (found.total, found.items.into_iter().skip(start - 1).take(count).collect())
        };
        let mut page = page;
        // Derived attributes for the page only, when they will be shown and are not loaded yet.
        if page.iter().any(|i| i.kind == ResourceKind::User && i.groups.is_none())
            && projection.returns(self.rt(ResourceKind::User), ResourceKind::User.derived())
        {
            self.attach_groups(&mut page).await?;
        }
        let mut resources = Vec::with_capacity(page.len());
        let mut bytes = 0usize;
        for item in &page {
            let resource = self.render_stored(item, &projection).await?;
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
        Ok(ScimReply::json(StatusCode::OK, list.to_json()))
    }

    /// The client's view of a stored resource: projected, rendered by the connector, projected
    /// again.
    async fn render_stored(&self, stored: &Stored, projection: &Projection) -> Result<Value, ScimError> {
        let rt = self.rt(stored.kind);
        let rendered = self.render(stored.kind, projection.apply(rt, &stored.to_scim(self.base))).await?;
        Ok(projection.apply(rt, &rendered))
    }

    /// The connector's rendering of a resource about to be written (`prepared`, with the `id`
    /// it will have when it is known), projected first; then the request's instance is
    /// released. Host-owned attributes are put back from the committed resource by
    /// [`Ctx::finish`].
    async fn render_prepared(
        &self,
        kind: ResourceKind,
        id: Option<&str>,
        prepared: &Value,
        projection: &Projection,
    ) -> Result<Value, ScimError> {
        let mut resource = prepared.clone();
        if let Some(o) = resource.as_object_mut() {
            match id {
                Some(id) => o.insert("id".into(), Value::String(id.to_string())),
                None => o.remove("id"),
            };
            o.remove("meta");
        }
        let rendered = self.render(kind, projection.apply(self.rt(kind), &resource)).await;
        // The write's last connector call: its instance goes back to the binding (or to a
        // call waiting for one) now, not after the commit, whose wait for the disk (group
        // commit, fsync) would otherwise hold a sandbox instance idle.
        self.release_connector();
        rendered
    }

    /// The answer to a write: the rendering made before the commit, with the committed
    /// resource's host-owned attributes.
    fn finish(&self, stored: Stored, rendered: Value, status: StatusCode, projection: &Projection) -> ScimReply {
        let rt = self.rt(stored.kind);
        // Projected before the host-owned attributes go in (they are projected already), and
        // those moved, not copied: a large member list is built once and copied once (by the
        // projection).
        let mut out = projection.apply(rt, &rendered);
        let host = projection.apply(rt, &stored.to_scim(self.base));
        // `render` checked that the rendering is an object; only then does this put anything.
        let _ = move_host_owned(stored.kind, host, &mut out);
        reply(&stored, out, status, self.base)
    }

    /// The connector's rendering of `resource`, checked to still be the same resource, with the
    /// host's values of the host-owned attributes.
    /// A connector that serves the kind unchanged is not called: `resource` is the answer.
    async fn render(&self, kind: ResourceKind, resource: Value) -> Result<Value, ScimError> {
        let mut connector = self.take_connector()?;
        if connector.serves_unchanged(kind) {
            self.keep_connector(connector);
            return Ok(resource);
        }
        let out = connector.render(kind, resource.to_string()).await;
        self.keep_connector(connector);
        let out = out.map_err(hub_failure)?;
        let mut v = connector_json(&out)?;
        if v.get("id") != resource.get("id") {
            return Err(ScimError::with_status(502, "the connector's rendering changed the resource id"));
        }
        keep_host_owned(kind, &resource, &mut v)?;
        Ok(v)
    }
}

/// A single resource's reply: ETag, and `Location` when it was created.
fn reply(stored: &Stored, resource: Value, status: StatusCode, base: &str) -> ScimReply {
    ScimReply {
        status,
        etag: Some(etag(stored.version)),
        location: (status == StatusCode::CREATED).then(|| stored.location(base)),
        body: Some(resource),
    }
}

/// The (1-based start, count) window of a list query.
fn window(q: &ListQuery) -> (usize, usize) {
    page_window(q.start_index.map(i64::from), q.count.map(i64::from), MAX_RESULTS)
}

/// Sorts resources (possibly of both kinds) by `path`, stably; missing values last when
/// ascending (RFC 7644 §3.4.2.3).
fn sort_mixed(items: &mut [Stored], path: &AttrPath, base: &str, descending: bool, types: ScimTypes) {
    let order = if descending { SortOrder::Descending } else { SortOrder::Ascending };
    sort_by_keys(items, |i| sort_key(types.of(i.kind), &i.to_scim(base), path), order);
}

/// Attributes of a rendered resource that only the host may set: identity, ETag and location
/// (`meta`), the keys the IdP matches resources by, and the attributes derived from memberships.
/// A connector shapes everything else for its IdP.
fn host_owned(kind: ResourceKind) -> &'static [&'static str] {
    match kind {
        ResourceKind::User => &["id", "schemas", "meta", "userName", "externalId", "active", "groups", "members"],
        ResourceKind::Group => &["id", "schemas", "meta", "displayName", "externalId", "members", "groups"],
    }
}

/// Puts the host's values of [`host_owned`] attributes back into `rendered` (attribute names
/// compared without case, as SCIM does): a value the host did not send is removed, a value it
/// sent replaces whatever the connector made of it.
pub(crate) fn keep_host_owned(kind: ResourceKind, host: &Value, rendered: &mut Value) -> Result<(), ScimError> {
    put_host_owned(kind, rendered, |name| host.get(name).cloned())
}

/// [`keep_host_owned`] taking the host's values instead of copying them.
fn move_host_owned(kind: ResourceKind, mut host: Value, rendered: &mut Value) -> Result<(), ScimError> {
    put_host_owned(kind, rendered, |name| host.as_object_mut().and_then(|o| o.remove(name)))
}

fn put_host_owned(
    kind: ResourceKind,
    rendered: &mut Value,
    mut host_value: impl FnMut(&str) -> Option<Value>,
) -> Result<(), ScimError> {
    let Some(out) = rendered.as_object_mut() else {
        return Err(ScimError::with_status(502, "the connector rendered a resource that is not a JSON object"));
    };
    let names = host_owned(kind);
    out.retain(|k, _| !names.iter().any(|n| k.eq_ignore_ascii_case(n)));
    for name in names {
        if let Some(v) = host_value(name) {
            out.insert((*name).to_string(), v);
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

/// A stored user or group as the handler works with it.
struct Stored {
    kind: ResourceKind,
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
            kind: ResourceKind::User,
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
            kind: ResourceKind::Group,
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
fn user_keys(resource: &Value) -> Result<(String, Option<String>, bool), ScimError> {
    let user_name = resource
        .get("userName")
        .and_then(Value::as_str)
        .ok_or_else(|| ScimError::new(ScimType::InvalidValue, "userName is required"))?
        .to_string();
    let external_id = resource.get("externalId").and_then(Value::as_str).map(str::to_string);
    let active = resource.get("active").and_then(Value::as_bool).unwrap_or(true);
    Ok((user_name, external_id, active))
}

/// `displayName`, `externalId`, member user ids and the document to store (without
/// `members`, which the store keeps as rows) of a prepared group.
fn group_parts(mut resource: Value) -> Result<(String, Option<String>, Vec<String>, Value), ScimError> {
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
                return Err(ScimError::new(
                    ScimType::InvalidValue,
                    format!("members[{i}] is a {t}; idplex groups hold users only (nested groups are not supported)"),
                ));
            }
            members.push(value.to_string());
        }
    }
    Ok((display_name, external_id, members, resource))
}

/// The `attributes`/`excludedAttributes` of a list query.
fn query_projection(q: &ListQuery) -> Result<Projection, ScimError> {
    Projection::from_params(
        (!q.attributes.is_empty()).then(|| q.attributes.join(",")).as_deref(),
        (!q.excluded_attributes.is_empty()).then(|| q.excluded_attributes.join(",")).as_deref(),
    )
}

fn connector_json(text: &str) -> Result<Value, ScimError> {
    serde_json::from_str(text)
        .map_err(|e| ScimError::with_status(502, format!("the connector returned invalid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(e.detail.contains("nested groups"), "{}", e.detail);
    }
}
