//! Timestamps: milliseconds since the Unix epoch, shown as ISO-8601 UTC with milliseconds.

use std::fmt;

use serde::{Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime, UtcOffset};

const MILLIS_PER_DAY: i64 = 86_400_000;

/// A point in time with millisecond precision, always UTC.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn now() -> Self {
        let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
        Self((nanos / 1_000_000) as i64)
    }

    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    pub const fn as_seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }

    pub const fn plus_millis(self, millis: i64) -> Self {
        Self(self.0.saturating_add(millis))
    }

    fn to_datetime(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(self.0 as i128 * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let format = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        match self.to_datetime().format(&format) {
            Ok(text) => f.write_str(&text),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A time bound given by a client as an ISO date (`2026-06-01`) or date-time
/// (`2026-06-01T10:00:00Z`, `2026-06-01T10:00:00.250+02:00`; without an offset it is UTC).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TimeBound {
    Date(Timestamp),
    DateTime(Timestamp),
}

impl TimeBound {
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if let Ok(date) = Date::parse(text, format_description!("[year]-[month]-[day]")) {
            let start = date.midnight().assume_utc();
            return Some(Self::Date(from_datetime(start)?));
        }
        if let Ok(datetime) = OffsetDateTime::parse(text, &Rfc3339) {
            return Some(Self::DateTime(from_datetime(datetime)?));
        }
        let local = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
        );
        let datetime = PrimitiveDateTime::parse(text, local).ok()?;
        Some(Self::DateTime(from_datetime(
            datetime.assume_offset(UtcOffset::UTC),
        )?))
    }

    /// The first instant the bound admits when used as a lower bound (`from`).
    pub fn start(self) -> Timestamp {
        match self {
            Self::Date(t) | Self::DateTime(t) => t,
        }
    }

    /// The first instant after the bound when used as an upper bound (`to`): a date includes
    /// its whole day, a date-time includes its own millisecond.
    pub fn end_exclusive(self) -> Timestamp {
        match self {
            Self::Date(t) => t.plus_millis(MILLIS_PER_DAY),
            Self::DateTime(t) => t.plus_millis(1),
        }
    }
}

fn from_datetime(datetime: OffsetDateTime) -> Option<Timestamp> {
    let millis = datetime.unix_timestamp_nanos() / 1_000_000;
    i64::try_from(millis).ok().map(Timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_iso_utc_with_milliseconds() {
        assert_eq!(
            Timestamp::from_millis(0).to_string(),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            Timestamp::from_millis(1_780_048_800_123).to_string(),
            "2026-05-29T10:00:00.123Z"
        );
    }

    #[test]
    fn parses_dates_and_date_times() {
        let day = TimeBound::parse("2026-05-29").unwrap();
        assert_eq!(day.start().to_string(), "2026-05-29T00:00:00.000Z");
        assert_eq!(day.end_exclusive().to_string(), "2026-05-30T00:00:00.000Z");

        let instant = TimeBound::parse("2026-05-29T10:00:00.123Z").unwrap();
        assert_eq!(instant.start().to_string(), "2026-05-29T10:00:00.123Z");
        assert_eq!(
            instant.end_exclusive().to_string(),
            "2026-05-29T10:00:00.124Z"
        );

        let offset = TimeBound::parse("2026-05-29T12:00:00+02:00").unwrap();
        assert_eq!(offset.start().to_string(), "2026-05-29T10:00:00.000Z");

        let naive = TimeBound::parse("2026-05-29T10:00:00").unwrap();
        assert_eq!(naive.start().to_string(), "2026-05-29T10:00:00.000Z");
    }

    #[test]
    fn rejects_garbage_bounds() {
        for bad in ["", "yesterday", "2026-13-01", "2026-05-29T25:00:00Z", "1e9"] {
            assert!(TimeBound::parse(bad).is_none(), "{bad}");
        }
    }
}
