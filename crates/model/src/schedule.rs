//! Cron schedules: six fields (`sec min hour day month weekday`) in a time zone.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use std::str::FromStr;

/// A parsed cron schedule with its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    timezone: Tz,
    cron: cron::Schedule,
}

/// Why a schedule was refused; `field` is `schedule` or `timezone`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ScheduleError {
    pub field: &'static str,
    pub reason: String,
}

impl Schedule {
    /// Parse `expr` (exactly six fields) in `timezone` (an IANA name; UTC when `None`).
    pub fn parse(expr: &str, timezone: Option<&str>) -> Result<Self, ScheduleError> {
        let fields = expr.split_whitespace().count();
        if fields != 6 {
            return Err(ScheduleError {
                field: "schedule",
                reason: format!(
                    "'{expr}' has {fields} fields; cron schedules have 6 (sec min hour day month weekday)"
                ),
            });
        }
        let cron = cron::Schedule::from_str(expr).map_err(|e| ScheduleError {
            field: "schedule",
            reason: format!("'{expr}': {e}"),
        })?;
        let timezone = match timezone {
            None => Tz::UTC,
            Some(name) => name.parse::<Tz>().map_err(|_| ScheduleError {
                field: "timezone",
                reason: format!("'{name}' is not an IANA time zone (e.g. America/Denver)"),
            })?,
        };
        Ok(Schedule {
            expr: expr.to_string(),
            timezone,
            cron,
        })
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    pub fn timezone(&self) -> &str {
        self.timezone.name()
    }

    /// The first fire strictly after `after_ms` (Unix milliseconds), in Unix milliseconds.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let after: DateTime<Utc> = Utc.timestamp_millis_opt(after_ms).single()?;
        let local = after.with_timezone(&self.timezone);
        self.cron
            .after(&local)
            .next()
            .map(|t| t.with_timezone(&Utc).timestamp_millis())
    }

    /// The latest fire in `(after_ms, now_ms]`: a fire missed while the host was down.
    /// Walks at most `limit` fires; when that is not enough (a seconds-level schedule after a
    /// long outage) it looks again from a day before `now_ms`.
    pub fn last_missed(&self, after_ms: i64, now_ms: i64, limit: usize) -> Option<i64> {
        let walk = |from_ms: i64| -> Option<(Option<i64>, bool)> {
            let from: DateTime<Utc> = Utc.timestamp_millis_opt(from_ms).single()?;
            let mut last = None;
            for t in self
                .cron
                .after(&from.with_timezone(&self.timezone))
                .take(limit)
            {
                let ms = t.with_timezone(&Utc).timestamp_millis();
                if ms > now_ms {
                    return Some((last, true));
                }
                last = Some(ms);
            }
            Some((last, false))
        };
        match walk(after_ms)? {
            (last, true) => last,
            (last, false) => {
                let recent = walk(after_ms.max(now_ms - 86_400_000))?.0;
                recent.or(last)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_fields_in_a_time_zone() {
        let s = Schedule::parse("0 30 9 * * *", Some("America/Denver")).unwrap();
        // 2026-01-15T00:00:00Z -> next 09:30 in Denver (UTC-7) is 16:30Z the same day.
        let start = 1_768_435_200_000;
        let next = s.next_after(start).unwrap();
        assert_eq!(next - start, (16 * 3600 + 30 * 60) * 1000);
        let every = Schedule::parse("*/2 * * * * *", None).unwrap();
        assert_eq!(every.next_after(1_000), Some(2_000));
        assert_eq!(every.last_missed(0, 9_500, 100), Some(8_000));
        assert_eq!(every.last_missed(8_000, 9_500, 100), None);
        // A long outage on a seconds schedule: still the latest missed fire.
        let day = 86_400_000;
        assert_eq!(
            every.last_missed(0, 3 * day + 1_500, 100_000),
            Some(3 * day)
        );
    }

    #[test]
    fn errors_name_the_field() {
        let e = Schedule::parse("* * * * *", None).unwrap_err();
        assert_eq!(e.field, "schedule");
        assert!(e.reason.contains("5 fields"), "{e}");
        assert_eq!(
            Schedule::parse("61 * * * * *", None).unwrap_err().field,
            "schedule"
        );
        let e = Schedule::parse("* * * * * *", Some("Mars/Olympus")).unwrap_err();
        assert_eq!(e.field, "timezone");
        assert!(e.reason.contains("Mars/Olympus"));
    }
}
