//! Cases about the values of single fields, from tables: description sizes, rotation
//! intervals, the rules only the controller knows, secretName and keyMaterial.secretRef values
//! and object names.

use serde_json::{Value, json};

use crate::case::{Body, Corpus, Expect, Kind, TARGET_AES, manifest, shorten};

/// Description sizes: characters, not bytes, count.
pub fn description_sizes(c: &mut Corpus) {
    let sizes: &[(&str, String, Expect)] = &[
        ("8192 ASCII characters", "x".repeat(8192), Expect::Ready),
        ("8193 ASCII characters", "x".repeat(8193), Expect::Refused),
        ("8192 two-byte characters", "é".repeat(8192), Expect::Ready),
        (
            "8193 two-byte characters",
            "é".repeat(8193),
            Expect::Refused,
        ),
        (
            "8192 three-byte characters",
            "€".repeat(8192),
            Expect::Ready,
        ),
        (
            "8192 four-byte characters",
            "🔑".repeat(8192),
            Expect::Ready,
        ),
        (
            "8193 four-byte characters",
            "🔑".repeat(8193),
            Expect::Refused,
        ),
        (
            "4096 base letters with a combining mark (8192 code points)",
            "e\u{301}".repeat(4096),
            Expect::Ready,
        ),
        (
            "8192 letters with a combining mark each (16384 code points)",
            "e\u{301}".repeat(8192),
            Expect::Refused,
        ),
        ("8192 NULs", "\u{0}".repeat(8192), Expect::Ready),
        ("1 MiB", "x".repeat(1 << 20), Expect::Refused),
    ];
    for (label, text, expect) in sizes {
        c.key(
            "description size",
            format!("spec.description of {label}"),
            json!({"description": text}),
            expect.clone(),
        );
    }
}

/// Rotation intervals, with rotation on (the pattern is the API server's, the bounds and
/// sizes the controller's) and off (ignored).
pub fn rotation_intervals(c: &mut Corpus) {
    let field = "spec.rotationInterval";
    let intervals: &[(&str, Expect)] = &[
        ("99999999999999999999d", Expect::Rejected(field)),
        ("18446744073709551616s", Expect::Rejected(field)),
        ("1000000000001s", Expect::Rejected(field)),
        ("0d", Expect::Rejected(field)),
        ("0s", Expect::Rejected(field)),
        ("6d", Expect::Rejected(field)),
        ("604799s", Expect::Rejected(field)),
        ("731d", Expect::Rejected(field)),
        ("63072001s", Expect::Rejected(field)),
        ("7d", Expect::Ready),
        ("604800s", Expect::Ready),
        ("168h", Expect::Ready),
        ("730d", Expect::Ready),
        ("0000000000000000000000007d", Expect::Ready),
        ("-7d", Expect::Refused),
        ("+7d", Expect::Refused),
        ("7D", Expect::Refused),
        ("7 d", Expect::Refused),
        (" 7d", Expect::Refused),
        ("7d ", Expect::Refused),
        ("7d\n", Expect::Refused),
        ("\n7d", Expect::Refused),
        ("7.5d", Expect::Refused),
        ("1e3s", Expect::Refused),
        ("0x10s", Expect::Refused),
        ("٧d", Expect::Refused),
        ("７d", Expect::Refused),
        ("7ｄ", Expect::Refused),
        ("7é", Expect::Refused),
        ("7dd", Expect::Refused),
        ("7w", Expect::Refused),
        ("7", Expect::Refused),
        ("d", Expect::Refused),
        ("P7D", Expect::Refused),
        ("", Expect::Refused),
    ];
    for (interval, expect) in intervals {
        c.key(
            "rotation interval",
            format!("rotation on, rotationInterval {interval:?}"),
            json!({"enableAutomaticRotation": true, "rotationInterval": interval}),
            expect.clone(),
        );
    }
    for interval in ["99999999999999999999d", "0d", "731d"] {
        c.key(
            "rotation interval",
            format!("rotation off, rotationInterval {interval:?} (ignored)"),
            json!({"enableAutomaticRotation": false, "rotationInterval": interval}),
            Expect::Ready,
        );
    }
}

