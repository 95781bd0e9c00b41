//! The SCIM directory (users, groups, memberships), each test run on SQLite (temp file) and
//! PostgreSQL (fresh schema).

#[macro_use]
mod common;

use common::{TestDb, connection};
use idplex_store::{
    NewDirectoryGroup, NewDirectoryUser, Store, StoreError, UserLookup,
};
use serde_json::{Value, json};

on_both_backends!(
    user_round_trip_and_lookups,
    user_name_is_unique_per_org_ignoring_case,
    connections_are_isolated,
    versions_and_preconditions,
    deactivation_is_reversible_and_keeps_memberships,
    list_pagination_is_stable,
    group_membership,
    a_user_is_read_with_its_groups_in_one_lookup,
);

fn resource(user_name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "name": { "givenName": "Ada", "familyName": "Lovelace" },
        "emails": [{ "value": user_name, "primary": true }],
        "active": true,
    })
}

fn new_user(connection_id: &str, user_name: &str) -> NewDirectoryUser {
    NewDirectoryUser {
        connection_id: connection_id.into(),
        user_name: user_name.into(),
        external_id: Some(format!("ext-{user_name}")),
        active: true,
        resource: resource(user_name),
    }
}

fn new_group(connection_id: &str, name: &str, members: &[&str]) -> NewDirectoryGroup {
    NewDirectoryGroup {
        connection_id: connection_id.into(),
        display_name: name.into(),
        external_id: None,
        resource: json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": name,
        }),
        members: members.iter().map(|m| m.to_string()).collect(),
    }
}

