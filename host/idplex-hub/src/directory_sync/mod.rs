//! Directory pull sync: the host's sync engine. Per connection whose connector declares
//! `directory-sync`, a *run* pulls pages from the connector (`directory-pull`, contract 1.2;
//! `directory-sync.pull` for older components) and applies each in one transaction together
//! with the pass's cursor ([`Store::apply_pull_page`](idplex_store::Store::apply_pull_page)).
//!
//! * **One run at a time per connection**, across replicas: a lease row in the database
//!   (taken with one conditional update, renewed after every page, released at the end; a
//!   replica that dies leaves a lease that expires after [`LEASE_TTL`]). Every page write is
//!   fenced by the lease: a run that lost it applies nothing more.
//! * **Resumable**: a run continues the pass in progress from its saved cursor; a process killed
//!   mid-run loses at most the page it was applying (rolled back), and the next run asks for
//!   that page again. A run ends when its pass completes.
//! * **Full and delta passes**: a pass starts from the `resume` cursor the last complete pass
//!   ended with (a delta, when the IdP offers one) or from nothing (full). A full pass that
//!   completes removes, per the connection's delete policy, whoever it did not report; a pass
//!   that fails part-way removes nobody. If the connector answers a page of another kind than
//!   the pass in progress (its delta cursor expired and it started over), the pass is
//!   abandoned and a new one of that kind begins with that page.
//! * **Throttling and faults, handled by the host around egress** (decided here, not left to
//!   each connector): the egress observer tells the engine what the IdP answered during a
//!   failed page call. 429/503 → wait `Retry-After` (capped at [`MAX_RETRY_AFTER`]) and ask
//!   the same page again; another 5xx → back off exponentially (1 s, 2 s, … capped at 30 s);
//!   401 → drop the cached token, get a new one, ask again (once per page). At most
//!   [`MAX_ATTEMPTS`] attempts per page; then the run fails with the last error.
//! * **Limits**: each page call runs under [`Limits::for_pull`](idplex_runtime::Limits::for_pull)
//!   (60 s, 64 requests, 32 MiB), a run under [`RUN_DEADLINE`].
//! * **Bad pages**: a page the host cannot accept (a user without external id or userName, an
//!   invalid attribute) fails the run with an error naming it, and nothing of that page is
//!   applied. Per-item conflicts the store finds (a userName another directory holds) are
//!   recorded as warnings and the rest of the page is applied.
//!
//! Every run, its totals and every failed page or item land in the connection's directory sync
//! log (`idplex sync status`, `idplex sync log`, `/admin/v1/connections/{id}/sync`).

pub mod credentials;

use std::sync::Arc;
use std::time::{Duration, Instant};

use idplex_runtime::{CallError, ConnectorErrorKind, EgressObserver, Member, PassKind as WitPassKind, PullPage};
use idplex_store::{
    DirectorySyncState, PassKind, PulledGroup, PulledMember, PulledMembers, PulledPage, PulledUser, SyncLogLine, SyncRun,
    SyncRunTotals,
};
use serde::Serialize;

use crate::sso::{CORE_GROUP, CORE_USER, merged_resource};
use crate::{Hub, HubError, now_ms};
use credentials::CredentialSpec;

/// How long a run's lease lives without renewal. A running run renews it every third of that
/// (a task beside the run, whatever the run waits for), so a process that dies mid-run holds
/// the connection for at most this long.
pub const LEASE_TTL: Duration = Duration::from_secs(30);
/// The longest a run may take (many pages of a large directory, throttled).
pub const RUN_DEADLINE: Duration = Duration::from_secs(6 * 3600);
/// The longest `Retry-After` honoured at once.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// Attempts per page before the run fails.
pub const MAX_ATTEMPTS: u32 = 6;
/// Longest back-off between attempts after a 5xx.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Warnings recorded per run in the log (the rest are counted).
const MAX_LOGGED_PROBLEMS: usize = 200;
/// Core single-valued attributes a connector may set through `canonical-user.attributes`.
const CORE_SIMPLE: &[&str] = &["title", "nickName", "userType", "preferredLanguage", "locale", "timezone", "profileUrl"];

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The connection's schedule.
    Schedule,
    /// An admin (CLI or admin API).
    Manual,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
        }
    }
}

/// Progress of a run, after each page: the run's [`SyncRunTotals`] as admins see them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncProgress {
    pub pass_kind: Option<String>,
    pub pages: u64,
    pub users_seen: u64,
    pub groups_seen: u64,
    pub created: u64,
    pub changed: u64,
    pub removed: u64,
    pub errors: u64,
}

