//! Wall-clock time in a time zone, with the host's time zone rules (always granted).
//!
//! Quiet hours, office hours, "tomorrow morning": recipes ask the host what time it is in
//! an IANA zone, and when a wall-clock time comes next, DST included.
//!
//! ```no_run
//! use switchboard_sdk::prelude::*;
//! use switchboard_sdk::clock::{TimeZone, Window};
//!
//! #[derive(serde::Deserialize)]
//! struct Settings {
//!     time_zone: TimeZone,     // "America/Denver"; an unknown zone refuses the plugin at load
//!     quiet_hours: Window,     // "21:00-08:00"
//! }
//!
//! # fn f(s: Settings) -> Result<Outcome> {
//! if let Some(end) = s.quiet_hours.end_if_inside(&s.time_zone)? {
//!     return Ok(Outcome::deferred(end, "quiet hours"));
//! }
//! # Ok(Outcome::done("texted")) }
//! ```

use crate::bindings::switchboard::recipes::clock as wit;
use crate::{Error, Result};
use serde::Deserialize;
use std::fmt;

pub use wit::LocalTime;

/// Now, in `timezone` (an IANA name such as `America/Denver`, or `UTC`).
pub fn now(timezone: &str) -> Result<LocalTime> {
    Ok(wit::now(timezone)?)
}

/// The first instant (RFC 3339, UTC) after now at which the wall clock in `timezone`
/// reads `at`.
pub fn next(timezone: &str, at: TimeOfDay) -> Result<String> {
    Ok(wit::next(timezone, at.hour, at.minute)?)
}

/// The instant `ms` milliseconds from now, RFC 3339 (UTC): e.g. for
/// [`Outcome::deferred`](crate::Outcome::deferred) after a vendor's retry-after.
pub fn after_ms(ms: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // Rounded up: never earlier than asked (a quota reset at midnight is not 23:59:59).
    let at = now + std::time::Duration::from_millis(ms);
    rfc3339((at.as_secs() + u64::from(at.subsec_nanos() > 0)) as i64)
}

/// Seconds since 1970 as RFC 3339 in UTC (`2026-11-22T08:30:00Z`).
pub fn rfc3339(secs: i64) -> String {
    // Howard Hinnant's `civil_from_days`.
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// Seconds since 1970 of an RFC 3339 instant (`2026-06-01T09:00:00-06:00`, fractions
/// ignored); `None` when it is not one.
pub fn unix_seconds(text: &str) -> Option<i64> {
    let t = text.trim();
    let n = |at: usize, len: usize| -> Option<i64> {
        let s = t.get(at..at + len)?;
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (y, m, d, h, mi, s) = (
        n(0, 4)?,
        n(5, 2)?,
        n(8, 2)?,
        n(11, 2)?,
        n(14, 2)?,
        n(17, 2)?,
    );
    if !matches!(t.as_bytes().get(10), Some(b'T' | b't' | b' '))
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
        || h > 23
        || mi > 59
        || s > 60
    {
        return None;
    }
    let zone = t
        .get(19..)?
        .trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let offset = match zone.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let at = t.len() - 6;
            let o = n(at + 1, 2)? * 3_600 + n(at + 4, 2)? * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    // Howard Hinnant's `days_from_civil`.
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let days =
        era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + (153 * m + 2) / 5 + d - 1 - 719_468;
    Some(days * 86_400 + h * 3_600 + mi * 60 + s - offset)
}

/// An IANA time zone name. In settings, the host checks it when the plugin loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeZone(String);

impl Default for TimeZone {
    /// `UTC`.
    fn default() -> Self {
        TimeZone("UTC".into())
    }
}

impl TimeZone {
    /// The zone's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for TimeZone {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for TimeZone {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        // Only the host knows the zones; outside a host (native unit tests) any name passes.
        #[cfg(target_arch = "wasm32")]
        if let Err(e) = wit::now(&name) {
            return Err(serde::de::Error::custom(Error::from(e)));
        }
        Ok(TimeZone(name))
    }
}

/// A wall-clock time of day, `HH:MM` (24-hour).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeOfDay {
    /// 0-23.
    pub hour: u8,
    /// 0-59.
    pub minute: u8,
}

