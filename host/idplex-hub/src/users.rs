//! The user lifecycle and the users' own API as application services, shared by the admin API,
//! the `/api/v1` user API and the CLI: one implementation of each step that touches more than
//! one store call, so the HTTP server and the CLI only decode and encode.

use idplex_store::{DirectoryUser, SyncLogPage, SyncLogQuery};

use crate::{Hub, HubError};

/// What a user presented to the users' own API.
#[derive(Debug, Clone, Copy)]
pub enum UserCredential<'a> {
    /// A user API token (`idp_uat_…`).
    ApiToken(&'a str),
    /// A session secret (`idp_ses_…`).
    Session(&'a str),
}

impl Hub {
    /// A page of a directory's SCIM sync log, newest first; [`HubError::Store`] not found for an
    /// unknown connection.
    pub async fn sync_log(&self, connection_id: &str, query: &SyncLogQuery) -> Result<SyncLogPage, HubError> {
        self.store.get_connection(connection_id).await?;
        Ok(self.store.list_sync_log(connection_id, query).await?)
    }

    /// A page of a directory's users as admins see them (soft-deleted ones included), with the
    /// directory's total; not found for an unknown connection.
    pub async fn directory_users(
        &self,
        connection_id: &str,
        offset: u64,
        limit: u32,
    ) -> Result<(Vec<DirectoryUser>, i64), HubError> {
        self.store.get_connection(connection_id).await?;
        let limit = limit.min(idplex_store::MAX_DIRECTORY_LIST_LIMIT);
        Ok(self.store.list_users_including_deleted(connection_id, offset, limit).await?)
    }

    /// Purges a user for good, whatever its directory's delete policy: the user, its
    /// memberships, API tokens and sessions; its `userName` is free again in the organization.
    /// Answers the user as it was.
    pub async fn purge_user(&self, user_id: &str) -> Result<DirectoryUser, HubError> {
        let user = self.store.get_user_for_admin(user_id).await?;
        self.store.delete_user(&user.connection_id, &user.id).await?;
        tracing::info!(user = %user.id, connection = %user.connection_id, "user purged by an admin");
        Ok(user)
    }

    /// The user a credential authenticates, if it is valid (known, unexpired, unrevoked, not
    /// ended) and its user active. The store checks the credential and its user in one query (the
    /// secret hashed, compared in constant time), so a user deactivated by its IdP is refused on
    /// its very next request.
    pub async fn authenticate_user(&self, credential: UserCredential<'_>) -> Result<Option<DirectoryUser>, HubError> {
        let verified = match credential {
            UserCredential::ApiToken(secret) => self.store.verify_user_api_token(secret).await?.map(|(_, user)| user),
            UserCredential::Session(secret) => self.store.verify_user_session(secret).await?.map(|(_, user)| user),
        };
        Ok(verified)
    }
}