impl From<&SyncRunTotals> for SyncProgress {
    fn from(t: &SyncRunTotals) -> Self {
        SyncProgress {
            pass_kind: t.pass_kind.map(|k| k.to_string()),
            pages: t.pages,
            users_seen: t.users_seen,
            groups_seen: t.groups_seen,
            created: t.created,
            changed: t.changed,
            removed: t.removed,
            errors: t.errors,
        }
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub run_id: i64,
    pub connection_id: String,
    /// `ok` or `error`.
    pub outcome: String,
    pub duration_ms: u64,
    #[serde(flatten)]
    pub totals: SyncProgress,
    /// Whether the run completed a pass.
    pub pass_complete: bool,
    /// Why the run failed.
    pub message: Option<String>,
}

/// A connection's sync status for admins.
#[derive(Debug, Clone, Serialize)]
pub struct SyncStatus {
    pub connection_id: String,
    pub state: Option<DirectorySyncState>,
    pub recent_runs: Vec<SyncRun>,
}

/// Sync passes pulled and where a page stands, for one run.
struct Run<'a> {
    hub: &'a Hub,
    connection_id: String,
    owner: String,
    run_id: i64,
    totals: SyncRunTotals,
    logged: usize,
}

impl Hub {
    /// Runs a directory sync of `connection_id` now: continues the pass in progress, or starts
    /// one, and returns when that pass completes or the run fails. `progress` is told after
    /// every page. A conflict if a run of this connection is going on (here or at another
    /// replica).
    pub async fn run_directory_sync(
        &self,
        connection_id: &str,
        trigger: Trigger,
        progress: Option<&(dyn Fn(&SyncProgress) + Send + Sync)>,
    ) -> Result<SyncReport, HubError> {
        let started = Instant::now();
        self.store.get_connection(connection_id).await?;
        if self.binding(connection_id).is_err() {
            self.sync_connection(connection_id).await?;
        }
        let binding = self.binding(connection_id)?;
        if !binding.connector.has(idplex_runtime::Capability::DirectorySync) {
            return Err(HubError::MissingCapability {
                connector: binding.connector.label().to_string(),
                capability: "directory-sync",
            });
        }
        let owner = format!("{}:{}", self.replica_id(), crate::sso::random_hex(8));
        if !self.store.acquire_sync_lease(connection_id, &owner, LEASE_TTL.as_millis() as i64).await? {
            return Err(HubError::Store(idplex_store::StoreError::Conflict {
                what: "directory sync of connection",
                key: connection_id.to_string(),
                reason: "is already running (here or at another replica); wait for it (idplex sync status)".into(),
            }));
        }
        // The store marks runs of this connection still `running` as interrupted: their process
        // stopped (this run holds the lease).
        let run_id = match self.store.start_sync_run(connection_id, trigger.as_str()).await {
            Ok(id) => id,
            Err(e) => {
                let _ = self.store.release_sync_lease(connection_id, &owner).await;
                return Err(e.into());
            }
        };
        let renewer = {
            let (store, connection, owner) = (self.store.clone(), connection_id.to_string(), owner.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LEASE_TTL / 3).await;
                    match store.renew_sync_lease(&connection, &owner, LEASE_TTL.as_millis() as i64).await {
                        Ok(true) => {}
                        Ok(false) => break, // lost: the run's next page write is refused
                        Err(e) => tracing::warn!(error = %e, connection = %connection, "could not renew the directory sync lease"),
                    }
                }
            })
        };
        let mut run = Run { hub: self, connection_id: connection_id.to_string(), owner, run_id, totals: SyncRunTotals::default(), logged: 0 };
        let outcome = run.pass(started, progress).await;
        renewer.abort();
        let (outcome_name, message, complete) = match &outcome {
            Ok(()) => ("ok", None, true),
            Err(e) => ("error", Some(e.to_string()), false),
        };
        if let Some(m) = &message {
            run.totals.errors += 1;
            run.problem("error", m).await;
            tracing::warn!(connection = %connection_id, run = run_id, error = %m, "directory sync failed");
        }
        run.totals.message = message.clone();
        if let Err(e) = self.store.finish_sync_run(run_id, outcome_name, &run.totals).await {
            tracing::error!(error = %e, run = run_id, "could not record the end of a directory sync run");
        }
        if let Err(e) = self.store.release_sync_lease(connection_id, &run.owner).await {
            tracing::warn!(error = %e, connection = %connection_id, "could not release the directory sync lease (it expires)");
        }
        tracing::info!(
            connection = %connection_id, run = run_id, outcome = outcome_name, pages = run.totals.pages,
            created = run.totals.created, changed = run.totals.changed, removed = run.totals.removed,
            "directory sync run finished"
        );
        Ok(SyncReport {
            run_id,
            connection_id: connection_id.to_string(),
            outcome: outcome_name.to_string(),
            duration_ms: started.elapsed().as_millis() as u64,
            totals: SyncProgress::from(&run.totals),
            pass_complete: complete,
            message,
        })
    }

    /// A connection's sync state and its recent runs.
    pub async fn directory_sync_status(&self, connection_id: &str, runs: u32) -> Result<SyncStatus, HubError> {
        self.store.get_connection(connection_id).await?;
        Ok(SyncStatus {
            connection_id: connection_id.to_string(),
            state: self.store.directory_sync_state(connection_id).await?,
            recent_runs: self.store.sync_runs(connection_id, runs.clamp(1, 100)).await?,
        })
    }

    /// The directory sync log of a connection (failed pages, per-item warnings), newest first.
    pub async fn directory_sync_log(&self, connection_id: &str, limit: u32) -> Result<Vec<SyncLogLine>, HubError> {
        self.store.get_connection(connection_id).await?;
        Ok(self.store.sync_log(connection_id, limit.clamp(1, 1000)).await?)
    }

    /// Turns a connection's scheduled sync on (every `interval`) or off. The connection's
    /// connector must pull.
    pub async fn set_directory_sync_schedule(&self, connection_id: &str, enabled: bool, interval: Duration) -> Result<DirectorySyncState, HubError> {
        let conn = self.store.get_connection(connection_id).await?;
        if enabled {
            if let Some(version) = &conn.active_version {
                let (_, loaded) = self.connector_version(&conn.connector_name, version).await?;
                if !loaded.has(idplex_runtime::Capability::DirectorySync) {
                    return Err(HubError::MissingCapability { connector: loaded.label().to_string(), capability: "directory-sync" });
                }
            }
        }
        Ok(self.store.set_directory_sync_schedule(connection_id, enabled, interval.as_secs() as i64).await?)
    }

    /// Starts the scheduler: every `every`, runs the syncs that are due (at most `parallel` at
    /// once in this process; the lease keeps replicas from running one connection twice).
    pub fn spawn_directory_sync_scheduler(
        self: &Arc<Self>,
        every: Duration,
        parallel: usize,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let hub = self.clone();
        let slots = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
        crate::spawn_periodic(every, shutdown, move || {
            let (hub, slots) = (hub.clone(), slots.clone());
            async move {
                let due = match hub.store.due_directory_syncs(now_ms()).await {
                    Ok(due) => due,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not list due directory syncs");
                        return;
                    }
                };
                for connection in due {
                    let Ok(permit) = slots.clone().try_acquire_owned() else { break };
                    let hub = hub.clone();
                    tokio::spawn(async move {
                        let _permit = permit;
                        match hub.run_directory_sync(&connection, Trigger::Schedule, None).await {
                            Ok(_) => {}
                            Err(e) if e.class() == crate::ErrorClass::Conflict => {}
                            Err(e) => tracing::warn!(connection = %connection, error = %e, "scheduled directory sync not run"),
                        }
                    });
                }
            }
        })
    }

    /// A name for this process in leases.
    fn replica_id(&self) -> String {
        static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        ID.get_or_init(|| format!("{}-{}", std::process::id(), crate::sso::random_hex(4))).clone()
    }

    /// The credential spec of a connection (its config with secrets opened).
    pub(crate) fn credential_spec(&self, config: &serde_json::Value) -> Result<CredentialSpec, HubError> {
        let opened = self.opened_config(config)?;
        CredentialSpec::from_config(&opened, self.options.egress_plain_http_loopback)
    }

    /// The context of a call that reaches the IdP's API on `binding`'s connection (a pull, the
    /// connection test): the credential the connection's provider gives now, an observer of the
    /// IdP's answers, the pull limits, and (tests only) the egress redirects.
    pub(crate) async fn api_call_context(
        &self,
        binding: &idplex_runtime::Binding,
    ) -> Result<(idplex_runtime::CallContext, CredentialSpec, Arc<EgressObserver>), HubError> {
        let conn = self.store.get_connection(&binding.connection_id).await?;
        let spec = self.credential_spec(&conn.config)?;
        let credential = self.credentials.credential(&binding.connection_id, &spec).await?;
        let observer = Arc::new(EgressObserver::default());
        let mut ctx = (*binding.context).clone();
        let mut policy = (*ctx.egress).clone().with_credential(credential).observed_by(observer.clone());
        for (from, to) in &self.options.egress_redirects {
            policy = policy.redirect(from, to);
        }
        ctx.egress = Arc::new(policy);
        ctx.limits = ctx.limits.for_pull();
        Ok((ctx, spec, observer))
    }

    /// Token requests this process made for pulls (tests, diagnostics).
    pub fn credential_tokens_requested(&self) -> u64 {
        self.credentials.tokens_requested()
    }
}

