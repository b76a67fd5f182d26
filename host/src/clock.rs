//! The wall clock, read and formatted in one place: whole seconds, UTC,
//! RFC 3339, as every stored and served time is. `Timestamp` is that time
//! as a value, stored as the same text.

use std::{fmt, time::Duration};

use sqlx::{Database, Decode, Encode, Type, encode::IsNull, error::BoxDynError};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// Now, as Unix seconds and as RFC 3339 text of the same second.
pub fn now() -> (i64, String) {
    let t = Timestamp::now();
    (t.unix(), t.to_string())
}

/// RFC 3339 in UTC, without fractions of a second.
pub fn rfc3339(t: OffsetDateTime) -> String {
    Timestamp::from(t).to_string()
}

/// Unix seconds as RFC 3339, when representable.
pub fn unix_rfc3339(seconds: i64) -> Option<String> {
    Timestamp::from_unix(seconds).map(|t| t.to_string())
}

/// A UTC instant to the second. Stored and served as RFC 3339 text, so
/// rows sort by time as text and read the same in any SQLite client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    pub fn now() -> Self {
        OffsetDateTime::now_utc().into()
    }

    pub fn from_unix(seconds: i64) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp(seconds).ok().map(Self)
    }

    /// Parses RFC 3339 (any offset, any fraction); None when it is not.
    pub fn parse(text: &str) -> Option<Self> {
        OffsetDateTime::parse(text, &Rfc3339).ok().map(Self::from)
    }

    /// An expiry as connectors give it: RFC 3339 date-time, or a full date
    /// alone (`2026-12-01`), which means the start of that day in UTC (when
    /// providers such as GitLab end a token's life).
    pub fn parse_expiry(text: &str) -> Option<Self> {
        Self::parse(text).or_else(|| {
            let (year, rest) = text.split_once('-')?;
            let (month, day) = rest.split_once('-')?;
            if (year.len(), month.len(), day.len()) != (4, 2, 2) {
                return None;
            }
            let month = time::Month::try_from(month.parse::<u8>().ok()?).ok()?;
            let date = time::Date::from_calendar_date(year.parse().ok()?, month, day.parse().ok()?).ok()?;
            Some(Self(date.midnight().assume_utc()))
        })
    }

    pub fn unix(self) -> i64 {
        self.0.unix_timestamp()
    }

    pub fn after(self, duration: Duration) -> Self {
        Self(self.0 + duration)
    }

    /// Whether this instant is within `window` from now, or past.
    pub fn within(self, window: Duration) -> bool {
        self.0 - OffsetDateTime::now_utc() <= window
    }
}

impl From<OffsetDateTime> for Timestamp {
    fn from(t: OffsetDateTime) -> Self {
        let t = t.to_offset(time::UtcOffset::UTC);
        Self(t.replace_nanosecond(0).unwrap_or(t))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.format(&Rfc3339).map_err(|_| fmt::Error)?)
    }
}

// Text in every database, so one column type serves SQLite and PostgreSQL.
impl<DB: Database> Type<DB> for Timestamp
where
    String: Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <String as Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <String as Type<DB>>::compatible(ty)
    }
}

impl<'q, DB: Database> Encode<'q, DB> for Timestamp
where
    String: Encode<'q, DB>,
{
    fn encode_by_ref(&self, buf: &mut <DB as Database>::ArgumentBuffer<'q>) -> Result<IsNull, BoxDynError> {
        <String as Encode<'q, DB>>::encode(self.to_string(), buf)
    }
}

impl<'r, DB: Database> Decode<'r, DB> for Timestamp
where
    &'r str: Decode<'r, DB>,
{
    fn decode(value: <DB as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<'r, DB>>::decode(value)?;
        Self::parse(text).ok_or_else(|| format!("{text:?} is not an RFC 3339 time").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_utc_whole_seconds_and_round_trips() {
        let t = Timestamp::parse("2026-11-26T13:14:15.987+01:00").unwrap();
        assert_eq!(t.to_string(), "2026-11-26T12:14:15Z");
        assert_eq!(Timestamp::parse(&t.to_string()), Some(t));
        assert_eq!(Timestamp::parse("2026-11-26"), None);
        assert_eq!(Timestamp::parse_expiry("2026-11-26").unwrap().to_string(), "2026-11-26T00:00:00Z");
        assert_eq!(Timestamp::parse_expiry("2026-11-26T10:00:00Z").unwrap().to_string(), "2026-11-26T10:00:00Z");
        assert_eq!(Timestamp::parse_expiry("next week"), None);
    }

    #[test]
    fn within_a_window() {
        let now = Timestamp::now();
        assert!(now.after(Duration::from_secs(60)).within(Duration::from_secs(300)));
        assert!(!now.after(Duration::from_secs(3600)).within(Duration::from_secs(300)));
        assert!(Timestamp::from_unix(0).unwrap().within(Duration::ZERO));
    }
}
