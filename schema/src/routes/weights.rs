//! The weighted backend draw of a rule.

/// Draws one of `candidates` (`(weight, eligible)` per backend, in order)
/// with a probability proportional to its weight among the eligible ones;
/// weight 0 is never drawn. `uniform(n)` returns a uniform integer in
/// `0..n` (the caller's random source). `None`: no eligible weight.
pub fn draw(
    candidates: impl Iterator<Item = (u32, bool)> + Clone,
    uniform: impl FnOnce(u64) -> u64,
) -> Option<usize> {
    let live = |(w, ok): (u32, bool)| if ok { u64::from(w) } else { 0 };
    let total: u64 = candidates.clone().map(live).sum();
    if total == 0 {
        return None;
    }
    let mut x = uniform(total);
    for (i, c) in candidates.enumerate() {
        let w = live(c);
        if x < w {
            return Some(i);
        }
        x -= w;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn shares(weights: &[(u32, bool)], draws: usize) -> Vec<f64> {
        let mut rng = rand::rng();
        let mut seen = vec![0usize; weights.len()];
        for _ in 0..draws {
            let i = draw(weights.iter().copied(), |n| rng.random_range(0..n)).expect("drawn");
            seen[i] += 1;
        }
        seen.iter().map(|&n| n as f64 / draws as f64).collect()
    }

    #[test]
    fn shares_follow_weights_within_tolerance() {
        // 100,000 draws: the standard deviation of a 10% share is under
        // 0.1 percentage point, so 1 point of tolerance fails only on a bug.
        let got = shares(&[(70, true), (20, true), (10, true), (0, true)], 100_000);
        for (g, want) in got.iter().zip([0.7, 0.2, 0.1, 0.0]) {
            assert!((g - want).abs() < 0.01, "{got:?}");
        }
    }

    #[test]
    fn ineligible_backends_give_their_share_to_the_others() {
        let got = shares(&[(50, false), (30, true), (10, true)], 50_000);
        assert_eq!(got[0], 0.0);
        assert!((got[1] - 0.75).abs() < 0.015, "{got:?}");
    }

    #[test]
    fn nothing_to_draw() {
        assert_eq!(draw([(0, true), (0, true)].into_iter(), |_| 0), None);
        assert_eq!(draw([(5, false)].into_iter(), |_| 0), None);
        assert_eq!(draw(std::iter::empty(), |_| 0), None);
        assert_eq!(
            draw([(1, true), (u32::MAX, true)].into_iter(), |n| n - 1),
            Some(1)
        );
    }
}