impl Run<'_> {
    /// Pulls and applies the pages of the pass in progress (or of a new one) until it completes.
    ///
    /// Pipelined: while a page is applied (its transaction on the store's writer, off this
    /// task), the connector already pulls the next one from the cursor the page carries. The
    /// cursor is still saved only with the page it leads to, so a crash or a failed apply
    /// costs at most the page pulled ahead, which the next run asks for again.
    async fn pass(&mut self, started: Instant, progress: Option<&(dyn Fn(&SyncProgress) + Send + Sync)>) -> Result<(), HubError> {
        let hub = self.hub;
        let id = self.connection_id.clone();
        let state = hub.store.directory_sync_state(&id).await?;
        let mut pass = match state.as_ref().and_then(|s| s.pass.clone()) {
            Some(p) => p,
            None => {
                let resume = state.and_then(|s| s.resume_cursor);
                let kind = if resume.is_some() { PassKind::Delta } else { PassKind::Full };
                hub.store.begin_pull_pass(&id, &self.owner, kind, resume).await?
            }
        };
        self.totals.pass_kind = Some(pass.kind);
        let mut pulled_ahead: Option<Result<PullPage, HubError>> = None;
        loop {
            if started.elapsed() > RUN_DEADLINE {
                return Err(HubError::Invalid {
                    what: "directory sync",
                    reason: format!("the run passed its deadline of {} s; the next run continues the pass", RUN_DEADLINE.as_secs()),
                });
            }
            let page = match pulled_ahead.take() {
                Some(page) => page?,
                None => self.pull_with_retries(pass.cursor.clone()).await?,
            };
            let kind = match page.kind {
                WitPassKind::Full => PassKind::Full,
                WitPassKind::Delta => PassKind::Delta,
            };
            if kind != pass.kind {
                // The connector started over (its delta cursor expired): a new pass of that kind
                // begins with this page.
                self.problem("warning", &format!("the connector answered a {kind} page in a {} pass: the pass starts over as {kind}", pass.kind)).await;
                hub.store.abandon_pull_pass(&id, &self.owner).await?;
                pass = hub.store.begin_pull_pass(&id, &self.owner, kind, None).await?;
                self.totals.pass_kind = Some(kind);
            }
            let pulled = convert_page(page).map_err(|reason| HubError::Invalid {
                what: "directory page",
                reason: format!("page {} of the pass: {reason}; nothing of this page was applied", pass.pages + 1),
            })?;
            let next = pulled.next.clone();
            let applying = {
                let (store, connection, owner) = (hub.store.clone(), id.clone(), self.owner.clone());
                let (pass_id, pass_kind) = (pass.id, pass.kind);
                tokio::spawn(async move { store.apply_pull_page(&connection, &owner, pass_id, pass_kind, &pulled).await })
            };
            if let Some(cursor) = &next {
                pulled_ahead = Some(self.pull_with_retries(Some(cursor.clone())).await);
            }
            let applied = applying.await.map_err(|e| HubError::Invalid {
                what: "directory page",
                reason: format!("page {} of the pass could not be applied: {e}", pass.pages + 1),
            })??;
            self.totals.add_page(&applied);
            for p in &applied.problems {
                self.problem("warning", p).await;
            }
            if let Some(progress) = progress {
                progress(&SyncProgress::from(&self.totals));
            }
            if let Err(e) = hub.store.update_sync_run_progress(self.run_id, &self.totals).await {
                tracing::warn!(error = %e, "could not record directory sync progress");
            }
            if applied.pass_complete {
                return Ok(());
            }
            pass.pages += 1;
            pass.cursor = next;
        }
    }

    /// One page, asked again after throttling, server errors and an expired token (see the
    /// module docs).
    async fn pull_with_retries(&mut self, cursor: Option<String>) -> Result<PullPage, HubError> {
        let hub = self.hub;
        let mut refreshed = false;
        let mut backoff = Duration::from_secs(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            // The binding as it is now (a hot swap between pages takes effect at the next page).
            let binding = hub.binding(&self.connection_id)?;
            let (ctx, spec, observer) = hub.api_call_context(&binding).await?;
            let out = binding.connector.pull_page(&ctx, cursor.clone()).await;
            let seen = observer.take();
            let error = match out {
                Ok(page) => return Ok(page),
                Err(e) => e,
            };
            let retryable = matches!(&error, CallError::Connector { error, .. } if error.kind == ConnectorErrorKind::Upstream)
                || matches!(error, CallError::Timeout { .. });
            if !retryable || attempt >= MAX_ATTEMPTS {
                return hub.observe(&binding, Err(error)).await;
            }
            let wait = if seen.unauthorized && !refreshed && spec.kind() != "static" {
                refreshed = true;
                hub.credentials.invalidate(&self.connection_id);
                Duration::ZERO
            } else if let Some(after) = seen.throttled {
                after.clamp(Duration::from_secs(1), MAX_RETRY_AFTER)
            } else if seen.server_errors > 0 || matches!(error, CallError::Timeout { .. }) {
                let wait = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                wait
            } else {
                return hub.observe(&binding, Err(error)).await;
            };
            self.problem("warning", &format!("attempt {attempt}: {error}; asking again in {} s", wait.as_secs())).await;
            tokio::time::sleep(wait).await;
        }
    }

    async fn problem(&mut self, level: &str, message: &str) {
        if self.logged >= MAX_LOGGED_PROBLEMS {
            return;
        }
        self.logged += 1;
        if let Err(e) = self.hub.store.record_sync_problem(self.run_id, &self.connection_id, level, message).await {
            tracing::warn!(error = %e, "could not record a directory sync problem");
        }
    }
}

