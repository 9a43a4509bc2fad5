//! Timestamps: milliseconds since the Unix epoch, shown as ISO-8601 UTC with milliseconds
//! (`2026-05-29T10:00:00.000Z`), and the `from`/`to` bounds clients give in lists.
//!
//! The databases keep timestamps as BIGINT milliseconds, not as SQL date-time columns through
//! sqlx's `chrono` feature: SQLite has no date-time type (it would store text), and an integer
//! compares, sorts and round-trips the same on SQLite and PostgreSQL. `chrono` is used for the
//! clock, the calendar and the text, never in a row.

use std::fmt;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use serde::{Serialize, Serializer};

const MILLIS_PER_DAY: i64 = 86_400_000;

/// How a timestamp is shown: `2026-05-29T10:00:00.123Z`.
const DISPLAY_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

/// A point in time with millisecond precision, always UTC.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn now() -> Self {
        Self(Utc::now().timestamp_millis())
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

    /// The date-time, or the epoch for the few millisecond counts beyond chrono's range
    /// (about 262,000 years either way). Years past 9999 show as `+10000-01-01T...` (the
    /// `time` crate showed the epoch there too); no timestamp here comes near either.
    fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0).unwrap_or(DateTime::UNIX_EPOCH)
    }
}

impl fmt::Display for Timestamp {
    /// `DISPLAY_FORMAT`'s text, written digit by digit for years 0 to 9999 (a timestamp is in
    /// every user and event sent, and chrono parses the format string at each use).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.to_datetime();
        let Ok(year) = u32::try_from(at.year()) else {
            return at.format(DISPLAY_FORMAT).fmt(f);
        };
        if year > 9999 {
            return at.format(DISPLAY_FORMAT).fmt(f);
        }
        let mut text = *b"0000-00-00T00:00:00.000Z";
        let fields = [
            (0, 4, year),
            (5, 2, at.month()),
            (8, 2, at.day()),
            (11, 2, at.hour()),
            (14, 2, at.minute()),
            (17, 2, at.second()),
            (20, 3, at.timestamp_subsec_millis().min(999)),
        ];
        for (start, width, mut value) in fields {
            for digit in text[start..start + width].iter_mut().rev() {
                *digit = b'0' + (value % 10) as u8;
                value /= 10;
            }
        }
        f.pad(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("ISO-8601 UTC with milliseconds"))
            .examples(["2026-05-29T10:00:00.000Z"])
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

/// A time bound given by a client as an ISO date (`2026-06-01`) or date-time
/// (`2026-06-01T10:00:00Z`, `2026-06-01T10:00:00.250+02:00`; without an offset it is UTC).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TimeBound {
    Date(Timestamp),
    DateTime(Timestamp),
}

impl TimeBound {
    /// Reads, after trimming whitespace, one of:
    /// - a date: `2026-06-01`;
    /// - an RFC 3339 date-time: `2026-06-01T10:00:00.250+02:00`, the offset `Z` or `±HH:MM`,
    ///   any number of fractional digits, any one ASCII character for the `T` (RFC 3339 allows a
    ///   space), and `:60` for a leap second (at the end of a month, UTC: read as the last
    ///   millisecond before it);
    /// - a date-time without an offset, in UTC: `2026-06-01T10:00:00`, with up to 32
    ///   fractional digits.
    ///
    /// A date, or a date-time without an offset, may carry a sign on its year (`+2026-06-01`).
    /// These are the forms, quirks included, that the `time` crate read before chrono, so that
    /// no client's query starts failing. chrono's own parsers take more (`2026-6-1`, leading
    /// zeros and spaces, a leap second at any minute), so the text is read here and chrono
    /// does the calendar.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim().as_bytes();
        let date = Text(text).all(|t| t.date(Year::MaySign));
        if let Some(date) = date {
            return from_utc(date.and_time(NaiveTime::MIN)).map(Self::Date);
        }
        let datetime = Text(text)
            .all(Text::rfc3339)
            .or_else(|| Text(text).all(Text::datetime_without_offset))?;
        from_utc(datetime).map(Self::DateTime)
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

/// Whether a year may carry a sign.
#[derive(Clone, Copy)]
enum Year {
    MaySign,
    Unsigned,
}

/// A client's time bound, read from the left.
struct Text<'a>(&'a [u8]);

impl<'a> Text<'a> {
    /// What `read` finds, if it takes the whole text.
    fn all<T>(mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        read(&mut self).filter(|_| self.0.is_empty())
    }

