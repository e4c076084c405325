//! Fuzz targets with a fixed budget: property tests over keyward's public API, each with a fixed
//! number of cases and a fixed seed, so that CI time is bounded and every run tries the same
//! inputs (a failure reproduces with the same command).
//!
//! * `parse_interval` never panics, accepts exactly `^[0-9]+[dhms]$` whose value fits, and its
//!   results round-trip through `Interval::to_kms_string` and `Display`.
//! * `rules::validate` never panics and agrees with an independent model of the seed's CreateKey
//!   rules: accepted requests break no rule, rejected ones name a field whose rule is broken.
//! * `material::generate` gives, for each key spec, material that the RustCrypto crates decode
//!   back: key sizes for symmetric keys, PKCS#8 and SPKI PEM of matching keys for the others.
//!
//! Longer runs: `PROPTEST_CASES=100000 cargo test --test fuzz` (every target that many cases)
//! and `PROPTEST_RNG_SEED=<u64>` for other inputs. Failures are not persisted to files: with a
//! fixed seed the same command finds the same failure again, and proptest prints the minimal
//! failing input.
//!
//! One module a target: [`interval`], [`rules`], [`material`].

mod interval;
mod material;
mod rules;

use proptest::prelude::*;
use proptest::test_runner::RngSeed;

/// The seed every target uses unless `PROPTEST_RNG_SEED` is set.
const SEED: u64 = 0x6b65_7977_6172_6400;

/// A fixed budget of `cases` (unless `PROPTEST_CASES` asks for another) and the fixed seed.
fn budget(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(SEED);
    }
    config
}
