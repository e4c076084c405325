//! The CreateKey rules of the seed document (pure): defaults, allowed values and combinations.
//!
//! The CRD schema rejects what it can up front, but these checks are the ones that always
//! hold: they run on every reconcile, whatever the API server's schema support.

use crate::api::key::{KeyRequest, MAX_DESCRIPTION_CHARS};
use crate::api::{KeySpec, KeyState, KeyUsage, Origin, ProtectionLevel, is_object_name};
use crate::kms::error::{Code, Rejection, quote};
use crate::kms::schedule::{Interval, IntervalError, parse_interval};

/// The operator settings the rules depend on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSettings {
    /// The region keys are created in (`--region`); decides the HSM default key spec.
    pub region: String,
    /// Bounds of `rotationInterval`, inclusive (the seed: 7 to 730 days).
    pub min_rotation_interval: Interval,
    pub max_rotation_interval: Interval,
    /// The HSM keys can be generated in (`--pkcs11-module`); `None` refuses HSM keys.
    pub hsm: Option<HsmSupport>,
}

/// What the configured PKCS#11 module can hold, as read from it at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HsmSupport {
    /// The module's path, named in refusals.
    pub module: String,
    /// The key specs the module cannot hold, each with the reason.
    pub unsupported: Vec<(KeySpec, String)>,
}

impl RuleSettings {
    /// The seed's bounds in the given region.
    pub fn with_seed_bounds(region: impl Into<String>) -> Self {
        RuleSettings {
            region: region.into(),
            min_rotation_interval: Interval::from_days(7),
            max_rotation_interval: Interval::from_days(730),
            hsm: None,
        }
    }
}

/// A CreateKey request with the defaults applied, known to be valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidKey {
    pub key_spec: KeySpec,
    pub key_usage: KeyUsage,
    pub origin: Origin,
    pub protection_level: ProtectionLevel,
    /// The automatic rotation interval, when rotation is enabled.
    pub rotation: Option<Interval>,
    pub description: String,
    /// The state asked for: Enabled, Disabled or PendingDeletion.
    pub desired_state: KeyState,
    /// Days between scheduling a deletion and destroying the material.
    pub pending_window_days: u32,
    pub deletion_protection: bool,
    /// Material to import into an EXTERNAL key.
    pub import: Option<ImportRequest>,
}

/// The seed's default pending window, in days.
pub const DEFAULT_PENDING_WINDOW_DAYS: u32 = 30;

/// Where to import material from (ImportKeyMaterial), and when it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportRequest {
    pub secret_name: String,
    pub expire_time: Option<jiff::Timestamp>,
}

/// Mainland China regions are `cn-*`, except Hong Kong.
pub fn is_mainland_china(region: &str) -> bool {
    region.starts_with("cn-") && region != "cn-hongkong"
}

/// The seed: Aliyun_SM4 for keys in a managed HSM in mainland China, else Aliyun_AES_256.
pub fn default_key_spec(protection_level: ProtectionLevel, region: &str) -> KeySpec {
    if protection_level == ProtectionLevel::Hsm && is_mainland_china(region) {
        KeySpec::AliyunSm4
    } else {
        KeySpec::AliyunAes256
    }
}

