//! `idplex:connector/log`: a connector's log lines in the host's log, under target `connector`,
//! with its name and connection; escaped so no message can forge another line, and capped per
//! call ([`LINES_PER_CALL`] lines of at most [`LINE_MAX`] bytes).
//!
//! An `error` line starting with [`PANIC_PREFIX`] (what the SDK's panic hook writes just before
//! the guest traps: `panicked at src/lib.rs:12:5: message`) is also kept for the call, even past
//! the cap, so that the trap's error names the panic ([`Log::panic`]).

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use super::CallState;
use crate::bindings::v1::idplex::connector::log as contract;

/// Most log lines one call may write, and the longest line kept (in bytes, after escaping).
pub(crate) const LINES_PER_CALL: u32 = 64;
pub(crate) const LINE_MAX: usize = 2048;

/// How the `error` line a connector logs as it panics starts (the SDK's panic hook:
/// `panicked at <file>:<line>:<column>: <message>`).
pub(crate) const PANIC_PREFIX: &str = "panicked at ";

/// The longest panic line kept for the call's error (in bytes, after escaping).
pub(crate) const PANIC_MAX: usize = 512;

/// The log capability's state.
pub(crate) struct Log {
    pub(crate) label: Arc<str>,
    pub(crate) connection: Option<String>,
    lines: u32,
    /// The last panic line of this call (escaped, at most [`PANIC_MAX`] bytes).
    panic: Option<String>,
}

impl Log {
    pub(crate) fn new(label: Arc<str>, connection: Option<String>) -> Log {
        Log { label, connection, lines: 0, panic: None }
    }

    pub(crate) fn start_call(&mut self) {
        self.lines = 0;
        self.panic = None;
    }

    /// The panic the connector reported during the current (or just ended) call, if any: the
    /// message its panic hook logged before the trap.
    pub(crate) fn panic(&self) -> Option<&str> {
        self.panic.as_deref()
    }

    /// Notes in the host log how many lines of this call were dropped, if any.
    pub(crate) fn end_call(&mut self) {
        if self.lines > LINES_PER_CALL {
            tracing::warn!(
                target: "connector",
                connector = &*self.label,
                connection = self.connection.as_deref().unwrap_or("-"),
                "{} more log lines of this call dropped (limit {LINES_PER_CALL} per call)",
                self.lines - LINES_PER_CALL
            );
        }
    }
}

impl contract::Host for Log {
    fn log(&mut self, level: contract::Level, message: String) {
        if matches!(level, contract::Level::Error) && message.starts_with(PANIC_PREFIX) {
            self.panic = Some(sanitize_log_message(&message, PANIC_MAX));
        }
        self.lines = self.lines.saturating_add(1);
        if self.lines > LINES_PER_CALL {
            return;
        }
        let message = sanitize_log_message(&message, LINE_MAX);
        let connector = &*self.label;
        let connection = self.connection.as_deref().unwrap_or("-");
        use contract::Level;
        match level {
            Level::Trace => tracing::trace!(target: "connector", connector, connection, "{message}"),
            Level::Debug => tracing::debug!(target: "connector", connector, connection, "{message}"),
            Level::Info => tracing::info!(target: "connector", connector, connection, "{message}"),
            Level::Warn => tracing::warn!(target: "connector", connector, connection, "{message}"),
            Level::Error => tracing::error!(target: "connector", connector, connection, "{message}"),
        }
    }
}

pub(crate) fn link(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    contract::add_to_linker::<CallState, HasSelf<Log>>(linker, |s| &mut s.log)
}

/// A connector's log message as one line of host log: control characters (`\n`, `\r`, ESC, …),
/// Unicode line/paragraph separators and bidirectional overrides escaped (`\n`, `\u{1b}`), so
/// no message can start or fake another log line; cut at `max` bytes (then `…`).
pub(crate) fn sanitize_log_message(message: &str, max: usize) -> String {
    let mut out = String::with_capacity(message.len().min(max) + 4);
    for c in message.chars() {
        let escaped: Option<String> = match c {
            '\n' => Some("\\n".into()),
            '\r' => Some("\\r".into()),
            '\t' => Some("\\t".into()),
            '\\' => Some("\\\\".into()),
            c if c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
            {
                Some(format!("\\u{{{:x}}}", c as u32))
            }
            _ => None,
        };
        let piece_len = escaped.as_ref().map_or(c.len_utf8(), String::len);
        if out.len() + piece_len > max {
            out.push('…');
            break;
        }
        match escaped {
            Some(e) => out.push_str(&e),
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::{Host, Level};

    fn log() -> Log {
        Log::new(Arc::from("acme@1.0.0"), Some("conn_1".into()))
    }

    #[test]
    fn the_panic_line_is_kept_for_the_call_even_past_the_line_cap() {
        let mut l = log();
        l.start_call();
        for i in 0..LINES_PER_CALL + 10 {
            l.log(Level::Info, format!("line {i}"));
        }
        l.log(Level::Warn, "panicked at a warning is not a panic".into());
        assert_eq!(l.panic(), None);
        l.log(Level::Error, "panicked at src/lib.rs:3:5: bad\ninput\u{1b}[2K".into());
        assert_eq!(l.panic(), Some(r"panicked at src/lib.rs:3:5: bad\ninput\u{1b}[2K"), "escaped onto one line");
        l.end_call();
        assert!(l.panic().is_some(), "still there when the call's error is built, after end_call");
        l.start_call();
        assert_eq!(l.panic(), None, "a new call starts without the last one's panic");
    }

    #[test]
    fn the_panic_line_is_bounded() {
        let mut l = log();
        l.log(Level::Error, format!("{PANIC_PREFIX}src/lib.rs:1:1: {}", "x".repeat(10_000)));
        let kept = l.panic().unwrap();
        assert!(kept.len() <= PANIC_MAX + '…'.len_utf8() && kept.ends_with('…'), "{} bytes", kept.len());
    }
}
