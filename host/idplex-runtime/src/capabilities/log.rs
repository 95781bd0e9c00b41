//! `idplex:connector/log`: a connector's log lines in the host's log, under target `connector`,
//! with its name and connection; escaped so no message can forge another line, and capped per
//! call ([`LINES_PER_CALL`] lines of at most [`LINE_MAX`] bytes).

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use super::CallState;
use crate::bindings::v1::idplex::connector::log as contract;

/// Most log lines one call may write, and the longest line kept (in bytes, after escaping).
pub(crate) const LINES_PER_CALL: u32 = 64;
pub(crate) const LINE_MAX: usize = 2048;

/// The log capability's state.
pub(crate) struct Log {
    pub(crate) label: Arc<str>,
    pub(crate) connection: Option<String>,
    lines: u32,
}

impl Log {
    pub(crate) fn new(label: Arc<str>, connection: Option<String>) -> Log {
        Log { label, connection, lines: 0 }
    }

    pub(crate) fn start_call(&mut self) {
        self.lines = 0;
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
