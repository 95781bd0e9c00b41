//! The HTTP API on the wire, in process: every scenario in `tests/wire/*.http` runs against the
//! server's `Router` (no socket, no process), on a fresh SQLite file with the bundled connectors
//! installed, and its transcript — each request and the whole response — is an insta snapshot
//! (`tests/tests/snapshots/`). See `tests/wire/README.md` for the case format.
//!
//! What needs a process (durability, the CLI, swap propagation, replicas) stays in the spawned
//! binary tests under `host/idplex/tests/`.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response};
use serde_json::Value;
use tower::ServiceExt;

/// What matters of a response's headers, in this order.
const SHOWN_HEADERS: &[&str] = &["content-type", "etag", "location", "retry-after", "allow", "www-authenticate"];

struct Case {
    title: String,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

fn parse(text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    for block in text.split("### ").skip(1) {
        let (title, rest) = block.split_once('\n').unwrap_or((block, ""));
        let (head, body) = match rest.split_once("\n\n") {
            Some((h, b)) => (h, b.trim().to_string()),
            None => (rest.trim_end(), String::new()),
        };
        let mut lines = head.lines().filter(|l| !l.trim().is_empty());
        let request_line = lines.next().unwrap_or_else(|| panic!("case {title:?} has no request line"));
        let (method, path) = request_line.split_once(' ').expect("METHOD PATH");
        let headers = lines
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap_or_else(|| panic!("bad header line {l:?}"));
                (k.trim().to_string(), v.trim().to_string())
            })
            .collect();
        cases.push(Case { title: title.trim().to_string(), method: method.into(), path: path.trim().into(), headers, body });
    }
    cases
}

/// Values seen so far and how transcripts show them.
#[derive(Default)]
struct Names {
    ids: Vec<String>,
    secrets: Vec<String>,
    admin: String,
}

impl Names {
    fn substitute(&self, text: &str) -> String {
        let mut out = text.replace("{admin}", &self.admin);
        if let Some(secret) = self.secrets.last() {
            out = out.replace("{secret}", secret);
        }
        for (i, secret) in self.secrets.iter().enumerate() {
            out = out.replace(&format!("{{secret-{}}}", i + 1), secret);
        }
        for (i, id) in self.ids.iter().enumerate().rev() {
            out = out.replace(&format!("{{id-{}}}", i + 1), id);
        }
        out
    }

    /// Learn the ids and the secret a response body shows.
    fn learn(&mut self, v: &Value) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("id", Value::String(id)) if !self.ids.contains(id) => self.ids.push(id.clone()),
                        ("secret", Value::String(s)) if !self.secrets.contains(s) => self.secrets.push(s.clone()),
                        _ => {}
                    }
                    self.learn(v);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| self.learn(i)),
            _ => {}
        }
    }

    fn redact_text(&self, text: &str) -> String {
        let mut out = text.replace(&self.admin, "<admin>");
        for (i, secret) in self.secrets.iter().enumerate() {
            out = out.replace(secret.as_str(), &format!("<secret-{}>", i + 1));
        }
        // Longer ids first, so no id is replaced inside another.
        let mut ids: Vec<(usize, &String)> = self.ids.iter().enumerate().collect();
        ids.sort_by_key(|(_, id)| std::cmp::Reverse(id.len()));
        for (i, id) in ids {
            out = out.replace(id.as_str(), &format!("<id-{}>", i + 1));
        }
        out
    }

    fn redact(&self, v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    let time_key = matches!(
                        k.as_str(),
                        "created" | "lastModified" | "created_at" | "updated_at" | "expires_at" | "last_used_at" | "at"
                    );
                    if time_key && !v.is_null() {
                        *v = Value::String("<time>".into());
                    } else if k == "prefix" && v.is_string() {
                        // The first characters of a secret: random.
                        *v = Value::String("<prefix>".into());
                    } else {
                        self.redact(v);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.redact(i)),
            Value::String(s) => *s = self.redact_text(s),
            _ => {}
        }
    }
}

async fn app(dir: &Path) -> (Router, String) {
    let url = format!("sqlite://{}", dir.join("idplex.db").display());
    let store = idplex_store::Store::open(&url).await.expect("store");
    let runtime = idplex_runtime::Runtime::new(idplex_runtime::RuntimeConfig::new(dir.join("cache"))).expect("runtime");
    let hub = idplex_hub::Hub::new(store.clone(), runtime);
    hub.install_bundled().await.expect("bundled connectors install");
    let (_, admin) = store.create_admin_token("wire", None).await.expect("admin token");
    (idplex_server::router(hub), admin)
}

async fn send(app: &Router, case: &Case, names: &Names) -> Response<Body> {
    let mut request = Request::builder().method(case.method.as_str()).uri(names.substitute(&case.path));
    request = request.header("host", "idplex.test");
    for (k, v) in &case.headers {
        request = request.header(k.as_str(), names.substitute(v));
    }
    let request = request.body(Body::from(names.substitute(&case.body))).expect("request");
    app.clone().oneshot(request).await.expect("the router answers")
}

async fn transcript(file: &Path) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let (app, admin) = app(dir.path()).await;
    let mut names = Names { admin, ..Names::default() };
    let text = std::fs::read_to_string(file).expect("case file");
    let mut out = String::new();
    for case in parse(&text) {
        let response = send(&app, &case, &names).await;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 16 << 20).await.expect("body");
        let json: Option<Value> = serde_json::from_slice(&bytes).ok();
        if let Some(v) = &json {
            names.learn(v);
        }
        out.push_str(&format!("### {}\n{} {}\n", case.title, case.method, case.path));
        // Headers as the case file wrote them: `{admin}` and `{secret}` stay placeholders.
        for (k, v) in &case.headers {
            out.push_str(&format!("{k}: {v}\n"));
        }
        if !case.body.is_empty() {
            out.push_str(&format!("\n{}\n", case.body));
        }
        out.push_str(&format!("\n→ {status}\n"));
        for name in SHOWN_HEADERS {
            for v in headers.get_all(*name) {
                out.push_str(&format!("{name}: {}\n", names.redact_text(v.to_str().unwrap_or("<binary>"))));
            }
        }
        match json {
            Some(mut v) => {
                names.redact(&mut v);
                out.push_str(&format!("\n{}\n", serde_json::to_string_pretty(&v).unwrap()));
            }
            None if bytes.is_empty() => {}
            None => out.push_str(&format!("\n{}\n", names.redact_text(&String::from_utf8_lossy(&bytes)))),
        }
        out.push('\n');
    }
    out
}

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("wire");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/wire")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "http"))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_wire_case_answers_as_its_snapshot() {
    let files = cases();
    assert!(files.len() >= 3, "the wire cases are found: {files:?}");
    for file in files {
        let name = file.file_stem().unwrap().to_string_lossy().to_string();
        let text = transcript(&file).await;
        insta::assert_snapshot!(name, text);
    }
}

#[test]
fn cases_parse_into_requests() {
    let cases = parse("### one\nGET /a\nX: y\n\n{\"b\": 1}\n\n### two\nDELETE /c\n");
    assert_eq!(cases.len(), 2);
    assert_eq!((cases[0].method.as_str(), cases[0].path.as_str(), cases[0].body.as_str()), ("GET", "/a", "{\"b\": 1}"));
    assert_eq!(cases[0].headers, vec![("X".to_string(), "y".to_string())]);
    assert_eq!((cases[1].method.as_str(), cases[1].body.as_str()), ("DELETE", ""));
}