/// The rules only the controller knows.
pub fn seed_rules(c: &mut Corpus) {
    let rules: &[(&str, Value, &str)] = &[
        (
            "EC_P256 with the default usage",
            json!({"keySpec": "EC_P256"}),
            "spec.keyUsage",
        ),
        (
            "Aliyun_AES_256 for signing",
            json!({"keyUsage": "SIGN/VERIFY"}),
            "spec.keyUsage",
        ),
        (
            "HSM",
            json!({"protectionLevel": "HSM"}),
            "spec.protectionLevel",
        ),
        (
            "EXTERNAL RSA key",
            json!({"keySpec": "RSA_2048", "origin": "EXTERNAL"}),
            "spec.origin",
        ),
        (
            "rotating RSA key",
            json!({"keySpec": "RSA_2048", "enableAutomaticRotation": true, "rotationInterval": "30d"}),
            "spec.enableAutomaticRotation",
        ),
        (
            "rotation without an interval",
            json!({"enableAutomaticRotation": true}),
            "spec.rotationInterval",
        ),
        (
            "secretName of another key's consumer Secret",
            json!({"secretName": TARGET_AES}),
            "spec.secretName",
        ),
    ];
    for (label, spec, field) in rules {
        c.key("seed rules", *label, spec.clone(), Expect::Rejected(field));
    }
}

/// Names no Secret can have: not DNS subdomain names, or too long.
fn not_secret_names() -> Vec<String> {
    [
        "Not_A_Name",
        "UPPER",
        "-leading-dash",
        "trailing-dash-",
        "a..b",
        ".",
        "..",
        "a/b",
        "../other",
        "a:b",
        "a b",
        "ü",
        "a\u{0}",
        "*",
    ]
    .into_iter()
    .map(str::to_string)
    .chain(["a".repeat(254)])
    .collect()
}

/// secretName values that are not DNS subdomain names, and lengths.
pub fn secret_names(c: &mut Corpus) {
    for bad in not_secret_names() {
        c.key(
            "secretName",
            format!("secretName {:?}", shorten(&bad)),
            json!({ "secretName": bad }),
            Expect::Refused,
        );
    }
    c.key(
        "secretName",
        "secretName of 253 characters",
        json!({ "secretName": "s".repeat(253) }),
        Expect::Ready,
    );
}

/// keyMaterial.secretRef.name values no Secret can have, on EXTERNAL keys (where the operator
/// would read the Secret): the schema refuses them, so nothing is ever requested by them.
/// (Keys stored before the schema said so get InvalidParameter: the rules' and planner's unit
/// tests.)
pub fn secret_refs(c: &mut Corpus) {
    for bad in not_secret_names()
        .into_iter()
        .chain(["../../kube-system/secrets/x".into(), "byok?watch=1".into()])
    {
        c.key(
            "keyMaterial.secretRef",
            format!("keyMaterial.secretRef.name {:?}", shorten(&bad)),
            json!({"origin": "EXTERNAL", "keyMaterial": {"secretRef": {"name": bad}}}),
            Expect::Refused,
        );
    }
}

/// Object names.
pub fn object_names(c: &mut Corpus) {
    for (label, name, expect) in [
        ("253 characters", "a".repeat(253), Expect::Ready),
        (
            "236 characters (store name exactly 253)",
            "b".repeat(236),
            Expect::Ready,
        ),
        (
            "237 characters (store name hashed)",
            "c".repeat(237),
            Expect::Ready,
        ),
        ("254 characters", "d".repeat(254), Expect::Refused),
        ("uppercase", "UPPER".into(), Expect::Refused),
        ("underscore", "under_score".into(), Expect::Refused),
        ("slash", "a/b".into(), Expect::Refused),
        (".", ".".into(), Expect::Refused),
        ("..", "..".into(), Expect::Refused),
        ("unicode", "schlüssel".into(), Expect::Refused),
        ("NUL", "a\u{0}b".into(), Expect::Refused),
        ("leading dash", "-a".into(), Expect::Refused),
        ("empty", String::new(), Expect::Refused),
    ] {
        let body = manifest(Kind::Key, &name, json!({}));
        c.push(
            "names",
            format!("Key name: {label}"),
            Kind::Key,
            Some(name),
            Body::Json(body),
            expect,
        );
    }
}
