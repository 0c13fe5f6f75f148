//! Panics of a shard's loop: the backtrace kept for the log line that reports the shard dead.
use std::backtrace::Backtrace;
use std::cell::RefCell;
use std::sync::Once;

thread_local! {
    static LAST: RefCell<Option<Backtrace>> = const { RefCell::new(None) };
}

/// Installs, once, a panic hook that prints where a thread panicked (and its backtrace when
/// `RUST_BACKTRACE` asks) and keeps the backtrace, captured in any case, for [`describe`]: a
/// shard that dies is reported with it.
pub fn keep_backtraces() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let print_trace = std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0");
        std::panic::set_hook(Box::new(move |info| {
            let trace = Backtrace::force_capture();
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("<unnamed>");
            match print_trace {
                true => eprintln!("thread '{name}' {info}\nbacktrace:\n{trace}"),
                false => eprintln!("thread '{name}' {info}"),
            }
            LAST.with(|l| *l.borrow_mut() = Some(trace));
        }));
    });
}

/// A panic's message, and the backtrace [`keep_backtraces`] kept on this thread, if any.
pub fn describe(payload: &(dyn std::any::Any + Send)) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string());
    match LAST.with(|l| l.borrow_mut().take()) {
        Some(trace) => format!("panicked: {message}\nbacktrace:\n{trace}"),
        None => format!("panicked: {message}"),
    }
}
