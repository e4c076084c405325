//! Rotation intervals and KMS timestamps (pure).
//!
//! Intervals use the seed's `integer[unit]` syntax (unit d, h, m or s) and are kept as whole
//! seconds; status reports them as `<seconds>s`. Times are UTC, truncated to whole seconds,
//! because status is second-granular: a schedule kept finer than its record would fire early.

use std::fmt;

use jiff::{SignedDuration, Timestamp};

/// A rotation interval in whole seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval(u64);

impl Interval {
    pub const fn from_secs(secs: u64) -> Self {
        Interval(secs)
    }

    pub const fn from_days(days: u64) -> Self {
        Interval(days * 86_400)
    }

    pub const fn as_secs(self) -> u64 {
        self.0
    }

    pub fn as_duration(self) -> SignedDuration {
        // Parsing caps intervals far below i64::MAX seconds.
        SignedDuration::from_secs(self.0 as i64)
    }

    /// The KMS's response form: seconds with an `s` suffix (`31536000s`).
    pub fn to_kms_string(self) -> String {
        format!("{}s", self.0)
    }
}

impl fmt::Display for Interval {
    /// The most readable exact `integer[unit]` form, for messages: `7d`, `36h`, `90s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0;
        match secs {
            s if s > 0 && s % 86_400 == 0 => write!(f, "{}d", s / 86_400),
            s if s > 0 && s % 3_600 == 0 => write!(f, "{}h", s / 3_600),
            s if s > 0 && s % 60 == 0 => write!(f, "{}m", s / 60),
            s => write!(f, "{s}s"),
        }
    }
}

/// Intervals longer than this cannot be real (about 31,700 years); rejecting them early keeps
/// every later date computation far from overflow.
const MAX_PARSEABLE_SECS: u64 = 1_000_000_000_000;

/// Why an interval did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IntervalError {
    #[error("it must be an integer followed by a unit d, h, m or s, for example 365d")]
    Format,
    #[error("it is too large")]
    TooLarge,
}

/// Parses the seed's `integer[unit]` syntax: `365d`, `36h`, `90m`, `604800s`.
/// Case-sensitive, no signs, no spaces, no fractions.
pub fn parse_interval(text: &str) -> Result<Interval, IntervalError> {
    // The unit is the last character, which may be any character: split on its boundary.
    let split = text.char_indices().last().map_or(0, |(i, _)| i);
    let (digits, unit) = text.split_at(split);
    let multiplier: u64 = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return Err(IntervalError::Format),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IntervalError::Format);
    }
    let value: u64 = digits.parse().map_err(|_| IntervalError::TooLarge)?;
    value
        .checked_mul(multiplier)
        .filter(|secs| *secs <= MAX_PARSEABLE_SECS)
        .map(Interval)
        .ok_or(IntervalError::TooLarge)
}

/// Truncates to whole seconds, the granularity of everything kept in status.
pub fn truncate_to_second(at: Timestamp) -> Timestamp {
    Timestamp::from_second(at.as_second()).expect("a valid timestamp stays valid truncated")
}

/// The KMS time format: UTC to the second, `2016-03-25T10:42:40Z`.
pub fn format_kms_time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parses a time in the KMS format (or any RFC 3339 time), truncated to the second.
pub fn parse_kms_time(text: &str) -> Option<Timestamp> {
    text.parse::<Timestamp>().ok().map(truncate_to_second)
}

/// When the next rotation is due: the last rotation plus the interval. `None` only for dates
/// beyond the year 9999.
pub fn next_rotation(last: Timestamp, interval: Interval) -> Option<Timestamp> {
    last.checked_add(interval.as_duration()).ok()
}

/// Whether a rotation due at `due` should run at `now`. Both are compared in whole seconds, the
/// granularity of status, so a rotation never runs before the second it is due.
pub fn is_due(now: Timestamp, due: Timestamp) -> bool {
    truncate_to_second(now) >= truncate_to_second(due)
}

/// How long to wait before looking at a key again: until `due` (rounded up to the next whole
/// millisecond, so the timer cannot fire early), but never longer than `max`. The timer runs on a
/// monotonic clock while schedules are wall-clock times; the cap bounds how long a wall-clock
/// jump or a suspended process can delay a rotation.
pub fn requeue_delay(
    now: Timestamp,
    due: Timestamp,
    max: std::time::Duration,
) -> std::time::Duration {
    let remaining = due.duration_since(now);
    if remaining <= SignedDuration::ZERO {
        return std::time::Duration::ZERO;
    }
    // Rounding to the second instead would add up to a second to every rotation: `now` has
    // a fraction, `due` (whole seconds) does not.
    let millis = remaining.as_millis() + i128::from(remaining.subsec_nanos() % 1_000_000 > 0);
    std::time::Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX)).min(max)
}

