//! Installed connector modules, content-addressed by sha256.

use sha2::{Digest, Sha256};

use crate::{InsertOutcome, ModulePublisher, ModuleSummary, NewModule, Store, StoreError, now_ms, to_json};

#[derive(sqlx::FromRow)]
struct ModuleRow {
    sha256: String,
    name: String,
    version: String,
    contract_version: String,
    size_bytes: i64,
    info_json: String,
    installed_at: i64,
    admitted_as: Option<String>,
    publisher: Option<String>,
    publisher_key: Option<String>,
}

impl ModuleRow {
    fn into_summary(self) -> Result<ModuleSummary, StoreError> {
        let info = serde_json::from_str(&self.info_json)
            .map_err(|e| StoreError::corrupt("info_json of module", &self.sha256, e))?;
        let publisher = ModulePublisher::from_columns(&self.sha256, self.admitted_as, self.publisher, self.publisher_key)?;
        Ok(ModuleSummary {
            sha256: self.sha256,
            name: self.name,
            version: self.version,
            contract_version: self.contract_version,
            size_bytes: self.size_bytes,
            info,
            installed_at: self.installed_at,
            publisher,
        })
    }
}

const SUMMARY_COLUMNS: &str =
    "sha256, name, version, contract_version, size_bytes, info_json, installed_at, admitted_as, publisher, publisher_key";

const INSERT_MODULE: &str = "INSERT INTO modules \
     (sha256, name, version, contract_version, size_bytes, info_json, component, installed_at, \
      admitted_as, publisher, publisher_key) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING";

