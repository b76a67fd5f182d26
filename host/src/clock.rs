//! The wall clock, read and formatted in one place: whole seconds, UTC,
//! RFC 3339, as every stored and served time is.

use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// Now, as Unix seconds and as RFC 3339 text of the same second.
pub fn now() -> (i64, String) {
    let t = OffsetDateTime::now_utc();
    (t.unix_timestamp(), rfc3339(t))
}

/// RFC 3339 in UTC, without fractions of a second.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0).unwrap_or(t).format(&Rfc3339).expect("a time formats as RFC 3339")
}

/// Unix seconds as RFC 3339, when representable.
pub fn unix_rfc3339(seconds: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp(seconds).ok().map(rfc3339)
}