/// Applies the seed's defaults and checks every rule; the first broken rule is returned.
pub fn validate(request: &KeyRequest, settings: &RuleSettings) -> Result<ValidKey, Rejection> {
    let description = validate_description(request)?;
    if let Some(name) = &request.secret_name {
        check_secret_name(
            "spec.secretName",
            name,
            "the Secret keyward creates for consumers, or omit it to use the Key's name",
        )?;
    }
    let protection_level = parse_field(
        "protectionLevel",
        request.protection_level.as_deref(),
        ProtectionLevel::Software,
        ProtectionLevel::parse,
        ProtectionLevel::allowed,
    )?;
    let key_spec = parse_field(
        "keySpec",
        request.key_spec.as_deref(),
        default_key_spec(protection_level, &settings.region),
        KeySpec::parse,
        KeySpec::allowed,
    )?;
    let key_usage = parse_field(
        "keyUsage",
        request.key_usage.as_deref(),
        KeyUsage::EncryptDecrypt,
        KeyUsage::parse,
        KeyUsage::allowed,
    )?;
    let origin = parse_field(
        "origin",
        request.origin.as_deref(),
        Origin::AliyunKms,
        Origin::parse,
        Origin::allowed,
    )?;
    check_protection_level(request, protection_level, key_spec, origin, settings)?;
    check_usage(request, key_spec, key_usage)?;
    check_origin(key_spec, origin)?;
    let rotation = if request.enable_automatic_rotation == Some(true) {
        Some(validate_rotation(request, key_spec, origin, settings)?)
    } else {
        None
    };
    let (desired_state, pending_window_days) = validate_lifecycle(request)?;
    let import = validate_import(request, origin)?;
    Ok(ValidKey {
        key_spec,
        key_usage,
        origin,
        protection_level,
        rotation,
        description,
        desired_state,
        pending_window_days,
        deletion_protection: request.deletion_protection == Some(true),
        import,
    })
}

/// `description`: at most [`MAX_DESCRIPTION_CHARS`] characters.
fn validate_description(request: &KeyRequest) -> Result<String, Rejection> {
    let description = request.description.clone().unwrap_or_default();
    let chars = description.chars().count();
    if chars > MAX_DESCRIPTION_CHARS {
        return Err(Rejection::new(
            Code::InvalidParameter,
            format!(
                "spec.description is {chars} characters long; it can be up to \
                 {MAX_DESCRIPTION_CHARS} characters"
            ),
        ));
    }
    Ok(description)
}

/// `protectionLevel: HSM` needs an HSM that can hold the key spec; imported material is not
/// put into an HSM yet.
fn check_protection_level(
    request: &KeyRequest,
    protection_level: ProtectionLevel,
    key_spec: KeySpec,
    origin: Origin,
    settings: &RuleSettings,
) -> Result<(), Rejection> {
    if protection_level != ProtectionLevel::Hsm {
        return Ok(());
    }
    let Some(hsm) = &settings.hsm else {
        return Err(Rejection::new(
            Code::UnsupportedProtectionLevel,
            "spec.protectionLevel HSM is not available: this keyward runs without a hardware \
             security module (start it with --pkcs11-module, --pkcs11-token-label and \
             --pkcs11-pin-file; docs/hsm.md); or set spec.protectionLevel: SOFTWARE (or omit it)",
        ));
    };
    if origin == Origin::External {
        return Err(Rejection::new(
            Code::UnsupportedOperation,
            "spec.origin EXTERNAL with spec.protectionLevel HSM is not supported: keyward does \
             not import material into the HSM yet; set spec.origin: Aliyun_KMS to have the key \
             generated in the HSM, or spec.protectionLevel: SOFTWARE to import it",
        ));
    }
    let Some((_, why)) = hsm.unsupported.iter().find(|(spec, _)| *spec == key_spec) else {
        return Ok(());
    };
    let supported: Vec<&str> = KeySpec::ALL
        .iter()
        .filter(|spec| !hsm.unsupported.iter().any(|(s, _)| s == *spec))
        .map(|spec| spec.as_str())
        .collect();
    let given = match request.key_spec {
        Some(_) => format!("spec.keySpec {key_spec}"),
        None => format!(
            "spec.keySpec defaults to {key_spec} for HSM keys in region {}, and",
            settings.region
        ),
    };
    Err(Rejection::new(
        Code::UnsupportedProtectionLevel,
        format!(
            "{given} cannot be generated in the HSM: PKCS#11 module {} cannot hold {key_spec} \
             keys ({why}); set spec.keySpec to one it holds ({}), or spec.protectionLevel: \
             SOFTWARE",
            hsm.module,
            match supported.is_empty() {
                true => "none".to_string(),
                false => supported.join(", "),
            }
        ),
    ))
}

