//! Property tests for the algorithms over random arrival sequences:
//! - token bucket: any interval of length t admits at most burst + rate * t;
//! - sliding window: any window aligned to a slot boundary admits at most
//!   the limit, and any window at all at most twice the limit (the
//!   approximation's documented worst case).

use std::num::NonZeroU32;

use proptest::prelude::*;
use weir::clock::{Nanos, MILLI, SECOND};
use weir::limiter::{Limit, Rate, SlidingWindow, TokenBucket};

const T0: Nanos = 1_750_000_000 * SECOND;

/// Gaps between arrivals (up to 400 ms, sub-millisecond precision) and the
/// cost of each.
fn arrivals() -> impl Strategy<Value = Vec<(Nanos, u32)>> {
    prop::collection::vec((0..400 * MILLI, 1..4u32), 1..300)
}

/// Runs the arrivals through `limit`; returns the admitted (time, cost).
fn admitted(limit: &Limit, arrivals: &[(Nanos, u32)]) -> Vec<(Nanos, u32)> {
    let mut state = limit.new_state();
    let mut now = T0;
    let mut passed = Vec::new();
    for &(gap, cost) in arrivals {
        now += gap;
        if limit.evaluate(&mut state, now, cost).allowed {
            limit.commit(&mut state, now, cost);
            passed.push((now, cost));
        }
    }
    passed
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn a_bucket_never_admits_more_than_burst_plus_rate_times_t(
        count in 1..40u32,
        period_ms in 100..5_000u64,
        burst in 1..30u32,
        arrivals in arrivals(),
    ) {
        let rate = Rate::new(NonZeroU32::new(count).unwrap(), std::num::NonZeroU64::new(period_ms * MILLI).unwrap());
        let limit = Limit::TokenBucket(TokenBucket::new(rate, NonZeroU32::new(burst).unwrap()));
        let passed = admitted(&limit, &arrivals);
        for (i, &(start, _)) in passed.iter().enumerate() {
            let mut sum = 0u64;
            for &(end, cost) in &passed[i..] {
                sum += cost as u64;
                let bound = burst as f64 + rate.per_nano() * (end - start) as f64;
                prop_assert!(sum as f64 <= bound + 1e-6, "{} admitted in {} ns, bound {}", sum, end - start, bound);
            }
        }
    }

    #[test]
    fn a_window_never_admits_more_than_its_limit_per_aligned_window(
        count in 1..30u32,
        window_ms in 200..5_000u64,
        arrivals in arrivals(),
    ) {
        let rate = Rate::new(NonZeroU32::new(count).unwrap(), std::num::NonZeroU64::new(window_ms * MILLI).unwrap());
        let limit = Limit::SlidingWindow(SlidingWindow::new(rate));
        let passed = admitted(&limit, &arrivals);
        let width = limit.slot_width();
        let window = 2 * width;
        let first = passed.first().map_or(0, |p| p.0 / width);
        let last = passed.last().map_or(0, |p| p.0 / width);
        for slot in first..=last {
            let start = slot * width;
            let sum: u64 = passed.iter().filter(|p| p.0 >= start && p.0 < start + window).map(|p| p.1 as u64).sum();
            prop_assert!(sum <= count as u64, "{} admitted in the window from slot {}", sum, slot);
        }
        for &(start, _) in &passed {
            let sum: u64 = passed.iter().filter(|p| p.0 >= start && p.0 < start + window).map(|p| p.1 as u64).sum();
            prop_assert!(sum <= 2 * count as u64, "{} admitted in a window from {}", sum, start);
        }
    }

    #[test]
    fn a_bucket_admits_the_full_rate_under_steady_overload(
        count in 1..40u32,
        burst in 1..30u32,
    ) {
        // Twice the rate, for 20 seconds: admitted is burst + 20 * rate, less
        // the last token, which the arrivals stop just short of.
        let rate = Rate::new(NonZeroU32::new(count).unwrap(), std::num::NonZeroU64::new(SECOND).unwrap());
        let limit = Limit::TokenBucket(TokenBucket::new(rate, NonZeroU32::new(burst).unwrap()));
        // Rounded up, so that the client is never faster than twice the rate.
        let gap = SECOND.div_ceil(2 * count as u64);
        let arrivals: Vec<(Nanos, u32)> = (0..40 * count).map(|_| (gap, 1)).collect();
        let passed = admitted(&limit, &arrivals).len() as f64;
        let exact = (burst as f64 + count as f64 * 20.0).min(arrivals.len() as f64);
        prop_assert!(passed <= exact, "{} > {}", passed, exact);
        prop_assert!(passed >= exact - 1.0, "{} < {} - 1", passed, exact);
    }
}
