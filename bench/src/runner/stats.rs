//! Small statistics over repeated runs.

/// Median, minimum and maximum of a set of samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// Median of the finite samples (mean of the two middle ones for an even count).
pub fn median(xs: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

pub fn summarize(xs: &[f64]) -> Option<Summary> {
    let med = median(xs)?;
    let fin = xs.iter().copied().filter(|x| x.is_finite());
    let min = fin.clone().fold(f64::INFINITY, f64::min);
    let max = fin.clone().fold(f64::NEG_INFINITY, f64::max);
    Some(Summary {
        n: fin.count(),
        median: med,
        min,
        max,
    })
}

/// `value / baseline`, or None when the baseline is missing or zero.
pub fn ratio(value: f64, baseline: f64) -> Option<f64> {
    if baseline > 0.0 && baseline.is_finite() && value.is_finite() {
        Some(value / baseline)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 1.0]), Some(1.0));
    }

    #[test]
    fn summary_min_max() {
        let s = summarize(&[5.0, 1.0, 9.0, 3.0, 7.0]).unwrap();
        assert_eq!(
            s,
            Summary {
                n: 5,
                median: 5.0,
                min: 1.0,
                max: 9.0
            }
        );
        assert!(summarize(&[]).is_none());
    }

    #[test]
    fn ratios() {
        assert_eq!(ratio(150.0, 100.0), Some(1.5));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
    }
}
