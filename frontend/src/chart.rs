//! Chart geometry for the SVG the pages draw: linear scales, "nice" axis ticks, the accuracy
//! whisker of a leaderboard row, and the polyline of a loss curve. Numbers in, coordinates
//! out; plain Rust tested on the host.

/// A linear map from a data interval onto a pixel interval (the pixel end may be smaller, for a
/// y axis that grows upwards).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    pub domain: (f64, f64),
    pub range: (f64, f64),
}

impl Scale {
    pub fn new(domain: (f64, f64), range: (f64, f64)) -> Self {
        // A flat domain (one point, or all values equal) is widened so nothing divides by zero.
        let domain = if (domain.1 - domain.0).abs() < f64::EPSILON {
            (domain.0 - 0.5, domain.1 + 0.5)
        } else {
            domain
        };
        Self { domain, range }
    }

    pub fn at(&self, value: f64) -> f64 {
        let t = (value - self.domain.0) / (self.domain.1 - self.domain.0);
        self.range.0 + t * (self.range.1 - self.range.0)
    }
}

/// Round tick values from a step at or below `lo` to one at or above `hi`: steps of 1, 2 or
/// 5 × 10ⁿ, about `count` of them.
pub fn ticks(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo || count == 0 {
        return vec![lo];
    }
    let raw = (hi - lo) / count as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step + 1e-9).floor() * step;
    let hi = (hi / step - 1e-9).ceil() * step;
    // Rounded to the step's decimals so values do not read 0.30000000000000004.
    let unit = 10f64.powf((-step.log10().floor()).max(0.0));
    let mut out = Vec::new();
    let mut k = 0.0;
    while first + k * step <= hi + step * 1e-9 {
        out.push(((first + k * step) * unit).round() / unit);
        k += 1.0;
    }
    out
}

/// A whisker on a `[0, 1]` accuracy axis `width` pixels wide: the interval's ends and the
/// point estimate, in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Whisker {
    pub low: f64,
    pub high: f64,
    pub point: f64,
}

pub fn whisker(point: f64, interval: (f64, f64), width: f64) -> Whisker {
    let scale = Scale::new((0.0, 1.0), (0.0, width));
    let clamp = |v: f64| scale.at(v.clamp(0.0, 1.0));
    Whisker {
        low: clamp(interval.0),
        high: clamp(interval.1),
        point: clamp(point),
    }
}

/// The plot area of a chart `width` × `height` with room for axis labels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    pub left: f64,
    pub right: f64,
    pub top: f64,
    pub bottom: f64,
}

impl Frame {
    pub fn of(width: f64, height: f64) -> Self {
        Self {
            left: 56.0,
            right: width - 16.0,
            top: 12.0,
            bottom: height - 32.0,
        }
    }
}

/// The axes of a curve chart fitted to `points` (x, y).
#[derive(Debug, Clone, PartialEq)]
pub struct Axes {
    pub x: Scale,
    pub y: Scale,
    pub x_ticks: Vec<f64>,
    pub y_ticks: Vec<f64>,
}