/// Serde for times kept in the KMS format: written as [`format_kms_time`], read as
/// [`parse_kms_time`]. A text that is not a time is an error, so a record holding one is
/// unreadable as a whole (and never taken for a time it does not say).
pub mod kms_time {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(at: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format_kms_time(*at))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse_kms_time(&text).ok_or_else(|| D::Error::custom("not a UTC time"))
    }

    /// The same for an optional time.
    pub mod option {
        use jiff::Timestamp;
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(
            at: &Option<Timestamp>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match at {
                Some(at) => super::serialize(at, serializer),
                None => serializer.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Timestamp>, D::Error> {
            #[derive(Deserialize)]
            struct Time(#[serde(with = "super")] Timestamp);
            Ok(Option::<Time>::deserialize(deserializer)?.map(|Time(at)| at))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_accepts_every_unit_of_the_seed() {
        assert_eq!(parse_interval("365d"), Ok(Interval::from_secs(31_536_000)));
        assert_eq!(parse_interval("7d"), Ok(Interval::from_secs(604_800)));
        assert_eq!(parse_interval("604800s"), Ok(Interval::from_secs(604_800)));
        assert_eq!(parse_interval("168h"), Ok(Interval::from_secs(604_800)));
        assert_eq!(parse_interval("10080m"), Ok(Interval::from_secs(604_800)));
        assert_eq!(parse_interval("0d"), Ok(Interval::from_secs(0)));
    }

    #[test]
    fn interval_rejects_what_is_not_integer_unit() {
        for bad in [
            "", "d", "7", "7D", "7S", "7 d", " 7d", "7d ", "-7d", "+7d", "7.5d", "7dd", "1e3s",
            "٧d", "7w", "0x10s", "7\u{0}d",
        ] {
            assert_eq!(parse_interval(bad), Err(IntervalError::Format), "{bad:?}");
        }
    }

    #[test]
    fn interval_rejects_overflow_instead_of_wrapping() {
        assert_eq!(
            parse_interval("99999999999999999999d"),
            Err(IntervalError::TooLarge)
        );
        assert_eq!(
            parse_interval("18446744073709551615d"),
            Err(IntervalError::TooLarge)
        );
        assert_eq!(
            parse_interval("1000000000001s"),
            Err(IntervalError::TooLarge)
        );
    }

    #[test]
    fn interval_reports_seconds_like_the_kms() {
        assert_eq!(Interval::from_days(365).to_kms_string(), "31536000s");
        assert_eq!(Interval::from_days(7).to_kms_string(), "604800s");
    }

    #[test]
    fn interval_displays_its_most_readable_exact_form() {
        assert_eq!(Interval::from_days(730).to_string(), "730d");
        assert_eq!(Interval::from_secs(36 * 3600).to_string(), "36h");
        assert_eq!(Interval::from_secs(90).to_string(), "90s");
        assert_eq!(Interval::from_secs(120).to_string(), "2m");
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn next_rotation_is_last_rotation_plus_interval() {
        let next = next_rotation(at("2016-03-25T10:42:40Z"), Interval::from_days(365));
        assert_eq!(next, Some(at("2017-03-25T10:42:40Z")));
        assert_eq!(
            next_rotation(at("9999-01-01T00:00:00Z"), Interval::from_days(730)),
            None
        );
    }

    #[test]
    fn rotation_is_due_from_its_second_on_never_before() {
        let due = at("2026-01-01T00:00:10Z");
        assert!(!is_due(at("2026-01-01T00:00:09.999Z"), due));
        assert!(is_due(at("2026-01-01T00:00:10Z"), due));
        assert!(is_due(at("2026-01-01T00:00:10.5Z"), due));
        assert!(is_due(at("2027-01-01T00:00:00Z"), due), "overdue is due");
    }

    #[test]
    fn requeue_waits_until_due_rounded_up_and_capped() {
        let max = std::time::Duration::from_secs(300);
        let due = at("2026-01-01T00:00:10Z");
        let millis = |now: &str| requeue_delay(at(now), due, max).as_millis();
        assert_eq!(millis("2026-01-01T00:00:00Z"), 10_000);
        assert_eq!(
            millis("2026-01-01T00:00:09.2Z"),
            800,
            "to the due second, not past it"
        );
        assert_eq!(
            millis("2026-01-01T00:00:09.9999991Z"),
            1,
            "rounded up, never early"
        );
        assert_eq!(millis("2026-01-01T00:00:10Z"), 0);
        assert_eq!(millis("2026-01-01T00:01:00Z"), 0, "overdue: now");
        assert_eq!(millis("2025-01-01T00:00:00Z"), 300_000, "far away: the cap");
    }

    #[test]
    fn kms_time_is_utc_to_the_second() {
        let at: Timestamp = "2016-03-25T10:42:40.987654Z".parse().unwrap();
        assert_eq!(
            format_kms_time(truncate_to_second(at)),
            "2016-03-25T10:42:40Z"
        );
        assert_eq!(format_kms_time(at), "2016-03-25T10:42:40Z");
        assert_eq!(
            parse_kms_time("2016-03-25T10:42:40Z"),
            Some(truncate_to_second(at))
        );
    }
}
