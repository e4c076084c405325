//! Cases about whole objects: Keys and KeyVersions malformed as a whole (no spec, no name, the
//! wrong kind, ...), and KeyVersion references to other namespaces, paths, missing and
//! unsuitable keys.

use serde_json::{Value, json};

use crate::case::{
    Body, Corpus, Expect, Kind, TARGET_AES, TARGET_EC, TARGET_INVALID, manifest, shorten,
};
use crate::schema::HOSTILE_CHARS;

/// A whole object: what it is, which resource it is sent to, its body, its outcome.
type Whole = (&'static str, Kind, Value, Expect);

/// Objects malformed as a whole.
pub fn whole_objects(c: &mut Corpus) {
    let whole: Vec<Whole> = [refused_keys(), valid_keys(), refused_key_versions()].concat();
    for (label, kind, body, expect) in whole {
        let name = body["metadata"]["name"].as_str().map(str::to_string);
        c.push("whole object", label, kind, name, Body::Json(body), expect);
    }
}

/// Keys the API server refuses.
fn refused_keys() -> Vec<Whole> {
    vec![
        (
            "Key without spec",
            Kind::Key,
            json!({"apiVersion": "keyward.dev/v1alpha1", "kind": "Key", "metadata": {"name": "no-spec"}}),
            Expect::Refused,
        ),
        (
            "Key with spec null",
            Kind::Key,
            manifest(Kind::Key, "spec-null", Value::Null),
            Expect::Refused,
        ),
        (
            "Key with spec a string",
            Kind::Key,
            manifest(Kind::Key, "spec-string", json!("Aliyun_AES_256")),
            Expect::Refused,
        ),
        (
            "Key with spec an array",
            Kind::Key,
            manifest(Kind::Key, "spec-array", json!([{}])),
            Expect::Refused,
        ),
        (
            "Key with spec a number",
            Kind::Key,
            manifest(Kind::Key, "spec-number", json!(1)),
            Expect::Refused,
        ),
        (
            "Key without a name",
            Kind::Key,
            json!({"apiVersion": "keyward.dev/v1alpha1", "kind": "Key", "metadata": {}, "spec": {}}),
            Expect::Refused,
        ),
        (
            "Key without metadata",
            Kind::Key,
            json!({"apiVersion": "keyward.dev/v1alpha1", "kind": "Key", "spec": {}}),
            Expect::Refused,
        ),
        (
            "Key with a name that is a number",
            Kind::Key,
            json!({"apiVersion": "keyward.dev/v1alpha1", "kind": "Key", "metadata": {"name": 7}, "spec": {}}),
            Expect::Refused,
        ),
        (
            "Key without kind",
            Kind::Key,
            json!({"apiVersion": "keyward.dev/v1alpha1", "metadata": {"name": "no-kind"}, "spec": {}}),
            Expect::Refused,
        ),
        (
            "Key as kind Secret",
            Kind::Key,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "as-secret"}, "spec": {}}),
            Expect::Refused,
        ),
        (
            "KeyVersion sent as a Key",
            Kind::Key,
            manifest(
                Kind::KeyVersion,
                "kv-as-key",
                json!({"keyRef": {"name": TARGET_EC}}),
            ),
            Expect::Refused,
        ),
        (
            "Key in another namespace than the request's",
            Kind::Key,
            json!({"apiVersion": "keyward.dev/v1alpha1", "kind": "Key", "metadata": {"name": "elsewhere", "namespace": "kube-system"}, "spec": {}}),
            Expect::Refused,
        ),
    ]
}

/// Keys that are valid after all (pruned fields, ignored status and labels, generateName).
fn valid_keys() -> Vec<Whole> {
    vec![
        (
            "Key with an empty spec (all defaults)",
            Kind::Key,
            manifest(Kind::Key, "empty-spec", json!({})),
            Expect::Ready,
        ),
        (
            "Key with unknown fields (pruned)",
            Kind::Key,
            manifest(
                Kind::Key,
                "unknown-fields",
                json!({"foo": 1, "keyID": "x", "material": "AAAA"}),
            ),
            Expect::Ready,
        ),
        (
            "Key with misspelt field names (pruned: an AES key)",
            Kind::Key,
            manifest(
                Kind::Key,
                "misspelt-fields",
                json!({"KeySpec": "RSA_2048", "keyspec": "EC_P256", "key_usage": "SIGN/VERIFY"}),
            ),
            Expect::Ready,
        ),
        (
            "Key with a forged status (ignored on create)",
            Kind::Key,
            json!({"apiVersion": "keyward.dev/v1alpha1", "kind": "Key", "metadata": {"name": "forged-status"}, "spec": {}, "status": {"keyMetadata": {"keyId": "forged", "keySpec": "RSA_2048"}, "conditions": [{"type": "Ready", "status": "True", "reason": "KeyReady", "message": "", "lastTransitionTime": "2020-01-01T00:00:00Z"}]}}),
            Expect::Ready,
        ),
        (
            "Key with keyward's own labels",
            Kind::Key,
            json!({"apiVersion": "keyward.dev/v1alpha1", "kind": "Key", "metadata": {"name": "keyward-labels", "labels": {"app.kubernetes.io/managed-by": "keyward", "keyward.dev/key": TARGET_AES}, "annotations": {"keyward.dev/key-id": "forged"}}, "spec": {}}),
            Expect::Ready,
        ),
        (
            "Key with generateName only",
            Kind::Key,
            json!({"apiVersion": "keyward.dev/v1alpha1", "kind": "Key", "metadata": {"generateName": "generated-"}, "spec": {}}),
            Expect::Ready,
        ),
    ]
}

