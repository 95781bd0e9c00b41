//! `idplex-bench`: what a connector costs. See README.md for what each figure means.
//!
//! Run: `cargo run --release -p idplex-bench` (smoke: `BENCH_ITERS=200 BENCH_SECS=0.3 ...`;
//! `BENCH_GROUP_MEMBERS=0` skips section 6, the large-group PATCH; `BENCH_ONLY=7` runs section 7
//! alone; section 8, SAML sign-ins, signs its responses with `xmlsec1` beforehand:
//! `BENCH_ONLY=8 BENCH_SSO_SIGNINS=6000`).

mod first_party;
mod large_group;
mod native;
mod pull_sync;
mod sso;

use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use idplex_runtime::{
    CallContext, LoadedConnector, ResourceKind, Runtime, RuntimeConfig, SamlAttribute, ScimRequest,
    VerifiedAssertion, Warm,
};
use serde_json::{Value, json};

/// The sections there are (3 includes 3b).
const SECTIONS: std::ops::RangeInclusive<u32> = 1..=9;

/// What runs and how many times, overridable by environment variables.
struct Settings {
    /// Sections to run (`BENCH_ONLY`, a comma list of section numbers); `None`: all.
    only: Option<BTreeSet<u32>>,
    /// Timed calls per latency figure (`BENCH_ITERS`).
    iters: usize,
    /// Untimed calls before each latency figure (`BENCH_WARMUP`, default iters/10, ≥ 10).
    warmup: usize,
    /// Cold installs, each with a new cache directory (`BENCH_COLD_RUNS`).
    cold_runs: usize,
    /// Cached loads / five-connector starts (`BENCH_LOAD_RUNS`).
    load_runs: usize,
    /// Seconds of each throughput run (`BENCH_SECS`).
    secs: f64,
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// `BENCH_ONLY` (`"7"`, `"3,5"`); unset or blank: every section.
fn env_only() -> Option<BTreeSet<u32>> {
    let v = std::env::var("BENCH_ONLY").ok().filter(|v| !v.trim().is_empty())?;
    let only = v
        .split(',')
        .map(|n| match n.trim().parse() {
            Ok(n) if SECTIONS.contains(&n) => n,
            _ => panic!("BENCH_ONLY={v:?}: expected a comma list of section numbers 1 to 9"),
        })
        .collect();
    Some(only)
}

impl Settings {
    fn from_env() -> Self {
        let iters = env_num("BENCH_ITERS", 20_000usize).max(1);
        Settings {
            only: env_only(),
            iters,
            warmup: env_num("BENCH_WARMUP", (iters / 10).max(10)),
            cold_runs: env_num("BENCH_COLD_RUNS", 5usize).max(1),
            load_runs: env_num("BENCH_LOAD_RUNS", 15usize).max(1),
            secs: env_num("BENCH_SECS", 3.0f64).max(0.05),
        }
    }

    /// Whether section `n` runs.
    fn runs(&self, n: u32) -> bool {
        self.only.as_ref().is_none_or(|only| only.contains(&n))
    }