impl std::str::FromStr for TimeOfDay {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::invalid("time", format!("'{s}' is not a time of day (HH:MM)"));
        let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
        let (hour, minute) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if hour > 23 || minute > 59 || m.len() != 2 {
            return Err(bad());
        }
        Ok(TimeOfDay { hour, minute })
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

/// A daily window of wall-clock time, `"HH:MM-HH:MM"`; it may wrap midnight
/// (`"21:00-08:00"`). The start is inside, the end is not; the default (`"00:00-00:00"`)
/// is empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// Where it starts.
    pub start: TimeOfDay,
    /// Where it ends.
    pub end: TimeOfDay,
}

impl Window {
    /// Whether a local time falls inside the window.
    pub fn contains(&self, t: &LocalTime) -> bool {
        let at = TimeOfDay {
            hour: t.hour,
            minute: t.minute,
        };
        if self.start <= self.end {
            self.start <= at && at < self.end
        } else {
            at >= self.start || at < self.end
        }
    }

    /// If it is inside the window now in `timezone`, the instant (RFC 3339) it ends.
    pub fn end_if_inside(&self, timezone: &str) -> Result<Option<String>> {
        if self.start == self.end {
            return Ok(None);
        }
        // The end first, then the time: if the window ends between the two calls, the time
        // says "outside" (rather than "inside" with tomorrow's end).
        let end = next(timezone, self.end)?;
        Ok(self.contains(&now(timezone)?).then_some(end))
    }
}

impl std::str::FromStr for Window {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let (start, end) = s.split_once('-').ok_or_else(|| {
            Error::invalid("window", format!("'{s}' is not a window (HH:MM-HH:MM)"))
        })?;
        Ok(Window {
            start: start.parse()?,
            end: end.parse()?,
        })
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hour: u8, minute: u8) -> LocalTime {
        LocalTime {
            date: "2026-11-22".into(),
            hour,
            minute,
            second: 0,
            weekday: 7,
            offset_seconds: 0,
            utc: String::new(),
        }
    }

    #[test]
    fn instants_format_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_305_600), "2026-11-22T00:00:00Z");
        assert_eq!(rfc3339(951_782_400 + 86_399), "2000-02-29T23:59:59Z");
        assert!(after_ms(0) < after_ms(86_400_000));
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn rfc3339_instants_parse_with_their_offsets() {
        assert_eq!(unix_seconds("2026-11-22T00:00:00Z"), Some(1_795_305_600));
        assert_eq!(
            unix_seconds("2026-11-21T17:00:00.250-07:00"),
            Some(1_795_305_600)
        );
        assert_eq!(
            unix_seconds("2026-11-22T05:30:00+05:30"),
            Some(1_795_305_600)
        );
        for s in [
            "1795305600",
            "2026-11-22",
            "2026-13-01T00:00:00Z",
            "2026-11-22T00:00:00",
            "2026-11-22T00:00:00+0700",
        ] {
            assert_eq!(unix_seconds(s), None, "{s}");
        }
        for secs in [0, 951_868_799, 1_795_305_600] {
            assert_eq!(unix_seconds(&rfc3339(secs)), Some(secs));
        }
    }

    #[test]
    fn windows_may_wrap_midnight() {
        let quiet: Window = "21:00-08:00".parse().unwrap();
        assert!(quiet.contains(&at(21, 0)) && quiet.contains(&at(3, 0)));
        assert!(!quiet.contains(&at(8, 0)) && !quiet.contains(&at(12, 0)));
        assert!(
            !Window::default().contains(&at(0, 0)),
            "the default window is empty"
        );
        let lunch: Window = "12:00-13:30".parse().unwrap();
        assert!(lunch.contains(&at(13, 29)) && !lunch.contains(&at(13, 30)));
        assert!(!lunch.contains(&at(11, 59)));
    }

    #[test]
    fn malformed_times_are_refused() {
        for bad in ["25:00-08:00", "21:00", "9-5", "21:0-08:00", "21:00-08:60"] {
            assert!(bad.parse::<Window>().is_err(), "{bad}");
        }
    }
}