/// The seed's usage table: which `keyUsage` each key spec supports.
fn check_usage(
    request: &KeyRequest,
    key_spec: KeySpec,
    key_usage: KeyUsage,
) -> Result<(), Rejection> {
    if key_spec.supported_usages().contains(&key_usage) {
        return Ok(());
    }
    let supported: Vec<&str> = key_spec
        .supported_usages()
        .iter()
        .map(|u| u.as_str())
        .collect();
    let given = match request.key_usage {
        Some(_) => format!("spec.keyUsage {key_usage}"),
        None => format!("spec.keyUsage defaults to {key_usage}, which"),
    };
    Err(Rejection::new(
        Code::InvalidParameter,
        format!(
            "{given} is not supported by key spec {key_spec}; set spec.keyUsage: {}",
            supported.join(" or ")
        ),
    ))
}

/// `origin: EXTERNAL` takes symmetric material only.
fn check_origin(key_spec: KeySpec, origin: Origin) -> Result<(), Rejection> {
    if origin != Origin::External || key_spec.is_symmetric() {
        return Ok(());
    }
    Err(Rejection::new(
        Code::UnsupportedOperation,
        format!(
            "spec.origin EXTERNAL is not available for the asymmetric key spec {key_spec}; \
             import material only into Aliyun_AES_256 or Aliyun_SM4 keys, or set \
             spec.origin: Aliyun_KMS"
        ),
    ))
}

/// `keyState` (Enabled, Disabled or PendingDeletion) and `pendingWindowInDays` (7 to 30).
fn validate_lifecycle(request: &KeyRequest) -> Result<(KeyState, u32), Rejection> {
    let settable = [
        KeyState::Enabled,
        KeyState::Disabled,
        KeyState::PendingDeletion,
    ];
    let state = match request.key_state.as_deref() {
        None => KeyState::Enabled,
        Some(text) => KeyState::parse(text)
            .filter(|s| settable.contains(s))
            .ok_or_else(|| {
                Rejection::new(
                    Code::InvalidParameter,
                    format!(
                        "spec.keyState {} is not a state you can set; set one of: Enabled, \
                     Disabled, PendingDeletion (case-sensitive)",
                        quote(text)
                    ),
                )
            })?,
    };
    let window = match request.pending_window_in_days {
        None => DEFAULT_PENDING_WINDOW_DAYS,
        Some(days @ 7..=30) => days as u32,
        Some(days) => {
            return Err(Rejection::new(
                Code::InvalidParameter,
                format!(
                    "spec.pendingWindowInDays {days} is out of range; set it from 7 to 30 \
                     (default {DEFAULT_PENDING_WINDOW_DAYS})"
                ),
            ));
        }
    };
    Ok((state, window))
}

/// `keyMaterial` is ImportKeyMaterial: only for EXTERNAL keys, with a valid expiry time.
fn validate_import(
    request: &KeyRequest,
    origin: Origin,
) -> Result<Option<ImportRequest>, Rejection> {
    let Some(source) = &request.key_material else {
        return Ok(None);
    };
    if origin != Origin::External {
        return Err(Rejection::new(
            Code::UnsupportedOperation,
            "spec.keyMaterial imports material into keys with origin EXTERNAL; keyward \
             generates the material of Aliyun_KMS keys: remove spec.keyMaterial, or create a Key \
             with origin EXTERNAL",
        ));
    }
    // Checked before anything reads the Secret: a name that is no object name would put
    // another path in the request.
    check_secret_name(
        "spec.keyMaterial.secretRef.name",
        &source.secret_ref.name,
        "the Secret in the Key's namespace that holds the material to import",
    )?;
    let expire_time = match source.expire_time.as_deref() {
        None => None,
        Some(text) => Some(crate::kms::schedule::parse_kms_time(text).ok_or_else(|| {
            Rejection::new(
                Code::InvalidParameter,
                format!(
                    "spec.keyMaterial.expireTime {} is not a UTC time; write it like \
                     2026-12-31T00:00:00Z",
                    quote(text)
                ),
            )
        })?),
    };
    Ok(Some(ImportRequest {
        secret_name: source.secret_ref.name.clone(),
        expire_time,
    }))
}

