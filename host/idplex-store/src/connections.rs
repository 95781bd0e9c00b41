//! Connections (an organization's IdP directories) and their binding to connector versions.

use crate::error::is_unique_violation;
use crate::{
    BindingAction, BindingChange, Connection, ConnectionUpdate, NewConnection, ScimDeletePolicy,
    Store, StoreError, now_ms, random_id, to_json,
};

/// How often a binding change is retried after losing a race against another change of the
/// same connection. Each round lets at least one contender through, so this only bounds
/// pathological contention.
const MAX_BINDING_ATTEMPTS: u32 = 64;

#[derive(sqlx::FromRow)]
struct ConnectionRow {
    id: String,
    org_id: String,
    name: String,
    connector_name: String,
    active_version: Option<String>,
    previous_version: Option<String>,
    config_json: String,
    egress_allow_json: String,
    limits_json: String,
    generation: i64,
    created_at: i64,
    updated_at: i64,
    scim_delete_policy: String,
}

impl ConnectionRow {
    fn into_connection(self) -> Result<Connection, StoreError> {
        let config = serde_json::from_str(&self.config_json)
            .map_err(|e| StoreError::corrupt("config_json of connection", &self.id, e))?;
        let egress_allow = serde_json::from_str(&self.egress_allow_json)
            .map_err(|e| StoreError::corrupt("egress_allow_json of connection", &self.id, e))?;
        let limits = serde_json::from_str(&self.limits_json)
            .map_err(|e| StoreError::corrupt("limits_json of connection", &self.id, e))?;
        let scim_delete_policy = ScimDeletePolicy::parse(&self.scim_delete_policy).ok_or_else(|| {
            StoreError::corrupt(
                "scim_delete_policy of connection",
                &self.id,
                format!("unknown policy {:?}", self.scim_delete_policy),
            )
        })?;
        Ok(Connection {
            id: self.id,
            org_id: self.org_id,
            name: self.name,
            connector_name: self.connector_name,
            active_version: self.active_version,
            previous_version: self.previous_version,
            config,
            egress_allow,
            limits,
            generation: self.generation,
            created_at: self.created_at,
            updated_at: self.updated_at,
            scim_delete_policy,
        })
    }
}

#[derive(sqlx::FromRow)]
struct HistoryRow {
    connection_id: String,
    seq: i64,
    from_version: Option<String>,
    to_version: String,
    action: String,
    actor: String,
    at: i64,
}

const COLUMNS: &str = "id, org_id, name, connector_name, active_version, previous_version, \
     config_json, egress_allow_json, limits_json, generation, created_at, updated_at, \
     scim_delete_policy";

const INSERT_CONNECTION: &str = "INSERT INTO connections \
     (id, org_id, name, connector_name, active_version, previous_version, \
      config_json, egress_allow_json, limits_json, generation, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, NULL, NULL, $5, $6, $7, 0, $8, $8)";

/// Conditional on the generation read at the start of the transaction: a concurrent change
/// makes it match no row, and the change is retried on fresh data.
fn update_binding_sql() -> String {
    format!(
        "UPDATE connections SET active_version = $1, previous_version = $2, generation = $3, {} \
         WHERE id = $5 AND generation = $6 RETURNING {COLUMNS}",
        bump_updated_at("$4")
    )
}

/// `updated_at` is the version stamp of a connection's row: bindings compare it to decide which
/// of two publications is newer, so it must grow with every change even when two changes fall
/// in the same millisecond (or the clock steps back): the later of now and one past the last.
/// The SQL assignment, with the current time as the parameter `now` (e.g. `"$5"`).
fn bump_updated_at(now: &str) -> String {
    format!("updated_at = CASE WHEN {now} > updated_at THEN {now} ELSE updated_at + 1 END")
}


const INSERT_HISTORY: &str = "INSERT INTO binding_history \
     (connection_id, seq, from_version, to_version, action, actor, at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// The stack of versions a binding history describes (oldest at the bottom, the active version
/// on top), from its `(to_version, action)` rows in order.
fn version_stack<'a>(history: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    let mut stack: Vec<String> = Vec::new();
    for (version, action) in history {
        if action == BindingAction::Rollback.as_str() {
            stack.pop();
            // A history written before rollbacks popped (they went to `previous_version`, which
            // may not be the version below): the version rolled back to is on top.
            if stack.last().map(String::as_str) != Some(version) {
                stack.push(version.to_owned());
            }
        } else if stack.last().map(String::as_str) != Some(version) {
            stack.push(version.to_owned());
        }
    }
    stack
}

enum Change<'a> {
    Activate(&'a str),
    Rollback,
}

