//! Structured logs through the host, tagged with the connector id. The host
//! strips credential values, but do not log them in the first place.

use crate::bindings::gatehouse::host::log::Level;

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

/// On native targets there is no host to call (the import would abort the
/// process): unit tests and benchmarks get the line on stderr instead.
#[cfg(not(target_arch = "wasm32"))]
fn emit(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: String = fields.iter().map(|(k, v)| format!(" {k}={v:?}")).collect();
    eprintln!("[{level:?}] {message}{fields}");
}

#[cfg(test)]
mod tests {
    #[test]
    fn logging_natively_does_not_abort() {
        super::info("native log line", &[("k", "v")]);
        super::warn("native warning", &[]);
    }
}