fn validate_rotation(
    request: &KeyRequest,
    key_spec: KeySpec,
    origin: Origin,
    settings: &RuleSettings,
) -> Result<Interval, Rejection> {
    if !key_spec.is_symmetric() {
        return Err(Rejection::new(
            Code::UnsupportedOperation,
            format!(
                "automatic rotation is not available for the asymmetric key spec {key_spec}; \
                 set spec.enableAutomaticRotation: false and create new versions with a \
                 KeyVersion instead"
            ),
        ));
    }
    if origin == Origin::External {
        return Err(Rejection::new(
            Code::UnsupportedOperation,
            "automatic rotation is not available for keys with origin EXTERNAL; set \
             spec.enableAutomaticRotation: false",
        ));
    }
    let (min, max) = (
        settings.min_rotation_interval,
        settings.max_rotation_interval,
    );
    let Some(text) = request.rotation_interval.as_deref() else {
        return Err(Rejection::new(
            Code::MissingParameter,
            format!(
                "spec.rotationInterval is required when spec.enableAutomaticRotation is true; \
                 set it to an interval from {min} to {max}, for example 365d"
            ),
        ));
    };
    let interval = parse_interval(text).map_err(|e| {
        let bound = match e {
            IntervalError::Format => String::new(),
            IntervalError::TooLarge => format!(" (at most {max})"),
        };
        Rejection::new(
            Code::InvalidParameter,
            format!(
                "spec.rotationInterval {} is invalid: {e}{bound}",
                quote(text)
            ),
        )
    })?;
    if interval < min || interval > max {
        return Err(Rejection::new(
            Code::InvalidParameter,
            format!(
                "spec.rotationInterval {} is out of range; it must be from {min} to {max} \
                 inclusive ({} to {})",
                quote(text),
                min.to_kms_string(),
                max.to_kms_string()
            ),
        ));
    }
    Ok(interval)
}

/// A name the user gives a Secret by must be one a Secret can have ([`is_object_name`]).
/// `field` is where it is written, `set_to` what it should name.
fn check_secret_name(field: &str, name: &str, set_to: &str) -> Result<(), Rejection> {
    if is_object_name(name) {
        return Ok(());
    }
    Err(Rejection::new(
        Code::InvalidParameter,
        format!(
            "{field} {} is not a Secret name: it {}; set it to the name of {set_to}: lowercase \
             letters, digits, '-' and '.', starting and ending with a letter or digit, at most \
             253 characters",
            quote(name),
            object_name_problem(name)
        ),
    ))
}

/// What makes `name` no object name, for a message.
fn object_name_problem(name: &str) -> String {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    if name.is_empty() {
        "is empty".into()
    } else if name.len() > 253 {
        format!("is {} bytes long", name.len())
    } else if name.chars().any(|c| c.is_ascii_uppercase()) {
        "has uppercase letters".into()
    } else if let Some(c) = name.chars().find(|c| !allowed(*c)) {
        format!("has the character {}", quote(&c.to_string()))
    } else {
        "has a '-' or '.' at the start or end of a part, or two '.' in a row".into()
    }
}