fn validate_egress(hosts: &[String]) -> Result<(), StoreError> {
    for host in hosts {
        if host.trim().is_empty() || host.chars().any(char::is_whitespace) {
            return Err(StoreError::InvalidInput {
                what: "egress allow-list",
                reason: format!("{host:?} is not a host name"),
            });
        }
    }
    Ok(())
}

fn non_empty(what: &'static str, value: &str) -> Result<(), StoreError> {
    if value.trim().is_empty() {
        return Err(StoreError::InvalidInput {
            what,
            reason: "must not be empty".into(),
        });
    }
    Ok(())
}

impl Store {
    /// Creates a connection with no active version (generation 0).
    /// `org_id` + `name` must be unique ([`StoreError::Conflict`] otherwise).
    pub async fn create_connection(&self, new: &NewConnection) -> Result<Connection, StoreError> {
        non_empty("organization id", &new.org_id)?;
        non_empty("connection name", &new.name)?;
        non_empty("connector name", &new.connector_name)?;
        validate_egress(&new.egress_allow)?;
        let id = match &new.id {
            Some(id) => {
                non_empty("connection id", id)?;
                id.clone()
            }
            None => random_id("conn_"),
        };
        let config = to_json(&new.config, "connection config")?;
        let egress = to_json(&new.egress_allow, "egress allow-list")?;
        let limits = to_json(&new.limits, "connection limits")?;
        let now = now_ms();

        let result = with_pool!(self, write, |pool| {
            sqlx::query(INSERT_CONNECTION)
                .bind(&id)
                .bind(&new.org_id)
                .bind(&new.name)
                .bind(&new.connector_name)
                .bind(&config)
                .bind(&egress)
                .bind(&limits)
                .bind(now)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        });
        match result {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                // Either the id or (org_id, name) is taken; say which.
                return Err(match self.get_connection(&id).await {
                    Ok(_) => StoreError::conflict("connection", id, "already exists"),
                    Err(_) => StoreError::conflict(
                        "connection",
                        format!("{:?}", new.name),
                        format!("already exists in organization {}", new.org_id),
                    ),
                });
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(connection = %id, org = %new.org_id, connector = %new.connector_name, "connection created");
        self.get_connection_on_writer(&id).await
    }

    /// The connection with this id.
    pub async fn get_connection(&self, id: &str) -> Result<Connection, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM connections WHERE id = $1");
        let row: Option<ConnectionRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?
        });
        row.ok_or_else(|| StoreError::not_found("connection", id))?
            .into_connection()
    }

    /// Read-your-writes variant used right after a write (same connection as the writer on SQLite).
    async fn get_connection_on_writer(&self, id: &str) -> Result<Connection, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM connections WHERE id = $1");
        let row: Option<ConnectionRow> = with_pool!(self, write, |pool| {
            sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?
        });
        row.ok_or_else(|| StoreError::not_found("connection", id))?
            .into_connection()
    }

    /// All connections, by organization then name.
    pub async fn list_connections(&self) -> Result<Vec<Connection>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM connections ORDER BY org_id, name, id");
        let rows: Vec<ConnectionRow> = with_pool!(self, read, |pool| sqlx::query_as(&sql)
            .fetch_all(pool)
            .await?);
        rows.into_iter()
            .map(ConnectionRow::into_connection)
            .collect()
    }

    /// Replaces the given parts of a connection's admin configuration. Does not touch the
    /// binding nor the generation; bumps `updated_at`.
    pub async fn update_connection_config(
        &self,
        id: &str,
        update: &ConnectionUpdate,
    ) -> Result<Connection, StoreError> {
        if let Some(hosts) = &update.egress_allow {
            validate_egress(hosts)?;
        }
        let config = update
            .config
            .as_ref()
            .map(|v| to_json(v, "connection config"))
            .transpose()?;
        let egress = update
            .egress_allow
            .as_ref()
            .map(|v| to_json(v, "egress allow-list"))
            .transpose()?;
        let limits = update
            .limits
            .as_ref()
            .map(|v| to_json(v, "connection limits"))
            .transpose()?;
        let sql = format!(
            "UPDATE connections SET config_json = COALESCE($2, config_json), \
             egress_allow_json = COALESCE($3, egress_allow_json), \
             limits_json = COALESCE($4, limits_json), {} \
             WHERE id = $1 RETURNING {COLUMNS}",
            bump_updated_at("$5")
        );
        let row: Option<ConnectionRow> = with_pool!(self, write, |pool| {
            sqlx::query_as(&sql)
                .bind(id)
                .bind(config)
                .bind(egress)
                .bind(limits)
                .bind(now_ms())
                .fetch_optional(pool)
                .await?
        });
        row.ok_or_else(|| StoreError::not_found("connection", id))?
            .into_connection()
    }

    /// Sets what a SCIM `DELETE` of a user does in the connection `id` (see [`ScimDeletePolicy`]);
    /// applies to the deletes that follow, not to users deleted before. Bumps `updated_at`.
    /// [`StoreError::NotFound`] if the connection does not exist.
    pub async fn set_scim_delete_policy(
        &self,
        id: &str,
        policy: ScimDeletePolicy,
    ) -> Result<Connection, StoreError> {
        let sql = format!(
            "UPDATE connections SET scim_delete_policy = $1, {} WHERE id = $3 \
             RETURNING {COLUMNS}",
            bump_updated_at("$2")
        );
        let row: Option<ConnectionRow> = with_pool!(self, write, |pool| {
            sqlx::query_as(&sql)
                .bind(policy.as_str())
                .bind(now_ms())
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        let connection = row
            .ok_or_else(|| StoreError::not_found("connection", id))?
            .into_connection()?;
        tracing::info!(connection = %id, policy = %policy, "SCIM delete policy set");
        Ok(connection)
    }

    /// Binds `version` of the connection's connector to the connection, atomically: the
    /// previously active version becomes `previous_version` (unless `version` was already
    /// active, in which case the rollback target is kept), `generation` is bumped and the
    /// change is appended to the binding history.
    ///
    /// [`StoreError::NotFound`] if the connection or the module `connector_name@version` does
    /// not exist.
    pub async fn activate(
        &self,
        connection_id: &str,
        version: &str,
        actor: &str,
    ) -> Result<Connection, StoreError> {
        non_empty("connector version", version)?;
        self.change_binding(connection_id, Change::Activate(version), actor)
            .await
    }

    /// Swaps the active and previous versions, with the same bookkeeping as [`Store::activate`].
    /// [`StoreError::NothingToRollBack`] if there is no previous version.
    pub async fn rollback(
        &self,
        connection_id: &str,
        actor: &str,
    ) -> Result<Connection, StoreError> {
        self.change_binding(connection_id, Change::Rollback, actor)
            .await
    }

    /// The binding changes of a connection, oldest first. Empty for an unknown connection.
    pub async fn binding_history(
        &self,
        connection_id: &str,
    ) -> Result<Vec<BindingChange>, StoreError> {
        let rows: Vec<HistoryRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT connection_id, seq, from_version, to_version, action, actor, at \
                 FROM binding_history WHERE connection_id = $1 ORDER BY seq",
            )
            .bind(connection_id)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|r| {
                let action = BindingAction::parse(&r.action).ok_or_else(|| {
                    StoreError::corrupt(
                        "binding history entry",
                        format!("{}#{}", r.connection_id, r.seq),
                        format!("unknown action {:?}", r.action),
                    )
                })?;
                Ok(BindingChange {
                    connection_id: r.connection_id,
                    seq: r.seq,
                    from_version: r.from_version,
                    to_version: r.to_version,
                    action,
                    actor: r.actor,
                    at: r.at,
                })
            })
            .collect()
    }

    async fn change_binding(
        &self,
        id: &str,
        change: Change<'_>,
        actor: &str,
    ) -> Result<Connection, StoreError> {
        non_empty("actor", actor)?;
        let select = format!("SELECT {COLUMNS} FROM connections WHERE id = $1");
        let update = update_binding_sql();
        for attempt in 1..=MAX_BINDING_ATTEMPTS {
            let done: Option<Connection> = with_tx!(self, |tx| {
                let row: Option<ConnectionRow> = sqlx::query_as(&select)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let row = row.ok_or_else(|| StoreError::not_found("connection", id))?;

                // The versions this connection ran, as a stack: an activation pushes its version
                // (unless it is already on top), a rollback pops. Rebuilt from the history so a
                // rollback goes back one activation each time, however often it is repeated.
                let history: Vec<(String, String)> = sqlx::query_as(
                    "SELECT to_version, action FROM binding_history WHERE connection_id = $1 ORDER BY seq",
                )
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
                let mut stack = version_stack(history.iter().map(|(v, a)| (v.as_str(), a.as_str())));
                let (action, to_version) = match change {
                    Change::Activate(version) => {
                        if stack.last().map(String::as_str) != Some(version) {
                            stack.push(version.to_owned());
                        }
                        (BindingAction::Activate, version.to_owned())
                    }
                    Change::Rollback => {
                        if stack.len() < 2 {
                            return Err(StoreError::NothingToRollBack { connection_id: id.to_owned() });
                        }
                        stack.pop();
                        (BindingAction::Rollback, stack.last().cloned().expect("two or more versions"))
                    }
                };
                let new_previous = stack.len().checked_sub(2).map(|i| stack[i].clone());

                let module: Option<(String,)> =
                    sqlx::query_as("SELECT sha256 FROM modules WHERE name = $1 AND version = $2")
                        .bind(&row.connector_name)
                        .bind(&to_version)
                        .fetch_optional(&mut *tx)
                        .await?;
                if module.is_none() {
                    return Err(StoreError::not_found(
                        "connector",
                        format!("{}@{}", row.connector_name, to_version),
                    ));
                }

                let generation = row.generation + 1;
                let now = now_ms();
                // The row as it is now (a concurrent config change included), with its stamp.
                let updated: Option<ConnectionRow> = sqlx::query_as(&update)
                    .bind(&to_version)
                    .bind(&new_previous)
                    .bind(generation)
                    .bind(now)
                    .bind(id)
                    .bind(row.generation)
                    .fetch_optional(&mut *tx)
                    .await?;
                match updated {
                    None => None,
                    Some(updated) => {
                        sqlx::query(INSERT_HISTORY)
                            .bind(id)
                            .bind(generation)
                            .bind(&row.active_version)
                            .bind(&to_version)
                            .bind(action.as_str())
                            .bind(actor)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                        tracing::info!(
                            connection = %id, action = action.as_str(), from = ?row.active_version,
                            to = %to_version, generation, actor, "binding changed"
                        );
                        Some(updated.into_connection()?)
                    }
                }
            });
            if let Some(connection) = done {
                return Ok(connection);
            }
            tracing::debug!(connection = %id, attempt, "binding change lost a race; retrying");
            tokio::task::yield_now().await;
        }
        Err(StoreError::Contended {
            connection_id: id.to_owned(),
            attempts: MAX_BINDING_ATTEMPTS,
        })
    }
}