fn ids(ids: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

async fn user_round_trip_and_lookups(db: TestDb) {
    let store = db.open().await;
    let conn = connection(&store, "org1", "okta").await;
    let created = store
        .create_user(&new_user(&conn.id, "Ada@Example.com"))
        .await
        .unwrap();
    assert_eq!(created.id.len(), 32);
    assert_eq!(created.org_id, "org1");
    assert_eq!(created.version, 1);
    assert!(created.active);
    assert_eq!(created.deactivated_at, None);

    let got = store.get_user(&conn.id, &created.id).await.unwrap();
    assert_eq!(got, created);
    assert_eq!(got.resource["name"]["familyName"], "Lovelace");

    for probe in ["ada@example.com", "ADA@EXAMPLE.COM", "Ada@Example.com"] {
        let found = store
            .find_users_by_user_name(&conn.id, probe)
            .await
            .unwrap();
        assert_eq!(found, vec![created.clone()], "{probe}");
    }
    assert!(
        store
            .find_users_by_user_name(&conn.id, "nobody@example.com")
            .await
            .unwrap()
            .is_empty()
    );
    let by_ext = store
        .find_users_by_external_id(&conn.id, "ext-Ada@Example.com")
        .await
        .unwrap();
    assert_eq!(by_ext, vec![created.clone()]);
    // externalId is case-exact.
    assert!(
        store
            .find_users_by_external_id(&conn.id, "EXT-ADA@EXAMPLE.COM")
            .await
            .unwrap()
            .is_empty()
    );

    // Created inactive: deactivated_at set at once.
    let inactive = store
        .create_user(&NewDirectoryUser {
            active: false,
            ..new_user(&conn.id, "grace@example.com")
        })
        .await
        .unwrap();
    assert_eq!(inactive.deactivated_at, Some(inactive.created_at));

    // Unknown connection, empty userName, non-object resource.
    let err = store
        .create_user(&new_user("conn_nope", "x@example.com"))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(matches!(
        store.create_user(&new_user(&conn.id, "  ")).await,
        Err(StoreError::InvalidInput { .. })
    ));
    assert!(matches!(
        store
            .create_user(&NewDirectoryUser {
                resource: json!([1, 2]),
                ..new_user(&conn.id, "y@example.com")
            })
            .await,
        Err(StoreError::InvalidInput { .. })
    ));
    assert!(
        store
            .get_user(&conn.id, "nope")
            .await
            .unwrap_err()
            .is_not_found()
    );

    // Survives a reopen.
    store.close().await;
    let store = db.open().await;
    assert_eq!(
        store.get_user(&conn.id, &created.id).await.unwrap(),
        created
    );
    store.delete_user(&conn.id, &created.id).await.unwrap();
    assert!(
        store
            .get_user(&conn.id, &created.id)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        store
            .delete_user(&conn.id, &created.id)
            .await
            .unwrap_err()
            .is_not_found()
    );
    store.close().await;
}

async fn user_name_is_unique_per_org_ignoring_case(db: TestDb) {
    let store = db.open().await;
    let a = connection(&store, "org1", "okta").await;
    let b = connection(&store, "org1", "entra").await;
    let other_org = connection(&store, "org2", "okta").await;
    let ada = store
        .create_user(&new_user(&a.id, "ada@example.com"))
        .await
        .unwrap();

    for (conn, name) in [(&a, "ADA@example.com"), (&b, "Ada@Example.Com")] {
        match store.create_user(&new_user(&conn.id, name)).await {
            Err(StoreError::Conflict { what, key, reason }) => {
                assert_eq!(what, "user");
                assert_eq!(key, name);
                assert_eq!(reason, "userName is already taken in this organization");
            }
            other => panic!("expected a conflict for {name}, got {other:?}"),
        }
    }
    // Another organization may use it.
    store
        .create_user(&new_user(&other_org.id, "ADA@example.com"))
        .await
        .unwrap();

    // Renaming onto a taken name conflicts; renaming a user to itself in another case does not.
    let bob = store
        .create_user(&new_user(&b.id, "bob@example.com"))
        .await
        .unwrap();
    let err = store
        .replace_user(
            &b.id,
            &bob.id,
            None,
            "ADA@EXAMPLE.COM",
            None,
            true,
            &resource("x"),
        )
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    let renamed = store
        .replace_user(
            &a.id,
            &ada.id,
            None,
            "Ada@Example.com",
            None,
            true,
            &resource("x"),
        )
        .await
        .unwrap();
    assert_eq!(renamed.user_name, "Ada@Example.com");
    assert_eq!(store.get_user(&b.id, &bob.id).await.unwrap().version, 1);
    store.close().await;
}

async fn connections_are_isolated(db: TestDb) {
    let store = db.open().await;
    let a = connection(&store, "org1", "okta").await;
    let b = connection(&store, "org1", "entra").await;
    let ada = store
        .create_user(&new_user(&a.id, "ada@example.com"))
        .await
        .unwrap();
    let group = store
        .create_group(&new_group(&a.id, "Engineering", &[&ada.id]))
        .await
        .unwrap();

    assert!(
        store
            .get_user(&b.id, &ada.id)
            .await
            .unwrap_err()
            .is_not_found()
    );
    let err = store
        .replace_user(
            &b.id,
            &ada.id,
            None,
            "evil@example.com",
            None,
            false,
            &resource("e"),
        )
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = store
        .replace_user(
            &b.id,
            &ada.id,
            Some(1),
            "evil@example.com",
            None,
            false,
            &resource("e"),
        )
        .await
        .unwrap_err();
    assert!(
        err.is_not_found(),
        "a stale-version probe must not reveal the user: {err}"
    );
    assert!(
        store
            .set_user_active(&b.id, &ada.id, false)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        store
            .delete_user(&b.id, &ada.id)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        store
            .groups_of_user(&b.id, &ada.id)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        store
            .find_users_by_user_name(&b.id, "ada@example.com")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .find_users_by_external_id(&b.id, "ext-ada@example.com")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.list_users(&b.id, 0, 100).await.unwrap(), (vec![], 0));

    assert!(
        store
            .get_group(&b.id, &group.id)
            .await
            .unwrap_err()
            .is_not_found()
    );
    let err = store
        .replace_group(
            &b.id,
            &group.id,
            None,
            "Evil",
            None,
            &json!({}),
            Some(vec![]),
        )
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(
        store
            .add_group_members(&b.id, &group.id, std::slice::from_ref(&ada.id))
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        store
            .remove_group_members(&b.id, &group.id, std::slice::from_ref(&ada.id))
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        store
            .delete_group(&b.id, &group.id, None)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert_eq!(
        store.list_groups(&b.id, 0, 100, true).await.unwrap(),
        (vec![], 0)
    );

    // Untouched.
    let unchanged = store.get_user(&a.id, &ada.id).await.unwrap();
    assert_eq!(unchanged, ada);
    let g = store.get_group(&a.id, &group.id).await.unwrap();
    assert_eq!((g.version, g.members), (1, vec![ada.id.clone()]));
    store.close().await;
}

async fn versions_and_preconditions(db: TestDb) {
    let store = db.open().await;
    let conn = connection(&store, "org1", "okta").await;
    let ada = store
        .create_user(&new_user(&conn.id, "ada@example.com"))
        .await
        .unwrap();

    let v2 = store
        .replace_user(
            &conn.id,
            &ada.id,
            Some(1),
            "ada@example.com",
            Some("e2"),
            true,
            &resource("v2"),
        )
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.external_id.as_deref(), Some("e2"));
    assert_eq!(v2.resource, resource("v2"));
    assert!(v2.updated_at >= ada.updated_at);
    assert_eq!(v2.created_at, ada.created_at);

    match store
        .replace_user(
            &conn.id,
            &ada.id,
            Some(1),
            "stale@example.com",
            None,
            true,
            &resource("s"),
        )
        .await
    {
        Err(StoreError::PreconditionFailed {
            what,
            key,
            expected,
            actual,
        }) => {
            assert_eq!(
                (what, key.as_str(), expected, actual),
                ("user", ada.id.as_str(), 1, 2)
            );
        }
        other => panic!("expected PreconditionFailed, got {other:?}"),
    }
    assert_eq!(store.get_user(&conn.id, &ada.id).await.unwrap(), v2);
    // Unconditional writes always apply; every write bumps.
    let v3 = store
        .replace_user(
            &conn.id,
            &ada.id,
            None,
            "ada@example.com",
            None,
            true,
            &resource("v3"),
        )
        .await
        .unwrap();
    assert_eq!(v3.version, 3);
    assert_eq!(
        store
            .set_user_active(&conn.id, &ada.id, false)
            .await
            .unwrap()
            .version,
        4
    );
    assert!(
        store
            .replace_user(
                &conn.id,
                "nope",
                Some(1),
                "x@example.com",
                None,
                true,
                &resource("x")
            )
            .await
            .unwrap_err()
            .is_not_found()
    );

    // Groups.
    let g = store
        .create_group(&new_group(&conn.id, "Eng", &[]))
        .await
        .unwrap();
    assert_eq!(g.version, 1);
    let g2 = store
        .replace_group(
            &conn.id,
            &g.id,
            Some(1),
            "Engineering",
            Some("eng"),
            &json!({"a": 1}),
            None,
        )
        .await
        .unwrap();
    assert_eq!((g2.version, g2.display_name.as_str()), (2, "Engineering"));
    let err = store
        .replace_group(&conn.id, &g.id, Some(1), "Stale", None, &json!({}), None)
        .await
        .unwrap_err();
    assert!(err.is_precondition_failed(), "{err}");
    let g3 = store
        .add_group_members(&conn.id, &g.id, std::slice::from_ref(&ada.id))
        .await
        .unwrap();
    assert_eq!(g3.version, 3);
    assert_eq!(store.get_group(&conn.id, &g.id).await.unwrap(), g3);
    store.close().await;
}

async fn deactivation_is_reversible_and_keeps_memberships(db: TestDb) {
    let store = db.open().await;
    let conn = connection(&store, "org1", "okta").await;
    let ada = store
        .create_user(&new_user(&conn.id, "ada@example.com"))
        .await
        .unwrap();
    let group = store
        .create_group(&new_group(&conn.id, "Eng", &[&ada.id]))
        .await
        .unwrap();

    let off = store
        .set_user_active(&conn.id, &ada.id, false)
        .await
        .unwrap();
    assert!(!off.active);
    assert_eq!(off.resource["active"], false);
    let since = off.deactivated_at.expect("deactivated_at set");
    // Deactivating again keeps the first deactivation time.
    let again = store
        .set_user_active(&conn.id, &ada.id, false)
        .await
        .unwrap();
    assert_eq!(again.deactivated_at, Some(since));
    assert_eq!(store.get_user(&conn.id, &ada.id).await.unwrap(), again);
    assert_eq!(
        store.get_group(&conn.id, &group.id).await.unwrap().members,
        vec![ada.id.clone()]
    );
    assert_eq!(
        store.groups_of_user(&conn.id, &ada.id).await.unwrap()[0].id,
        group.id
    );

    let on = store
        .set_user_active(&conn.id, &ada.id, true)
        .await
        .unwrap();
    assert!(on.active);
    assert_eq!(on.deactivated_at, None);
    assert_eq!(on.resource["active"], true);
    assert_eq!(
        store.get_group(&conn.id, &group.id).await.unwrap().members,
        vec![ada.id.clone()]
    );

    // replace_user maintains deactivated_at too.
    let off = store
        .replace_user(
            &conn.id,
            &ada.id,
            None,
            "ada@example.com",
            None,
            false,
            &resource("r"),
        )
        .await
        .unwrap();
    assert!(off.deactivated_at.is_some());
    store.close().await;
}

async fn list_pagination_is_stable(db: TestDb) {
    let store = db.open().await;
    let conn = connection(&store, "org1", "okta").await;
    let other = connection(&store, "org1", "entra").await;
    store
        .create_user(&new_user(&other.id, "elsewhere@example.com"))
        .await
        .unwrap();
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(
            store
                .create_user(&new_user(&conn.id, &format!("u{i}@example.com")))
                .await
                .unwrap(),
        );
    }
    let mut expected = created.clone();
    expected.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));

    let mut seen = Vec::new();
    for offset in (0..9).step_by(3) {
        let (page, total) = store.list_users(&conn.id, offset, 3).await.unwrap();
        assert_eq!(total, 7);
        assert!(page.len() <= 3);
        seen.extend(page);
    }
    assert_eq!(seen, expected);
    let (page, total) = store.list_users(&conn.id, 100, 3).await.unwrap();
    assert_eq!((page.len(), total), (0, 7));
    let (page, _) = store.list_users(&conn.id, 0, 0).await.unwrap();
    assert!(page.is_empty());

    // Groups: pages with and without members.
    let mut groups = Vec::new();
    for i in 0..4 {
        let members: Vec<&str> = created[..i].iter().map(|u| u.id.as_str()).collect();
        groups.push(
            store
                .create_group(&new_group(&conn.id, &format!("g{i}"), &members))
                .await
                .unwrap(),
        );
    }
    groups.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let (first, total) = store.list_groups(&conn.id, 0, 2, true).await.unwrap();
    let (second, _) = store.list_groups(&conn.id, 2, 2, true).await.unwrap();
    assert_eq!(total, 4);
    assert_eq!([first, second].concat(), groups);
    let (bare, _) = store.list_groups(&conn.id, 0, 10, false).await.unwrap();
    assert_eq!(bare.len(), 4);
    assert!(bare.iter().all(|g| g.members.is_empty()));
    store.close().await;
}