/// The connector's page as the store applies it: users and groups turned into RFC 7643
/// resources (validated like a SCIM create), members by external id. An error names the item.
pub(crate) fn convert_page(page: PullPage) -> Result<PulledPage, String> {
    let mut users = Vec::with_capacity(page.users.len());
    for (i, u) in page.users.into_iter().enumerate() {
        let external_id = u.external_id.clone().filter(|x| !x.trim().is_empty()).ok_or_else(|| {
            format!("user {i} (userName {:?}) has no external-id", u.user_name)
        })?;
        let mut resource = merged_resource(&serde_json::json!({"schemas": [CORE_USER]}), &u)
            .map_err(|e| format!("user {external_id}: {e}"))?;
        if let Some(obj) = resource.as_object_mut() {
            obj.insert("active".into(), serde_json::Value::Bool(u.active));
            for (path, value) in &u.attributes {
                if CORE_SIMPLE.contains(&path.as_str()) {
                    let v: serde_json::Value =
                        serde_json::from_str(value).map_err(|e| format!("user {external_id}: attribute {path} is not JSON ({e})"))?;
                    obj.insert(path.clone(), v);
                }
            }
        }
        let resource = idplex_scim::prepare_resource(
            &idplex_scim::USER_RESOURCE_TYPE,
            &resource,
            &idplex_scim::PatchOptions::HOST,
        )
        .map_err(|e| format!("user {external_id}: {}", e.detail))?;
        let user_name = resource.get("userName").and_then(|v| v.as_str()).unwrap_or_default().to_string();
        users.push(PulledUser { external_id, user_name, active: u.active, resource });
    }
    let mut groups = Vec::with_capacity(page.groups.len());
    for (i, g) in page.groups.into_iter().enumerate() {
        let external_id = g.external_id.clone().filter(|x| !x.trim().is_empty()).ok_or_else(|| {
            format!("group {i} ({:?}) has no external-id", g.display_name)
        })?;
        if g.display_name.trim().is_empty() {
            return Err(format!("group {external_id} has an empty display-name"));
        }
        let resource = serde_json::json!({"schemas": [CORE_GROUP], "displayName": g.display_name, "externalId": external_id});
        groups.push(PulledGroup { external_id, display_name: g.display_name, resource });
    }
    let member = |m: Member| match m {
        Member::User(id) => PulledMember::User(id),
        Member::Group(id) => PulledMember::Group(id),
    };
    let members = page
        .members
        .into_iter()
        .map(|m| PulledMembers {
            group: m.group,
            added: m.added.into_iter().map(member).collect(),
            removed: m.removed.into_iter().map(member).collect(),
        })
        .collect();
    Ok(PulledPage {
        users,
        groups,
        members,
        removed_users: page.removed_users,
        removed_groups: page.removed_groups,
        next: page.next,
        resume: page.resume,
    })
}