/// Axes for every series together: x (whole training steps) from 0 (or the first x) to the last, y from the lowest
/// to the highest value, padded to round ticks.
pub fn axes(series: &[&[(f64, f64)]], frame: Frame) -> Option<Axes> {
    let all = || {
        series
            .iter()
            .flat_map(|s| s.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    };
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in all() {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if x0 > x1 {
        return None;
    }
    let x0 = x0.min(0.0);
    let y_ticks = ticks(y0, y1, 5);
    let (ty0, ty1) = (
        y_ticks.first().copied().unwrap_or(y0).min(y0),
        y_ticks.last().copied().unwrap_or(y1).max(y1),
    );
    Some(Axes {
        x: Scale::new((x0, x1), (frame.left, frame.right)),
        y: Scale::new((ty0, ty1), (frame.bottom, frame.top)),
        // Steps are whole numbers: no tick between two of them.
        x_ticks: ticks(x0, x1, 6)
            .into_iter()
            .filter(|t| t.fract() == 0.0)
            .collect(),
        y_ticks,
    })
}

/// Log-probabilities of the choices as probabilities among the choices alone (a softmax:
/// they sum to 1), for bars; the largest stays largest.
pub fn probabilities(logprobs: &[f64]) -> Vec<f64> {
    let top = logprobs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !top.is_finite() {
        return vec![0.0; logprobs.len()];
    }
    let weights: Vec<f64> = logprobs.iter().map(|lp| (lp - top).exp()).collect();
    let total: f64 = weights.iter().sum();
    weights.iter().map(|w| w / total).collect()
}

/// An SVG polyline's `points` for a series on the axes.
pub fn polyline(series: &[(f64, f64)], axes: &Axes) -> String {
    series
        .iter()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|(x, y)| format!("{:.1},{:.1}", axes.x.at(*x), axes.y.at(*y)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A tick's label: no trailing zeros, at most three decimals.
pub fn tick_label(value: f64) -> String {
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

/// The width of a bar for a `[0, 1]` value, as a CSS percentage.
pub fn bar_percent(value: f64) -> String {
    format!("{:.1}%", value.clamp(0.0, 1.0) * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scale_maps_ends_to_ends_and_flips_for_y() {
        let s = Scale::new((0.0, 10.0), (100.0, 0.0));
        assert_eq!(s.at(0.0), 100.0);
        assert_eq!(s.at(10.0), 0.0);
        assert_eq!(s.at(5.0), 50.0);
        let flat = Scale::new((3.0, 3.0), (0.0, 10.0));
        assert_eq!(flat.at(3.0), 5.0, "a flat domain sits in the middle");
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 1.0, 5), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(ticks(0.0, 100.0, 4), [0.0, 50.0, 100.0]);
        assert_eq!(ticks(1.37, 2.91, 5), [1.0, 1.5, 2.0, 2.5, 3.0]);
        assert_eq!(
            ticks(0.0, 0.07, 7),
            [0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07]
        );
        assert_eq!(ticks(2.0, 2.0, 5), [2.0]);
        assert_eq!(tick_label(0.30000000000000004), "0.3");
        assert_eq!(tick_label(2.0), "2");
        assert_eq!(tick_label(-0.0), "0");
    }

    #[test]
    fn a_whisker_is_clamped_to_the_axis() {
        let w = whisker(0.5, (0.4, 0.6), 100.0);
        assert!((w.low - 40.0).abs() < 1e-9 && (w.high - 60.0).abs() < 1e-9);
        assert_eq!(w.point, 50.0);
        let w = whisker(1.0, (0.9, 1.2), 100.0);
        assert_eq!(w.high, 100.0);
    }

    #[test]
    fn a_loss_curve_fits_the_frame() {
        let train = [(1.0, 3.2), (2.0, 2.9), (3.0, 2.1), (4.0, 1.8)];
        let validation = [(4.0, 2.4)];
        let frame = Frame::of(600.0, 240.0);
        let axes = axes(&[&train, &validation], frame).expect("axes");
        let line = polyline(&train, &axes);
        let first: Vec<f64> = line
            .split(' ')
            .next()
            .expect("a point")
            .split(',')
            .map(|v| v.parse().expect("number"))
            .collect();
        assert!(first[0] > frame.left && first[0] < frame.right);
        // The highest loss is near the top, the lowest near the bottom.
        assert!(first[1] <= frame.top + 0.3 * (frame.bottom - frame.top));
        assert!(axes.y_ticks.first().copied().unwrap_or_default() <= 1.8);
        assert!(axes.y_ticks.last().copied().unwrap_or_default() >= 3.2);
        assert_eq!(line.split(' ').count(), 4);
        assert!(super::axes(&[&[]], frame).is_none());
        assert_eq!(bar_percent(0.256), "25.6%");
        assert_eq!(bar_percent(3.0), "100.0%");
    }

    #[test]
    fn a_short_curve_gets_whole_step_ticks_only() {
        let points = [(1.0, 8.7), (2.0, 3.1), (3.0, 1.6)];
        let ax = axes(&[&points], Frame::of(600.0, 240.0)).expect("axes");
        assert_eq!(ax.x_ticks, [0.0, 1.0, 2.0, 3.0]);
    }

    #[test]
    fn choice_log_probabilities_become_shares_that_sum_to_one() {
        let p = probabilities(&[-0.5, -1.5, -40.0, f64::MIN]);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(p[0] > p[1] && p[1] > p[2] && p[3] == 0.0);
        assert!(
            (p[0] / p[1] - 1f64.exp()).abs() < 1e-9,
            "ratios kept: {p:?}"
        );
        assert_eq!(probabilities(&[]), Vec::<f64>::new());
    }
}
