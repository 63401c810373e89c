//! Human-readable times and sizes in Docker's style ("2 weeks ago",
//! "72.8MB").

use chrono::{DateTime, Utc};

/// "About a minute ago", "3 hours ago", "2 weeks ago", ...
pub fn ago(created: &str, now: DateTime<Utc>) -> String {
    let Ok(t) = DateTime::parse_from_rfc3339(created) else {
        return "N/A".into();
    };
    let secs = (now - t.with_timezone(&Utc)).num_seconds();
    if secs < 0 {
        return "Less than a second ago".into();
    }
    format!("{} ago", duration(secs as u64))
}

/// Go-units' HumanDuration.
pub fn duration(secs: u64) -> String {
    let hours = secs / 3600;
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s / 60 == 1 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    }
}

/// Decimal size with 3 significant digits (Go's `%.3g`), as `docker
/// images` shows it: `72.8MB`, `1.23MB`, `123MB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes as f64;
    let mut i = 0;
    loop {
        let decimals = if v >= 100.0 {
            0
        } else if v >= 10.0 {
            1
        } else {
            2
        };
        let s = format!("{v:.decimals$}");
        // Rounding can carry into the next unit (999.7 -> 1000).
        if s.parse::<f64>().unwrap_or(0.0) >= 1000.0 && i < UNITS.len() - 1 {
            v /= 1000.0;
            i += 1;
            continue;
        }
        let s = if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        };
        return format!("{s}{}", UNITS[i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_like_docker() {
        assert_eq!(duration(0), "Less than a second");
        assert_eq!(duration(30), "30 seconds");
        assert_eq!(duration(90), "About a minute");
        assert_eq!(duration(600), "10 minutes");
        assert_eq!(duration(3700), "About an hour");
        assert_eq!(duration(5 * 3600), "5 hours");
        assert_eq!(duration(3 * 86400), "3 days");
        assert_eq!(duration(15 * 86400), "2 weeks");
        assert_eq!(duration(90 * 86400), "3 months");
        assert_eq!(duration(800 * 86400), "2 years");
        let now = DateTime::parse_from_rfc3339("2026-01-15T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(ago("2026-01-01T00:00:00Z", now), "2 weeks ago");
        assert_eq!(ago("junk", now), "N/A");
    }

    #[test]
    fn sizes_like_docker() {
        assert_eq!(size(0), "0B");
        assert_eq!(size(999), "999B");
        assert_eq!(size(72_800_000), "72.8MB");
        assert_eq!(size(1_234_567), "1.23MB");
        assert_eq!(size(999_700), "1MB");
        assert_eq!(size(1000), "1kB");
        assert_eq!(size(123_456_789), "123MB");
        assert_eq!(size(5_000_000_000), "5GB");
    }
}