/// The row that blocked an insert: same sha256, or same name@version.
const FIND_CLASH: &str =
    "SELECT sha256, name, version FROM modules WHERE sha256 = $1 OR (name = $2 AND version = $3)";

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Store {
    /// Installs a module. Idempotent for the same bytes under the same name@version; a
    /// different sha256 for an installed name@version (or the same bytes under another
    /// name@version) is a [`StoreError::Conflict`].
    pub async fn insert_module(&self, module: &NewModule) -> Result<InsertOutcome, StoreError> {
        self.insert_module_with_publisher(module, None).await
    }

    /// [`Store::insert_module`], recording who published it ([`ModulePublisher`]) in the same
    /// statement. When the same bytes are already installed, their record is replaced by this
    /// one if it differs (the newest judgement of the same bytes).
    pub async fn insert_module_with_publisher(
        &self,
        module: &NewModule,
        publisher: Option<&ModulePublisher>,
    ) -> Result<InsertOutcome, StoreError> {
        for (what, value) in [
            ("connector name", &module.name),
            ("connector version", &module.version),
            ("contract version", &module.contract_version),
        ] {
            if value.trim().is_empty() {
                return Err(StoreError::InvalidInput {
                    what,
                    reason: "must not be empty".into(),
                });
            }
        }
        let sha256 = sha256_hex(&module.component);
        let size = i64::try_from(module.component.len()).map_err(|_| StoreError::InvalidInput {
            what: "component",
            reason: "too large".into(),
        })?;
        let info = to_json(&module.info, "module info")?;
        let now = now_ms();

        let inserted = with_pool!(self, write, |pool| {
            sqlx::query(INSERT_MODULE)
                .bind(&sha256)
                .bind(&module.name)
                .bind(&module.version)
                .bind(&module.contract_version)
                .bind(size)
                .bind(&info)
                .bind(&module.component)
                .bind(now)
                .bind(publisher.map(|p| p.admitted_as.as_str()))
                .bind(publisher.and_then(|p| p.publisher.as_deref()))
                .bind(publisher.and_then(|p| p.fingerprint.as_deref()))
                .execute(pool)
                .await?
                .rows_affected()
        });
        if inserted == 1 {
            tracing::info!(connector = %module.name, version = %module.version, %sha256, "module installed");
            return Ok(InsertOutcome::Inserted { sha256 });
        }

        let clashes: Vec<(String, String, String)> = with_pool!(self, write, |pool| {
            sqlx::query_as(FIND_CLASH)
                .bind(&sha256)
                .bind(&module.name)
                .bind(&module.version)
                .fetch_all(pool)
                .await?
        });
        let key = format!("{}@{}", module.name, module.version);
        let same_name_version = clashes
            .iter()
            .find(|(_, name, version)| *name == module.name && *version == module.version);
        if let Some((other_sha, _, _)) = same_name_version {
            if *other_sha == sha256 {
                if let Some(publisher) = publisher
                    && self.get_module_by_hash(&sha256).await?.publisher.as_ref() != Some(publisher)
                {
                    self.set_module_publisher(&sha256, publisher).await?;
                }
                return Ok(InsertOutcome::AlreadyPresent { sha256 });
            }
            return Err(StoreError::conflict(
                "connector",
                key,
                format!(
                    "is already installed with a different sha256 (installed {other_sha}, offered {sha256}); \
                     publish the new build under a new version"
                ),
            ));
        }
        if let Some((_, name, version)) = clashes.first() {
            return Err(StoreError::conflict(
                "module",
                sha256.clone(),
                format!(
                    "is already installed as connector {name}@{version}, cannot install it again as {key}"
                ),
            ));
        }
        // The conflicting row vanished between the two statements (no delete API today): report it.
        Err(StoreError::conflict(
            "connector",
            key,
            "could not be installed because of a concurrent change; retry",
        ))
    }

    /// Metadata of the module with this sha256.
    pub async fn get_module_by_hash(&self, sha256: &str) -> Result<ModuleSummary, StoreError> {
        let sql = format!("SELECT {SUMMARY_COLUMNS} FROM modules WHERE sha256 = $1");
        let row: Option<ModuleRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(&sql)
                .bind(sha256)
                .fetch_optional(pool)
                .await?
        });
        row.ok_or_else(|| StoreError::not_found("module", sha256))?
            .into_summary()
    }

    /// Metadata of connector `name` at `version`.
    pub async fn get_module(&self, name: &str, version: &str) -> Result<ModuleSummary, StoreError> {
        let sql = format!("SELECT {SUMMARY_COLUMNS} FROM modules WHERE name = $1 AND version = $2");
        let row: Option<ModuleRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(&sql)
                .bind(name)
                .bind(version)
                .fetch_optional(pool)
                .await?
        });
        row.ok_or_else(|| StoreError::not_found("connector", format!("{name}@{version}")))?
            .into_summary()
    }

    /// All installed modules (without bytes), by name then installation time.
    pub async fn list_modules(&self) -> Result<Vec<ModuleSummary>, StoreError> {
        let sql =
            format!("SELECT {SUMMARY_COLUMNS} FROM modules ORDER BY name, installed_at, version");
        let rows: Vec<ModuleRow> = with_pool!(self, read, |pool| sqlx::query_as(&sql)
            .fetch_all(pool)
            .await?);
        rows.into_iter().map(ModuleRow::into_summary).collect()
    }

    /// Installed versions of connector `name` (without bytes), oldest installation first.
    /// Empty if none.
    pub async fn list_versions(&self, name: &str) -> Result<Vec<ModuleSummary>, StoreError> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM modules WHERE name = $1 ORDER BY installed_at, version"
        );
        let rows: Vec<ModuleRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(&sql).bind(name).fetch_all(pool).await?
        });
        rows.into_iter().map(ModuleRow::into_summary).collect()
    }

    /// The component bytes of the module with this sha256.
    pub async fn module_bytes(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        let row: Option<(Vec<u8>,)> = with_pool!(self, read, |pool| {
            sqlx::query_as("SELECT component FROM modules WHERE sha256 = $1")
                .bind(sha256)
                .fetch_optional(pool)
                .await?
        });
        let (bytes,) = row.ok_or_else(|| StoreError::not_found("module", sha256))?;
        if sha256_hex(&bytes) != sha256 {
            return Err(StoreError::corrupt(
                "module",
                sha256,
                "bytes do not match their sha256",
            ));
        }
        Ok(bytes)
    }
}