/// Parses an optional, case-sensitive KMS value, or takes its default when omitted.
fn parse_field<T: Copy>(
    field: &str,
    given: Option<&str>,
    default: T,
    parse: impl Fn(&str) -> Option<T>,
    allowed: impl Fn() -> String,
) -> Result<T, Rejection> {
    match given {
        None => Ok(default),
        Some(text) => parse(text).ok_or_else(|| {
            Rejection::new(
                Code::InvalidParameter,
                format!(
                    "spec.{field} {} is not a valid value; set one of: {} (case-sensitive)",
                    quote(text),
                    allowed()
                ),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RuleSettings {
        RuleSettings::with_seed_bounds("local")
    }

    fn request(edit: impl FnOnce(&mut KeyRequest)) -> KeyRequest {
        let mut r = KeyRequest::default();
        edit(&mut r);
        r
    }

    fn rejected(r: &KeyRequest) -> Rejection {
        validate(r, &settings()).expect_err("the request should be rejected")
    }

    #[test]
    fn empty_request_takes_the_seed_defaults() {
        let key = validate(&KeyRequest::default(), &settings()).unwrap();
        assert_eq!(
            key,
            ValidKey {
                key_spec: KeySpec::AliyunAes256,
                key_usage: KeyUsage::EncryptDecrypt,
                origin: Origin::AliyunKms,
                protection_level: ProtectionLevel::Software,
                rotation: None,
                description: String::new(),
                desired_state: KeyState::Enabled,
                pending_window_days: 30,
                deletion_protection: false,
                import: None,
            }
        );
    }

    #[test]
    fn hsm_default_key_spec_is_sm4_in_mainland_china_only() {
        use ProtectionLevel::*;
        assert_eq!(default_key_spec(Hsm, "cn-hangzhou"), KeySpec::AliyunSm4);
        assert_eq!(default_key_spec(Hsm, "cn-shanghai"), KeySpec::AliyunSm4);
        assert_eq!(default_key_spec(Hsm, "cn-hongkong"), KeySpec::AliyunAes256);
        assert_eq!(
            default_key_spec(Hsm, "ap-southeast-1"),
            KeySpec::AliyunAes256
        );
        assert_eq!(default_key_spec(Hsm, "local"), KeySpec::AliyunAes256);
        assert_eq!(
            default_key_spec(Software, "cn-hangzhou"),
            KeySpec::AliyunAes256
        );
    }

    #[test]
    fn every_key_spec_is_accepted_with_a_supported_usage() {
        for spec in KeySpec::ALL {
            for usage in spec.supported_usages() {
                let r = request(|r| {
                    r.key_spec = Some(spec.as_str().into());
                    r.key_usage = Some(usage.as_str().into());
                });
                let key = validate(&r, &settings()).unwrap();
                assert_eq!((key.key_spec, key.key_usage), (*spec, *usage));
            }
        }
    }

    #[test]
    fn values_are_case_sensitive() {
        type Edit = fn(&mut KeyRequest);
        let cases: [(&str, Edit); 4] = [
            ("keySpec", |r| r.key_spec = Some("aliyun_aes_256".into())),
            ("keyUsage", |r| r.key_usage = Some("encrypt/decrypt".into())),
            ("origin", |r| r.origin = Some("external".into())),
            ("protectionLevel", |r| {
                r.protection_level = Some("software".into())
            }),
        ];
        for (field, edit) in cases {
            let e = rejected(&request(edit));
            assert_eq!(e.code, Code::InvalidParameter, "{field}");
            assert!(e.detail.starts_with(&format!("spec.{field} ")), "{e}");
            assert!(e.detail.contains("case-sensitive"), "{e}");
        }
    }

    #[test]
    fn invalid_key_spec_lists_the_allowed_values() {
        let e = rejected(&request(|r| r.key_spec = Some("AES_128".into())));
        assert_eq!(
            e.to_string(),
            "InvalidParameter: spec.keySpec \"AES_128\" is not a valid value; set one of: \
             Aliyun_AES_256, Aliyun_SM4, RSA_2048, EC_P256, EC_P256K, EC_SM2 (case-sensitive)"
        );
    }

    #[test]
    fn usage_must_be_supported_by_the_key_spec() {
        let cases = [
            ("Aliyun_AES_256", "SIGN/VERIFY"),
            ("Aliyun_SM4", "SIGN/VERIFY"),
            ("EC_P256", "ENCRYPT/DECRYPT"),
            ("EC_P256K", "ENCRYPT/DECRYPT"),
        ];
        for (spec, usage) in cases {
            let e = rejected(&request(|r| {
                r.key_spec = Some(spec.into());
                r.key_usage = Some(usage.into());
            }));
            assert_eq!(e.code, Code::InvalidParameter, "{spec} {usage}");
            assert!(e.detail.contains(spec) && e.detail.contains(usage), "{e}");
        }
    }

    #[test]
    fn ec_sign_only_key_without_usage_explains_the_default() {
        let e = rejected(&request(|r| r.key_spec = Some("EC_P256".into())));
        assert_eq!(
            e.to_string(),
            "InvalidParameter: spec.keyUsage defaults to ENCRYPT/DECRYPT, which is not \
             supported by key spec EC_P256; set spec.keyUsage: SIGN/VERIFY"
        );
    }

    #[test]
    fn external_origin_is_refused_for_asymmetric_key_specs() {
        for spec in ["RSA_2048", "EC_P256", "EC_P256K", "EC_SM2"] {
            let e = rejected(&request(|r| {
                r.key_spec = Some(spec.into());
                r.key_usage = Some("SIGN/VERIFY".into());
                r.origin = Some("EXTERNAL".into());
            }));
            assert_eq!(e.code, Code::UnsupportedOperation, "{spec}");
            assert!(e.detail.contains("spec.origin EXTERNAL"), "{e}");
        }
        for spec in ["Aliyun_AES_256", "Aliyun_SM4"] {
            let r = request(|r| {
                r.key_spec = Some(spec.into());
                r.origin = Some("EXTERNAL".into());
            });
            assert_eq!(validate(&r, &settings()).unwrap().origin, Origin::External);
        }
    }

    #[test]
    fn hsm_without_a_module_is_refused_naming_the_flags() {
        let e = rejected(&request(|r| r.protection_level = Some("HSM".into())));
        assert_eq!(e.code, Code::UnsupportedProtectionLevel);
        assert!(e.detail.contains("--pkcs11-module"), "{e}");
        assert!(
            e.to_string()
                .starts_with("Unsupported.ProtectionLevel: spec.protectionLevel HSM")
        );
        assert!(
            e.detail.contains("set spec.protectionLevel: SOFTWARE"),
            "{e}"
        );
    }

    /// A module like SoftHSM2: no SM2 or SM4.
    fn with_hsm(region: &str) -> RuleSettings {
        RuleSettings {
            hsm: Some(HsmSupport {
                module: "/usr/lib/softhsm/libsofthsm2.so".into(),
                unsupported: vec![
                    (KeySpec::AliyunSm4, "no SM4".into()),
                    (KeySpec::EcSm2, "no SM2".into()),
                ],
            }),
            ..RuleSettings::with_seed_bounds(region)
        }
    }

    fn hsm_request(spec: Option<&str>, usage: Option<&str>) -> KeyRequest {
        request(|r| {
            r.protection_level = Some("HSM".into());
            r.key_spec = spec.map(Into::into);
            r.key_usage = usage.map(Into::into);
        })
    }

    #[test]
    fn hsm_keys_of_specs_the_module_holds_are_valid() {
        let settings = with_hsm("local");
        for (spec, usage) in [
            (None, None),
            (Some("Aliyun_AES_256"), None),
            (Some("RSA_2048"), Some("SIGN/VERIFY")),
            (Some("RSA_2048"), Some("ENCRYPT/DECRYPT")),
            (Some("EC_P256"), Some("SIGN/VERIFY")),
            (Some("EC_P256K"), Some("SIGN/VERIFY")),
        ] {
            let key = validate(&hsm_request(spec, usage), &settings).unwrap();
            assert_eq!(key.protection_level, ProtectionLevel::Hsm, "{spec:?}");
        }
    }

    #[test]
    fn hsm_keys_of_specs_the_module_lacks_are_refused_naming_spec_and_module() {
        let e = validate(
            &hsm_request(Some("EC_SM2"), Some("SIGN/VERIFY")),
            &with_hsm("local"),
        )
        .unwrap_err();
        assert_eq!(e.code, Code::UnsupportedProtectionLevel);
        assert_eq!(
            e.detail,
            "spec.keySpec EC_SM2 cannot be generated in the HSM: PKCS#11 module \
             /usr/lib/softhsm/libsofthsm2.so cannot hold EC_SM2 keys (no SM2); set spec.keySpec \
             to one it holds (Aliyun_AES_256, RSA_2048, EC_P256, EC_P256K), or \
             spec.protectionLevel: SOFTWARE"
        );
    }

    #[test]
    fn hsm_default_sm4_in_mainland_china_is_refused_when_the_module_lacks_sm4() {
        let e = validate(&hsm_request(None, None), &with_hsm("cn-hangzhou")).unwrap_err();
        assert_eq!(e.code, Code::UnsupportedProtectionLevel);
        assert!(
            e.detail.starts_with(
                "spec.keySpec defaults to Aliyun_SM4 for HSM keys in region cn-hangzhou, and \
                 cannot be generated in the HSM"
            ),
            "{e}"
        );
        // Naming a spec the module holds is the way out.
        let key = validate(
            &hsm_request(Some("Aliyun_AES_256"), None),
            &with_hsm("cn-hangzhou"),
        )
        .unwrap();
        assert_eq!(key.key_spec, KeySpec::AliyunAes256);
    }

    #[test]
    fn hsm_keys_with_external_origin_are_refused() {
        let mut r = hsm_request(Some("Aliyun_AES_256"), None);
        r.origin = Some("EXTERNAL".into());
        let e = validate(&r, &with_hsm("local")).unwrap_err();
        assert_eq!(e.code, Code::UnsupportedOperation);
        assert!(e.detail.contains("set spec.origin: Aliyun_KMS"), "{e}");
    }

    #[test]
    fn automatic_rotation_is_refused_for_asymmetric_keys() {
        let e = rejected(&request(|r| {
            r.key_spec = Some("RSA_2048".into());
            r.enable_automatic_rotation = Some(true);
            r.rotation_interval = Some("30d".into());
        }));
        assert_eq!(e.code, Code::UnsupportedOperation);
        assert!(e.detail.contains("RSA_2048"), "{e}");
    }

    #[test]
    fn automatic_rotation_is_refused_for_external_keys() {
        let e = rejected(&request(|r| {
            r.origin = Some("EXTERNAL".into());
            r.enable_automatic_rotation = Some(true);
            r.rotation_interval = Some("30d".into());
        }));
        assert_eq!(e.code, Code::UnsupportedOperation);
        assert!(e.detail.contains("EXTERNAL"), "{e}");
    }

    #[test]
    fn rotation_interval_is_required_when_rotation_is_enabled() {
        let e = rejected(&request(|r| r.enable_automatic_rotation = Some(true)));
        assert_eq!(e.code, Code::MissingParameter);
        assert!(e.detail.contains("from 7d to 730d"), "{e}");
    }

    #[test]
    fn rotation_interval_bounds_are_inclusive() {
        for (interval, ok) in [
            ("7d", true),
            ("604800s", true),
            ("730d", true),
            ("63072000s", true),
            ("604799s", false),
            ("6d", false),
            ("731d", false),
            ("63072001s", false),
            ("0d", false),
        ] {
            let r = request(|r| {
                r.enable_automatic_rotation = Some(true);
                r.rotation_interval = Some(interval.into());
            });
            match validate(&r, &settings()) {
                Ok(_) => assert!(ok, "{interval} accepted"),
                Err(e) => {
                    assert!(!ok, "{interval} rejected: {e}");
                    assert_eq!(e.code, Code::InvalidParameter);
                    assert!(e.detail.contains("from 7d to 730d inclusive"), "{e}");
                    continue;
                }
            }
        }
    }

    #[test]
    fn rotation_interval_format_errors_say_what_to_write() {
        for bad in ["7D", "7 d", "-7d", "7", "1.5d", "99999999999999999999d"] {
            let e = rejected(&request(|r| {
                r.enable_automatic_rotation = Some(true);
                r.rotation_interval = Some(bad.into());
            }));
            assert_eq!(e.code, Code::InvalidParameter, "{bad}");
            assert!(e.detail.starts_with("spec.rotationInterval "), "{e}");
        }
    }

    #[test]
    fn rotation_bounds_come_from_the_settings() {
        let short = RuleSettings {
            region: "local".into(),
            min_rotation_interval: Interval::from_secs(5),
            max_rotation_interval: Interval::from_secs(60),
            hsm: None,
        };
        let r = request(|r| {
            r.enable_automatic_rotation = Some(true);
            r.rotation_interval = Some("10s".into());
        });
        assert_eq!(
            validate(&r, &short).unwrap().rotation,
            Some(Interval::from_secs(10))
        );
        let e = validate(&r, &settings()).unwrap_err();
        assert!(e.detail.contains("from 7d to 730d"), "{e}");
        let too_long = request(|r| {
            r.enable_automatic_rotation = Some(true);
            r.rotation_interval = Some("2m".into());
        });
        let e = validate(&too_long, &short).unwrap_err();
        assert!(e.detail.contains("from 5s to 1m inclusive"), "{e}");
    }

    #[test]
    fn rotation_interval_is_ignored_when_rotation_is_disabled() {
        for enabled in [None, Some(false)] {
            let r = request(|r| {
                r.enable_automatic_rotation = enabled;
                r.rotation_interval = Some("not an interval".into());
            });
            assert_eq!(validate(&r, &settings()).unwrap().rotation, None);
        }
    }

    #[test]
    fn description_can_be_up_to_8192_characters() {
        let ok = request(|r| r.description = Some("é".repeat(8192)));
        assert_eq!(
            validate(&ok, &settings())
                .unwrap()
                .description
                .chars()
                .count(),
            8192
        );
        let e = rejected(&request(|r| r.description = Some("x".repeat(8193))));
        assert_eq!(e.code, Code::InvalidParameter);
        assert!(
            e.detail.contains("8193 characters") && e.detail.contains("8192"),
            "{e}"
        );
    }

    #[test]
    fn messages_never_echo_huge_or_control_character_values() {
        let e = rejected(&request(|r| {
            r.key_spec = Some(format!("{}\u{7}", "A".repeat(100_000)))
        }));
        assert!(e.detail.len() < 400, "{} bytes", e.detail.len());
        assert!(!e.detail.contains('\u{7}'));
    }

    fn importing_from(name: &str) -> KeyRequest {
        request(|r| {
            r.origin = Some("EXTERNAL".into());
            r.key_material = Some(crate::api::key::KeyMaterialSource {
                secret_ref: crate::api::key::SecretReference { name: name.into() },
                expire_time: None,
            });
        })
    }

    /// Names no Secret can have, and what the message says is wrong with each.
    const NOT_SECRET_NAMES: [(&str, &str); 10] = [
        ("", "it is empty"),
        ("Byok", "it has uppercase letters"),
        ("byok_material", "it has the character \"_\""),
        ("../kube-system/secrets/x", "it has the character \"/\""),
        ("byok?watch=true", "it has the character \"?\""),
        ("byok\n", "it has the character \"\\n\""),
        ("-byok", "at the start or end of a part"),
        ("byok.", "at the start or end of a part"),
        ("a..b", "two '.' in a row"),
        ("schlüssel", "it has the character \"ü\""),
    ];

    #[test]
    fn key_material_secret_ref_must_be_a_secret_name() {
        let too_long = "a".repeat(254);
        let cases = NOT_SECRET_NAMES
            .into_iter()
            .chain([(too_long.as_str(), "it is 254 bytes long")]);
        for (name, problem) in cases {
            let error = rejected(&importing_from(name));
            assert_eq!(error.code, Code::InvalidParameter, "{name:?}: {error}");
            let message = error.to_string();
            assert!(
                message.starts_with(&format!(
                    "InvalidParameter: spec.keyMaterial.secretRef.name {} is not a Secret name: ",
                    quote(name)
                )),
                "{message}"
            );
            assert!(message.contains(problem), "{name:?}: {message}");
            assert!(
                message.contains(
                    "set it to the name of the Secret in the Key's namespace that holds the \
                     material to import: lowercase letters, digits, '-' and '.'"
                ),
                "{message}"
            );
        }
        for name in ["byok", "byok.material-2", &"b".repeat(253)] {
            let valid = validate(&importing_from(name), &settings()).unwrap();
            assert_eq!(valid.import.unwrap().secret_name, name);
        }
    }

    #[test]
    fn secret_name_must_be_a_secret_name() {
        for (name, problem) in NOT_SECRET_NAMES {
            let error = rejected(&request(|r| r.secret_name = Some(name.into())));
            assert_eq!(error.code, Code::InvalidParameter, "{name:?}: {error}");
            let message = error.to_string();
            assert!(
                message.starts_with(&format!(
                    "InvalidParameter: spec.secretName {} is not a Secret name: ",
                    quote(name)
                )),
                "{message}"
            );
            assert!(message.contains(problem), "{name:?}: {message}");
            assert!(message.contains("or omit it"), "{message}");
        }
        let valid = request(|r| r.secret_name = Some("payments.key-1".into()));
        assert!(validate(&valid, &settings()).is_ok());
    }
}
