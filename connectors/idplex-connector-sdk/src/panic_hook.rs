//! A panic hook that tells the host *why* a connector trapped.
//!
//! A connector is built with `panic = "abort"`: a panic ends the call with a Wasm trap, and
//! without this hook all the host (and the admin) would learn is ``wasm `unreachable`
//! instruction executed``. [`install`] sets a hook that first writes the panic as one
//! `error` line to the host log (`idplex:connector/log`):
//!
//! ```text
//! panicked at src/lib.rs:42:13: config key `domain` was checked above
//! ```
//!
//! then runs the hook that was set before (the standard one, which prints nothing in the
//! sandbox). The host keeps that line with the call and adds it to the trap's error (the
//! connector event an admin reads, the admin API's `message`).
//!
//! [`export_connector!`](crate::export_connector) installs it on the first entry into any
//! export, so a connector built with the SDK does nothing. A connector that exports its
//! functions another way calls [`install`] at the top of each export.
//!
//! The message is the connector's own text, as any `connector-error` message is: do not put
//! secrets or request bodies in `panic!`/`expect` messages. The host cuts the line at 2 KiB.

use std::panic::PanicHookInfo;
use std::sync::Once;

/// How the line the hook logs starts. The host recognizes a panic by an `error` line starting
/// with it (`panicked at <file>:<line>:<column>: <message>`).
pub const PREFIX: &str = "panicked at ";

static INSTALL: Once = Once::new();

/// Sets the SDK's panic hook on top of the current one, once per instance (later calls do
/// nothing). Cheap enough to call at the top of every export.
pub fn install() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            crate::log::error(&message(info));
            previous(info);
        }));
    });
}

/// The log line for a panic: [`PREFIX`], the location (`file:line:column`, or `<unknown>`),
/// `: ` and the panic's message (`(a panic payload that is not text)` for a non-text
/// `panic_any`).
pub fn message(info: &PanicHookInfo<'_>) -> String {
    let location = info
        .location()
        .map_or_else(|| "<unknown>".to_string(), |l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
    format!("{PREFIX}{location}: {}", payload_text(info.payload()))
}

/// The text of a panic payload: what `panic!("…")` and `expect("…")` carry, a `&str` or a
/// `String`.
fn payload_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic payload that is not text)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_read_as_text_whatever_their_type() {
        assert_eq!(payload_text(&"static text"), "static text");
        assert_eq!(payload_text(&String::from("formatted 42")), "formatted 42");
        assert_eq!(payload_text(&42_u32), "(a panic payload that is not text)");
    }

    /// The hook is process-wide; this test is the only one of the SDK's that installs it, and
    /// what it logs lands in the mock host of the thread that panicked, so other tests running
    /// at the same time are unaffected (their panics also pass through the previous hook).
    #[test]
    fn a_panic_reaches_the_host_log_with_its_message_and_location() {
        use crate::log::Level;
        install();
        install(); // idempotent: a second call must not stack a second hook
        let host = crate::testing::MockHost::new().install();
        let line = line!() + 1;
        let outcome = std::panic::catch_unwind(|| panic!("mapping broke on {}", "ada@example.com"));
        assert!(outcome.is_err());
        let logs = host.logs();
        assert_eq!(logs.len(), 1, "one line per panic, not one per installed hook: {logs:?}");
        assert_eq!(logs[0].level, Level::Error);
        let expected = format!("{PREFIX}{}:{line}:", file!());
        assert!(logs[0].message.starts_with(&expected), "{:?} should start with {expected:?}", logs[0].message);
        assert!(logs[0].message.ends_with(": mapping broke on ada@example.com"), "{:?}", logs[0].message);
    }
}
