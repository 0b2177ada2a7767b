//! Calendar quotas: at most `limit` units per day, week or month, the
//! period starting at a wall-clock instant in a time zone (the 1st of the
//! month at midnight in New York, say) rather than a rolling window.
//!
//! A period is a slot of the replicated counter whose epoch is the
//! period's start in Unix seconds: a new period is a new slot, so peers
//! and snapshots, which carry slots by epoch, need nothing new, and every
//! node with the same config numbers the periods the same way.
//!
//! Periods are worked out with jiff and its bundled time zone database
//! (daylight saving included), once per period: the current one is cached
//! in one atomic word, so a check reads it with a plain load.
//!
//! Calendar rules, documented for users in docs/quotas.md:
//! - a monthly reset on a day the month lacks (the 31st in April) falls on
//!   the month's last day;
//! - a reset hour that daylight saving skips (02:00 on the spring-forward
//!   day in New York) falls at the first instant after the gap (03:00), and
//!   one it repeats at the first of the two.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use compact_str::CompactString;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{LimitState, Outcome};
use crate::clock::{Nanos, SECOND};

/// The length of a quota's period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// A calendar day.
    Day,
    /// A week, starting on a weekday.
    Week,
    /// A calendar month, starting on a day of the month.
    Month,
}

impl Period {
    /// As in config: `day`, `week`, `month`.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }

    /// The length reported as the quota's window (`w` in headers): a day,
    /// seven days, thirty days. The reset time is exact whatever this says.
    fn nominal(self) -> Nanos {
        const DAY: Nanos = 86_400 * SECOND;
        match self {
            Period::Day => DAY,
            Period::Week => 7 * DAY,
            Period::Month => 30 * DAY,
        }
    }

    /// The longest a period can last: a month of 31 days with a daylight
    /// saving hour.
    fn longest(self) -> Nanos {
        const DAY: Nanos = 86_400 * SECOND;
        match self {
            Period::Day => DAY + 3600 * SECOND,
            Period::Week => 7 * DAY + 3600 * SECOND,
            Period::Month => 31 * DAY + 3600 * SECOND,
        }
    }
}

/// When a quota's periods start.
#[derive(Clone, Debug, PartialEq)]
pub struct Calendar {
    period: Period,
    /// The day of the month (1-31) for months, the weekday (1 Monday to 7
    /// Sunday) for weeks; 1 for days, where it means nothing.
    day: i8,
    /// The hour of the day (0-23), local time.
    hour: i8,
    zone: TimeZone,
    zone_name: CompactString,
}

impl Calendar {
    /// Periods of `period` starting at `hour` local time in the IANA zone
    /// `zone` (`UTC` too), on `day` (see the field).
    ///
    /// # Errors
    /// A message for an unknown zone, or a day or hour out of range.
    pub fn new(period: Period, day: u8, hour: u8, zone: &str) -> Result<Self, String> {
        let days = match period {
            Period::Day => 1..=1,
            Period::Week => 1..=7,
            Period::Month => 1..=31,
        };
        if !days.contains(&day) {
            return Err(match period {
                Period::Day => "a daily quota takes no reset day".into(),
                Period::Week => format!("reset day {day} is no weekday: use 1-7 or monday-sunday"),
                Period::Month => format!("reset day {day} is no day of the month: use 1-31"),
            });
        }
        if hour > 23 {
            return Err(format!("reset hour {hour} is not 0-23"));
        }
        let tz = TimeZone::get(zone).map_err(|_| {
            format!("unknown time zone {zone:?} (an IANA name such as \"America/New_York\", or \"UTC\")")
        })?;
        Ok(Self {
            period,
            day: day as i8,
            hour: hour as i8,
            zone: tz,
            zone_name: zone.into(),
        })
    }

    /// The period's kind.
    pub fn period(&self) -> Period {
        self.period
    }

    /// The time zone's name, as configured.
    pub fn zone_name(&self) -> &str {
        &self.zone_name
    }

    /// What tells two calendars apart, for the limit's fingerprint: stable
    /// across releases, unlike the zone's internals.
    pub fn identity(&self) -> (&'static str, i8, i8, &str) {
        (self.period.as_str(), self.day, self.hour, &self.zone_name)
    }

    /// The period holding Unix second `now`: its start and end, in Unix
    /// seconds. Dates past what the calendar reaches (years beyond 9999)
    /// read as one period that never ends.
    pub fn period_at(&self, now: i64) -> (i64, i64) {
        self.try_period_at(now).unwrap_or((0, i64::MAX))
    }

    fn try_period_at(&self, now: i64) -> Option<(i64, i64)> {
        let today = self.zone.to_datetime(Timestamp::from_second(now).ok()?).date();
        let mut first = self.start_on_or_before(today)?;
        let mut start = self.instant(first)?;
        if start > now {
            first = self.step(first, -1)?;
            start = self.instant(first)?;
        }
        let end = self.instant(self.step(first, 1)?)?;
        Some((start, end))
    }

