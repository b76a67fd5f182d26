//! What connectors log, as tracing events under one target,
//! `gatehouse::connector` (`--log-connectors LEVEL` filters it alone), with
//! each of the connector's fields as a field of the event: `user=jdoe` in
//! text, `"fields": {"user": "jdoe", …}` in JSON, not one string of them.
//!
//! tracing wants field names known at compile time; a connector's are known
//! when it logs. Each distinct (level, field names) gets a callsite made
//! once and kept for the life of the process, up to `MAX_CALLSITES`; past
//! that (a connector inventing names) the fields are folded into one.

use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock},
};

use tracing::{
    Level, Metadata,
    callsite::{Callsite, Identifier},
    field::{FieldSet, Value},
    metadata::Kind,
    subscriber::Interest,
};

/// The target of every line a connector logs (and of its last words).
pub const TARGET: &str = "gatehouse::connector";
/// Connector fields kept as fields of their own; more are folded.
const MAX_FIELDS: usize = 16;
/// `message`, `connector`, the connector's fields and `more`.
const SLOTS: usize = MAX_FIELDS + 3;
const MAX_CALLSITES: usize = 1024;

struct DynamicCallsite {
    metadata: OnceLock<Metadata<'static>>,
}

impl Callsite for DynamicCallsite {
    fn set_interest(&self, _: Interest) {}

    fn metadata(&self) -> &Metadata<'_> {
        self.metadata.get().expect("set before the callsite is registered")
    }
}

type Key = (usize, Vec<String>);

fn callsite(level: Level, names: &[String]) -> Option<&'static DynamicCallsite> {
    static SITES: OnceLock<Mutex<HashMap<Key, &'static DynamicCallsite>>> = OnceLock::new();
    let mut sites = SITES.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    let key = (level_index(level), names.to_vec());
    if let Some(site) = sites.get(&key) {
        return Some(site);
    }
    if sites.len() >= MAX_CALLSITES {
        return None;
    }
    // Leaked on purpose: a callsite lives as long as the process, and there
    // are at most MAX_CALLSITES of them.
    let site: &'static DynamicCallsite = Box::leak(Box::new(DynamicCallsite { metadata: OnceLock::new() }));
    let all: Vec<&'static str> = ["message", "connector"]
        .into_iter()
        .chain(names.iter().map(|n| &*Box::leak(n.clone().into_boxed_str())))
        .chain(["more"])
        .collect();
    let fields = FieldSet::new(Box::leak(all.into_boxed_slice()), Identifier(site));
    let metadata = Metadata::new("connector log", TARGET, level, None, None, None, fields, Kind::EVENT);
    site.metadata.set(metadata).ok()?;
    tracing::callsite::register(site);
    sites.insert(key, site);
    Some(site)
}

fn level_index(level: Level) -> usize {
    match level {
        Level::ERROR => 0,
        Level::WARN => 1,
        Level::INFO => 2,
        Level::DEBUG => 3,
        Level::TRACE => 4,
    }
}

/// A connector's field name as an event field: letters, digits, `_` and
/// `.`, at most 40 characters, never one of the host's own names.
fn field_name(raw: &str) -> String {
    let mut name: String =
        raw.chars().take(40).map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '.' { c } else { '_' }).collect();
    if name.is_empty() || ["message", "connector", "more"].contains(&name.as_str()) {
        name.insert_str(0, "field_");
    }
    name
}

/// Logs one line of connector `id` (`message` and `fields` already stripped
/// of credentials).
pub fn emit(level: Level, id: &str, message: &str, fields: &[(String, String)]) {
    let mut names: Vec<String> = Vec::new();
    let mut values: Vec<&str> = Vec::new();
    let mut folded: Vec<String> = Vec::new();
    for (key, value) in fields {
        let name = field_name(key);
        if names.len() < MAX_FIELDS && !names.contains(&name) {
            names.push(name);
            values.push(value);
        } else {
            folded.push(format!("{key}={value:?}"));
        }
    }
    let Some(site) = callsite(level, &names) else {
        let all: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        return fallback(level, id, message, &all.join(" "));
    };
    let metadata = site.metadata();
    if !tracing::dispatcher::get_default(|d| d.enabled(metadata)) {
        return;
    }
    let set = metadata.fields();
    let slots: Vec<tracing::field::Field> = set.iter().collect();
    let more = folded.join(" ");
    let mut texts: Vec<&dyn Value> = vec![&message, &id];
    texts.extend(values.iter().map(|v| v as &dyn Value));
    // The array has a fixed length; unused slots repeat a field with no value.
    let mut pairs: [(&tracing::field::Field, Option<&dyn Value>); SLOTS] = [(&slots[0], None); SLOTS];
    for (slot, (field, value)) in pairs.iter_mut().zip(slots.iter().zip(texts)) {
        *slot = (field, Some(value));
    }
    if !more.is_empty() {
        pairs[slots.len() - 1] = (&slots[slots.len() - 1], Some(&more as &dyn Value));
    }
    tracing::Event::dispatch(metadata, &set.value_set(&pairs));
}

fn fallback(level: Level, connector: &str, message: &str, more: &str) {
    match level {
        Level::ERROR => tracing::error!(target: TARGET, connector, more, "{message}"),
        Level::WARN => tracing::warn!(target: TARGET, connector, more, "{message}"),
        Level::INFO => tracing::info!(target: TARGET, connector, more, "{message}"),
        Level::DEBUG => tracing::debug!(target: TARGET, connector, more, "{message}"),
        Level::TRACE => tracing::trace!(target: TARGET, connector, more, "{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_tamed_and_never_the_hosts() {
        assert_eq!(field_name("user"), "user");
        assert_eq!(field_name("http.status"), "http.status");
        assert_eq!(field_name("a b=c"), "a_b_c");
        assert_eq!(field_name("message"), "field_message");
        assert_eq!(field_name("connector"), "field_connector");
        assert_eq!(field_name(""), "field_");
        assert_eq!(field_name(&"x".repeat(100)).len(), 40);
    }

    #[test]
    fn the_same_names_reuse_one_callsite() {
        let names = vec!["user".to_string(), "status".to_string()];
        let a = callsite(Level::INFO, &names).unwrap() as *const _;
        let b = callsite(Level::INFO, &names).unwrap() as *const _;
        let c = callsite(Level::DEBUG, &names).unwrap() as *const _;
        assert_eq!(a, b);
        assert_ne!(a, c);
        let fields: Vec<String> =
            callsite(Level::INFO, &names).unwrap().metadata().fields().iter().map(|f| f.name().to_string()).collect();
        assert_eq!(fields, ["message", "connector", "user", "status", "more"]);
    }
}
