//! Replicas on one PostgreSQL database hear each other: a swap made through one server reaches
//! another at once through `LISTEN/NOTIFY`, not by polling, while the other serves requests
//! without a single failure. (On SQLite there is one node; its other processes — the CLI — are
//! followed by polling, covered by `server.rs`.)

use std::sync::{Arc, Mutex};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use idplex_bundled::testing::{ECHO_V1, ECHO_V2};
use idplex_tests::{Server, TestEnv, eventually};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_idplex");

/// Which echo version serves `connection_id` on `server` (echo refuses PUT naming its version);
/// `None` if the request failed.
async fn serving(server: &Server, connection_id: &str) -> Option<String> {
    let envelope = json!({"method": "PUT", "resource": "Users", "id": "u1", "body": {"userName": "ada@example.com"}});
    let r = server.dry_run_scim(connection_id, &envelope).await;
    if r.status != 422 {
        return None;
    }
    let msg = r.message().to_string();
    msg.split("echo ").nth(1).and_then(|rest| rest.split(':').next()).map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_swap_through_one_replica_reaches_another_at_once_through_notify() {
    let env = TestEnv::new(BIN).await;
    if !env.is_postgres() {
        eprintln!("replicas share a PostgreSQL database: this test runs in the PostgreSQL pass (IDPLEX_TEST_DATABASE_URL)");
        return;
    }
    let a = env.serve(&["--demo"]).await;
    for bytes in [ECHO_V1, ECHO_V2] {
        a.post_wasm("/admin/v1/connectors", bytes).await.expect(201);
    }
    let id = a.create_connection(&json!({"name": "echo", "connector": "echo", "version": "1.0.0"})).await;

    // Replica B polls only every 10 minutes: whatever it learns within the test, it heard.
    let mut b = env.serve(&["--watch-ms", "600000"]).await;
    b.admin_token = Some(env.admin_token().await);
    assert_eq!(serving(&b, &id).await.as_deref(), Some("1.0.0"), "B bound the connection at start");

    // Load on B while the swap happens: every request must succeed.
    let b = Arc::new(b);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    // When a request to B was first answered by the new version.
    let first_new: Arc<Mutex<Option<Instant>>> = Arc::default();
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (b, id, stop, ok, failed) = (b.clone(), id.clone(), stop.clone(), ok.clone(), failed.clone());
            let first_new = first_new.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match serving(&b, &id).await.as_deref() {
                        Some("1.0.0") => ok.fetch_add(1, Ordering::Relaxed),
                        Some("2.0.0") => {
                            first_new.lock().unwrap().get_or_insert_with(Instant::now);
                            ok.fetch_add(1, Ordering::Relaxed)
                        }
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let activated = Instant::now();
    let r = a.post_json(&format!("/admin/v1/connections/{id}/activate"), &json!({"version": "2.0.0"})).await;
    r.expect(200);
    eventually(Duration::from_secs(5), "replica B to serve echo 2.0.0", || async {
        (serving(&b, &id).await.as_deref() == Some("2.0.0")).then_some(())
    })
    .await;
    let heard = first_new.lock().unwrap().expect("a load request saw 2.0.0").saturating_duration_since(activated);

    // Keep the load on a little past the swap.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("replica B served the new version {heard:?} after the activation through A ({ok} requests during the swap, {failed} failed)");
    assert!(ok > 0, "B served requests during the swap");
    assert_eq!(failed, 0, "no request failed during the swap");
    assert!(
        b.log().contains("applied a binding change notified by the store"),
        "B rebound because it was notified:\n{}",
        b.log()
    );
}
