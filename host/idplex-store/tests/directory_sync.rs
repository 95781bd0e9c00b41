//! Directory pull sync: passes of pages applied with their cursor, the full pass's sweep, delta
//! pages, resuming a killed run, the lease that fences every write, run records and their log.
//! Each test runs on SQLite (temp file) and PostgreSQL (fresh schema).

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{TestDb, connection};
use idplex_store::{
    DirectoryUser, NewDirectoryUser, PageApplied, PassKind, PulledGroup, PulledMember, PulledMembers,
    PulledPage, PulledUser, ScimDeletePolicy, SessionEndReason, Store, SyncRunTotals,
};
use serde_json::{Value, json};

on_both_backends!(
    a_full_pass_creates_then_sweeps,
    a_delta_pass_applies_changes_and_removals,
    a_killed_run_resumes_from_the_last_applied_page,
    only_the_lease_owner_writes,
    replicas_race_for_the_lease,
    item_problems_never_fail_a_page,
    schedule_and_due_connections,
    runs_and_their_log,
);

const HOUR_MS: i64 = 3_600_000;

fn resource(user_name: &str, active: bool) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "active": active,
    })
}

fn pulled(external_id: &str, user_name: &str) -> PulledUser {
    PulledUser {
        external_id: external_id.into(),
        user_name: user_name.into(),
        active: true,
        resource: resource(user_name, true),
    }
}

