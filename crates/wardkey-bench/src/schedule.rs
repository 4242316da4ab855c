//! When each request is due: the open-loop timetable and the 12-hour shift.
//!
//! Every request has a send time fixed before the run starts, and its
//! latency is counted from that time, not from when it was really sent. A
//! server that stalls for a second therefore shows a second of latency on
//! every request that was due during the stall, as the clinicians tapping
//! then would feel it, instead of the one slow request a closed loop would
//! record ("coordinated omission").

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A fixed arrival rate over a warmup and a measured window.
///
/// Request `i` is due at `i / rate` seconds after the start, computed from
/// the index and never by adding intervals, so rounding never drifts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timetable {
    rate: f64,
    warmup: Duration,
    duration: Duration,
    len: u64,
}

impl Timetable {
    /// `rate` requests a second for `warmup` (not measured), then `duration`
    /// (measured).
    pub fn new(rate: f64, warmup: Duration, duration: Duration) -> Result<Self, String> {
        if !rate.is_finite() || rate <= 0.0 {
            return Err(format!("--rate must be a positive number of requests a second, not {rate}"));
        }
        if duration.is_zero() {
            return Err("--duration must be more than zero".into());
        }
        let len = ((warmup + duration).as_secs_f64() * rate).floor() as u64;
        if len == 0 {
            return Err(format!("at {rate}/s not one request falls within the run: raise --rate or --duration"));
        }
        Ok(Self { rate, warmup, duration, len })
    }

    /// Requests in the whole run, warmup included.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Always false: a timetable has at least one request.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// When request `i` is due, from the start of the run.
    pub fn offset(&self, i: u64) -> Duration {
        Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// Whether request `i` falls in the measured window (after warmup).
    pub fn is_measured(&self, i: u64) -> bool {
        self.offset(i) >= self.warmup
    }

    /// Requests in the measured window.
    pub fn measured_len(&self) -> u64 {
        (0..self.len).filter(|&i| self.is_measured(i)).count() as u64
    }

    /// Warmup plus measured window.
    pub fn total(&self) -> Duration {
        self.warmup + self.duration
    }

    /// The arrival rate, per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }
}

/// The taps of a shift: for each clinician, when each of their taps is due,
/// from the start of the compressed run, earliest first.
///
/// The real shift (`shift`, say 12 h) is cut into `taps` equal stretches per
/// clinician and each tap falls at a random point of its stretch (seeded, so
/// a run can be repeated), which spreads taps evenly over the shift without
/// every clinician tapping in step. Times are then divided by `compress`.
pub fn shift_taps(clinicians: usize, taps: usize, shift: Duration, compress: f64, seed: u64) -> Vec<Vec<Duration>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let stretch = shift.as_secs_f64() / taps.max(1) as f64;
    (0..clinicians)
        .map(|_| {
            (0..taps)
                .map(|j| {
                    let real = stretch * (j as f64 + rng.random::<f64>());
                    Duration::from_secs_f64(real / compress)
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evenly_spaced_without_drift() {
        let t = Timetable::new(200.0, Duration::from_secs(2), Duration::from_secs(20)).unwrap();
        assert_eq!(t.len(), 22 * 200);
        assert_eq!(t.offset(0), Duration::ZERO);
        assert_eq!(t.offset(1), Duration::from_millis(5));
        // Far into the run the offset is exact, not the sum of rounded steps.
        assert_eq!(t.offset(4399), Duration::from_secs_f64(4399.0 / 200.0));
        for i in 1..t.len() {
            let gap = t.offset(i) - t.offset(i - 1);
            assert!((gap.as_secs_f64() - 0.005).abs() < 1e-9, "gap {gap:?} at {i}");
        }
        assert!(t.offset(t.len() - 1) < t.total());
    }

    #[test]
    fn warmup_is_not_measured() {
        let t = Timetable::new(10.0, Duration::from_secs(1), Duration::from_secs(3)).unwrap();
        assert_eq!(t.len(), 40);
        assert!(!t.is_measured(9), "0.9 s is warmup");
        assert!(t.is_measured(10), "1.0 s is the first measured request");
        assert_eq!(t.measured_len(), 30);
        let none = Timetable::new(10.0, Duration::ZERO, Duration::from_secs(1)).unwrap();
        assert_eq!(none.measured_len(), none.len());
    }

    #[test]
    fn odd_rates_and_refusals() {
        let t = Timetable::new(3.0, Duration::ZERO, Duration::from_secs(1)).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t.offset(2), Duration::from_secs_f64(2.0 / 3.0));
        let slow = Timetable::new(0.5, Duration::ZERO, Duration::from_secs(10)).unwrap();
        assert_eq!(slow.len(), 5);
        assert_eq!(slow.offset(4), Duration::from_secs(8));
        assert!(Timetable::new(0.0, Duration::ZERO, Duration::from_secs(1)).is_err());
        assert!(Timetable::new(f64::NAN, Duration::ZERO, Duration::from_secs(1)).is_err());
        assert!(Timetable::new(10.0, Duration::ZERO, Duration::ZERO).is_err());
        assert!(Timetable::new(0.1, Duration::ZERO, Duration::from_secs(1)).is_err());
    }

    #[test]
    fn shift_taps_cover_the_compressed_shift_in_order() {
        let shift = Duration::from_secs(12 * 3600);
        let plan = shift_taps(30, 60, shift, 720.0, 7);
        assert_eq!(plan.len(), 30);
        let compressed = Duration::from_secs(60);
        for taps in &plan {
            assert_eq!(taps.len(), 60);
            assert!(taps.windows(2).all(|w| w[0] <= w[1]), "in order");
            assert!(taps.iter().all(|t| *t < compressed));
            // One tap in each 12-minute stretch (one second compressed).
            for (j, t) in taps.iter().enumerate() {
                assert_eq!(t.as_secs_f64().floor() as usize, j);
            }
        }
        assert_ne!(plan[0], plan[1], "clinicians do not tap in step");
        assert_eq!(plan, shift_taps(30, 60, shift, 720.0, 7), "a seed repeats a run");
    }
}
