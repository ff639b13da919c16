//! Timestamps as RFC 3339 text in UTC, the form both databases store and the browser shows.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, as `2026-11-24T00:21:58Z`.
pub fn now_rfc3339() -> String {
    format_unix(unix_now())
}

/// Now, in seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// Formats seconds since the Unix epoch (days-from-civil, Howard Hinnant's algorithm).
pub fn format_unix(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Reads back what [`format_unix`] writes (`2026-11-24T00:21:58Z`); `None` for anything else.
pub fn parse_unix(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // days-from-civil, the inverse of the formula above.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

#[cfg(test)]
mod tests {
    use super::{format_unix, parse_unix};

    #[test]
    fn timestamps_read_back_as_written() {
        for secs in [0, 951_782_400, 1_795_479_718, 4_102_444_799] {
            assert_eq!(parse_unix(&format_unix(secs)), Some(secs), "{secs}");
        }
        assert_eq!(parse_unix("2026-11-24 00:21:58"), None);
        assert_eq!(parse_unix("2026-13-24T00:21:58Z"), None);
    }

    #[test]
    fn known_instants_format_as_rfc3339() {
        // date -u -d @0 / @951782400 / @1795479718 +%FT%TZ
        assert_eq!(format_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_unix(1_795_479_718), "2026-11-24T00:21:58Z");
    }
}