    fn byte(&mut self) -> Option<u8> {
        let (&byte, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(byte)
    }

    fn literal(&mut self, byte: u8) -> Option<()> {
        (self.byte()? == byte).then_some(())
    }

    /// `count` ASCII digits as a number.
    fn digits(&mut self, count: usize) -> Option<u32> {
        let (digits, rest) = self.0.split_at_checked(count)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.0 = rest;
        Some(digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    }

    /// A sign, if there is one: -1 or 1.
    fn sign(&mut self) -> Option<i32> {
        let sign = match self.0.first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        self.0 = &self.0[1..];
        Some(sign)
    }

    /// `YYYY-MM-DD`.
    fn date(&mut self, year: Year) -> Option<NaiveDate> {
        let sign = match year {
            Year::MaySign => self.sign().unwrap_or(1),
            Year::Unsigned => 1,
        };
        let year = sign * i32::try_from(self.digits(4)?).ok()?;
        self.literal(b'-')?;
        let month = self.digits(2)?;
        self.literal(b'-')?;
        let day = self.digits(2)?;
        NaiveDate::from_ymd_opt(year, month, day)
    }

    /// `HH:MM:SS` (the seconds up to 60, for the caller to judge).
    fn time(&mut self) -> Option<(u32, u32, u32)> {
        let hour = self.digits(2)?;
        self.literal(b':')?;
        let minute = self.digits(2)?;
        self.literal(b':')?;
        Some((hour, minute, self.digits(2)?))
    }

    /// `.` and at least one digit, or nothing, as nanoseconds: digits past the ninth are read
    /// and ignored, up to `max_digits`.
    fn fraction(&mut self, max_digits: usize) -> Option<u32> {
        let Some(digits) = self.0.strip_prefix(b".") else {
            return Some(0);
        };
        let count = digits
            .iter()
            .take(max_digits)
            .take_while(|d| d.is_ascii_digit())
            .count();
        if count == 0 {
            return None;
        }
        self.0 = &digits[count..];
        let nanos = digits[..count.min(9)]
            .iter()
            .fold(0, |n, d| n * 10 + u32::from(d - b'0'));
        Some(nanos * 10u32.pow(9 - count.min(9) as u32))
    }

    /// `Z`, `z` or `±HH:MM` (to ±23:59).
    fn offset(&mut self) -> Option<FixedOffset> {
        if matches!(self.0.first(), Some(b'Z' | b'z')) {
            self.0 = &self.0[1..];
            return FixedOffset::east_opt(0);
        }
        let sign = self.sign()?;
        let hours = self.digits(2).filter(|hours| *hours <= 23)?;
        self.literal(b':')?;
        let minutes = self.digits(2).filter(|minutes| *minutes <= 59)?;
        FixedOffset::east_opt(sign * i32::try_from(hours * 3600 + minutes * 60).ok()?)
    }

    /// An RFC 3339 date-time, in UTC.
    fn rfc3339(&mut self) -> Option<NaiveDateTime> {
        let date = self.date(Year::Unsigned)?;
        self.byte()?;
        let (hour, minute, second) = self.time()?;
        let nanos = self.fraction(usize::MAX)?;
        let offset = self.offset()?;
        // A leap second is read as the last nanosecond before it, and only where one can be.
        let leap = second == 60;
        let (second, nanos) = if leap {
            (59, 999_999_999)
        } else {
            (second, nanos)
        };
        let local = date.and_hms_nano_opt(hour, minute, second, nanos)?;
        let utc = local.checked_sub_offset(offset)?;
        let last_of_month = utc.date().succ_opt().is_some_and(|next| next.day() == 1);
        let can_leap = last_of_month
            && Some(utc.time()) == NaiveTime::from_hms_nano_opt(23, 59, 59, 999_999_999);
        (!leap || can_leap).then_some(utc)
    }

    /// `YYYY-MM-DDTHH:MM:SS` with up to 32 fractional digits, in UTC.
    fn datetime_without_offset(&mut self) -> Option<NaiveDateTime> {
        let date = self.date(Year::MaySign)?;
        self.literal(b'T')?;
        let (hour, minute, second) = self.time()?;
        let nanos = self.fraction(32)?;
        // chrono refuses `:60` here: no leap second without an offset.
        date.and_hms_nano_opt(hour, minute, second, nanos)
    }
}

/// The millisecond of a UTC date-time, rounded toward zero as before (so that
/// `1969-12-31T23:59:59.9999Z` is 0, not -1).
fn from_utc(datetime: NaiveDateTime) -> Option<Timestamp> {
    let utc = datetime.and_utc();
    let nanos =
        i128::from(utc.timestamp()) * 1_000_000_000 + i128::from(utc.timestamp_subsec_nanos());
    i64::try_from(nanos / 1_000_000).ok().map(Timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_text_is_the_formats() {
        let samples = [
            0,
            1,
            -1,
            999,
            -86_400_001,
            1_780_048_800_123,
            253_402_300_799_999,
            253_402_300_800_000,
            -62_167_219_200_000,
            -62_167_219_200_001,
        ];
        for millis in samples {
            let at = Timestamp::from_millis(millis);
            let expected = at.to_datetime().format(DISPLAY_FORMAT).to_string();
            assert_eq!(at.to_string(), expected, "{millis}");
        }
    }

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

    /// The forms the `time` crate read before chrono, quirks included.
    #[test]
    fn reads_every_form_read_before() {
        let start = |text: &str| TimeBound::parse(text).map(|b| b.start().to_string());
        let digits = |digit: &str, count| digit.repeat(count);
        for (text, start_at) in [
            // Any one ASCII character between date and time when there is an offset.
            (
                "2026-05-29 10:00:00Z".to_owned(),
                "2026-05-29T10:00:00.000Z",
            ),
            (
                "2026-05-29t10:00:00z".to_owned(),
                "2026-05-29T10:00:00.000Z",
            ),
            (
                "2026-05-29_12:00:00+02:00".to_owned(),
                "2026-05-29T10:00:00.000Z",
            ),
            (
                "2026-05-29T10:00:00-00:00".to_owned(),
                "2026-05-29T10:00:00.000Z",
            ),
            (
                "2026-05-29T10:00:00+23:59".to_owned(),
                "2026-05-28T10:01:00.000Z",
            ),
            // Fractions: more digits than milliseconds, cut (not rounded).
            (
                "2026-05-29T10:00:00.1239Z".to_owned(),
                "2026-05-29T10:00:00.123Z",
            ),
            (
                "2026-05-29T10:00:00.5".to_owned(),
                "2026-05-29T10:00:00.500Z",
            ),
            (
                format!("2026-05-29T10:00:00.{}", digits("9", 32)),
                "2026-05-29T10:00:00.999Z",
            ),
            (
                format!("2026-05-29T10:00:00.{}Z", digits("9", 40)),
                "2026-05-29T10:00:00.999Z",
            ),
            // A leap second at the end of a month (UTC): its last millisecond before.
            (
                "2016-12-31T23:59:60Z".to_owned(),
                "2016-12-31T23:59:59.999Z",
            ),
            (
                "2017-01-01T00:59:60.5+01:00".to_owned(),
                "2016-12-31T23:59:59.999Z",
            ),
            // A sign on the year of a date, or of a date-time without an offset.
            ("+2026-05-29".to_owned(), "2026-05-29T00:00:00.000Z"),
            ("-0001-01-01".to_owned(), "-0001-01-01T00:00:00.000Z"),
            (
                "+2026-05-29T10:00:00".to_owned(),
                "2026-05-29T10:00:00.000Z",
            ),
            // Before 1970, a fraction of a millisecond rounds toward zero.
            (
                "1969-12-31T23:59:59.9999Z".to_owned(),
                "1970-01-01T00:00:00.000Z",
            ),
            ("\u{a0}2026-05-29\n".to_owned(), "2026-05-29T00:00:00.000Z"),
        ] {
            assert_eq!(start(&text).as_deref(), Some(start_at), "{text}");
        }
    }

    #[test]
    fn rejects_garbage_bounds() {
        for bad in ["", "yesterday", "2026-13-01", "2026-05-29T25:00:00Z", "1e9"] {
            assert!(TimeBound::parse(bad).is_none(), "{bad}");
        }
        // What chrono's own parsers would take, and what was never read.
        let too_long = format!("2026-05-29T10:00:00.{}", "1".repeat(33));
        for bad in [
            "2026-5-29",
            "2026-05-29 10:00:00",
            "2026-05-29t10:00:00",
            "2026-05-29T10:00:60",
            "2026-05-30T23:59:60Z",
            "2026-05-29T10:00:00.",
            "2026-05-29T10:00:00+24:00",
            "2026-05-29T10:00:00+0200",
            "2026-05-29\u{e9}10:00:00Z",
            "+2026-05-29T10:00:00Z",
            "+02026-05-29",
            "02026-05-29",
            "2026-02-29",
            &too_long,
        ] {
            assert!(TimeBound::parse(bad).is_none(), "{bad}");
        }
    }
}