/// A change of connections made anywhere (this process, the CLI, another replica), as heard
/// through [`Store::listen_connection_changes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionChange {
    /// The connection with this id was created, changed or deleted.
    Connection(String),
    /// The listening connection was lost and re-established: changes may have been missed, so
    /// re-read every connection.
    Resync,
}

/// The feed of [`ConnectionChange`]s of a PostgreSQL store (`LISTEN` on the channel the
/// `connections` trigger of migration 0007 notifies).
pub struct ConnectionChanges {
    listener: sqlx::postgres::PgListener,
}

impl std::fmt::Debug for ConnectionChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionChanges").finish_non_exhaustive()
    }
}

impl ConnectionChanges {
    /// The next change. A lost connection gives [`ConnectionChange::Resync`] once it is back
    /// (sqlx reconnects); an error means the server could not be reached (retry later).
    pub async fn next(&mut self) -> Result<ConnectionChange, StoreError> {
        match self.listener.try_recv().await? {
            Some(n) => Ok(ConnectionChange::Connection(n.payload().to_string())),
            None => Ok(ConnectionChange::Resync),
        }
    }
}

impl Store {
    /// On PostgreSQL, a feed of every connection change committed by any process on this
    /// database (schema), delivered within milliseconds of the commit; `None` on SQLite, whose
    /// other processes are seen by polling ([`Store::list_connections`]).
    pub async fn listen_connection_changes(&self) -> Result<Option<ConnectionChanges>, StoreError> {
        let crate::Pools::Postgres(pool) = &self.pools else {
            return Ok(None);
        };
        let schema: String = sqlx::query_scalar("SELECT current_schema()::text").fetch_one(pool).await?;
        let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
        listener.listen(&format!("idplex_bindings.{schema}")).await?;
        Ok(Some(ConnectionChanges { listener }))
    }
}

#[cfg(test)]
mod tests {
    use super::version_stack;

    fn stack(rows: &[(&str, &str)]) -> Vec<String> {
        version_stack(rows.iter().copied())
    }

    #[test]
    fn activations_push_rollbacks_pop() {
        assert!(stack(&[]).is_empty());
        let a = [("1", "activate"), ("2", "activate"), ("3", "activate")];
        assert_eq!(stack(&a), ["1", "2", "3"]);
        // Re-activating the version on top changes nothing.
        assert_eq!(stack(&[("1", "activate"), ("1", "activate")]), ["1"]);
        // Two rollbacks go back two versions; an activation after them pushes again.
        let rows = [("1", "activate"), ("2", "activate"), ("3", "activate"), ("2", "rollback"), ("1", "rollback"), ("4", "activate")];
        assert_eq!(stack(&rows[..4]), ["1", "2"]);
        assert_eq!(stack(&rows[..5]), ["1"]);
        assert_eq!(stack(&rows), ["1", "4"]);
        // A history from before rollbacks popped (a rollback that toggled back to the version it
        // left): the version rolled back to ends on top.
        assert_eq!(stack(&[("1", "activate"), ("2", "activate"), ("1", "rollback"), ("2", "rollback")]), ["2"]);
    }
}
