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

use keyward::api::{KeyRequest, KeySpec, KeyUsage, Origin, ProtectionLevel};
use keyward::kms::error::Code;
use keyward::kms::material::{Material, generate};
use keyward::kms::rules::{RuleSettings, validate};
use keyward::kms::schedule::{Interval, IntervalError, parse_interval};
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

// ---------------------------------------------------------------------------------------------
// parse_interval

const MAX_PARSEABLE_SECS: u128 = 1_000_000_000_000;

/// The documented contract, written independently of the implementation: `^[0-9]+[dhms]$`
/// (ASCII digits, one lowercase unit, nothing else), and the value in seconds at most 1e12.
fn interval_model(text: &str) -> Result<u64, IntervalError> {
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
fn interval_text() -> impl Strategy<Value = String> {
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
fn ends_in_ascii(text: &str) -> bool {
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

// ---------------------------------------------------------------------------------------------
// rules::validate

/// A KMS value field: omitted, a valid value, a near miss of one, or anything.
fn kms_value(valid: &'static [&'static str]) -> impl Strategy<Value = Option<String>> {
    let near_miss = (prop::sample::select(valid), 0..8usize).prop_map(|(v, how)| match how {
        0 => v.to_lowercase(),
        1 => format!(" {v}"),
        2 => format!("{v} "),
        3 => format!("{v}\n"),
        4 => format!("{v}\u{0}"),
        5 => format!("{v}\u{200b}"),
        6 => v.replace('_', "-"),
        _ => v[..v.len() - 1].to_string(),
    });
    prop_oneof![
        3 => Just(None),
        6 => prop::sample::select(valid).prop_map(|v| Some(v.to_string())),
        2 => near_miss.prop_map(Some),
        1 => any::<String>().prop_map(Some),
    ]
}

const KEY_SPECS: &[&str] = &[
    "Aliyun_AES_256",
    "Aliyun_SM4",
    "RSA_2048",
    "EC_P256",
    "EC_P256K",
    "EC_SM2",
];
const KEY_USAGES: &[&str] = &["ENCRYPT/DECRYPT", "SIGN/VERIFY"];
const ORIGINS: &[&str] = &["Aliyun_KMS", "EXTERNAL"];
const PROTECTION_LEVELS: &[&str] = &["SOFTWARE", "HSM"];

/// Descriptions: omitted, short arbitrary text, or around the 8,192-character limit in
/// characters of one to four bytes.
fn description() -> impl Strategy<Value = Option<String>> {
    let around_limit = (
        8185usize..8200,
        prop::sample::select(vec!["x", "é", "€", "🔑", "\u{0}"]),
    )
        .prop_map(|(n, c)| c.repeat(n));
    prop_oneof![
        2 => Just(None),
        3 => any::<String>().prop_map(Some),
        2 => around_limit.prop_map(Some),
    ]
}

/// Rotation intervals: omitted, valid ones (also around the bounds), or interval-like text
/// (ending in ASCII, see the parse_interval bug).
fn rotation_interval(full_unicode: bool) -> impl Strategy<Value = Option<String>> {
    let near_bounds = prop::sample::select(vec![
        "7d",
        "604800s",
        "604799s",
        "6d",
        "730d",
        "731d",
        "63072000s",
        "63072001s",
        "0d",
        "1s",
        "10080m",
        "168h",
        "365d",
    ])
    .prop_map(str::to_string);
    let text = interval_text().prop_filter("see the parse_interval bug", move |t| {
        full_unicode || ends_in_ascii(t)
    });
    prop_oneof![
        2 => Just(None),
        3 => near_bounds.prop_map(Some),
        3 => text.prop_map(Some),
    ]
}

fn key_request(full_unicode: bool) -> impl Strategy<Value = KeyRequest> {
    (
        description(),
        kms_value(KEY_SPECS),
        kms_value(KEY_USAGES),
        kms_value(ORIGINS),
        kms_value(PROTECTION_LEVELS),
        prop::option::of(any::<bool>()),
        rotation_interval(full_unicode),
        prop::option::of(any::<String>()),
    )
        .prop_map(
            |(description, spec, usage, origin, level, rotate, interval, secret)| {
                // Fields added to KeyRequest keep their defaults.
                KeyRequest {
                    description,
                    key_spec: spec,
                    key_usage: usage,
                    origin,
                    protection_level: level,
                    enable_automatic_rotation: rotate,
                    rotation_interval: interval,
                    secret_name: secret,
                    ..KeyRequest::default()
                }
            },
        )
}

/// Operator settings: regions in and out of mainland China, bounds of any order.
fn rule_settings() -> impl Strategy<Value = RuleSettings> {
    let region = prop_oneof![
        prop::sample::select(vec![
            "local",
            "cn-hangzhou",
            "cn-hongkong",
            "ap-southeast-1"
        ])
        .prop_map(str::to_string),
        any::<String>(),
    ];
    let bound = prop_oneof![
        Just(Interval::from_days(7)),
        Just(Interval::from_days(730)),
        (0u64..=200_000_000).prop_map(Interval::from_secs),
    ];
    (region, bound.clone(), bound).prop_map(|(region, min, max)| RuleSettings {
        region,
        min_rotation_interval: min,
        max_rotation_interval: max,
    })
}

/// The seed's rules, written from the README's tables: every broken rule, as the field its
/// message must name. An empty list means the request is valid.
fn broken_rules(r: &KeyRequest, settings: &RuleSettings) -> Vec<&'static str> {
    let mut broken = Vec::new();
    let description = r.description.as_deref().unwrap_or("");
    if description.chars().count() > 8192 {
        broken.push("spec.description");
    }
    fn parse<T: Copy>(given: Option<&str>, default: T, parse: fn(&str) -> Option<T>) -> Option<T> {
        match given {
            None => Some(default),
            Some(text) => parse(text),
        }
    }
    let level = parse(
        r.protection_level.as_deref(),
        ProtectionLevel::Software,
        ProtectionLevel::parse,
    );
    let mainland = settings.region.starts_with("cn-") && settings.region != "cn-hongkong";
    let default_spec = if level == Some(ProtectionLevel::Hsm) && mainland {
        KeySpec::AliyunSm4
    } else {
        KeySpec::AliyunAes256
    };
    let spec = parse(r.key_spec.as_deref(), default_spec, KeySpec::parse);
    let usage = parse(
        r.key_usage.as_deref(),
        KeyUsage::EncryptDecrypt,
        KeyUsage::parse,
    );
    let origin = parse(r.origin.as_deref(), Origin::AliyunKms, Origin::parse);
    for (field, ok) in [
        ("spec.protectionLevel", level.is_some()),
        ("spec.keySpec", spec.is_some()),
        ("spec.keyUsage", usage.is_some()),
        ("spec.origin", origin.is_some()),
    ] {
        if !ok {
            broken.push(field);
        }
    }
    let (Some(level), Some(spec), Some(usage), Some(origin)) = (level, spec, usage, origin) else {
        return broken;
    };
    if level == ProtectionLevel::Hsm {
        broken.push("spec.protectionLevel");
    }
    if !spec.supported_usages().contains(&usage) {
        broken.push("spec.keyUsage");
    }
    let symmetric = matches!(spec, KeySpec::AliyunAes256 | KeySpec::AliyunSm4);
    if origin == Origin::External && !symmetric {
        broken.push("spec.origin");
    }
    if r.enable_automatic_rotation == Some(true) {
        if !symmetric || origin == Origin::External {
            broken.push("spec.enableAutomaticRotation");
        } else {
            let within = r
                .rotation_interval
                .as_deref()
                .map(interval_model)
                .is_some_and(|secs| {
                    secs.is_ok_and(|s| {
                        s >= settings.min_rotation_interval.as_secs()
                            && s <= settings.max_rotation_interval.as_secs()
                    })
                });
            if !within {
                broken.push("spec.rotationInterval");
            }
        }
    }
    broken
}

fn check_validate(request: &KeyRequest, settings: &RuleSettings) -> Result<(), TestCaseError> {
    let broken = broken_rules(request, settings);
    match validate(request, settings) {
        Ok(key) => {
            prop_assert!(broken.is_empty(), "accepted, but breaks {:?}", broken);
            // What was accepted is what was asked for, defaults applied, and within the rules.
            prop_assert!(key.key_spec.supported_usages().contains(&key.key_usage));
            prop_assert_eq!(key.protection_level, ProtectionLevel::Software);
            prop_assert!(key.origin == Origin::AliyunKms || key.key_spec.is_symmetric());
            prop_assert!(key.description.chars().count() <= 8192);
            prop_assert_eq!(
                &key.description,
                request.description.as_deref().unwrap_or("")
            );
            if let Some(spec) = &request.key_spec {
                prop_assert_eq!(key.key_spec.as_str(), spec.as_str());
            }
            if let Some(usage) = &request.key_usage {
                prop_assert_eq!(key.key_usage.as_str(), usage.as_str());
            }
            match key.rotation {
                Some(interval) => {
                    prop_assert_eq!(request.enable_automatic_rotation, Some(true));
                    prop_assert!(key.key_spec.is_symmetric() && key.origin == Origin::AliyunKms);
                    prop_assert!(interval >= settings.min_rotation_interval);
                    prop_assert!(interval <= settings.max_rotation_interval);
                    let text = request.rotation_interval.as_deref().unwrap_or_default();
                    prop_assert_eq!(parse_interval(text), Ok(interval));
                }
                None => prop_assert_ne!(request.enable_automatic_rotation, Some(true)),
            }
        }
        Err(rejection) => {
            prop_assert!(
                !broken.is_empty(),
                "rejected a valid request: {}",
                rejection
            );
            let message = rejection.to_string();
            prop_assert!(Code::ALL.contains(&rejection.code));
            prop_assert!(
                message.starts_with(&format!("{}: ", rejection.code.as_str())),
                "{}",
                message
            );
            prop_assert!(
                broken.iter().any(|field| rejection.detail.contains(field)),
                "{} names none of the broken rules {:?}",
                message,
                broken
            );
            // Messages quote and shorten what they echo: no raw control characters, no
            // megabytes of input.
            prop_assert!(
                !message.contains('\0') && !message.contains('\n'),
                "{:?}",
                message
            );
            prop_assert!(message.len() < 1024, "{} bytes", message.len());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(budget(2000))]

    /// Never panics and agrees with the model (rotation intervals ending in ASCII; see the
    /// parse_interval bug).
    #[test]
    fn validate_agrees_with_the_seed_rules(
        request in key_request(false),
        settings in rule_settings(),
    ) {
        check_validate(&request, &settings)?;
    }

    /// The default operator settings, where most real requests land.
    #[test]
    fn validate_agrees_with_the_seed_rules_at_the_seed_bounds(request in key_request(false)) {
        check_validate(&request, &RuleSettings::with_seed_bounds("local"))?;
    }
}

proptest! {
    #![proptest_config(budget(2000))]

    #[test]
        fn validate_never_panics(request in key_request(true), settings in rule_settings()) {
        check_validate(&request, &settings)?;
    }
}

// ---------------------------------------------------------------------------------------------
// material::generate

fn decode_pem(pem: &[u8], label: &str) -> Result<Vec<u8>, TestCaseError> {
    let text = std::str::from_utf8(pem).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(!text.contains('\r'), "LF line endings");
    prop_assert!(text.ends_with('\n'));
    for line in text.lines() {
        prop_assert!(line.len() <= 64, "PEM lines are at most 64 characters");
    }
    let (found, der) = pkcs8::der::pem::decode_vec(pem)
        .map_err(|e| TestCaseError::fail(format!("{label} PEM does not decode: {e}")))?;
    prop_assert_eq!(found, label);
    Ok(der)
}

fn oid(text: &str) -> pkcs8::ObjectIdentifier {
    pkcs8::ObjectIdentifier::new_unwrap(text)
}

/// The algorithm and (for EC keys) curve OIDs of a key spec's PKCS#8 and SPKI documents.
fn expected_oids(spec: KeySpec) -> (pkcs8::ObjectIdentifier, Option<pkcs8::ObjectIdentifier>) {
    let ec = oid("1.2.840.10045.2.1");
    match spec {
        KeySpec::Rsa2048 => (oid("1.2.840.113549.1.1.1"), None),
        KeySpec::EcP256 => (ec, Some(oid("1.2.840.10045.3.1.7"))),
        KeySpec::EcP256K => (ec, Some(oid("1.3.132.0.10"))),
        KeySpec::EcSm2 => (ec, Some(oid("1.2.156.10197.1.301"))),
        symmetric => panic!("{symmetric} is symmetric"),
    }
}

fn check_material(spec: KeySpec) -> Result<(), TestCaseError> {
    use pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
    let material = generate(spec).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let (private_pem, public_pem) = match (&material, spec.is_symmetric()) {
        (Material::Symmetric { key }, true) => {
            let want = if spec == KeySpec::AliyunSm4 { 16 } else { 32 };
            prop_assert_eq!(key.len(), want, "{}", spec);
            prop_assert!(key.expose().iter().any(|b| *b != 0), "{}: all zero", spec);
            return Ok(());
        }
        (
            Material::Asymmetric {
                private_pem,
                public_pem,
            },
            false,
        ) => (private_pem.expose(), public_pem.as_bytes()),
        _ => {
            return Err(TestCaseError::fail(format!(
                "{spec}: wrong kind of material"
            )));
        }
    };
    let private_der = decode_pem(private_pem, "PRIVATE KEY")?;
    let public_der = decode_pem(public_pem, "PUBLIC KEY")?;

    // The generic documents: PKCS#8 v1 and SPKI with the key spec's algorithm and curve.
    let info = pkcs8::PrivateKeyInfoRef::try_from(private_der.as_slice())
        .map_err(|e| TestCaseError::fail(format!("{spec}: PKCS#8: {e}")))?;
    let spki = spki::SubjectPublicKeyInfoRef::try_from(public_der.as_slice())
        .map_err(|e| TestCaseError::fail(format!("{spec}: SPKI: {e}")))?;
    let (algorithm, curve) = expected_oids(spec);
    prop_assert_eq!(info.algorithm.oid, algorithm, "{}", spec);
    prop_assert_eq!(spki.algorithm.oid, algorithm, "{}", spec);
    let curve_of = |params: Option<pkcs8::der::asn1::AnyRef<'_>>| {
        params.and_then(|p| p.decode_as::<pkcs8::ObjectIdentifier>().ok())
    };
    if let Some(curve) = curve {
        prop_assert_eq!(curve_of(info.algorithm.parameters), Some(curve), "{}", spec);
        prop_assert_eq!(curve_of(spki.algorithm.parameters), Some(curve), "{}", spec);
    }
    prop_assert!(info.public_key.is_none(), "PKCS#8 v1");

    // The typed keys: the private key's public half is the public key, and both re-encode to
    // the same bytes (DER is canonical).
    macro_rules! ec {
        ($curve:ident) => {{
            let secret = $curve::SecretKey::from_pkcs8_der(&private_der)
                .map_err(|e| TestCaseError::fail(format!("{spec}: {e}")))?;
            let public = $curve::PublicKey::from_public_key_der(&public_der)
                .map_err(|e| TestCaseError::fail(format!("{spec}: {e}")))?;
            prop_assert_eq!(secret.public_key(), public, "{}", spec);
            let again = secret
                .to_pkcs8_der()
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(again.as_bytes() == private_der.as_slice(), "{}", spec);
            let again = public
                .to_public_key_der()
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(again.as_bytes() == public_der.as_slice(), "{}", spec);
        }};
    }
    match spec {
        KeySpec::Rsa2048 => {
            use rsa::traits::PublicKeyParts;
            let secret = rsa::RsaPrivateKey::from_pkcs8_der(&private_der)
                .map_err(|e| TestCaseError::fail(format!("{spec}: {e}")))?;
            let public = rsa::RsaPublicKey::from_public_key_der(&public_der)
                .map_err(|e| TestCaseError::fail(format!("{spec}: {e}")))?;
            secret
                .validate()
                .map_err(|e| TestCaseError::fail(format!("{spec}: {e}")))?;
            prop_assert_eq!(public.size(), 256, "2048-bit modulus");
            prop_assert_eq!(&secret.to_public_key(), &public);
            let again = public
                .to_public_key_der()
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(again.as_bytes() == public_der.as_slice());
        }
        KeySpec::EcP256 => ec!(p256),
        KeySpec::EcP256K => ec!(k256),
        KeySpec::EcSm2 => ec!(sm2),
        _ => unreachable!(),
    }
    Ok(())
}

proptest! {
    #![proptest_config(budget(100))]

    /// Symmetric and elliptic-curve keys: cheap to generate.
    #[test]
    fn generated_material_decodes_back(spec in prop::sample::select(vec![
        KeySpec::AliyunAes256,
        KeySpec::AliyunSm4,
        KeySpec::EcP256,
        KeySpec::EcP256K,
        KeySpec::EcSm2,
    ])) {
        check_material(spec)?;
    }
}

proptest! {
    #![proptest_config(budget(6))]

    /// RSA-2048: each key costs a prime search.
    #[test]
    fn generated_rsa_material_decodes_back(spec in Just(KeySpec::Rsa2048)) {
        check_material(spec)?;
    }
}
