//! The host imports outside the sandbox (compiled only when not targeting `wasm32`).
//!
//! [`crate::log::log`], [`crate::config::get`], [`crate::config::entries`],
//! [`crate::clock::now_unix_millis`] and [`crate::http::get_json`] call here in native builds.
//! Each thread has a stack of installed [`MockHost`]s; the imports read and write the top one.
//! With none installed they behave as an empty host: no config, the machine's clock, log lines
//! to standard error, no egress.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::marker::PhantomData;

use crate::ConnectorError;
use crate::http::Response;
use crate::log::Level;
use crate::testing::FakeHttp;

/// One line a connector logged through the [`MockHost`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The level it was logged at.
    pub level: Level,
    /// The message, as the connector passed it (the real host escapes control characters and
    /// cuts it at 2 KiB; the mock keeps it whole).
    pub message: String,
}

impl std::fmt::Display for LogLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", level_name(self.level), self.message)
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "TRACE",
        Level::Debug => "DEBUG",
        Level::Info => "INFO",
        Level::Warn => "WARN",
        Level::Error => "ERROR",
    }
}

/// What one installed mock host holds.
#[derive(Debug, Default)]
struct State {
    config: BTreeMap<String, String>,
    clock: Option<u64>,
    egress: Option<FakeHttp>,
    logs: Vec<LogLine>,
}

thread_local! {
    /// The mock hosts installed on this thread, innermost last, each with its install id.
    static INSTALLED: RefCell<Vec<(u64, State)>> = const { RefCell::new(Vec::new()) };
    static NEXT_ID: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A scripted host for a connector's **native** tests: the connection's config, the clock,
/// the IdP's API behind egress ([`FakeHttp`]), and the log lines the connector writes.
///
/// Build one, [`install`](MockHost::install) it on the test's thread, and call the connector's
/// code, typically its `Guest` impls (the same functions the component exports):
/// `config::get`, `log::*`, `clock::now_unix_millis` and `http::get_json` then answer from it.
/// Drop the returned [`MockHostGuard`] (the end of the test does) to uninstall it.
///
/// ```
/// use idplex_connector_sdk::http::Response;
/// use idplex_connector_sdk::log::Level;
/// use idplex_connector_sdk::serde_json::json;
/// use idplex_connector_sdk::testing::{FakeHttp, MockHost};
/// use idplex_connector_sdk::{clock, config, http, log};
///
/// let host = MockHost::new()
///     .config("domain", "example.com")
///     .clock(1_700_000_000_000)
///     .egress(FakeHttp::new().on_json("https://api.example.com/users", json!({"users": []})))
///     .install();
///
/// assert_eq!(config::get("domain").as_deref(), Some("example.com"));
/// assert_eq!(config::get("tenant"), None);
/// assert_eq!(clock::now_unix_millis(), 1_700_000_000_000);
/// let users = http::get_json("https://api.example.com/users").unwrap();
/// assert_eq!(users, Response::json(200, json!({"users": []})));
/// log::warn("no users yet");
///
/// assert_eq!(host.requests(), ["https://api.example.com/users"]);
/// assert_eq!(host.logs()[0].level, Level::Warn);
/// assert!(host.logged("no users"));
/// ```
///
/// The state is per thread (each `#[test]` runs on its own thread, so tests do not see each
/// other's hosts). Installing a second mock host on a thread shadows the first until the second
/// guard is dropped.
#[derive(Debug, Default)]
pub struct MockHost {
    state: State,
}

impl MockHost {
    /// A host with no config, the machine's clock, no egress, no log lines.
    pub fn new() -> MockHost {
        MockHost::default()
    }

    /// Sets config `key` to `value` (a later call for the same key replaces it). Values are
    /// strings, as on the wire; `config::get_bool` and the other getters parse them.
    pub fn config(mut self, key: &str, value: &str) -> MockHost {
        self.state.config.insert(key.to_string(), value.to_string());
        self
    }

    /// Sets every `(key, value)` of `pairs`, as [`config`](MockHost::config) does one.
    pub fn configs(mut self, pairs: &[(&str, &str)]) -> MockHost {
        for (k, v) in pairs {
            self.state.config.insert(k.to_string(), v.to_string());
        }
        self
    }

    /// Stops the clock at `unix_millis` (milliseconds since the Unix epoch, UTC): every
    /// `clock::now_unix_millis()` answers it until [`MockHostGuard::set_clock`] or
    /// [`MockHostGuard::advance_clock`] moves it.
    pub fn clock(mut self, unix_millis: u64) -> MockHost {
        self.state.clock = Some(unix_millis);
        self
    }

    /// Answers `http::get_json` with `api`'s recorded responses (a URL with nothing recorded
    /// panics, listing what was asked). Without it, `get_json` answers an `internal` error, as
    /// a sandbox without egress would refuse.
    pub fn egress(mut self, api: FakeHttp) -> MockHost {
        self.state.egress = Some(api);
        self
    }

    /// Installs the host on the current thread until the guard is dropped.
    #[must_use = "the mock host is uninstalled when the guard is dropped"]
    pub fn install(self) -> MockHostGuard {
        let id = NEXT_ID.with(|n| {
            let id = n.get();
            n.set(id + 1);
            id
        });
        INSTALLED.with(|hosts| hosts.borrow_mut().push((id, self.state)));
        MockHostGuard { id, _per_thread: PhantomData }
    }
}

/// An installed [`MockHost`]: reads what the connector did (log lines, egress requests) and
/// changes the host between calls. Uninstalls it when dropped. Bound to the thread it was
/// installed on (not `Send`).
#[derive(Debug)]
pub struct MockHostGuard {
    id: u64,
    _per_thread: PhantomData<*const ()>,
}

impl MockHostGuard {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        INSTALLED.with(|hosts| {
            let mut hosts = hosts.borrow_mut();
            let (_, state) = hosts
                .iter_mut()
                .find(|(id, _)| *id == self.id)
                .expect("a MockHostGuard's host stays installed until the guard is dropped");
            f(state)
        })
    }

    /// Every line logged so far, oldest first.
    pub fn logs(&self) -> Vec<LogLine> {
        self.with(|s| s.logs.clone())
    }

    /// The lines logged so far, oldest first, and forgets them (to check one call at a time).
    pub fn take_logs(&self) -> Vec<LogLine> {
        self.with(|s| std::mem::take(&mut s.logs))
    }

    /// Whether some line logged so far contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.with(|s| s.logs.iter().any(|l| l.message.contains(needle)))
    }

    /// Every URL `http::get_json` asked so far, in order (empty without
    /// [`egress`](MockHost::egress)).
    pub fn requests(&self) -> Vec<String> {
        self.with(|s| s.egress.as_ref().map(|api| api.requests.clone()).unwrap_or_default())
    }

    /// Records one more `response` for `url` on the egress fake (creating an empty one if the
    /// host had none), after those already recorded for it.
    pub fn respond(&self, url: &str, response: Response) {
        self.with(|s| s.egress.get_or_insert_with(FakeHttp::new).add(url, response));
    }

    /// Sets config `key` to `value`, or removes it (`None`): an admin changing the connection
    /// between two calls.
    pub fn set_config(&self, key: &str, value: Option<&str>) {
        self.with(|s| match value {
            Some(v) => {
                s.config.insert(key.to_string(), v.to_string());
            }
            None => {
                s.config.remove(key);
            }
        });
    }

    /// Stops the clock at `unix_millis`.
    pub fn set_clock(&self, unix_millis: u64) {
        self.with(|s| s.clock = Some(unix_millis));
    }

    /// Moves the stopped clock `millis` forward (from the machine's time if it was not set).
    pub fn advance_clock(&self, millis: u64) {
        self.with(|s| s.clock = Some(s.clock.unwrap_or_else(system_millis) + millis));
    }
}