fn pulled_group(external_id: &str, name: &str) -> PulledGroup {
    PulledGroup {
        external_id: external_id.into(),
        display_name: name.into(),
        resource: json!({ "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name }),
    }
}

fn members(group: &str, users: &[&str], groups: &[&str]) -> PulledMembers {
    PulledMembers {
        group: group.into(),
        added: users
            .iter()
            .map(|u| PulledMember::User(u.to_string()))
            .chain(groups.iter().map(|g| PulledMember::Group(g.to_string())))
            .collect(),
        removed: vec![],
    }
}

/// The connection's users (soft-deleted ones included), by external id.
async fn users(store: &Store, connection_id: &str) -> BTreeMap<String, DirectoryUser> {
    let (all, total) = store.list_users_including_deleted(connection_id, 0, 1000).await.unwrap();
    assert_eq!(all.len() as i64, total);
    let mut out = BTreeMap::new();
    for u in all {
        let key = u.external_id.clone().unwrap_or_else(|| format!("scim:{}", u.user_name));
        assert!(out.insert(key, u).is_none(), "one user per external id");
    }
    out
}

/// The id of the connection's group with that external id.
async fn group_id(store: &Store, connection_id: &str, external_id: &str) -> String {
    let found = store.find_groups_by_external_id(connection_id, external_id, false).await.unwrap();
    assert_eq!(found.len(), 1, "one group {external_id}");
    found[0].id.clone()
}

/// External ids of the (live) members of a group.
async fn member_external_ids(store: &Store, connection_id: &str, group_external_id: &str) -> Vec<String> {
    let id = group_id(store, connection_id, group_external_id).await;
    let group = store.get_group(connection_id, &id).await.unwrap();
    let mut out = Vec::new();
    for m in group.members {
        out.push(store.get_user(connection_id, &m).await.unwrap().external_id.unwrap());
    }
    out.sort();
    out
}

/// A whole pass of `kind` from `cursor`, page by page, as `owner` (who holds the lease).
async fn pass(store: &Store, connection_id: &str, owner: &str, kind: PassKind, cursor: Option<&str>, pages: Vec<PulledPage>) -> Vec<PageApplied> {
    let p = store.begin_pull_pass(connection_id, owner, kind, cursor.map(str::to_owned)).await.unwrap();
    assert_eq!((p.kind, p.pages, p.cursor.as_deref()), (kind, 0, cursor));
    let n = pages.len();
    let mut out = Vec::new();
    for (i, page) in pages.into_iter().enumerate() {
        let applied = store.apply_pull_page(connection_id, owner, p.id, kind, &page).await.unwrap();
        assert_eq!(applied.pass_complete, i + 1 == n);
        out.push(applied);
    }
    out
}

fn page(users: Vec<PulledUser>, next: Option<&str>) -> PulledPage {
    PulledPage { users, next: next.map(str::to_owned), ..Default::default() }
}

async fn a_full_pass_creates_then_sweeps(db: TestDb) {
    let store = db.open().await;
    let conn = connection(&store, "org1", "okta").await;
    assert!(store.directory_sync_state(&conn.id).await.unwrap().is_none());
    assert!(store.acquire_sync_lease(&conn.id, "a", HOUR_MS).await.unwrap());

    // Pass 1: three pages (users, then groups, then memberships with a nested group).
    let applied = pass(&store, &conn.id, "a", PassKind::Full, None, vec![
        page(vec![pulled("u1", "ada@x"), pulled("u2", "bob@x"), pulled("u3", "cy@x")], Some("c1")),
        PulledPage {
            users: vec![pulled("u4", "dee@x"), pulled("u5", "eve@x")],
            groups: vec![pulled_group("g1", "Eng"), pulled_group("g2", "All")],
            next: Some("c2".into()),
            ..Default::default()
        },
        PulledPage {
            members: vec![members("g1", &["u1", "u2"], &[]), members("g2", &["u3", "u4", "u5"], &["g1"])],
            resume: Some("delta-1".into()),
            ..Default::default()
        },
    ])
    .await;
    assert_eq!(applied[0].created, 3);
    assert_eq!((applied[1].users_seen, applied[1].groups_seen, applied[1].created), (2, 2, 4));
    // The memberships change the two groups (created on the page before): one bump each.
    assert_eq!((applied[2].created, applied[2].changed, applied[2].removed), (0, 2, 0));
    assert!(applied.iter().all(|a| a.problems.is_empty()), "{applied:?}");
    let all = users(&store, &conn.id).await;
    assert_eq!(all.keys().collect::<Vec<_>>(), ["u1", "u2", "u3", "u4", "u5"]);
    assert!(all.values().all(|u| u.active && u.version == 1 && u.scim_deleted_at.is_none()));
    assert_eq!(all["u1"].user_name, "ada@x");
    assert_eq!(all["u1"].resource["userName"], "ada@x");
    assert_eq!(member_external_ids(&store, &conn.id, "g1").await, ["u1", "u2"]);
    assert_eq!(member_external_ids(&store, &conn.id, "g2").await, ["u3", "u4", "u5"]);
    let (g1, g2) = (group_id(&store, &conn.id, "g1").await, group_id(&store, &conn.id, "g2").await);
    assert_eq!(store.group_subgroups(&conn.id, &g2).await.unwrap(), [g1.clone()]);
    assert!(store.group_subgroups(&conn.id, &g1).await.unwrap().is_empty());
    assert!(store.group_subgroups(&conn.id, "nope").await.unwrap_err().is_not_found());
    let g1_version = store.get_group(&conn.id, &g1).await.unwrap().version;
    let state = store.directory_sync_state(&conn.id).await.unwrap().unwrap();
    assert_eq!(state.pass, None, "complete");
    assert_eq!(state.resume_cursor.as_deref(), Some("delta-1"));
    assert!(!state.enabled, "a manual run does not enable the schedule");

    // Between passes: a user provisioned by SCIM, and sessions of users the next pass drops.
    let scim = store
        .create_user(&NewDirectoryUser {
            connection_id: conn.id.clone(),
            user_name: "scim@x".into(),
            external_id: None,
            active: true,
            resource: resource("scim@x", true),
        })
        .await
        .unwrap();
    let (eve_session, _) = store.create_user_session(&all["u5"].id, None).await.unwrap();
    let (ada_session, _) = store.create_user_session(&all["u1"].id, None).await.unwrap();

    // Pass 2 omits u5, the membership u2 ∈ g1 and the group g2; u1's resource changed.
    let mut ada = pulled("u1", "ada@x");
    ada.resource["name"] = json!({ "givenName": "Ada" });
    let applied = pass(&store, &conn.id, "a", PassKind::Full, None, vec![
        page(vec![ada, pulled("u2", "bob@x")], Some("n")),
        PulledPage {
            users: vec![pulled("u3", "cy@x"), pulled("u4", "dee@x")],
            groups: vec![pulled_group("g1", "Eng")],
            members: vec![members("g1", &["u1"], &[])],
            ..Default::default()
        },
    ])
    .await;
    assert_eq!((applied[0].created, applied[0].changed), (0, 1), "only u1 changed");
    // The sweep: u5 (deactivate policy), g2, and g1 lost a member.
    assert_eq!((applied[1].created, applied[1].removed, applied[1].changed), (0, 2, 1), "{:?}", applied[1]);
    let all = users(&store, &conn.id).await;
    assert_eq!(all["u1"].version, 2);
    assert_eq!(all["u1"].resource["name"]["givenName"], "Ada");
    assert_eq!(all["u2"].version, 1, "an unchanged user is not rewritten");
    let eve = &all["u5"];
    assert!(!eve.active && eve.scim_deleted_at.is_some() && eve.deactivated_at.is_some());
    assert_eq!(eve.resource["active"], false);
    assert!(store.get_user(&conn.id, &eve.id).await.unwrap_err().is_not_found(), "gone for SCIM");
    let sessions = store.list_user_sessions(&eve.id).await.unwrap();
    assert_eq!(sessions[0].id, eve_session.id);
    assert_eq!(sessions[0].end_reason, Some(SessionEndReason::UserDeleted));
    assert_eq!(store.list_user_sessions(&all["u1"].id).await.unwrap()[0].ended_at, None, "{}", ada_session.id);
    let kept = &all["scim:scim@x"];
    assert_eq!((kept.id.as_str(), kept.active, kept.scim_deleted_at), (scim.id.as_str(), true, None), "SCIM's users are never swept");
    assert_eq!(member_external_ids(&store, &conn.id, "g1").await, ["u1"]);
    assert_eq!(store.get_group(&conn.id, &g1).await.unwrap().version, g1_version + 1);
    assert!(store.get_group(&conn.id, &g2).await.unwrap_err().is_not_found());
    assert_eq!(store.directory_sync_state(&conn.id).await.unwrap().unwrap().resume_cursor, None, "no resume: next is full");

    // Pass 3, policy delete: u4 is omitted (deleted), u5 reappears (restored, same id).
    store.set_scim_delete_policy(&conn.id, ScimDeletePolicy::Delete).await.unwrap();
    let applied = pass(&store, &conn.id, "a", PassKind::Full, None, vec![page(
        vec![pulled("u1", "ada@x"), pulled("u2", "bob@x"), pulled("u3", "cy@x"), pulled("u5", "eve@x")],
        None,
    )])
    .await;
    assert_eq!((applied[0].created, applied[0].changed, applied[0].removed), (0, 2, 2), "{:?}", applied[0]);
    let all = users(&store, &conn.id).await;
    assert!(!all.contains_key("u4"));
    assert!(store.get_user_for_admin(&eve.id).await.is_ok());
    let eve = store.get_user(&conn.id, &eve.id).await.unwrap();
    assert!(eve.active && eve.scim_deleted_at.is_none() && eve.deactivated_at.is_none());
    assert!(all.contains_key("scim:scim@x"));
    // g1 was not reported: deleted, with its memberships.
    assert!(store.get_group(&conn.id, &g1).await.unwrap_err().is_not_found());
}

async fn a_delta_pass_applies_changes_and_removals(db: TestDb) {
    let store = db.open().await;
    let conn = connection(&store, "org1", "okta").await;
    assert!(store.acquire_sync_lease(&conn.id, "a", HOUR_MS).await.unwrap());
    pass(&store, &conn.id, "a", PassKind::Full, None, vec![PulledPage {
        users: vec![pulled("u1", "ada@x"), pulled("u2", "bob@x"), pulled("u3", "cy@x"), pulled("u4", "dee@x")],
        groups: vec![pulled_group("g1", "Eng"), pulled_group("g2", "Ops"), pulled_group("g3", "All")],
        members: vec![members("g1", &["u1", "u3"], &[]), members("g3", &[], &["g1", "g2"])],
        resume: Some("d1".into()),
        ..Default::default()
    }])
    .await;
    let before = users(&store, &conn.id).await;
    let (ada_session, _) = store.create_user_session(&before["u1"].id, None).await.unwrap();
    let g1_version = store.get_group(&conn.id, &group_id(&store, &conn.id, "g1").await).await.unwrap().version;

    // The delta: u1 renamed and deactivated, u2 removed, g1 loses u3 and gains u4, g3 loses
    // g2, g2 is removed. u3 and u4 are not mentioned: they stay (a delta never sweeps).
    let state = store.directory_sync_state(&conn.id).await.unwrap().unwrap();
    let mut ada = pulled("u1", "ada.lovelace@x");
    ada.active = false;
    ada.resource = resource("ada.lovelace@x", false);
    let applied = pass(&store, &conn.id, "a", PassKind::Delta, state.resume_cursor.as_deref(), vec![
        PulledPage {
            users: vec![ada],
            removed_users: vec!["u2".into(), "unknown".into()],
            next: Some("d1-2".into()),
            ..Default::default()
        },
        PulledPage {
            members: vec![
                PulledMembers {
                    group: "g1".into(),
                    added: vec![PulledMember::User("u4".into())],
                    removed: vec![PulledMember::User("u3".into()), PulledMember::User("unknown".into())],
                },
                PulledMembers { group: "g3".into(), added: vec![], removed: vec![PulledMember::Group("g2".into())] },
            ],
            removed_groups: vec!["g2".into()],
            resume: Some("d2".into()),
            ..Default::default()
        },
    ])
    .await;
    assert_eq!((applied[0].changed, applied[0].removed), (1, 1), "{:?}", applied[0]);
    assert!(applied[0].problems.is_empty(), "removing an unknown user is no problem: {:?}", applied[0].problems);
    assert_eq!((applied[1].changed, applied[1].removed), (2, 1), "{:?}", applied[1]);
    assert!(applied[1].problems.is_empty(), "{:?}", applied[1].problems);

    let after = users(&store, &conn.id).await;
    let ada = &after["u1"];
    assert_eq!((ada.user_name.as_str(), ada.active, ada.version), ("ada.lovelace@x", false, 2));
    assert!(ada.deactivated_at.is_some() && ada.scim_deleted_at.is_none());
    let session = &store.list_user_sessions(&ada.id).await.unwrap()[0];
    assert_eq!((session.id.as_str(), session.end_reason), (ada_session.id.as_str(), Some(SessionEndReason::UserDeactivated)));
    assert!(after["u2"].scim_deleted_at.is_some(), "removed by the deactivate policy");
    assert!(after["u3"].active && after["u4"].active && after["u3"].scim_deleted_at.is_none());
    assert_eq!(member_external_ids(&store, &conn.id, "g1").await, ["u1", "u4"]);
    let g1 = group_id(&store, &conn.id, "g1").await;
    assert_eq!(store.get_group(&conn.id, &g1).await.unwrap().version, g1_version + 1, "one bump for the page");
    let g3 = group_id(&store, &conn.id, "g3").await;
    assert_eq!(store.group_subgroups(&conn.id, &g3).await.unwrap(), [g1]);
    assert!(store.find_groups_by_external_id(&conn.id, "g2", false).await.unwrap().is_empty());
    let state = store.directory_sync_state(&conn.id).await.unwrap().unwrap();
    assert_eq!((state.pass, state.resume_cursor.as_deref()), (None, Some("d2")));

    // The IdP refuses the delta cursor: the pass is abandoned, the next is full.
    let p = store.begin_pull_pass(&conn.id, "a", PassKind::Delta, Some("d2".into())).await.unwrap();
    store.abandon_pull_pass(&conn.id, "a").await.unwrap();
    let state = store.directory_sync_state(&conn.id).await.unwrap().unwrap();
    assert_eq!((state.pass, state.resume_cursor), (None, None));
    let err = store.apply_pull_page(&conn.id, "a", p.id, PassKind::Delta, &PulledPage::default()).await.unwrap_err();
    assert!(err.is_sync_lease_lost() && err.is_conflict(), "{err}");
}

async fn a_killed_run_resumes_from_the_last_applied_page(db: TestDb) {
    let page1 = page(vec![pulled("u1", "ada@x"), pulled("u2", "bob@x")], Some("after-u2"));
    let page2 = PulledPage {
        users: vec![pulled("u3", "cy@x"), pulled("u4", "dee@x")],
        groups: vec![pulled_group("g1", "Eng")],
        members: vec![members("g1", &["u1", "u4"], &[])],
        resume: Some("delta".into()),
        ..Default::default()
    };
    let store = db.open().await;
    let conn = connection(&store, "org1", "okta").await;
    assert!(store.acquire_sync_lease(&conn.id, "a", HOUR_MS).await.unwrap());
    let p = store.begin_pull_pass(&conn.id, "a", PassKind::Full, None).await.unwrap();
    store.apply_pull_page(&conn.id, "a", p.id, PassKind::Full, &page1).await.unwrap();
    // Killed here: the process goes without releasing anything.
    store.close().await;
    drop(store);

    let store = db.open().await;
    let state = store.directory_sync_state(&conn.id).await.unwrap().unwrap();
    let resumed = state.pass.clone().expect("a pass in progress");
    assert_eq!((resumed.id, resumed.kind, resumed.cursor.as_deref(), resumed.pages), (p.id, PassKind::Full, Some("after-u2"), 1));
    assert_eq!(state.lease_owner.as_deref(), Some("a"));
    // Another replica takes over once the lease expired, and goes on from the cursor.
    assert!(!store.acquire_sync_lease(&conn.id, "b", HOUR_MS).await.unwrap());
    common::execute(&db, "UPDATE directory_sync SET lease_expires_at = $1 WHERE connection_id = $2", &[now_ms() - 1], &conn.id).await;
    assert!(store.due_directory_syncs(now_ms()).await.unwrap().is_empty(), "not scheduled: manual");
    assert!(store.acquire_sync_lease(&conn.id, "b", HOUR_MS).await.unwrap());
    // The old owner, back from the dead, is fenced off.
    let err = store.apply_pull_page(&conn.id, "a", p.id, PassKind::Full, &page2).await.unwrap_err();
    assert!(err.is_sync_lease_lost(), "{err}");
    let applied = store.apply_pull_page(&conn.id, "b", resumed.id, resumed.kind, &page2).await.unwrap();
    assert!(applied.pass_complete);
    assert_eq!((applied.created, applied.removed), (3, 0), "page 1's users are kept: {applied:?}");

    let all = users(&store, &conn.id).await;
    assert_eq!(all.keys().collect::<Vec<_>>(), ["u1", "u2", "u3", "u4"]);
    assert!(all.values().all(|u| u.version == 1 && u.active));
    assert_eq!(member_external_ids(&store, &conn.id, "g1").await, ["u1", "u4"]);

    // Page 1 again in a new pass (say the hub restarted the pass): nothing duplicated, nothing
    // changed.
    let again = pass(&store, &conn.id, "b", PassKind::Full, None, vec![page1.clone(), page2.clone()]).await;
    assert_eq!(again.iter().map(|a| (a.created, a.changed, a.removed)).collect::<Vec<_>>(), [(0, 0, 0), (0, 0, 0)]);
    assert_eq!(users(&store, &conn.id).await, all);
    let state = store.directory_sync_state(&conn.id).await.unwrap().unwrap();
    assert_eq!((state.pass, state.resume_cursor.as_deref()), (None, Some("delta")));
}

async fn only_the_lease_owner_writes(db: TestDb) {
    let store = db.open().await;
    let conn = connection(&store, "org1", "okta").await;
    assert!(store.acquire_sync_lease("conn_nope", "a", HOUR_MS).await.unwrap_err().is_not_found());
    assert!(store.acquire_sync_lease(&conn.id, "", HOUR_MS).await.unwrap_err().is_invalid_input());
    assert!(store.acquire_sync_lease(&conn.id, "a", 0).await.unwrap_err().is_invalid_input());
    // Nothing before a lease.
    let err = store.begin_pull_pass(&conn.id, "a", PassKind::Full, None).await.unwrap_err();
    assert!(err.is_sync_lease_lost(), "{err}");

    assert!(store.acquire_sync_lease(&conn.id, "a", HOUR_MS).await.unwrap());
    assert!(store.acquire_sync_lease(&conn.id, "a", HOUR_MS).await.unwrap(), "the owner extends it");
    assert!(!store.acquire_sync_lease(&conn.id, "b", HOUR_MS).await.unwrap());
    assert!(!store.renew_sync_lease(&conn.id, "b", HOUR_MS).await.unwrap());
    assert!(store.renew_sync_lease(&conn.id, "a", HOUR_MS).await.unwrap());

    let err = store.begin_pull_pass(&conn.id, "b", PassKind::Full, None).await.unwrap_err();
    assert!(err.is_sync_lease_lost() && err.to_string().contains("held by \"a\""), "{err}");
    let p = store.begin_pull_pass(&conn.id, "a", PassKind::Full, None).await.unwrap();
    let page = page(vec![pulled("u1", "ada@x")], Some("next"));
    let err = store.apply_pull_page(&conn.id, "b", p.id, PassKind::Full, &page).await.unwrap_err();
    assert!(err.is_sync_lease_lost(), "{err}");
    // The owner, but not the pass in progress.
    for (id, kind) in [(p.id - 1, PassKind::Full), (p.id, PassKind::Delta)] {
        let err = store.apply_pull_page(&conn.id, "a", id, kind, &page).await.unwrap_err();
        let in_progress = format!("is not {id} ({kind}): pass {} (full) is in progress", p.id);
        assert!(err.is_sync_lease_lost() && err.to_string().contains(&in_progress), "{err}");
    }
    assert!(store.abandon_pull_pass(&conn.id, "b").await.unwrap_err().is_sync_lease_lost());
    assert!(users(&store, &conn.id).await.is_empty(), "nothing applied");
    assert_eq!(store.directory_sync_state(&conn.id).await.unwrap().unwrap().pass.unwrap().pages, 0);

    // A release by someone else does nothing; the owner's frees the lease, keeping the pass.
    store.release_sync_lease(&conn.id, "b").await.unwrap();
    assert_eq!(store.directory_sync_state(&conn.id).await.unwrap().unwrap().lease_owner.as_deref(), Some("a"));
    store.release_sync_lease(&conn.id, "a").await.unwrap();
    let state = store.directory_sync_state(&conn.id).await.unwrap().unwrap();
    assert_eq!((state.lease_owner, state.lease_expires_at, state.next_run_at), (None, None, None), "disabled: no next run");
    assert_eq!(state.pass.as_ref().map(|p| p.id), Some(p.id));
    let err = store.apply_pull_page(&conn.id, "a", p.id, PassKind::Full, &page).await.unwrap_err();
    assert!(err.is_sync_lease_lost(), "{err}");
    assert!(!store.renew_sync_lease(&conn.id, "a", HOUR_MS).await.unwrap());

    // An expired lease can be taken over; the previous owner can no longer renew it.
    assert!(store.acquire_sync_lease(&conn.id, "a", 50).await.unwrap());
    tokio::time::sleep(Duration::from_millis(80)).await;
    let err = store.apply_pull_page(&conn.id, "a", p.id, PassKind::Full, &page).await.unwrap_err();
    assert!(err.is_sync_lease_lost() && err.to_string().contains("expired"), "{err}");
    assert!(store.acquire_sync_lease(&conn.id, "b", HOUR_MS).await.unwrap());
    assert!(!store.renew_sync_lease(&conn.id, "a", HOUR_MS).await.unwrap());
    let applied = store.apply_pull_page(&conn.id, "b", p.id, PassKind::Full, &page).await.unwrap();
    assert_eq!(applied.created, 1);
}

async fn replicas_race_for_the_lease(db: TestDb) {
    let one = db.open().await;
    let two = db.open().await;
    let mut connections = Vec::new();
    for i in 0..8 {
        connections.push(connection(&one, "org1", &format!("c{i}")).await.id);
    }
    // Half the rows exist before the race (a schedule was set), half are created by it.
    for c in &connections[..4] {
        one.set_directory_sync_schedule(c, true, 60).await.unwrap();
    }
    let mut tasks = Vec::new();
    for (i, c) in connections.iter().enumerate() {
        for (owner, store) in [("one", one.clone()), ("two", two.clone())] {
            let c = c.clone();
            tasks.push(tokio::spawn(async move { (i, owner, store.acquire_sync_lease(&c, owner, HOUR_MS).await.unwrap()) }));
        }
    }
    let mut winners: Vec<Vec<&str>> = vec![Vec::new(); connections.len()];
    for t in tasks {
        let (i, owner, won) = t.await.unwrap();
        if won {
            winners[i].push(owner);
        }
    }
    for (i, w) in winners.iter().enumerate() {
        assert_eq!(w.len(), 1, "connection {i}: exactly one replica holds the lease: {w:?}");
        let state = two.directory_sync_state(&connections[i]).await.unwrap().unwrap();
        assert_eq!(state.lease_owner.as_deref(), Some(w[0]));
    }
}

async fn item_problems_never_fail_a_page(db: TestDb) {
    let store = db.open().await;
    let scim_conn = connection(&store, "org1", "scim").await;
    let conn = connection(&store, "org1", "okta").await;
    let other_org = connection(&store, "org2", "okta").await;
    store
        .create_user(&NewDirectoryUser {
            connection_id: scim_conn.id.clone(),
            user_name: "taken@x".into(),
            external_id: None,
            active: true,
            resource: resource("taken@x", true),
        })
        .await
        .unwrap();
    assert!(store.acquire_sync_lease(&conn.id, "a", HOUR_MS).await.unwrap());
    let mut page = page(
        vec![
            pulled("u1", "TAKEN@x"),
            pulled("u2", "ok@x"),
            pulled("u3", "  "),
            pulled("", "noid@x"),
            pulled("u4", &"x".repeat(2000)),
            pulled("u5", "first@x"),
            pulled("u5", "second@x"),
            pulled("u6", "OK@x"),
        ],
        None,
    );
    page.users[1].resource = json!("not an object");
    page.users[1].resource = resource("ok@x", true);
    page.groups = vec![pulled_group("g1", "Eng"), pulled_group("g2", "")];
    page.members = vec![
        members("g1", &["u2", "u1", "ghost", "nul\0"], &["g1", "gx"]),
        members("nope", &["u2"], &[]),
        members("", &["u2"], &[]),
    ];
    page.removed_users = vec!["bad\0".into()];
    let applied = pass(&store, &conn.id, "a", PassKind::Full, None, vec![page]).await;
    let problems = &applied[0].problems;
    let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(has("user u1: userName TAKEN@x is taken by another user of the organization"), "{problems:#?}");
    assert!(has("user u6: userName OK@x is taken by another user of the organization"), "{problems:#?}");
    assert!(has("user u3: skipped: userName must not be empty"), "{problems:#?}");
    assert!(has("user : skipped: externalId must not be empty"), "{problems:#?}");
    assert!(has("user u4: skipped: userName is 2000 bytes long"), "{problems:#?}");
    assert!(has("user u5: reported more than once"), "{problems:#?}");
    assert!(has("group g2: skipped: displayName must not be empty"), "{problems:#?}");
    assert!(has("group g1: member user ghost is not a user of this directory"), "{problems:#?}");
    assert!(has("group g1: member user u1 is not a user of this directory"), "{problems:#?}");
    assert!(has("group g1: a group cannot be a member of itself"), "{problems:#?}");
    assert!(has("group g1: member group gx is not a group of this directory"), "{problems:#?}");
    assert!(has("group nope: not a group of this directory"), "{problems:#?}");
    // What a lookup could not carry (NUL, PostgreSQL refuses it) is refused before it.
    assert!(has("group g1: member nul\u{FFFD} skipped: externalId must not contain a NUL character"), "{problems:#?}");
    assert!(has("group : membership skipped: externalId must not be empty"), "{problems:#?}");
    assert!(has("removed user bad\u{FFFD}: skipped"), "{problems:#?}");
    assert_eq!(problems.len(), 15, "{problems:#?}");
    assert!(applied[0].pass_complete);
    assert_eq!(applied[0].created, 3, "u2, u5 (its last report) and g1");
    let all = users(&store, &conn.id).await;
    assert_eq!(all.keys().collect::<Vec<_>>(), ["u2", "u5"]);
    assert_eq!(all["u5"].user_name, "second@x");
    assert_eq!(member_external_ids(&store, &conn.id, "g1").await, ["u2"]);

    // Another organization may hold the same userName.
    assert!(store.acquire_sync_lease(&other_org.id, "a", HOUR_MS).await.unwrap());
    let applied = pass(&store, &other_org.id, "a", PassKind::Full, None, vec![self::page(vec![pulled("u1", "taken@x")], None)]).await;
    assert_eq!((applied[0].created, applied[0].problems.len()), (1, 0));

    // A rename onto a taken userName is skipped; the user stays (and is not swept).
    let applied = pass(&store, &conn.id, "a", PassKind::Full, None, vec![self::page(
        vec![pulled("u2", "taken@X"), pulled("u5", "second@x")],
        None,
    )])
    .await;
    assert_eq!(applied[0].problems, ["user u2: userName taken@X is taken by another user of the organization"]);
    assert_eq!((applied[0].changed, applied[0].removed), (0, 1), "g1 is gone, not u2");
    let all = users(&store, &conn.id).await;
    assert_eq!((all["u2"].user_name.as_str(), all["u2"].active, all["u2"].scim_deleted_at), ("ok@x", true, None));

    // Too many problems are counted, not listed; an over-long cursor refuses the page.
    let many = self::page((0..150).map(|i| pulled(&format!("e{i}"), "")).collect(), Some("n"));
    let p = store.begin_pull_pass(&conn.id, "a", PassKind::Full, None).await.unwrap();
    let applied = store.apply_pull_page(&conn.id, "a", p.id, PassKind::Full, &many).await.unwrap();
    assert_eq!(applied.problems.len(), idplex_store::MAX_PAGE_PROBLEMS + 1);
    assert_eq!(applied.problems.last().unwrap(), "… and 50 more problems on this page");
    let long = self::page(vec![], Some(&"c".repeat(idplex_store::MAX_SYNC_CURSOR_BYTES + 1)));
    let err = store.apply_pull_page(&conn.id, "a", p.id, PassKind::Full, &long).await.unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    assert_eq!(store.directory_sync_state(&conn.id).await.unwrap().unwrap().pass.unwrap().pages, 1);
}

async fn schedule_and_due_connections(db: TestDb) {
    let store = db.open().await;
    let conn = connection(&store, "org1", "okta").await;
    let other = connection(&store, "org1", "entra").await;
    for bad in [0, 59, 31 * 24 * 3600] {
        let err = store.set_directory_sync_schedule(&conn.id, true, bad).await.unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
    }
    assert!(store.set_directory_sync_schedule("conn_nope", true, 60).await.unwrap_err().is_not_found());

    let before = now_ms();
    let state = store.set_directory_sync_schedule(&conn.id, true, 600).await.unwrap();
    assert!(state.enabled && state.interval_secs == 600 && state.pass.is_none() && state.last_run.is_none());
    let next = state.next_run_at.unwrap();
    assert!(next >= before + 600_000 && next <= now_ms() + 600_000, "{next}");
    // A shorter interval brings the next run forward; a longer one does not push it back.
    let next = store.set_directory_sync_schedule(&conn.id, true, 60).await.unwrap().next_run_at.unwrap();
    assert!(next <= now_ms() + 60_000);
    assert_eq!(store.set_directory_sync_schedule(&conn.id, true, 3600).await.unwrap().next_run_at, Some(next));

    assert!(store.due_directory_syncs(now_ms()).await.unwrap().is_empty());
    assert_eq!(store.due_directory_syncs(next).await.unwrap(), [conn.id.clone()]);
    // A manual run elsewhere creates a disabled row: never due.
    assert!(store.acquire_sync_lease(&other.id, "a", HOUR_MS).await.unwrap());
    let state = store.directory_sync_state(&other.id).await.unwrap().unwrap();
    assert!(!state.enabled && state.interval_secs == 900 && state.next_run_at.is_none());
    store.release_sync_lease(&other.id, "a").await.unwrap();
    assert_eq!(store.due_directory_syncs(next + 7 * 24 * HOUR_MS).await.unwrap(), [conn.id.clone()]);

    // Leased: not due; released: due again an interval later.
    assert!(store.acquire_sync_lease(&conn.id, "a", HOUR_MS).await.unwrap());
    assert!(store.due_directory_syncs(next).await.unwrap().is_empty());
    assert_eq!(store.due_directory_syncs(now_ms() + 2 * HOUR_MS).await.unwrap(), [conn.id.clone()], "the lease expired");
    let released_at = now_ms();
    store.release_sync_lease(&conn.id, "a").await.unwrap();
    let state = store.directory_sync_state(&conn.id).await.unwrap().unwrap();
    assert!(state.lease_owner.is_none());
    let next = state.next_run_at.unwrap();
    assert!(next >= released_at + 3_600_000 && next <= now_ms() + 3_600_000);
    assert!(store.due_directory_syncs(next - 1).await.unwrap().is_empty());
    assert_eq!(store.due_directory_syncs(next).await.unwrap(), [conn.id.clone()]);

    // Disabled: no next run, never due.
    let state = store.set_directory_sync_schedule(&conn.id, false, 3600).await.unwrap();
    assert!(!state.enabled && state.next_run_at.is_none());
    assert!(store.due_directory_syncs(next + HOUR_MS).await.unwrap().is_empty());
}

async fn runs_and_their_log(db: TestDb) {
    let store = db.open().await;
    let conn = connection(&store, "org1", "okta").await;
    let other = connection(&store, "org1", "entra").await;
    assert!(store.start_sync_run("conn_nope", "manual").await.unwrap_err().is_not_found());
    assert!(store.start_sync_run(&conn.id, "cron").await.unwrap_err().is_invalid_input());

    let first = store.start_sync_run(&conn.id, "schedule").await.unwrap();
    let mut totals = SyncRunTotals { pass_kind: Some(PassKind::Full), ..Default::default() };
    totals.add_page(&PageApplied { users_seen: 500, created: 499, problems: vec!["p".into()], ..Default::default() });
    store.update_sync_run_progress(first, &totals).await.unwrap();
    let runs = store.sync_runs(&conn.id, 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!((run.trigger.as_str(), run.outcome.as_str(), run.pass_kind.as_deref()), ("schedule", "running", Some("full")));
    assert_eq!((run.pages, run.users_seen, run.created, run.errors, run.finished_at), (1, 500, 499, 1, None));

    // Problems: scrubbed, cut, never a secret; only for a run of that connection.
    let secret = format!("idp_scim_{}", "ab12".repeat(16));
    let id = store
        .record_sync_problem(first, &conn.id, "warning", &format!("user u1:\nuserName taken, token {secret}"))
        .await
        .unwrap();
    store.record_sync_problems(first, &conn.id, "error", &["page 3 failed: HTTP 503".into(), "é".repeat(3000)]).await.unwrap();
    assert!(store.record_sync_problem(first, &other.id, "error", "x").await.unwrap_err().is_not_found());
    assert!(store.record_sync_problem(first, &conn.id, "info", "x").await.unwrap_err().is_invalid_input());
    let log = store.sync_log(&conn.id, 10).await.unwrap();
    assert_eq!(log.len(), 3);
    assert!(log.windows(2).all(|w| (w[0].at, w[0].id) > (w[1].at, w[1].id)), "newest first");
    let line = log.iter().find(|l| l.id == id).unwrap();
    assert_eq!((line.run_id, line.level.as_str()), (first, "warning"));
    assert_eq!(line.message, "user u1: userName taken, token idp_scim_<redacted>");
    assert!(log[0].message.len() <= idplex_store::MAX_SYNC_MESSAGE_BYTES && log[0].message.ends_with('…'));
    assert_eq!(store.sync_run_log(first, 10).await.unwrap().iter().map(|l| l.id).collect::<Vec<_>>()[0], id);

    // A run left running by a dead process is closed when the next one starts.
    let second = store.start_sync_run(&conn.id, "manual").await.unwrap();
    let runs = store.sync_runs(&conn.id, 10).await.unwrap();
    assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), [second, first]);
    assert_eq!(runs[1].outcome, "error");
    assert!(runs[1].message.as_deref().unwrap().starts_with("interrupted"));
    assert!(store.finish_sync_run(first, "ok", &totals).await.unwrap_err().is_conflict());

    totals.message = Some("done\u{0}".into());
    store.finish_sync_run(second, "ok", &totals).await.unwrap();
    assert!(store.finish_sync_run(second, "ok", &totals).await.unwrap_err().is_conflict());
    assert!(store.finish_sync_run(9_999_999, "ok", &totals).await.unwrap_err().is_not_found());
    assert!(store.finish_sync_run(second, "running", &totals).await.unwrap_err().is_invalid_input());
    assert!(store.update_sync_run_progress(9_999_999, &totals).await.unwrap_err().is_not_found());
    let last = store.sync_runs(&conn.id, 1).await.unwrap().remove(0);
    assert_eq!((last.id, last.outcome.as_str(), last.message.as_deref()), (second, "ok", Some("done\u{FFFD}")));
    assert!(last.finished_at.is_some());
    store.update_sync_run_progress(second, &SyncRunTotals::default()).await.unwrap();
    assert_eq!(store.sync_runs(&conn.id, 1).await.unwrap()[0], last, "a finished run stays as it is");
    assert!(store.acquire_sync_lease(&conn.id, "a", HOUR_MS).await.unwrap());
    assert_eq!(store.directory_sync_state(&conn.id).await.unwrap().unwrap().last_run, Some(last.clone()));

    // Pruning: the lines and the older run go; the connection's last run stays.
    assert_eq!(store.prune_directory_sync_log(0).await.unwrap(), 0);
    assert_eq!(store.prune_directory_sync_log(now_ms() + 1).await.unwrap(), 4);
    assert!(store.sync_log(&conn.id, 10).await.unwrap().is_empty());
    assert_eq!(store.sync_runs(&conn.id, 10).await.unwrap(), [last]);
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// The hub awaits pages in spawned tasks.
#[allow(dead_code)]
fn pages_are_applied_by_send_futures(store: &Store, page: &PulledPage) {
    fn send<T: Send>(_: &T) {}
    send(&store.apply_pull_page("c", "o", 1, PassKind::Full, page));
}

/// Throughput of a first full pass, then of an unchanged one, in pages of 500 users (the hub's
/// benchmark measures it properly):
/// `cargo test --test directory_sync -- --ignored --nocapture`.
async fn pull_throughput(db: TestDb) {
    let store = db.open().await;
    let conn = connection(&store, "org1", "okta").await;
    assert!(store.acquire_sync_lease(&conn.id, "a", HOUR_MS).await.unwrap());
    for round in 0..2 {
        let p = store.begin_pull_pass(&conn.id, "a", PassKind::Full, None).await.unwrap();
        let pages = 40;
        let mut applying = Duration::ZERO;
        for i in 0..pages {
            let users = (0..500)
                .map(|j| {
                    let n = i * 500 + j;
                    let mut u = pulled(&format!("ext-{n}"), &format!("user{n}@example.com"));
                    u.resource["name"] = json!({ "givenName": "Given", "familyName": format!("Family {n}") });
                    u.resource["emails"] = json!([{ "value": format!("user{n}@example.com"), "primary": true }]);
                    u
                })
                .collect();
            let next = (i + 1 < pages).then(|| format!("c{i}"));
            let page = PulledPage { users, next, ..Default::default() };
            let started = std::time::Instant::now();
            store.apply_pull_page(&conn.id, "a", p.id, PassKind::Full, &page).await.unwrap();
            applying += started.elapsed();
        }
        let secs = applying.as_secs_f64();
        eprintln!("pass {round}: {} users in {secs:.2} s: {:.0} users/s", pages * 500, (pages * 500) as f64 / secs);
    }
}

mod pull_throughput {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore]
    async fn sqlite() {
        crate::common::run_sqlite(super::pull_throughput).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore]
    async fn postgres() {
        crate::common::run_postgres(super::pull_throughput).await
    }
}
