//! An acknowledged SCIM write survives `kill -9` of the server: concurrent creates (batched by the
//! SQLite group committer), the process killed in the middle of them, a restart on the same data
//! directory, and every user that was answered `201 Created` is there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use idplex_tests::{Server, TestEnv, eventually};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_idplex");

/// Concurrent clients; more than one batch's worth queues at the committer.
const CLIENTS: usize = 16;
/// Acknowledged creates to wait for before the kill.
const ACKED_BEFORE_KILL: usize = 200;

/// The demo connection's SCIM path (`/scim/v2/{connection}`) and bearer token, as printed.
fn demo_scim(server: &Server) -> (String, String) {
    let line = |prefix: &str| {
        server
            .stdout_lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in {:?}", server.stdout_lines))
            .trim()
            .to_string()
    };
    let url = line("SCIM base URL: ");
    let path = url.strip_prefix(&server.base).expect("SCIM URL on the server's address").to_string();
    (path, line("SCIM bearer token (shown once): "))
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_creates_survive_kill_9() {
    let env = TestEnv::new(BIN).await;
    let server = env.serve(&["--demo"]).await;
    let (scim, token) = demo_scim(&server);
    let users = format!("{}{scim}/Users", server.base);
    let http = reqwest::Client::builder().timeout(idplex_tests::HTTP_TIMEOUT).build().expect("http client");
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));

    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (http, users, token, acked, stop) =
                (http.clone(), users.clone(), token.clone(), acked.clone(), stop.clone());
            tokio::spawn(async move {
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let user_name = format!("c{c}-n{n}@durability.test");
                    let body = json!({
                        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                        "userName": user_name,
                        "active": true,
                    });
                    let sent = http
                        .post(&users)
                        .bearer_auth(&token)
                        .header("content-type", "application/scim+json")
                        .body(body.to_string())
                        .send()
                        .await;
                    // After the kill, requests fail: that client is done.
                    let Ok(resp) = sent else { return };
                    if resp.status().as_u16() != 201 {
                        return;
                    }
                    let Ok(created) = resp.json::<serde_json::Value>().await else { return };
                    let id = created["id"].as_str().expect("created user has an id").to_string();
                    acked.lock().unwrap().push((id, user_name));
                }
            })
        })
        .collect();

    eventually(Duration::from_secs(60), "creates to be acknowledged", || {
        let n = acked.lock().unwrap().len();
        async move { (n >= ACKED_BEFORE_KILL).then_some(()) }
    })
    .await;
    // Kill while the clients keep writing: some creates are in flight, some batched, unanswered.
    server.kill(Duration::from_secs(10)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client task");
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(acked.len() >= ACKED_BEFORE_KILL);

    let server = env.serve(&[]).await;
    for (id, user_name) in &acked {
        let r = Server::send(server.request(reqwest::Method::GET, &format!("{scim}/Users/{id}"), Some(&token))).await;
        r.expect(200);
        assert_eq!(r.body["userName"], user_name.as_str(), "{}", r.body);
    }
    let r = Server::send(server.request(reqwest::Method::GET, &format!("{scim}/Users?count=0"), Some(&token))).await;
    r.expect(200);
    let total = r.body["totalResults"].as_u64().expect("totalResults") as usize;
    // Creates answered with anything but 201 (or not at all) may or may not have been committed.
    assert!(total >= acked.len(), "{total} users stored, {} acknowledged", acked.len());
    eprintln!("{} creates acknowledged before kill -9, {total} users stored after the restart", acked.len());
}
