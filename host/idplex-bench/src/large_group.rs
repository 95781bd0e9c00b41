//! Section 6: a membership PATCH of a large group through the hub's SCIM service, as an IdP
//! sends it (Okta's `add members` with 1,000 values), on a SQLite file with the real
//! `custom-saml` connector. Measures the whole request: normalize, the group rendered without
//! its members, the delta committed in one transaction, the reply with the committed members.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use idplex_hub::runtime::{ResourceKind, RuntimeConfig};
use idplex_hub::store::{NewConnection, NewDirectoryGroup, NewDirectoryUser};
use idplex_hub::{Hub, HubOptions, ScimCall, ScimService, ScimTarget, SecretKey};
use serde_json::json;

/// Creates `n` users named `{prefix}{i}` in `connection`, `parallel` writers at once (the
/// SQLite committer batches them); their ids in order.
async fn users(hub: &Arc<Hub>, connection: &str, prefix: &str, n: usize) -> Result<Vec<String>> {
    let parallel = 32;
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..parallel {
        let (hub, connection, prefix) = (hub.clone(), connection.to_string(), prefix.to_string());
        tasks.spawn(async move {
            let mut ids = Vec::new();
            for i in (lane..n).step_by(parallel) {
                let user_name = format!("{prefix}{i}@bench.test");
                let user = hub
                    .store()
                    .create_user(&NewDirectoryUser {
                        connection_id: connection.clone(),
                        user_name: user_name.clone(),
                        external_id: None,
                        active: true,
                        resource: json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name}),
                    })
                    .await?;
                ids.push((i, user.id));
            }
            anyhow::Ok(ids)
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    all.sort();
    Ok(all.into_iter().map(|(_, id)| id).collect())
}

/// Median and extremes of `runs` PATCHes, each adding 1,000 new members to a group of
/// `members` members.
pub async fn patch_large_group(members: usize, runs: usize) -> Result<Vec<Duration>> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("idplex.db").display());
    let hub = Hub::connect(&url, &Default::default(), RuntimeConfig::new(dir.path().join("cache")), HubOptions::default(), SecretKey::ephemeral())
        .await?;
    let report = hub.install_bundled().await?.into_iter().find(|r| r.name == "custom-saml").context("custom-saml")?;
    let conn = hub
        .create_connection(NewConnection {
            id: None,
            org_id: "default".into(),
            name: "bench".into(),
            connector_name: "custom-saml".into(),
            config: json!({}),
            egress_allow: Vec::new(),
            limits: json!({}),
        })
        .await?;
    hub.activate(&conn.id, &report.version, "bench").await?;
    let service = ScimService::new(hub.clone());

    let seeded = Instant::now();
    let member_ids = users(&hub, &conn.id, "m", members).await?;
    let extra = users(&hub, &conn.id, "x", runs * 1000).await?;
    let group = hub
        .store()
        .create_group(&NewDirectoryGroup {
            connection_id: conn.id.clone(),
            display_name: "everyone".into(),
            external_id: None,
            resource: json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "everyone"}),
            members: member_ids,
        })
        .await?;
    println!("(seeded {members} members in {:.1} s)", seeded.elapsed().as_secs_f64());

    let mut samples = Vec::with_capacity(runs);
    for batch in extra.chunks(1000) {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members", "value": batch.iter().map(|id| json!({"value": id})).collect::<Vec<_>>()}],
        })
        .to_string();
        let started = Instant::now();
        let reply = service
            .serve(ScimCall {
                connection: &conn.id,
                method: http::Method::PATCH,
                target: ScimTarget::Resource(ResourceKind::Group, group.id.clone()),
                raw_query: "",
                if_match: None,
                content_type: Some("application/scim+json"),
                body: Ok(body.as_bytes()),
                base_url: "https://idplex.bench/scim/v2/bench",
                user_agent: None,
            })
            .await
            .map_err(|e| anyhow!("PATCH failed: {e}"))?;
        samples.push(started.elapsed());
        if !reply.status.is_success() {
            return Err(anyhow!("PATCH answered {}", reply.status));
        }
    }
    service.flush_sync_log().await;
    Ok(samples)
}
