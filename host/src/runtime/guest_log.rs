//! What a connector may put in the host's log: a budget of lines and bytes
//! per call, a bounded line length, credentials removed and control
//! characters escaped. Connector text is attacker-controlled: unbounded, it
//! fills the disk; unescaped, a CR/LF or an escape sequence lets it write
//! lines that read as the host's own.

use std::borrow::Cow;

use secrecy::{ExposeSecret, SecretString};

/// Longest message (or field name or value) kept from one `log.write`,
/// in characters; the rest is replaced by a marker.
pub const MAX_LINE_CHARS: usize = 2048;

/// How much of its log a call may still write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogBudget {
    pub lines: u32,
    pub bytes: usize,
}

/// One call's log state.
#[derive(Debug)]
pub struct CallLog {
    left: LogBudget,
    granted: LogBudget,
    exhausted: bool,
}

/// A log line as the host will write it.
#[derive(Debug, PartialEq, Eq)]
pub struct Line {
    pub message: String,
    pub fields: Vec<(String, String)>,
}

/// What a `log.write` turns into.
#[derive(Debug, PartialEq, Eq)]
pub enum Admitted {
    Write(Line),
    /// The budget just ran out: write the one marker line, then nothing.
    Exhausted(LogBudget),
    Dropped,
}

impl CallLog {
    pub fn new(budget: LogBudget) -> Self {
        Self { left: budget, granted: budget, exhausted: false }
    }

    /// Decides what becomes of one `log.write`.
    pub fn admit(&mut self, message: &str, fields: &[(String, String)], secrets: &[SecretString]) -> Admitted {
        if self.exhausted {
            return Admitted::Dropped;
        }
        let message = clean(message, secrets);
        let fields: Vec<(String, String)> =
            fields.iter().map(|(k, v)| (clean(k, secrets), clean(v, secrets))).collect();
        let cost = message.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        if self.left.lines == 0 || cost > self.left.bytes {
            self.exhausted = true;
            return Admitted::Exhausted(self.granted);
        }
        self.left.lines -= 1;
        self.left.bytes -= cost;
        Admitted::Write(Line { message, fields })
    }
}

/// Credentials removed, cut to [`MAX_LINE_CHARS`], control characters
/// escaped. Only a bounded prefix is examined, so a huge message costs the
/// host no more than a short one.
pub fn clean(text: &str, secrets: &[SecretString]) -> String {
    let longest = secrets.iter().map(|s| s.expose_secret().chars().count()).max().unwrap_or(0);
    let (head, cut) = prefix(text, MAX_LINE_CHARS + longest);
    let redacted = redact(head, secrets);
    let (kept, cut_again) = prefix(&redacted, MAX_LINE_CHARS);
    let mut kept = kept.to_string();
    let cut = cut || cut_again;
    if cut {
        // A credential that straddles the cut would leave its beginning.
        drop_partial_secret(&mut kept, secrets);
    }
    let mut out = escape_controls(&kept).into_owned();
    if cut {
        out.push_str(&format!("…[cut at {MAX_LINE_CHARS} characters]"));
    }
    out
}

/// Replaces every credential value (of 4 characters or more) with
/// `[redacted]`.
pub fn redact<'a>(text: &'a str, secrets: &[SecretString]) -> Cow<'a, str> {
    let mut out = Cow::Borrowed(text);
    for secret in secrets {
        let s = secret.expose_secret();
        if s.len() >= 4 && out.contains(s) {
            out = Cow::Owned(out.replace(s, "[redacted]"));
        }
    }
    out
}

/// Writes control characters (CR, LF, ESC, DEL, C1 …) and the Unicode line
/// and paragraph separators as escapes, so one log call is one log line
/// and cannot steer a terminal.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    let escaped = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if !text.chars().any(escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escaped(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The first `max` characters of `text`, and whether anything was cut.
fn prefix(text: &str, max: usize) -> (&str, bool) {
    match text.char_indices().nth(max) {
        Some((at, _)) => (&text[..at], true),
        None => (text, false),
    }
}

fn drop_partial_secret(kept: &mut String, secrets: &[SecretString]) {
    for secret in secrets {
        let s = secret.expose_secret();
        let starts: Vec<usize> = s.char_indices().map(|(i, _)| i).skip(1).collect();
        if let Some(len) = starts.into_iter().rev().find(|&len| kept.ends_with(&s[..len])) {
            kept.truncate(kept.len() - len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(values: &[&str]) -> Vec<SecretString> {
        values.iter().map(|v| SecretString::from(v.to_string())).collect()
    }

    #[test]
    fn a_message_cannot_start_a_line_of_its_own() {
        let forged = "ok\n2026-01-01T00:00:00Z  INFO gatehouse: forged\r\x1b[2J\u{2028}\u{85}end";
        let line = clean(forged, &[]);
        assert!(!line.contains(['\n', '\r', '\x1b', '\u{2028}', '\u{85}']), "{line}");
        assert_eq!(line, "ok\\n2026-01-01T00:00:00Z  INFO gatehouse: forged\\r\\u{1b}[2J\\u{2028}\\u{85}end");
        assert_eq!(clean("plain text, ünïcode", &[]), "plain text, ünïcode");
    }

    #[test]
    fn long_lines_are_cut_without_leaving_part_of_a_credential() {
        let secret = "glpat-0123456789abcdef";
        let long = "x".repeat(MAX_LINE_CHARS * 10);
        let line = clean(&long, &[]);
        assert!(line.starts_with(&"x".repeat(MAX_LINE_CHARS)) && line.ends_with("characters]"), "{line}");
        assert!(line.chars().count() < MAX_LINE_CHARS + 40);
        // The credential straddles the cut: neither half is kept.
        let straddling = format!("{}{secret}{}", "y".repeat(MAX_LINE_CHARS - 6), "z".repeat(100));
        let line = clean(&straddling, &secrets(&[secret]));
        assert!(!line.contains("glpat"), "{line}");
        let whole = format!("token {secret} {}", "z".repeat(MAX_LINE_CHARS));
        assert!(clean(&whole, &secrets(&[secret])).starts_with("token [redacted] "));
    }

    #[test]
    fn the_budget_ends_with_one_marker_then_silence() {
        let mut log = CallLog::new(LogBudget { lines: 3, bytes: 1000 });
        for _ in 0..3 {
            assert!(matches!(log.admit("hello", &[], &[]), Admitted::Write(_)));
        }
        assert_eq!(log.admit("hello", &[], &[]), Admitted::Exhausted(LogBudget { lines: 3, bytes: 1000 }));
        for _ in 0..1000 {
            assert_eq!(log.admit("hello", &[], &[]), Admitted::Dropped);
        }
        let mut log = CallLog::new(LogBudget { lines: 100, bytes: 20 });
        let field = vec![("k".to_string(), "v\nforged".to_string())];
        assert_eq!(
            log.admit("a", &field, &[]),
            Admitted::Write(Line { message: "a".into(), fields: vec![("k".into(), "v\\nforged".into())] })
        );
        assert!(matches!(log.admit("more than the bytes left", &[], &[]), Admitted::Exhausted(_)));
    }
}