    /// `BENCH_ONLY` as given, for the report.
    fn only_text(&self) -> String {
        match &self.only {
            None => "all".into(),
            Some(only) => only.iter().map(u32::to_string).collect::<Vec<_>>().join(","),
        }
    }
}

/// Order statistics of a set of samples.
#[derive(Clone, Copy)]
struct Stats {
    n: usize,
    p50: Duration,
    p99: Duration,
    min: Duration,
    mean: Duration,
}

impl Stats {
    fn of(mut samples: Vec<Duration>) -> Stats {
        assert!(!samples.is_empty());
        samples.sort_unstable();
        let n = samples.len();
        // Nearest-rank percentile.
        let pct = |p: f64| samples[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        let total: Duration = samples.iter().sum();
        Stats { n, p50: pct(0.50), p99: pct(0.99), min: samples[0], mean: total / n as u32 }
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// The human table, collected as the run goes.
struct Report {
    rows: Vec<String>,
    json: serde_json::Map<String, Value>,
}

impl Report {
    fn section(&mut self, title: &str) {
        self.rows.push(String::new());
        self.rows.push(format!("## {title}"));
    }
    fn latency_us(&mut self, key: &str, label: &str, s: Stats) {
        self.rows.push(format!(
            "{label:<52} n={:<7} p50={:>9.2} µs  p99={:>9.2} µs  min={:>8.2} µs  mean={:>9.2} µs",
            s.n,
            us(s.p50),
            us(s.p99),
            us(s.min),
            us(s.mean)
        ));
        self.json.insert(
            key.into(),
            json!({"n": s.n, "p50_us": round(us(s.p50), 3), "p99_us": round(us(s.p99), 3),
                   "min_us": round(us(s.min), 3), "mean_us": round(us(s.mean), 3)}),
        );
    }
    fn latency_ms(&mut self, key: &str, label: &str, s: Stats) {
        self.rows.push(format!(
            "{label:<52} n={:<7} p50={:>9.2} ms  p99={:>9.2} ms  min={:>8.2} ms  mean={:>9.2} ms",
            s.n,
            ms(s.p50),
            ms(s.p99),
            ms(s.min),
            ms(s.mean)
        ));
        self.json.insert(
            key.into(),
            json!({"n": s.n, "median_ms": round(ms(s.p50), 3), "max_ms": round(ms(s.p99), 3),
                   "min_ms": round(ms(s.min), 3), "mean_ms": round(ms(s.mean), 3)}),
        );
    }
    fn figure(&mut self, key: &str, label: &str, value: f64, unit: &str) {
        self.rows.push(format!("{label:<52} {value:>12.2} {unit}"));
        self.json.insert(key.into(), json!(round(value, 3)));
    }
    fn check(&mut self, key: &str, label: &str, value: f64, unit: &str, target: f64) {
        let ok = value <= target;
        self.rows.push(format!(
            "{label:<52} {value:>12.2} {unit}   target ≤ {target} {unit}: {}",
            if ok { "MET" } else { "MISSED" }
        ));
        self.json.insert(key.into(), json!({"value": round(value, 3), "target": target, "met": ok}));
    }
}

fn runtime_in(dir: &Path) -> Result<Runtime> {
    Runtime::new(RuntimeConfig::new(dir))
}

fn custom_saml() -> &'static [u8] {
    idplex_bundled::FIRST_PARTY
        .iter()
        .find(|c| c.crate_name == "custom-saml")
        .expect("custom-saml is bundled")
        .component
}

/// An Entra ID-style assertion, as the SAML layer hands it over after signature checks.
fn entra_assertion() -> VerifiedAssertion {
    let attr = |name: &str, values: &[&str]| SamlAttribute {
        name: name.to_string(),
        values: values.iter().map(|v| v.to_string()).collect(),
    };
    VerifiedAssertion {
        issuer: "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/".into(),
        name_id: "AAAAAAAAAAAAAAAAAAAAAKTSs6mG0Qxm3WfbG9r1oM4".into(),
        name_id_format: Some("urn:oasis:names:tc:SAML:2.0:nameid-format:persistent".into()),
        session_index: Some("_8f1c2d4e-5a6b-4c7d-9e0f-1a2b3c4d5e6f".into()),
        authn_context: Some("urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport".into()),
        attributes: vec![
            attr("http://schemas.microsoft.com/identity/claims/tenantid", &["72f988bf-86f1-41af-91ab-2d7cd011db47"]),
            attr(
                "http://schemas.microsoft.com/identity/claims/objectidentifier",
                &["b3a1c9e2-7d4f-4e8a-9c61-0f2e5d7a8b94"],
            ),
            attr("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress", &["ada.lovelace@contoso.com"]),
            attr("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname", &["Ada"]),
            attr("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname", &["Lovelace"]),
            attr("http://schemas.microsoft.com/identity/claims/displayname", &["Ada Lovelace"]),
            attr("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name", &["ada.lovelace@contoso.com"]),
            attr(
                "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
                &[
                    "5f3c9a10-2b7e-4d61-8c0a-9e4b1f2d3a55",
                    "a7d2e8c4-1f90-4b3e-b6a2-7c5d0e9f8b12",
                    "0e9b6f3a-8c21-4a7d-9f54-3b1c2d6e7a80",
                ],
            ),
        ],
    }
}

/// Connection config of the SSO connection (explicit where an admin usually sets it; the rest
/// falls back to the connector's Entra/ADFS defaults).
fn sso_config() -> BTreeMap<String, String> {
    BTreeMap::from([("user_name_source".to_string(), "name-id".to_string())])
}

/// An Okta-style SCIM POST /Users body (~600 bytes).
fn okta_user_body() -> String {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "ada.lovelace@contoso.com",
        "name": {"givenName": "Ada", "familyName": "Lovelace", "formatted": "Ada Lovelace"},
        "displayName": "Ada Lovelace",
        "locale": "en-US",
        "externalId": "00u1a2b3c4d5e6f7g8h9",
        "emails": [{"primary": true, "value": "ada.lovelace@contoso.com", "type": "work"}],
        "phoneNumbers": [{"primary": true, "value": "+1 555 0100", "type": "work"}],
        "title": "Principal Engineer",
        "active": true,
        "password": "xY7!qR2#mN9$kL4@",
        "groups": [],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "employeeNumber": "10042",
            "department": "Analytical Engines",
            "organization": "Contoso",
            "manager": {"value": "00u9z8y7x6w5v4u3t2s1", "displayName": "Charles Babbage"}
        }
    })
    .to_string()
}