async fn group_membership(db: TestDb) {
    let store = db.open().await;
    let conn = connection(&store, "org1", "okta").await;
    let sibling = connection(&store, "org1", "entra").await;
    let stranger_conn = connection(&store, "org2", "okta").await;
    let a = store
        .create_user(&new_user(&conn.id, "a@example.com"))
        .await
        .unwrap();
    let b = store
        .create_user(&new_user(&conn.id, "b@example.com"))
        .await
        .unwrap();
    let c = store
        .create_user(&new_user(&conn.id, "c@example.com"))
        .await
        .unwrap();
    let s = store
        .create_user(&new_user(&sibling.id, "s@example.com"))
        .await
        .unwrap();
    let x = store
        .create_user(&new_user(&stranger_conn.id, "x@example.com"))
        .await
        .unwrap();

    // Duplicates in the input are harmless.
    let g = store
        .create_group(&new_group(&conn.id, "Eng", &[&a.id, &a.id]))
        .await
        .unwrap();
    assert_eq!(g.members, ids(&[&a.id]));
    assert_eq!(store.get_group(&conn.id, &g.id).await.unwrap(), g);

    // Add, idempotently.
    let added = store
        .add_group_members(&conn.id, &g.id, &[a.id.clone(), b.id.clone()])
        .await
        .unwrap();
    assert_eq!(added.members, ids(&[&a.id, &b.id]));
    let again = store
        .add_group_members(&conn.id, &g.id, std::slice::from_ref(&b.id))
        .await
        .unwrap();
    assert_eq!(again.members, added.members);

    // Unknown member, a user of another directory of the same organization, or of another
    // organization: NotFound naming it, nothing changed (a directory's groups hold its own users).
    for bad in ["no-such-user", s.id.as_str(), x.id.as_str()] {
        match store
            .add_group_members(&conn.id, &g.id, &[c.id.clone(), bad.to_owned()])
            .await
        {
            Err(StoreError::NotFound { what, key }) => {
                assert_eq!((what, key.as_str()), ("user", bad))
            }
            other => panic!("expected NotFound for {bad}, got {other:?}"),
        }
    }
    let err = store
        .create_group(&new_group(&conn.id, "Bad", &[&a.id, "ghost"]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::NotFound { key, .. } if key == "ghost"),
        "{err}"
    );
    assert_eq!(
        store.list_groups(&conn.id, 0, 10, false).await.unwrap().1,
        1
    );
    let err = store
        .replace_group(
            &conn.id,
            &g.id,
            None,
            "Eng",
            None,
            &json!({}),
            Some(vec![c.id.clone(), "ghost".into()]),
        )
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let unchanged = store.get_group(&conn.id, &g.id).await.unwrap();
    assert_eq!(unchanged.members, added.members);
    assert_eq!(unchanged.version, again.version);

    // Remove (ignoring non-members), replace atomically, leave alone when None.
    let removed = store
        .remove_group_members(&conn.id, &g.id, &[s.id.clone(), c.id.clone()])
        .await
        .unwrap();
    assert_eq!(removed.members, ids(&[&a.id, &b.id]));
    let replaced = store
        .replace_group(
            &conn.id,
            &g.id,
            None,
            "Eng",
            None,
            &json!({}),
            Some(vec![c.id.clone(), b.id.clone()]),
        )
        .await
        .unwrap();
    assert_eq!(replaced.members, ids(&[&b.id, &c.id]));
    let kept = store
        .replace_group(&conn.id, &g.id, None, "Engineering", None, &json!({}), None)
        .await
        .unwrap();
    assert_eq!(kept.members, replaced.members);

    // groups_of_user, and deleting a user or a group cascades to memberships only.
    let ops = store
        .create_group(&new_group(&conn.id, "Ops", &[&c.id]))
        .await
        .unwrap();
    let of_c = store.groups_of_user(&conn.id, &c.id).await.unwrap();
    let names: Vec<&str> = of_c.iter().map(|r| r.display_name.as_str()).collect();
    assert_eq!(names, ["Engineering", "Ops"]);
    assert!(
        store
            .groups_of_user(&conn.id, &a.id)
            .await
            .unwrap()
            .is_empty()
    );

    store.delete_user(&conn.id, &c.id).await.unwrap();
    assert_eq!(
        store.get_group(&conn.id, &g.id).await.unwrap().members,
        ids(&[&b.id])
    );
    assert!(
        store
            .get_group(&conn.id, &ops.id)
            .await
            .unwrap()
            .members
            .is_empty()
    );
    store.delete_group(&conn.id, &g.id, None).await.unwrap();
    assert!(
        store
            .get_group(&conn.id, &g.id)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        store
            .groups_of_user(&conn.id, &b.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.get_user(&conn.id, &b.id).await.unwrap().id, b.id);
    assert!(
        store
            .add_group_members(&conn.id, &g.id, std::slice::from_ref(&b.id))
            .await
            .unwrap_err()
            .is_not_found()
    );
    store.close().await;
}

/// `users_with_groups` (the SCIM read of a user: one read transaction on SQLite) answers what
/// `get_user` / `find_users_by_user_name` plus `groups_of_user` answer, by id and by `userName`
/// ignoring case; never a user of another connection, nor a soft-deleted one; no groups of
/// another connection.
async fn a_user_is_read_with_its_groups_in_one_lookup(db: TestDb) {
    let store = db.open().await;
    let conn = connection(&store, "org-uwg", "one").await;
    let other = connection(&store, "org-uwg", "two").await;
    let ada = store.create_user(&new_user(&conn.id, "Ada@Example.com")).await.unwrap();
    let bob = store.create_user(&new_user(&conn.id, "bob@example.com")).await.unwrap();
    let carol = store.create_user(&new_user(&other.id, "carol@example.com")).await.unwrap();
    store.create_group(&new_group(&conn.id, "Ops", &[&ada.id])).await.unwrap();
    store.create_group(&new_group(&conn.id, "Engineering", &[&ada.id, &bob.id])).await.unwrap();
    store.create_group(&new_group(&other.id, "Elsewhere", &[&carol.id])).await.unwrap();

    for lookup in [UserLookup::Id(&ada.id), UserLookup::UserName("ada@EXAMPLE.com")] {
        let found = store.users_with_groups(&conn.id, lookup).await.unwrap();
        assert_eq!(found.len(), 1, "{lookup:?}");
        let (user, groups) = &found[0];
        assert_eq!(user, &store.get_user(&conn.id, &ada.id).await.unwrap());
        assert_eq!(groups, &store.groups_of_user(&conn.id, &ada.id).await.unwrap());
        let names: Vec<&str> = groups.iter().map(|g| g.display_name.as_str()).collect();
        assert_eq!(names, ["Engineering", "Ops"], "by display name");
    }
    let (_, groups) = &store.users_with_groups(&conn.id, UserLookup::Id(&bob.id)).await.unwrap()[0];
    assert_eq!(groups.len(), 1);
    // Another connection's user, an unknown one, and the same name in the other connection.
    for lookup in [UserLookup::Id(&carol.id), UserLookup::Id("nobody"), UserLookup::UserName("carol@example.com")] {
        assert!(store.users_with_groups(&conn.id, lookup).await.unwrap().is_empty(), "{lookup:?}");
    }
    // A soft-deleted user (SCIM DELETE under the default `deactivate` policy) is gone for SCIM.
    store.scim_delete_user(&conn.id, &bob.id, None).await.unwrap();
    for lookup in [UserLookup::Id(&bob.id), UserLookup::UserName("bob@example.com")] {
        assert!(store.users_with_groups(&conn.id, lookup).await.unwrap().is_empty(), "{lookup:?}");
    }
    store.close().await;
}

/// SQLite only: with checkpoints off the commit path, the checkpointer thread still moves
/// committed writes from the WAL into the database file while the store is open (without it
/// the file would stay at its initial size and the WAL would grow without bound), and
/// concurrent writes through the group committer all land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpointer_moves_the_wal_into_the_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idplex.db");
    let store = std::sync::Arc::new(Store::open(&format!("sqlite://{}", path.display())).await.unwrap());
    let conn = connection(&store, "org_ckpt", "ckpt").await;
    let before = std::fs::metadata(&path).unwrap().len();

    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = store.clone();
        let conn_id = conn.id.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..250 {
                store.create_user(&new_user(&conn_id, &format!("u{t}-{i}@example.com"))).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (_, total) = store.list_users(&conn.id, 0, 1).await.unwrap();
    assert_eq!(total, 2000, "every acknowledged write is readable");

    // Within a few checkpoint intervals the database file holds the rows.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = std::fs::metadata(&path).unwrap().len();
        if now >= before + 1_000_000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "database file still {now} bytes (was {before}): the WAL is not being checkpointed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    store.close().await;
}
