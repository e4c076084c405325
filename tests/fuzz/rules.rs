//! `rules::validate`: never panics, and agrees with an independent model of the seed's
//! CreateKey rules: accepted requests break no rule, rejected ones name a field whose rule is
//! broken.

use keyward::api::{KeyRequest, KeySpec, KeyUsage, Origin, ProtectionLevel};
use keyward::kms::error::Code;
use keyward::kms::rules::{RuleSettings, validate};
use keyward::kms::schedule::{Interval, parse_interval};
use proptest::prelude::*;

use crate::budget;
use crate::interval::{ends_in_ascii, interval_model, interval_text};

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
        hsm: None,
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
    // Not a seed rule: the Secret keyward writes must have an object name.
    if r.secret_name
        .as_deref()
        .is_some_and(|name| !keyward::api::is_object_name(name))
    {
        broken.push("spec.secretName");
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