/// `GET /Users?filter=userName eq "…"`, as the SCIM server hands it to `normalize`.
fn get_users_by_name() -> ScimRequest {
    ScimRequest {
        method: "GET".into(),
        resource: ResourceKind::User,
        id: None,
        query: vec![("filter".into(), r#"userName eq "ada.lovelace@contoso.com""#.into())],
        body: None,
    }
}

/// A stored user as the SCIM server renders it (core + enterprise attributes, `meta`, groups).
fn stored_user() -> String {
    let mut user: Value = serde_json::from_str(&okta_user_body()).expect("valid JSON");
    let o = user.as_object_mut().expect("object");
    o.remove("password");
    o.insert("id".into(), json!("usr_6f1c2d3e4a5b69788796a5b4c3d2e1f0"));
    o.insert("groups".into(), json!([{"value": "grp_0a1b2c3d", "display": "Engineering", "$ref": "http://127.0.0.1/scim/v2/conn_1/Groups/grp_0a1b2c3d"}]));
    o.insert("meta".into(), json!({
        "resourceType": "User",
        "created": "2026-11-25T10:00:00.000Z",
        "lastModified": "2026-11-25T10:00:00.000Z",
        "location": "http://127.0.0.1/scim/v2/conn_1/Users/usr_6f1c2d3e4a5b69788796a5b4c3d2e1f0",
        "version": "W/\"1\""
    }));
    user.to_string()
}

fn post_users(body: &str) -> ScimRequest {
    ScimRequest {
        method: "POST".into(),
        resource: ResourceKind::User,
        id: None,
        query: Vec::new(),
        body: Some(body.to_string()),
    }
}

/// Times `warmup + iters` awaited calls of `f(input.clone())` one by one (the clone of the input
/// happens before the clock starts; dropping the result after it stops).
async fn time_async<I, T, E>(s: &Settings, input: &I, mut f: impl AsyncFnMut(I) -> Result<T, E>) -> Result<Stats>
where
    I: Clone,
    E: std::fmt::Display,
{
    for _ in 0..s.warmup {
        black_box(f(input.clone()).await.map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    let mut samples = Vec::with_capacity(s.iters);
    for _ in 0..s.iters {
        let arg = input.clone();
        let t = Instant::now();
        let out = f(arg).await;
        let dt = t.elapsed();
        black_box(out.map_err(|e| anyhow::anyhow!("{e}"))?);
        samples.push(dt);
    }
    Ok(Stats::of(samples))
}

/// [`time_async`] of calls that all run in one kept instance: `call` gets the same [`Warm`]
/// every time (started by the first call, as a SCIM request's instance is).
async fn time_kept<I, T, E>(s: &Settings, input: &I, mut call: impl AsyncFnMut(&mut Warm, I) -> Result<T, E>) -> Result<Stats>
where
    I: Clone,
    E: std::fmt::Display,
{
    let mut warm = Warm::default();
    time_async(s, input, async |i| call(&mut warm, i).await).await
}

/// Same as [`time_async`] for a synchronous function.
fn time_sync<T, E: std::fmt::Display>(s: &Settings, mut f: impl FnMut() -> Result<T, E>) -> Result<Stats> {
    for _ in 0..s.warmup {
        black_box(f().map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    let mut samples = Vec::with_capacity(s.iters);
    for _ in 0..s.iters {
        let t = Instant::now();
        let out = f();
        let dt = t.elapsed();
        black_box(out.map_err(|e| anyhow::anyhow!("{e}"))?);
        samples.push(dt);
    }
    Ok(Stats::of(samples))
}

fn current_thread() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// `threads` OS threads, each with its own current-thread tokio runtime, calling
/// `map_assertion` on the shared connector for `secs`. Returns (calls, elapsed).
fn throughput(
    connector: &Arc<LoadedConnector>,
    ctx: &CallContext,
    assertion: &VerifiedAssertion,
    threads: usize,
    secs: f64,
) -> Result<(u64, Duration)> {
    let barrier = Arc::new(Barrier::new(threads + 1));
    let run_for = Duration::from_secs_f64(secs);
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (connector, ctx, assertion, barrier) =
                (connector.clone(), ctx.clone(), assertion.clone(), barrier.clone());
            std::thread::Builder::new()
                .name(format!("bench-{i}"))
                .spawn(move || -> Result<(u64, Duration)> {
                    let rt = current_thread()?;
                    rt.block_on(async {
                        // Warm this thread's caches before the clock starts.
                        for _ in 0..50 {
                            connector.map_assertion(&ctx, assertion.clone()).await?;
                        }
                        barrier.wait();
                        let start = Instant::now();
                        let mut calls = 0u64;
                        while start.elapsed() < run_for {
                            black_box(connector.map_assertion(&ctx, assertion.clone()).await?);
                            calls += 1;
                        }
                        Ok((calls, start.elapsed()))
                    })
                })
        })
        .collect::<Result<_, _>>()?;
    barrier.wait();
    let mut total = 0;
    let mut longest = Duration::ZERO;
    for h in handles {
        let (calls, elapsed) = h.join().map_err(|_| anyhow::anyhow!("bench thread panicked"))??;
        total += calls;
        longest = longest.max(elapsed);
    }
    Ok((total, longest))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn main() -> Result<()> {
    let s = Settings::from_env();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let wasmtime_version = env!("IDPLEX_BENCH_WASMTIME_VERSION");
    let mut r = Report { rows: Vec::new(), json: serde_json::Map::new() };
    r.json.insert("nproc".into(), json!(nproc));
    r.json.insert("cpu".into(), json!(cpu_model()));
    r.json.insert("wasmtime".into(), json!(wasmtime_version));
    r.json.insert(
        "settings".into(),
        json!({"iters": s.iters, "warmup": s.warmup, "cold_runs": s.cold_runs,
               "load_runs": s.load_runs, "secs": s.secs, "only": s.only_text(),
               "debug_build": cfg!(debug_assertions)}),
    );
    println!("idplex-bench: nproc={nproc}  cpu={}  wasmtime={wasmtime_version}", cpu_model());
    if cfg!(debug_assertions) {
        println!("WARNING: debug build; figures are meaningless. Use `cargo run --release -p idplex-bench`.");
    }
    println!(
        "settings: BENCH_ITERS={} BENCH_WARMUP={} BENCH_COLD_RUNS={} BENCH_LOAD_RUNS={} BENCH_SECS={} BENCH_ONLY={}",
        s.iters,
        s.warmup,
        s.cold_runs,
        s.load_runs,
        s.secs,
        s.only_text()
    );

    let saml = custom_saml();
    let rt = current_thread()?;

    // 1. Cold install: Cranelift compile with an empty cache.
    if s.runs(1) {
        r.section("1. install (cold: empty cache dir, Cranelift compile + describe)");
        let mut cold = Vec::new();
        for _ in 0..s.cold_runs {
            let dir = tempfile::tempdir()?;
            let runtime = runtime_in(dir.path())?;
            let t = Instant::now();
            let loaded = rt.block_on(runtime.install(saml)).context("cold install of custom-saml")?;
            cold.push(t.elapsed());
            drop(loaded);
        }
        r.latency_ms(
            "install_cold",
            &format!("custom-saml install, cold ({} KiB)", saml.len() / 1024),
            Stats::of(cold),
        );
    }

    // The warm cache dir every later section loads from (untimed installs).
    let warm = tempfile::tempdir()?;
    let five: [(&str, &[u8]); 5] = [
        ("custom-saml", saml),
        ("hostile", idplex_bundled::testing::HOSTILE),
        ("echo-v1", idplex_bundled::testing::ECHO_V1),
        ("echo-v2", idplex_bundled::testing::ECHO_V2),
        ("custom-saml", saml),
    ];
    {
        let runtime = runtime_in(warm.path())?;
        if (2..=5).any(|n| s.runs(n)) {
            for (name, bytes) in five {
                rt.block_on(runtime.install(bytes)).with_context(|| format!("warming the cache with {name}"))?;
            }
        }
        if s.runs(7) {
            for c in idplex_bundled::FIRST_PARTY {
                rt.block_on(runtime.install(c.component))
                    .with_context(|| format!("warming the cache with {}", c.crate_name))?;
            }
        }
    }
    let saml_arc: Arc<[u8]> = Arc::from(saml);

    // 2. Cached loads from a warm cache dir.
    if s.runs(2) {
        r.section("2. load from warm cache (new Runtime each time)");
        let mut new_rt = Vec::new();
        let mut loads = Vec::new();
        for _ in 0..s.load_runs {
            let t = Instant::now();
            let runtime = runtime_in(warm.path())?;
            new_rt.push(t.elapsed());
            let t = Instant::now();
            let loaded = rt.block_on(runtime.load(saml_arc.clone())).context("cached load")?;
            loads.push(t.elapsed());
            drop(loaded);
        }
        r.latency_ms("runtime_new", "Runtime::new (engine, linker, pool)", Stats::of(new_rt));
        let cached = Stats::of(loads);
        r.latency_ms("load_cached", "custom-saml load, warm cache", cached);
        let five_arcs: Vec<Arc<[u8]>> = five.iter().map(|(_, b)| Arc::from(*b)).collect();
        let mut starts = Vec::new();
        for _ in 0..s.load_runs {
            let t = Instant::now();
            let runtime = runtime_in(warm.path())?;
            let loaded = rt.block_on(async {
                let mut v = Vec::new();
                for b in &five_arcs {
                    v.push(runtime.load(b.clone()).await?);
                }
                Ok::<_, idplex_runtime::InstallError>(v)
            })?;
            starts.push(t.elapsed());
            drop(loaded);
        }
        let start5 = Stats::of(starts);
        r.latency_ms("start_five_cached", "start: Runtime::new + load 5 connectors, warm cache", start5);
        r.check("start_five_cached_median_ms", "  median vs target", ms(start5.p50), "ms", 100.0);
    }

    // 3. Per-call latency: fresh instance + one call.
    if (3..=5).any(|n| s.runs(n)) {
        let runtime = runtime_in(warm.path())?;
        let connector = Arc::new(rt.block_on(runtime.load(saml_arc.clone()))?);
        let label = connector.label().to_string();
        let ctx =
            CallContext { config: std::sync::Arc::new(sso_config()), ..CallContext::with_limits(Default::default()) };
        let assertion = entra_assertion();
        let body = okta_user_body();
        let request = post_users(&body);

        // The native mirrors must produce what the connector produces.
        let (wasm_id, wasm_ops) = rt.block_on(async {
            let id = connector.map_assertion(&ctx, assertion.clone()).await?;
            let ops = connector.normalize(&ctx, request.clone()).await?;
            Ok::<_, idplex_runtime::CallError>((id, ops))
        })?;
        let native_id = native::map_assertion(&assertion, &ctx.config).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        anyhow::ensure!(
            format!("{wasm_id:?}") == format!("{native_id:?}"),
            "native mapping differs from the connector's:\nwasm:   {wasm_id:?}\nnative: {native_id:?}"
        );
        let native_ops =
            native::normalize_post(&request, native::Body::Verbatim).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        anyhow::ensure!(
            format!("{wasm_ops:?}") == format!("{native_ops:?}"),
            "native normalize differs from the connector's"
        );

        // Section 3's wasm figures, for section 5's ratios.
        let mut wasm: Option<(Stats, Stats)> = None;
        if s.runs(3) {
            r.section(&format!("3. fresh instance + one call ({label}, tokio current-thread)"));
            r.json.insert("scim_body_bytes".into(), json!(body.len()));
            let describe = rt.block_on(time_async(&s, &(), |()| connector.describe(&ctx)))?;
            // describe() of custom-saml builds its ~2 KB config JSON Schema with serde_json on every
            // call; it runs at install/load only, so it is reported but is not the "small call".
            r.latency_us("describe", "describe() [builds config schema]", describe);
            let (c, x) = (&*connector, &ctx);
            let pull = rt.block_on(time_async(&s, &(), |()| async move {
                match c.pull(x, None).await {
                    Err(idplex_runtime::CallError::Connector { .. }) => Ok::<_, idplex_runtime::CallError>(()),
                    Err(e) => Err(e),
                    Ok(_) => Ok(()),
                }
            }))?;
            r.latency_us("pull_unsupported", "pull() -> unsupported error [small call]", pull);
            r.check("small_call_p50_us", "  fresh instance + small call p50 vs target", us(pull.p50), "µs", 15.0);
            let map_wasm = rt.block_on(time_async(&s, &assertion, |a| connector.map_assertion(&ctx, a)))?;
            r.latency_us("map_assertion_wasm", "map_assertion (Entra, 8 attrs, 3 groups)", map_wasm);
            let norm_wasm = rt.block_on(time_async(&s, &request, |q| connector.normalize(&ctx, q)))?;
            r.latency_us(
                "normalize_wasm",
                &format!("normalize POST /Users (Okta, {} B)", body.len()),
                norm_wasm,
            );
            wasm = Some((map_wasm, norm_wasm));

            // 3b. What the connector adds to one SCIM request: the request's one instance, its
            // `normalize` and a `render` of the resource it returns, then the instance's release
            // (`Warm` dropped), against the host's native generic dialect doing the same work.
            let get = get_users_by_name();
            let stored = stored_user();
            let (c, x) = (&*connector, &ctx);
            let one_get = |q: ScimRequest| {
                let stored = stored.clone();
                async move {
                    let (connector, ctx) = (c, x);
                    let mut warm = Warm::default();
                    connector.normalize_in(&mut warm, ctx, q).await?;
                    let out = connector.render_in(&mut warm, ctx, ResourceKind::User, stored).await;
                    drop(warm);
                    out
                }
            };
            let req_wasm = rt.block_on(time_async(&s, &get, one_get))?;
            r.latency_us("scim_get_request_wasm", "SCIM GET ?filter: instance + normalize + render", req_wasm);
            let req_reused = rt.block_on(time_kept(&s, &get, async |warm: &mut Warm, q: ScimRequest| {
                c.normalize_in(warm, x, q).await?;
                c.render_in(warm, x, ResourceKind::User, stored.clone()).await
            }))?;
            r.latency_us(
                "scim_get_request_reused",
                "SCIM GET ?filter: reused instance + normalize + render",
                req_reused,
            );
            let req_native = time_sync(&s, || {
                idplex_hub::native_scim::normalize(&get).map_err(|e| e.message)?;
                idplex_hub::native_scim::render(stored.clone()).map_err(|e| e.message)
            })?;
            r.latency_us("scim_get_request_native", "SCIM GET ?filter: native normalize + render", req_native);
            r.figure(
                "scim_get_request_added_us",
                "  connector's added time per GET request (p50 difference)",
                us(req_wasm.p50) - us(req_native.p50),
                "µs",
            );
        }

        // 5. Native baselines, timed the same way (on this thread, no async).
        if s.runs(5) {
            r.section("5. native baseline (same logic in Rust, same timing)");
            let map_native = time_sync(&s, || native::map_assertion(&assertion, &ctx.config).map_err(|e| e.message))?;
            r.latency_us("map_assertion_native", "map_assertion native", map_native);
            let norm_native =
                time_sync(&s, || native::normalize_post(&request, native::Body::Verbatim).map_err(|e| e.message))?;
            r.latency_us("normalize_native", "normalize native (parse, check schemas, body as-is)", norm_native);
            let norm_native_reser =
                time_sync(&s, || native::normalize_post(&request, native::Body::Reserialized).map_err(|e| e.message))?;
            r.latency_us(
                "normalize_native_reserialize",
                "normalize native (parse, check, re-serialize)",
                norm_native_reser,
            );
            // The ratios need section 3's wasm figures.
            if let Some((map_wasm, norm_wasm)) = wasm {
                let ratio = |a: Stats, b: Stats| us(a.p50) / us(b.p50).max(1e-9);
                r.figure(
                    "ratio_map_assertion_p50",
                    "ratio wasm/native map_assertion p50",
                    ratio(map_wasm, map_native),
                    "x",
                );
                r.figure(
                    "ratio_normalize_p50",
                    "ratio wasm/native normalize p50 (vs as-is)",
                    ratio(norm_wasm, norm_native),
                    "x",
                );
                r.figure(
                    "ratio_normalize_reserialize_p50",
                    "ratio wasm/native normalize p50 (vs re-serialize)",
                    ratio(norm_wasm, norm_native_reser),
                    "x",
                );
            } else {
                r.rows.push("(wasm/native ratios need section 3)".into());
            }
        }

        // 4. Throughput on 1 and 2 threads.
        if s.runs(4) {
            r.section(&format!("4. map_assertion throughput, shared Runtime + Arc<LoadedConnector>, {:.1} s", s.secs));
            let (calls1, el1) = throughput(&connector, &ctx, &assertion, 1, s.secs)?;
            let tput1 = calls1 as f64 / el1.as_secs_f64();
            r.figure("throughput_1_thread_calls_per_s", "1 thread", tput1, "calls/s");
            let (calls2, el2) = throughput(&connector, &ctx, &assertion, 2, s.secs)?;
            let tput2 = calls2 as f64 / el2.as_secs_f64();
            r.figure("throughput_2_threads_calls_per_s", "2 threads (total)", tput2, "calls/s");
            r.figure("throughput_scaling_2_over_1", "scaling 2 threads / 1 thread", tput2 / tput1, "x");
        }

        drop(connector);
        drop(runtime);
    }

    // 6. A membership PATCH of a large group through the SCIM service (store + connector).
    let members = env_num("BENCH_GROUP_MEMBERS", 100_000usize);
    if s.runs(6) && members > 0 {
        let runs = env_num("BENCH_GROUP_PATCHES", 5usize).max(1);
        r.section(&format!("6. SCIM PATCH adding 1,000 members to a {members}-member group (SQLite file, custom-saml)"));
        let multi = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let samples = multi.block_on(large_group::patch_large_group(members, runs))?;
        r.latency_ms("patch_1000_members_large_group", "PATCH add 1,000 members", Stats::of(samples));
    }

    // 7. Each first-party connector with its own IdP's typical input.
    if s.runs(7) {
        first_party::run(&s, &rt, &mut r, warm.path())?;
    }

    // 8. Complete SAML sign-ins (needs xmlsec1 to sign the responses beforehand).
    if s.runs(8) {
        let signins = env_num("BENCH_SSO_SIGNINS", 6000usize).max(1);
        let users = env_num("BENCH_SSO_USERS", 200usize).max(1);
        let concurrency = env_num("BENCH_SSO_CONCURRENCY", 16usize).max(1);
        r.section(&format!("8. SAML sign-in: ACS response → verify → map (custom-saml) → user → session (SQLite file, {users} users)"));
        // BENCH_SSO_SYNC=normal: without the fsync of each commit (what it costs).
        let sync = std::env::var("BENCH_SSO_SYNC").unwrap_or_else(|_| "full".into()).parse().map_err(anyhow::Error::msg)?;
        sso::run(&mut r, signins, users, concurrency, sync)?;
    }

    // 9. Directory pull sync from local stand-ins of the Google Directory API and Graph.
    if s.runs(9) {
        let users = env_num("BENCH_PULL_USERS", 100_000usize).max(1);
        r.section(&format!("9. directory pull sync, {users} users (google-workspace and entra-id against local API stand-ins)"));
        let multi = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        multi.block_on(pull_sync::run(&mut r, users))?;
    }

    println!("{}", r.rows.join("\n"));
    println!();
    println!("{}", Value::Object(r.json));
    Ok(())
}
