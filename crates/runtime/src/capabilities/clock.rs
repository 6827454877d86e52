//! `switchboard:recipes/clock`: always granted; wall-clock time in an IANA time zone, with
//! the host's time zone rules (chrono-tz), so recipes carry no time zone database.

use crate::bindings::switchboard::recipes::clock::{Host, LocalTime};
use crate::bindings::types::Error as WitError;
use crate::state::RunState;
use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveTime, Offset, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use switchboard_model::RecipeError;

impl Host for RunState {
    fn now(&mut self, timezone: String) -> Result<LocalTime, WitError> {
        Ok(local_time(zone(&timezone)?, Utc::now()))
    }

    fn next(&mut self, timezone: String, hour: u8, minute: u8) -> Result<String, WitError> {
        Ok(next(zone(&timezone)?, Utc::now(), hour, minute)?)
    }
}

fn zone(name: &str) -> Result<Tz, RecipeError> {
    name.parse::<Tz>().map_err(|_| {
        RecipeError::invalid(
            "timezone",
            format!("'{name}' is not an IANA time zone (e.g. America/Denver, UTC)"),
        )
    })
}

fn local_time(tz: Tz, at: DateTime<Utc>) -> LocalTime {
    let local = at.with_timezone(&tz);
    LocalTime {
        date: local.date_naive().to_string(),
        hour: local.hour() as u8,
        minute: local.minute() as u8,
        second: local.second() as u8,
        weekday: local.weekday().number_from_monday() as u8,
        offset_seconds: local.offset().fix().local_minus_utc(),
        utc: at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }
}

/// The first instant after `now` at which the wall clock in `tz` reads `hour:minute`. A time
/// the clock reads twice (DST ends) counts both times; a time it skips (DST starts) is taken
/// as the instant the clock jumps past it.
fn next(tz: Tz, now: DateTime<Utc>, hour: u8, minute: u8) -> Result<String, RecipeError> {
    let time = NaiveTime::from_hms_opt(hour.into(), minute.into(), 0).ok_or_else(|| {
        RecipeError::invalid("hour", format!("{hour}:{minute:02} is not a time of day"))
    })?;
    let today = now.with_timezone(&tz).date_naive();
    for day in 0..3 {
        let naive = (today + Duration::days(day)).and_time(time);
        let candidates = match tz.from_local_datetime(&naive) {
            LocalResult::Single(t) => vec![t],
            LocalResult::Ambiguous(earliest, latest) => vec![earliest, latest],
            // In a gap: the first wall-clock minute after it.
            LocalResult::None => (1..=180)
                .find_map(|m| {
                    tz.from_local_datetime(&(naive + Duration::minutes(m)))
                        .earliest()
                })
                .into_iter()
                .collect(),
        };
        if let Some(at) = candidates.into_iter().find(|t| t.with_timezone(&Utc) > now) {
            return Ok(at
                .with_timezone(&Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
    }
    Err(RecipeError::Other {
        message: format!("no {hour}:{minute:02} in {tz} within two days"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn local_time_follows_the_zone_and_its_dst() {
        let denver: Tz = "America/Denver".parse().unwrap();
        // Winter: UTC-7.
        let t = local_time(denver, utc("2026-01-15T03:30:00Z"));
        assert_eq!((t.date.as_str(), t.hour, t.minute), ("2026-01-14", 20, 30));
        assert_eq!(t.offset_seconds, -7 * 3600);
        assert_eq!(t.weekday, 3); // a Wednesday
        // Summer: UTC-6.
        let t = local_time(denver, utc("2026-07-15T03:30:00Z"));
        assert_eq!((t.hour, t.offset_seconds), (21, -6 * 3600));
    }

    #[test]
    fn next_is_later_today_or_tomorrow_and_skips_missing_times() {
        let denver: Tz = "America/Denver".parse().unwrap();
        // 20:30 local on Jan 14 -> 08:00 local on Jan 15 = 15:00Z.
        let now = utc("2026-01-15T03:30:00Z");
        assert_eq!(next(denver, now, 8, 0).unwrap(), "2026-01-15T15:00:00Z");
        // 21:00 local is still today.
        assert_eq!(next(denver, now, 21, 0).unwrap(), "2026-01-15T04:00:00Z");
        // 02:30 does not exist on 2026-03-08 in Denver (clocks jump 02:00 -> 03:00): the
        // jump is when it would have been.
        let before = utc("2026-03-08T08:00:00Z"); // 01:00 MST
        assert_eq!(next(denver, before, 2, 30).unwrap(), "2026-03-08T09:00:00Z"); // 03:00 MDT
        // 01:30 happens twice on 2026-11-01 (clocks fall back 02:00 -> 01:00): after the
        // first, the second is next.
        let between = utc("2026-11-01T07:40:00Z"); // 01:40 MDT
        assert_eq!(
            next(denver, between, 1, 30).unwrap(),
            "2026-11-01T08:30:00Z"
        ); // 01:30 MST
        assert!(next(denver, now, 24, 0).is_err());
    }

    #[test]
    fn unknown_zones_are_refused_by_name() {
        let e = zone("Mars/Olympus").unwrap_err();
        assert!(e.to_string().contains("Mars/Olympus"), "{e}");
    }
}