/// KeyVersions the API server refuses.
fn refused_key_versions() -> Vec<Whole> {
    vec![
        (
            "KeyVersion without spec",
            Kind::KeyVersion,
            json!({"apiVersion": "keyward.dev/v1alpha1", "kind": "KeyVersion", "metadata": {"name": "kv-no-spec"}}),
            Expect::Refused,
        ),
        (
            "KeyVersion with an empty spec (no keyRef)",
            Kind::KeyVersion,
            manifest(Kind::KeyVersion, "kv-no-keyref", json!({})),
            Expect::Refused,
        ),
        (
            "KeyVersion with keyRef without name",
            Kind::KeyVersion,
            manifest(Kind::KeyVersion, "kv-no-name", json!({"keyRef": {}})),
            Expect::Refused,
        ),
        (
            "KeyVersion with keyRef.name null",
            Kind::KeyVersion,
            manifest(
                Kind::KeyVersion,
                "kv-null-name",
                json!({"keyRef": {"name": null}}),
            ),
            Expect::Refused,
        ),
        (
            "KeyVersion with keyRef a string",
            Kind::KeyVersion,
            manifest(
                Kind::KeyVersion,
                "kv-keyref-string",
                json!({"keyRef": TARGET_EC}),
            ),
            Expect::Refused,
        ),
        (
            "KeyVersion with keyRef.name empty",
            Kind::KeyVersion,
            manifest(
                Kind::KeyVersion,
                "kv-empty-name",
                json!({"keyRef": {"name": ""}}),
            ),
            Expect::Refused,
        ),
        (
            "KeyVersion with keyRef.name of 254 characters",
            Kind::KeyVersion,
            manifest(
                Kind::KeyVersion,
                "kv-long-name",
                json!({"keyRef": {"name": "a".repeat(254)}}),
            ),
            Expect::Refused,
        ),
        (
            "KeyVersion without a name",
            Kind::KeyVersion,
            json!({"apiVersion": "keyward.dev/v1alpha1", "kind": "KeyVersion", "metadata": {}, "spec": {"keyRef": {"name": TARGET_EC}}}),
            Expect::Refused,
        ),
        (
            "Key sent as a KeyVersion",
            Kind::KeyVersion,
            manifest(Kind::Key, "key-as-kv", json!({})),
            Expect::Refused,
        ),
    ]
}

/// KeyVersion references: other namespaces, paths, missing and unsuitable keys. What is not an
/// object name is refused by the schema: no Key could ever have it.
pub fn key_refs(c: &mut Corpus) {
    let refused = Expect::Refused;
    let waiting = Expect::VersionRejected("WaitingForKey");
    let unsupported = Expect::VersionRejected("RejectedUnsupportedOperation");
    let references: Vec<(String, Expect)> = vec![
        (TARGET_EC.into(), unsupported.clone()), // created moments ago: 7 days between versions
        (TARGET_AES.into(), unsupported.clone()), // symmetric
        (TARGET_INVALID.into(), waiting.clone()),
        ("no-such-key".into(), waiting.clone()),
        ("Target-EC".into(), refused.clone()),
        ("other/name".into(), refused.clone()),
        (format!("kube-system/{TARGET_EC}"), refused.clone()),
        (format!("default/{TARGET_EC}"), refused.clone()),
        (format!("../{TARGET_EC}"), refused.clone()),
        (
            format!("../../kube-system/keys/{TARGET_EC}"),
            refused.clone(),
        ),
        (format!("{TARGET_EC}/status"), refused.clone()),
        (format!("{TARGET_EC}/"), refused.clone()),
        (format!("/{TARGET_EC}"), refused.clone()),
        ("a/b/c".into(), refused.clone()),
        (format!("{TARGET_EC}?watch=true"), refused.clone()),
        (format!("{TARGET_EC}#fragment"), refused.clone()),
        (format!("{TARGET_EC}%2Fstatus"), refused.clone()),
        (format!("{TARGET_AES}.keyward-material"), waiting.clone()),
        (format!("{TARGET_EC};x"), refused.clone()),
        (format!("{TARGET_EC}@x"), refused.clone()),
        (format!("{TARGET_EC}!$&'()*+,="), refused.clone()),
        ("~user".into(), refused.clone()),
        ("k".repeat(253), waiting.clone()),
        ("k".repeat(236), waiting.clone()),
    ];
    for (reference, expect) in references {
        c.version(
            "keyRef",
            format!("keyRef.name {:?}", shorten(&reference)),
            json!({"keyRef": {"name": reference}}),
            expect,
        );
    }
    let mut odd: Vec<(String, String)> = vec![
        ("ключ".into(), "Cyrillic letters".into()),
        ("\"quoted\"".into(), "double quotes".into()),
        ("a{b}".into(), "braces".into()),
        ("a\\b".into(), "a backslash".into()),
        ("a%00b".into(), "a percent-encoded NUL".into()),
    ];
    for (label, chars) in HOSTILE_CHARS
        .iter()
        .filter(|(_, c)| !c.chars().any(char::is_control))
    {
        odd.push((format!("{TARGET_EC}{chars}"), (*label).into()));
    }
    for (reference, label) in odd {
        c.version(
            "keyRef",
            format!("keyRef.name with {label}"),
            json!({"keyRef": {"name": reference}}),
            refused.clone(),
        );
    }
    c.version(
        "keyRef",
        "keyRef with a namespace field (pruned: the local key)",
        json!({"keyRef": {"name": TARGET_EC, "namespace": "kube-system"}}),
        unsupported.clone(),
    );
    c.version(
        "keyRef",
        "keyRef with apiVersion and kind of a Secret (pruned)",
        json!({"keyRef": {"name": TARGET_EC, "kind": "Secret", "apiVersion": "v1"}}),
        unsupported,
    );
}
