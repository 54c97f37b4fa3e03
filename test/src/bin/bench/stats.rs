//! Samples of one case and their summary: min, median, max.

/// The samples of one measured case, in the order they were taken.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples(pub Vec<f64>);

impl Samples {
    pub fn push(&mut self, value: f64) {
        self.0.push(value);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    fn sorted(&self) -> Vec<f64> {
        let mut s = self.0.clone();
        s.sort_by(f64::total_cmp);
        s
    }

    /// The median (for an even count, the mean of the two middle samples); 0 when empty.
    pub fn median(&self) -> f64 {
        let s = self.sorted();
        match s.len() {
            0 => 0.0,
            n if n % 2 == 1 => s[n / 2],
            n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
        }
    }

    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(0.0)
    }

    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(0.0)
    }
}

/// Runs `f` `warmup` times unmeasured, then `runs` times, and returns the measured values.
pub fn measure(warmup: usize, runs: usize, mut f: impl FnMut() -> f64) -> Samples {
    for _ in 0..warmup {
        f();
    }
    Samples((0..runs).map(|_| f()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_samples() {
        let s = Samples(vec![5.0, 1.0, 3.0]);
        assert_eq!((s.min(), s.median(), s.max()), (1.0, 3.0, 5.0));
        assert_eq!(Samples(vec![4.0, 1.0, 2.0, 3.0]).median(), 2.5);
        assert_eq!(Samples::default().median(), 0.0);
    }
}
