//! Rate strings: `"10/s"`, `"100/minute"`, `"1000/hour"`, `"5/10s"`,
//! `"100 per day"`. Parsed and checked once, at the edge; inside, a [`Rate`]
//! is always valid.

use std::fmt;
use std::num::{NonZeroU32, NonZeroU64};
use std::str::FromStr;

use crate::clock::{Nanos, MILLI, SECOND};

/// The longest period a rate may name: windows are kept in memory, so a
/// quota per month belongs in a billing system, not here.
pub const MAX_PERIOD: Nanos = 31 * 24 * 3600 * SECOND;

/// `count` units per `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    count: NonZeroU32,
    period: NonZeroU64,
}

/// A rate string that could not be parsed, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rate {input:?}: {problem}")]
pub struct RateError {
    input: String,
    problem: String,
}

impl Rate {
    /// `count` per `period` nanoseconds.
    pub fn new(count: NonZeroU32, period: NonZeroU64) -> Self {
        Self { count, period }
    }

    /// Units per period.
    pub fn count(&self) -> u32 {
        self.count.get()
    }

    /// The period in nanoseconds.
    pub fn period(&self) -> Nanos {
        self.period.get()
    }

    /// Units per nanosecond.
    pub fn per_nano(&self) -> f64 {
        self.count() as f64 / self.period() as f64
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (multiple, unit) = describe_period(self.period());
        match multiple {
            1 => write!(f, "{}/{}", self.count, unit),
            n => write!(f, "{}/{}{}", self.count, n, unit),
        }
    }
}

fn describe_period(period: Nanos) -> (u64, &'static str) {
    for (size, unit) in [
        (24 * 3600 * SECOND, "d"),
        (3600 * SECOND, "h"),
        (60 * SECOND, "m"),
        (SECOND, "s"),
    ] {
        if period.is_multiple_of(size) {
            return (period / size, unit);
        }
    }
    (period / MILLI, "ms")
}

/// The plural unit names: they read right only after a number (`2 hours`).
fn is_plural(unit: &str) -> bool {
    matches!(
        unit,
        "milliseconds" | "secs" | "seconds" | "mins" | "minutes" | "hrs" | "hours" | "days"
    )
}

fn unit_length(unit: &str) -> Option<Nanos> {
    Some(match unit {
        "ms" | "msec" | "millisecond" | "milliseconds" => MILLI,
        "s" | "sec" | "secs" | "second" | "seconds" => SECOND,
        "m" | "min" | "mins" | "minute" | "minutes" => 60 * SECOND,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600 * SECOND,
        "d" | "day" | "days" => 24 * 3600 * SECOND,
        _ => return None,
    })
}

impl FromStr for Rate {
    type Err = RateError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |problem: String| RateError {
            input: input.to_owned(),
            problem,
        };
        let text = input.trim().to_ascii_lowercase();
        if text.is_empty() {
            return Err(fail(
                "it is empty; expected <count>/<period>, e.g. \"100/minute\"".into(),
            ));
        }
        let (count, period) = text
            .split_once('/')
            .or_else(|| text.split_once(" per "))
            .ok_or_else(|| {
                fail("expected <count>/<period> or <count> per <period>, e.g. \"100/minute\"".into())
            })?;
        let count = count.trim();
        let count: u32 = count
            .parse()
            .map_err(|_| fail(format!("count {count:?} is not a whole number")))?;
        let count = NonZeroU32::new(count).ok_or_else(|| fail("count must be at least 1".into()))?;

        let period = parse_period(period, "period").map_err(fail)?;
        Ok(Rate { count, period })
    }
}

/// A duration as rates write their periods: `30s`, `15m`, `2h`, `1 day`,
/// `500ms`; between 1 ms and 31 days. `what` names it in errors.
///
/// # Errors
/// A sentence saying what is wrong.
pub fn parse_period(text: &str, what: &str) -> Result<NonZeroU64, String> {
    let text = text.trim().to_ascii_lowercase();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (multiple, unit) = text.split_at(digits);
    let multiple: u64 = match multiple {
        "" => 1,
        n => n
            .parse()
            .map_err(|_| format!("{what} multiple {n:?} is too large"))?,
    };
    let unit = unit.trim();
    if digits == 0 && is_plural(unit) {
        return Err(format!(
            "{what} {unit:?} is plural without a number: write it singular ({:?}) or with one (\"2 {unit}\")",
            unit.strip_suffix('s').unwrap_or(unit),
        ));
    }
    let length = unit_length(unit).ok_or_else(|| {
        format!(
            "unknown {what} {unit:?}; use s, m, h or d (or second, minute, hour, day), \
             optionally with a multiple such as 10s"
        )
    })?;
    multiple
        .checked_mul(length)
        .filter(|p| (MILLI..=MAX_PERIOD).contains(p))
        .and_then(NonZeroU64::new)
        .ok_or_else(|| format!("the {what} must be between 1ms and 31 days"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(text: &str) -> (u32, Nanos) {
        let rate: Rate = text.parse().unwrap();
        (rate.count(), rate.period())
    }

    #[test]
    fn parses_every_documented_form() {
        assert_eq!(rate("10/s"), (10, SECOND));
        assert_eq!(rate("100/minute"), (100, 60 * SECOND));
        assert_eq!(rate("1000/hour"), (1000, 3600 * SECOND));
        assert_eq!(rate("5/10s"), (5, 10 * SECOND));
        assert_eq!(rate("100 per day"), (100, 86_400 * SECOND));
        assert_eq!(rate(" 3 / 5 min "), (3, 300 * SECOND));
        assert_eq!(rate("7/250ms"), (7, 250 * MILLI));
        assert_eq!(rate("100 per 2 hours"), (100, 7200 * SECOND));
    }

    #[test]
    fn displays_in_a_form_it_parses_back() {
        for text in ["10/s", "100/m", "5/10s", "100/d", "7/250ms", "3/90m"] {
            let rate: Rate = text.parse().unwrap();
            assert_eq!(rate.to_string().parse::<Rate>().unwrap(), rate);
        }
    }

    #[test]
    fn rejects_malformed_rates_with_a_reason() {
        for (text, reason) in [
            ("", "empty"),
            ("100", "expected <count>/<period>"),
            ("0/s", "at least 1"),
            ("-1/s", "not a whole number"),
            ("ten/s", "not a whole number"),
            ("10/fortnight", "unknown period \"fortnight\""),
            ("10/0s", "between 1ms and 31 days"),
            ("10/400d", "between 1ms and 31 days"),
            ("10/99999999999999999999s", "too large"),
            ("1000 per hours", "plural without a number"),
            ("5/minutes", "singular (\"minute\")"),
        ] {
            let error = text.parse::<Rate>().unwrap_err().to_string();
            assert!(error.contains(reason), "{text:?} gave {error:?}");
        }
    }
}
