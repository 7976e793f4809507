//! Human time: UTC ISO-8601 and "3 min ago" / "in 2 h", without a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> i64 {
    (now_ms() / 1000) as i64
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Largest |seconds| formatted as a date (about year ±3000000); beyond that
/// a claim is nonsense anyway.
const MAX_SECS: i64 = 100_000_000_000_000;

/// `2024-05-29T16:26:40Z` for seconds since the epoch; `None` if absurd.
pub fn iso_utc(secs: i64) -> Option<String> {
    if secs.unsigned_abs() > MAX_SECS as u64 {
        return None;
    }
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    ))
}

/// `2024-05-29T16:26:40.123Z` for milliseconds since the epoch.
pub fn iso_utc_ms(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let base = iso_utc(secs).unwrap_or_default();
    format!("{}.{:03}Z", base.trim_end_matches('Z'), ms % 1000)
}

/// A duration in words, rounded down to its largest sensible unit:
/// `42 s`, `3 min`, `2 h 5 min`, `11 h`, `3 days`, `3 years`.
pub fn span(secs: u64) -> String {
    match secs {
        0..=89 => format!("{secs} s"),
        90..=3_599 => format!("{} min", secs / 60),
        3_600..=35_999 => {
            let (h, m) = (secs / 3600, secs % 3600 / 60);
            if m == 0 {
                format!("{h} h")
            } else {
                format!("{h} h {m} min")
            }
        }
        36_000..=172_799 => format!("{} h", secs / 3600),
        172_800..=63_071_999 => format!("{} days", secs / 86_400),
        _ => format!("{} years", secs / 31_556_952),
    }
}

/// `3 min ago` or `in 2 h` for `at` relative to `now` (both seconds).
pub fn relative(at: i64, now: i64) -> String {
    if at <= now {
        format!("{} ago", span(now.abs_diff(at)))
    } else {
        format!("in {}", span(at.abs_diff(now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_dates() {
        assert_eq!(iso_utc(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(iso_utc(951_782_400).unwrap(), "2000-02-29T00:00:00Z");
        assert_eq!(iso_utc(1_717_000_000).unwrap(), "2024-05-29T16:26:40Z");
        assert_eq!(iso_utc(-1).unwrap(), "1969-12-31T23:59:59Z");
        assert_eq!(iso_utc(253_402_300_799).unwrap(), "9999-12-31T23:59:59Z");
        assert_eq!(iso_utc(i64::MAX), None);
        assert_eq!(iso_utc_ms(1_717_000_000_042), "2024-05-29T16:26:40.042Z");
    }

    #[test]
    fn spans_read_naturally() {
        assert_eq!(span(5), "5 s");
        assert_eq!(span(180), "3 min");
        assert_eq!(span(3_599), "59 min");
        assert_eq!(span(3_600), "1 h");
        assert_eq!(span(7_200), "2 h");
        assert_eq!(span(7_500), "2 h 5 min");
        assert_eq!(span(90_000), "25 h");
        assert_eq!(span(864_000), "10 days");
        assert_eq!(span(95_000_000), "3 years");
        assert_eq!(relative(100, 280), "3 min ago");
        assert_eq!(relative(7_300, 100), "in 2 h");
    }
}
