//! Structured logs through the host, tagged with the connector id. The host
//! strips credential values, but do not log them in the first place.
//!
//! On native targets (`cargo test`) there is no host: each line goes to
//! stderr and into the calling thread's record, which tests read with
//! [`crate::testkit::logs`].

pub use crate::bindings::gatehouse::host::log::Level;

pub fn debug(message: &str, fields: &[(&str, &str)]) {
    emit(Level::Debug, message, fields);
}

pub fn info(message: &str, fields: &[(&str, &str)]) {
    emit(Level::Info, message, fields);
}

pub fn warn(message: &str, fields: &[(&str, &str)]) {
    emit(Level::Warn, message, fields);
}

pub fn error(message: &str, fields: &[(&str, &str)]) {
    emit(Level::Error, message, fields);
}

#[cfg(target_arch = "wasm32")]
fn emit(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    crate::bindings::gatehouse::host::log::write(level, message, &fields);
}

/// One line a connector logged, as recorded natively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub level: Level,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

impl Line {
    /// The value of the field `key`, if logged.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

#[cfg(not(target_arch = "wasm32"))]
thread_local! {
    pub(crate) static RECORDED: std::cell::RefCell<Vec<Line>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The import would abort a native process: the line goes to stderr (which
/// `cargo test` shows for a failing test) and into this thread's record.
#[cfg(not(target_arch = "wasm32"))]
fn emit(level: Level, message: &str, fields: &[(&str, &str)]) {
    let shown: String = fields.iter().map(|(k, v)| format!(" {k}={v:?}")).collect();
    eprintln!("[{level:?}] {message}{shown}");
    let fields = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    RECORDED.with(|r| r.borrow_mut().push(Line { level, message: message.to_string(), fields }));
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn logging_natively_does_not_abort_and_is_recorded() {
        info("native log line", &[("k", "v")]);
        warn("native warning", &[]);
        let lines = crate::testkit::take_logs();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            (lines[0].level, lines[0].message.as_str(), lines[0].field("k")),
            (Level::Info, "native log line", Some("v"))
        );
        assert_eq!(lines[1].level, Level::Warn);
        assert!(crate::testkit::logs().is_empty(), "taken");
    }
}
