//! `parse_interval`: never panics, accepts exactly `^[0-9]+[dhms]$` whose value fits, and its
//! results round-trip through `Interval::to_kms_string` and `Display`.

use keyward::kms::schedule::{Interval, IntervalError, parse_interval};
use proptest::prelude::*;

use crate::budget;

const MAX_PARSEABLE_SECS: u128 = 1_000_000_000_000;

/// The documented contract, written independently of the implementation: `^[0-9]+[dhms]$`
/// (ASCII digits, one lowercase unit, nothing else), and the value in seconds at most 1e12.
pub fn interval_model(text: &str) -> Result<u64, IntervalError> {
    let mut chars = text.chars();
    let multiplier: u128 = match chars.next_back() {
        Some('d') => 86_400,
        Some('h') => 3_600,
        Some('m') => 60,
        Some('s') => 1,
        _ => return Err(IntervalError::Format),
    };
    let digits = chars.as_str();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(IntervalError::Format);
    }
    let significant = digits.trim_start_matches('0');
    if significant.len() > 20 {
        return Err(IntervalError::TooLarge);
    }
    let value: u128 = if significant.is_empty() {
        0
    } else {
        significant.parse().expect("at most 20 ASCII digits")
    };
    let secs = value * multiplier;
    if secs > MAX_PARSEABLE_SECS {
        return Err(IntervalError::TooLarge);
    }
    Ok(secs as u64)
}

/// Characters that look like, or sit next to, what an interval is made of.
fn interval_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select(vec!['0', '1', '7', '9']),
        3 => prop::sample::select(vec!['d', 'h', 'm', 's']),
        2 => prop::sample::select(vec![
            'D', 'H', 'M', 'S', 'w', 'y', ' ', '\t', '\n', '\0', '-', '+', '.', 'e', 'x', '_',
            '\u{a0}',   // no-break space
            '\u{200b}', // zero-width space
            '\u{202e}', // right-to-left override
            '\u{301}',  // combining acute accent
            '\u{660}',  // Arabic-Indic digit zero
            '\u{667}',  // Arabic-Indic digit seven
            '\u{ff17}', // fullwidth digit seven
            '\u{1d7d5}', // mathematical bold digit seven
            'ｄ',       // fullwidth d
            'é',
            '🔑',
        ]),
        1 => any::<char>(),
    ]
}

/// Strings near the interval syntax, arbitrary strings, and well-formed intervals of every
/// size (many digits, leading zeros).
pub fn interval_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::collection::vec(interval_char(), 0..12).prop_map(String::from_iter),
        2 => "[0-9]{1,25}[dhms]",
        1 => "0{0,30}[1-9][0-9]{0,14}[dhms]",
        2 => any::<String>(),
        1 => prop::sample::select(vec![
            // The limit (1e12 s) and u64's, in each unit.
            "1000000000000s", "1000000000001s", "16666666666m", "16666666667m", "277777777h",
            "277777778h", "11574074d", "11574075d", "18446744073709551615s",
            "18446744073709551616s", "213503982334601d", "0s", "00s", "0000000000000000000000d",
        ]).prop_map(str::to_string),
    ]
}

/// Whether `text` ends in an ASCII character (or is empty); see the ignored test below.
pub fn ends_in_ascii(text: &str) -> bool {
    text.chars().last().is_none_or(|c| c.is_ascii())
}

fn check_interval(text: &str) -> Result<(), TestCaseError> {
    let parsed = parse_interval(text);
    match (&parsed, interval_model(text)) {
        (Ok(interval), Ok(secs)) => {
            prop_assert_eq!(interval.as_secs(), secs, "{:?}", text);
            check_interval_forms(*interval)?;
        }
        (Err(got), Err(want)) => prop_assert_eq!(got, &want, "{:?}", text),
        (got, want) => prop_assert!(false, "{:?}: parsed {:?}, expected {:?}", text, got, want),
    }
    Ok(())
}

/// `to_kms_string` is `<seconds>s`, `Display` the largest exact unit, and both parse back.
fn check_interval_forms(interval: Interval) -> Result<(), TestCaseError> {
    let secs = interval.as_secs();
    let kms = interval.to_kms_string();
    prop_assert_eq!(&kms, &format!("{secs}s"));
    prop_assert_eq!(parse_interval(&kms), Ok(interval), "{}", kms);
    let shown = interval.to_string();
    prop_assert_eq!(parse_interval(&shown), Ok(interval), "{}", shown);
    let unit = match shown.chars().last() {
        Some('d') => 86_400,
        Some('h') => 3_600,
        Some('m') => 60,
        _ => 1,
    };
    // The most readable exact form: no larger unit divides the interval.
    let larger = [86_400u64, 3_600, 60].into_iter().filter(|u| *u > unit);
    for u in larger {
        prop_assert!(
            secs == 0 || !secs.is_multiple_of(u),
            "{} shown as {}",
            secs,
            shown
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(budget(2000))]

    /// Never panics, and accepts exactly the documented syntax whose value fits (inputs that
    /// end in an ASCII character: the others hit the bug below).
    #[test]
    fn parse_interval_accepts_exactly_integer_unit(
        text in interval_text().prop_filter("see the parse_interval bug", |t| ends_in_ascii(t)),
    ) {
        check_interval(&text)?;
    }

    /// Every interval up to the parse limit survives both printed forms.
    #[test]
    fn interval_forms_round_trip(secs in prop_oneof![
        0u64..=1_000_000_000_000,
        (0u64..=11_574_074).prop_map(|d| d * 86_400),
        (0u64..=277_777_777).prop_map(|h| h * 3_600),
    ]) {
        check_interval_forms(Interval::from_secs(secs))?;
    }
}

proptest! {
    #![proptest_config(budget(2000))]

    /// The full target: any string at all.
    #[test]
        fn parse_interval_never_panics(text in interval_text()) {
        check_interval(&text)?;
    }
}

/// The bug above, on the smallest inputs.
#[test]
fn parse_interval_does_not_panic_on_a_multibyte_last_character() {
    for text in ["7é", "é", "7d\u{301}", "7\u{667}", "🔑"] {
        let result = std::panic::catch_unwind(|| parse_interval(text));
        assert_eq!(result.ok(), Some(Err(IntervalError::Format)), "{text:?}");
    }
}
