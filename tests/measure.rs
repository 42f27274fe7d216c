//! The statistics of the behaviour meter and the sweep's baselines, against independent truth:
//! published Wilson intervals, best-of-2 sampling enumerated pair by pair, and the
//! data-processing bound checked on random reweightings.
#![cfg(not(target_arch = "wasm32"))]

use webdpo::rng::Rng;
use webdpo::storyworld::measure::Proportion;
use webdpo::storyworld::simulate::Baselines;

#[test]
fn wilson_intervals_match_the_published_values() {
    // Wilson's score interval at 95 % for Newcombe's (1998) four examples, as his table II
    // gives them (method 3).
    for (k, n, low, high) in [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ] {
        let p = Proportion::of(k, n);
        assert_eq!(p.rate, k as f64 / n as f64);
        assert!(
            (p.low - low).abs() < 1e-4,
            "{k}/{n}: low {} vs {low}",
            p.low
        );
        assert!(
            (p.high - high).abs() < 1e-4,
            "{k}/{n}: high {} vs {high}",
            p.high
        );
    }
    let none = Proportion::of(0, 0);
    assert_eq!((none.low, none.high), (0.0, 1.0));
}

/// A distribution over a few outcomes, some of which have the attribute.
struct Toy {
    p: Vec<f64>,
    has: Vec<bool>,
}

impl Toy {
    fn rate(&self, q: &[f64]) -> f64 {
        q.iter()
            .zip(&self.has)
            .filter(|(_, h)| **h)
            .map(|(q, _)| q)
            .sum()
    }

    fn kl(&self, q: &[f64]) -> f64 {
        q.iter()
            .zip(&self.p)
            .filter(|(q, _)| **q > 0.0)
            .map(|(q, p)| q * (q / p).ln())
            .sum()
    }
}

#[test]
fn best_of_2_is_what_enumerating_the_pairs_gives() {
    let toy = Toy {
        p: vec![0.1, 0.2, 0.3, 0.15, 0.25],
        has: vec![true, false, true, false, false],
    };
    // Two draws; the one with the attribute is kept, a tie keeps either with probability ½.
    let mut best = vec![0.0; toy.p.len()];
    for (i, pi) in toy.p.iter().enumerate() {
        for (j, pj) in toy.p.iter().enumerate() {
            let (w, v) = (pi * pj, (toy.has[i], toy.has[j]));
            match v {
                (true, false) => best[i] += w,
                (false, true) => best[j] += w,
                _ => {
                    best[i] += w / 2.0;
                    best[j] += w / 2.0;
                }
            }
        }
    }
    let b = Baselines::new(toy.rate(&toy.p));
    assert!((b.reference_rate - 0.4).abs() < 1e-12);
    assert!((b.best_of_2_rate - toy.rate(&best)).abs() < 1e-12);
    assert!((b.best_of_2_kl - toy.kl(&best)).abs() < 1e-12);
    // Best-of-2 reweights by the attribute alone, so it sits on the bound.
    assert!((b.bound(b.best_of_2_rate) - b.best_of_2_kl).abs() < 1e-12);
}

#[test]
fn no_reweighting_of_the_reference_passes_the_bound() {
    let toy = Toy {
        p: vec![0.05, 0.3, 0.1, 0.2, 0.15, 0.2],
        has: vec![true, false, false, true, false, true],
    };
    let b = Baselines::new(toy.rate(&toy.p));
    let mut rng = Rng::new(7);
    for _ in 0..1000 {
        let w: Vec<f64> = toy.p.iter().map(|p| p * rng.uniform() * 4.0).collect();
        let total: f64 = w.iter().sum();
        let q: Vec<f64> = w.iter().map(|w| w / total).collect();
        assert!(toy.kl(&q) >= b.bound(toy.rate(&q)) - 1e-12);
    }
    assert_eq!(b.bound(b.reference_rate), 0.0);
    assert_eq!(b.bound(0.0), 0.0);
}