    /// The period's first day on or before `date` (its start may still be
    /// later that day, before the reset hour).
    fn start_on_or_before(&self, date: Date) -> Option<Date> {
        match self.period {
            Period::Day => Some(date),
            Period::Week => {
                let back = (date.weekday().to_monday_one_offset() - self.day).rem_euclid(7);
                date.checked_sub(jiff::Span::new().days(back as i64)).ok()
            }
            Period::Month => {
                let anchored = self.in_month(date.year(), date.month())?;
                match anchored > date {
                    true => self.step(anchored, -1),
                    false => Some(anchored),
                }
            }
        }
    }

    /// The first day of the period `by` periods after the one starting on
    /// `first`.
    fn step(&self, first: Date, by: i8) -> Option<Date> {
        match self.period {
            Period::Day => first.checked_add(jiff::Span::new().days(by as i64)).ok(),
            Period::Week => first.checked_add(jiff::Span::new().weeks(by as i64)).ok(),
            Period::Month => {
                let months = first.year() as i32 * 12 + first.month() as i32 - 1 + by as i32;
                self.in_month(months.div_euclid(12) as i16, (months.rem_euclid(12) + 1) as i8)
            }
        }
    }

    /// The reset day in a month: the configured day, or the month's last
    /// when it is shorter.
    fn in_month(&self, year: i16, month: i8) -> Option<Date> {
        let last = Date::new(year, month, 1).ok()?.days_in_month();
        Date::new(year, month, self.day.min(last)).ok()
    }

    /// The reset instant on `date`, Unix seconds.
    fn instant(&self, date: Date) -> Option<i64> {
        let local = date.at(self.hour, 0, 0, 0);
        let at = self.zone.to_ambiguous_timestamp(local).compatible().ok()?;
        Some(at.as_second())
    }
}

/// The current period, cached: start and length in seconds, packed in one
/// word so that a check reads both with one load. Clones share it: they
/// have the same calendar (a customer's own quota, say), so the same
/// periods.
#[derive(Default, Clone)]
struct PeriodCache(Arc<AtomicU64>);

impl PeriodCache {
    fn get(&self, now: i64) -> Option<(i64, i64)> {
        let packed = self.0.load(Ordering::Relaxed);
        let (start, len) = ((packed >> 32) as i64, (packed & u32::MAX as u64) as i64);
        (len > 0 && (start..start + len).contains(&now)).then_some((start, start + len))
    }

    fn set(&self, (start, end): (i64, i64)) {
        // Seconds since 1970 fit 32 bits until 2106; past that, no cache.
        if let (Ok(start), Ok(len)) = (u32::try_from(start), u32::try_from(end - start)) {
            self.0.store((start as u64) << 32 | len as u64, Ordering::Relaxed);
        }
    }
}

impl PartialEq for PeriodCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl fmt::Debug for PeriodCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PeriodCache")
    }
}

/// At most `limit` units per calendar period.
#[derive(Clone, Debug, PartialEq)]
pub struct Quota {
    limit: u32,
    calendar: Calendar,
    current: PeriodCache,
}

impl Quota {
    /// `limit` units per period of `calendar`.
    pub fn new(limit: u32, calendar: Calendar) -> Self {
        Self {
            limit,
            calendar,
            current: PeriodCache::default(),
        }
    }

    /// Units per period.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The same quota with `limit` units per period: the same calendar, so
    /// the same count.
    pub fn with_limit(&self, limit: u32) -> Self {
        Self {
            limit,
            ..self.clone()
        }
    }

    /// When its periods start.
    pub fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    /// The period's nominal length (see [`Period`]).
    pub fn window(&self) -> Nanos {
        self.calendar.period.nominal()
    }

    /// How long a key's count must be kept: the longest period.
    pub fn longest_period(&self) -> Nanos {
        self.calendar.period.longest()
    }

    /// The period holding `now` (engine time, Unix ns): start and end,
    /// Unix ns.
    pub fn period_at(&self, now: Nanos) -> (Nanos, Nanos) {
        let second = (now / SECOND).min(i64::MAX as u64) as i64;
        let (start, end) = match self.current.get(second) {
            Some(period) => period,
            None => {
                let period = self.calendar.period_at(second);
                self.current.set(period);
                period
            }
        };
        let nanos = |s: i64| (s.max(0) as u64).saturating_mul(SECOND);
        (nanos(start), nanos(end))
    }

    /// The counter slot of the period holding `now`: its start, Unix
    /// seconds.
    fn epoch(start: Nanos) -> u64 {
        start / SECOND
    }

