//! Local dates and hours for statistics tables: a Unix time plus a fixed
//! UTC offset (the site's time zone) to a proleptic Gregorian date and an
//! hour of the day.
//!
//! What this module must not do: read the system time zone or the clock;
//! the offset is configuration.

use super::super::types::UnixMs;

const MS_PER_HOUR: i64 = 3_600_000;
const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;

/// A site's fixed offset from UTC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UtcOffset {
    pub minutes: i32,
}

impl UtcOffset {
    /// Japan Standard Time (UTC+9).
    pub const JST: UtcOffset = UtcOffset { minutes: 9 * 60 };
    pub const UTC: UtcOffset = UtcOffset { minutes: 0 };

    fn local_ms(self, at: UnixMs) -> i64 {
        let at = i64::try_from(at).unwrap_or(i64::MAX);
        at.saturating_add(i64::from(self.minutes) * 60_000)
    }

    /// The local day (days since 1970-01-01) and hour of `at`.
    pub fn day_hour(self, at: UnixMs) -> (i64, u8) {
        let local = self.local_ms(at);
        let day = local.div_euclid(MS_PER_DAY);
        let hour = local.rem_euclid(MS_PER_DAY) / MS_PER_HOUR;
        (day, u8::try_from(hour).unwrap_or(0))
    }

    /// The Unix time at which the local hour containing `at` ends.
    pub fn hour_end(self, at: UnixMs) -> UnixMs {
        let local = self.local_ms(at);
        let into = local.rem_euclid(MS_PER_HOUR);
        let left = u64::try_from(MS_PER_HOUR - into).unwrap_or(0);
        at.saturating_add(left)
    }
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01).
pub fn date_string(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Year, month, day of a day number (the well-known era-based algorithm
/// for the proleptic Gregorian calendar).
fn civil_from_days(day: i64) -> (i64, u32, u32) {
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(date_string(0), "1970-01-01");
        assert_eq!(date_string(-1), "1969-12-31");
        assert_eq!(date_string(11_016), "2000-02-29");
        assert_eq!(date_string(19_782), "2024-02-29");
        assert_eq!(date_string(20_454), "2026-01-01");
    }

    #[test]
    fn offsets_move_the_day_and_hour() {
        // 2024-02-29 20:30 UTC is 2024-03-01 05:30 in Japan.
        let at = 19_782 * 86_400_000 + 20 * 3_600_000 + 30 * 60_000;
        assert_eq!(UtcOffset::UTC.day_hour(at), (19_782, 20));
        let (day, hour) = UtcOffset::JST.day_hour(at);
        assert_eq!((date_string(day).as_str(), hour), ("2024-03-01", 5));
        assert_eq!(UtcOffset::JST.hour_end(at), at + 30 * 60_000);
        let minus = UtcOffset { minutes: -150 };
        assert_eq!(minus.day_hour(at), (19_782, 18));
        assert_eq!(minus.hour_end(at), at + 60 * 60_000);
    }
}