impl Drop for MockHostGuard {
    fn drop(&mut self) {
        // `try_with`: the thread may be ending (its locals already gone).
        let _ = INSTALLED.try_with(|hosts| {
            if let Ok(mut hosts) = hosts.try_borrow_mut() {
                hosts.retain(|(id, _)| *id != self.id);
            }
        });
    }
}

/// Runs `f` on the innermost installed host's state, `None` when there is none (or it is busy:
/// a panic hook logging while an import holds it).
fn with_current<R>(f: impl FnOnce(&mut State) -> R) -> Option<R> {
    INSTALLED
        .try_with(|hosts| hosts.try_borrow_mut().ok().and_then(|mut hosts| hosts.last_mut().map(|(_, s)| f(s))))
        .ok()
        .flatten()
}

fn system_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn log(level: Level, message: &str) {
    let line = LogLine { level, message: message.to_string() };
    let kept = with_current(|s| s.logs.push(line.clone()));
    if kept.is_none() {
        eprintln!("[connector] {line}");
    }
}

pub(crate) fn config_get(key: &str) -> Option<String> {
    with_current(|s| s.config.get(key).cloned()).flatten()
}

pub(crate) fn config_entries() -> Vec<(String, String)> {
    with_current(|s| s.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
}

pub(crate) fn now_unix_millis() -> u64 {
    with_current(|s| s.clock).flatten().unwrap_or_else(system_millis)
}

/// `url` answered by the installed host's egress fake; `None` when there is none.
///
/// The fake is taken out of the host while it answers, so that a panic in it (a URL with
/// nothing recorded) can still be logged by the panic hook without finding the host borrowed.
pub(crate) fn fetch(url: &str) -> Option<Result<Response, ConnectorError>> {
    let mut api = with_current(|s| s.egress.take()).flatten()?;
    let answer = api.fetch(url);
    with_current(|s| s.egress = Some(api));
    Some(answer)
}