    /// `scale` below 1 (a node cut off from part of its cluster) admits
    /// only that fraction of the quota.
    pub(super) fn evaluate(&self, state: &mut LimitState, now: Nanos, cost: u32, scale: f64) -> Outcome {
        let (start, end) = self.period_at(now);
        let epoch = Self::epoch(start);
        state.counter.advance(epoch, |_, _| {});
        let used = state.counter.net(epoch) as u64;
        let limit = (self.limit as f64 * scale.clamp(0.0, 1.0)) as u64;
        let cost = cost as u64;
        let allowed = used + cost <= limit;
        let until_reset = end.saturating_sub(now);
        Outcome {
            allowed,
            remaining: limit.saturating_sub(used + if allowed { cost } else { 0 }),
            // The period's end, used or not: when a quota resets is what
            // its callers plan by.
            reset_after: until_reset,
            retry_after: match allowed {
                true => None,
                false if cost > self.limit as u64 => None,
                false => Some(until_reset),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_second()
    }

    fn period(calendar: &Calendar, now: &str) -> (String, String) {
        let (start, end) = calendar.period_at(at(now));
        let show = |s: i64| Timestamp::from_second(s).unwrap().to_string();
        (show(start), show(end))
    }

    #[test]
    fn a_month_in_new_york_spans_the_daylight_saving_change() {
        let calendar = Calendar::new(Period::Month, 1, 0, "America/New_York").unwrap();
        // March 2027: EST (UTC-5) until the 14th, EDT (UTC-4) after.
        let (start, end) = period(&calendar, "2027-03-20T12:00:00Z");
        assert_eq!(start, "2027-03-01T05:00:00Z");
        assert_eq!(end, "2027-04-01T04:00:00Z");
        // The last second of March, New York time, is still March.
        let (start, _) = period(&calendar, "2027-04-01T03:59:59Z");
        assert_eq!(start, "2027-03-01T05:00:00Z");
        let (start, _) = period(&calendar, "2027-04-01T04:00:00Z");
        assert_eq!(start, "2027-04-01T04:00:00Z");
    }

    #[test]
    fn the_31st_falls_on_the_last_day_of_a_shorter_month() {
        let calendar = Calendar::new(Period::Month, 31, 0, "UTC").unwrap();
        assert_eq!(
            period(&calendar, "2027-02-15T00:00:00Z"),
            ("2027-01-31T00:00:00Z".into(), "2027-02-28T00:00:00Z".into())
        );
        assert_eq!(
            period(&calendar, "2027-03-30T00:00:00Z"),
            ("2027-02-28T00:00:00Z".into(), "2027-03-31T00:00:00Z".into())
        );
    }

    #[test]
    fn a_week_starts_on_its_weekday_at_its_hour() {
        // Mondays 09:00 in Berlin (UTC+1 in winter).
        let calendar = Calendar::new(Period::Week, 1, 9, "Europe/Berlin").unwrap();
        // Wednesday 2026-12-09.
        assert_eq!(
            period(&calendar, "2026-12-09T10:00:00Z"),
            ("2026-12-07T08:00:00Z".into(), "2026-12-14T08:00:00Z".into())
        );
        // Monday before nine, local: still the week before.
        assert_eq!(
            period(&calendar, "2026-12-14T07:59:59Z").0,
            "2026-12-07T08:00:00Z"
        );
    }

    #[test]
    fn a_reset_hour_that_daylight_saving_skips_falls_after_the_gap() {
        let calendar = Calendar::new(Period::Day, 1, 2, "America/New_York").unwrap();
        // 2027-03-14 has no 02:00 in New York: the day starts at 03:00 EDT.
        let (start, end) = period(&calendar, "2027-03-14T12:00:00Z");
        assert_eq!(start, "2027-03-14T07:00:00Z");
        assert_eq!(end, "2027-03-15T06:00:00Z");
    }

    #[test]
    fn bad_calendars_say_what_is_wrong() {
        let zone = Calendar::new(Period::Month, 1, 0, "Mars/Olympus").unwrap_err();
        assert!(zone.contains("unknown time zone \"Mars/Olympus\""), "{zone}");
        assert!(Calendar::new(Period::Month, 32, 0, "UTC")
            .unwrap_err()
            .contains("1-31"));
        assert!(Calendar::new(Period::Week, 8, 0, "UTC")
            .unwrap_err()
            .contains("weekday"));
        assert!(Calendar::new(Period::Day, 1, 24, "UTC")
            .unwrap_err()
            .contains("0-23"));
    }

    #[test]
    fn counts_reset_at_the_period_boundary_and_report_the_time_to_it() {
        let calendar = Calendar::new(Period::Day, 1, 0, "UTC").unwrap();
        let quota = super::super::Limit::Quota(Quota::new(2, calendar));
        let mut state = quota.new_state();
        let noon = at("2027-01-10T12:00:00Z") as u64 * SECOND;
        for expected in [true, true, false] {
            let outcome = quota.evaluate(&mut state, noon, 1);
            assert_eq!(outcome.allowed, expected);
            if outcome.allowed {
                quota.commit(&mut state, noon, 1);
            } else {
                assert_eq!(outcome.retry_after, Some(12 * 3600 * SECOND));
            }
            assert_eq!(outcome.reset_after, 12 * 3600 * SECOND);
        }
        let midnight = at("2027-01-11T00:00:00Z") as u64 * SECOND;
        let outcome = quota.evaluate(&mut state, midnight, 1);
        assert!(outcome.allowed);
        assert_eq!(outcome.remaining, 1);
    }
}
