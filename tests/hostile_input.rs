//! Hostile and broken input on a real API server: a corpus of invalid, malformed and hostile
//! Key and KeyVersion manifests, generated from tables (and from the CRDs' own schemas, so that
//! every field is covered, new ones included), sent as raw JSON or YAML so that the corpus can
//! hold what the Rust types cannot represent: wrong types, unknown fields, duplicate keys,
//! invalid UTF-8.
//!
//! Every item has exactly one acceptable outcome, written next to it:
//! * `Refused`: the API server answers 4xx and the object does not exist;
//! * `Rejected(field)`: the object exists and gets Ready=False whose message starts with a KMS
//!   code and names the field (KeyVersions: a `Rejected...` or `WaitingForKey` reason);
//! * `Ready`: the few inputs that are valid after all (unicode descriptions, pruned unknown
//!   fields, intervals that are ignored while rotation is off, ...).
//!
//! One namespace, one operator. Afterwards the operator still runs, never panicked, and holds
//! material for the valid Keys only. Run with `-- --nocapture` to see the summary table.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::TestEnv;
use k8s_openapi::api::core::v1::Secret;
use keyward::api::{Key, KeyVersion};
use keyward::kms::error::Code;
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::{Api, CustomResourceExt, ResourceExt};
use serde_json::{Value, json};

/// How long every created object has, from the last submission, to reach its outcome.
const SETTLE: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Key,
    KeyVersion,
}

impl Kind {
    fn plural(self) -> &'static str {
        match self {
            Kind::Key => "keys",
            Kind::KeyVersion => "keyversions",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Expect {
    /// 4xx from the API server; the object does not exist.
    Refused,
    /// A Key with Ready=False, the message starting with a KMS code and naming this field.
    Rejected(&'static str),
    /// A KeyVersion with Ready=False and this reason (`Rejected...` or `WaitingForKey`).
    VersionRejected(&'static str),
    /// Valid after all.
    Ready,
}

enum Body {
    Json(Value),
    /// Bytes sent as they are, with this content type.
    Raw(Vec<u8>, &'static str),
}

struct Case {
    group: &'static str,
    what: String,
    kind: Kind,
    /// `metadata.name` as sent, when it is a string.
    name: Option<String>,
    body: Body,
    expect: Expect,
}

/// What happened to a case.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Refused(u16, String),
    /// The API server answered something other than 2xx or 4xx (or nothing).
    ServerError(String),
    /// Created; no Ready condition for the current generation yet.
    Pending,
    Ready(String),
    NotReady {
        reason: String,
        message: String,
    },
    /// Created, and gone by the end.
    Vanished,
}

impl Outcome {
    fn column(&self) -> &'static str {
        match self {
            Outcome::Refused(..) => "refused (4xx)",
            Outcome::ServerError(_) => "server error",
            Outcome::Pending => "no condition",
            Outcome::Ready(_) => "Ready",
            Outcome::NotReady { reason, .. } if reason == "WaitingForKey" => "WaitingForKey",
            Outcome::NotReady { .. } => "Ready=False",
            Outcome::Vanished => "vanished",
        }
    }
}

/// Whether `outcome` is the one `expect` allows.
fn satisfies(kind: Kind, expect: &Expect, outcome: &Outcome) -> bool {
    let starts_with_code = |message: &str| {
        Code::ALL
            .iter()
            .any(|code| message.starts_with(&format!("{}: ", code.as_str())))
    };
    match (expect, outcome) {
        (Expect::Refused, Outcome::Refused(code, _)) => (400..500).contains(code),
        (Expect::Ready, Outcome::Ready(reason)) => match kind {
            Kind::Key => reason == "KeyReady",
            Kind::KeyVersion => reason == "Created",
        },
        (Expect::Rejected(field), Outcome::NotReady { reason, message }) => {
            kind == Kind::Key
                && starts_with_code(message)
                && Code::ALL.iter().any(|c| c.reason() == reason)
                && message.contains(field)
        }
        (Expect::VersionRejected(want), Outcome::NotReady { reason, message }) => {
            kind == Kind::KeyVersion
                && reason == want
                && (reason == "WaitingForKey"
                    || (reason.starts_with("Rejected") && starts_with_code(message)))
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// The corpus

/// Names: k-000, k-001, ... and kv-000, ...
struct Corpus {
    cases: Vec<Case>,
    keys: usize,
    versions: usize,
}

impl Corpus {
    fn next_name(&mut self, kind: Kind) -> String {
        match kind {
            Kind::Key => {
                self.keys += 1;
                format!("k-{:03}", self.keys)
            }
            Kind::KeyVersion => {
                self.versions += 1;
                format!("kv-{:03}", self.versions)
            }
        }
    }

    /// A Key with this spec (any JSON), under a fresh name.
    fn key(&mut self, group: &'static str, what: impl Into<String>, spec: Value, expect: Expect) {
        let name = self.next_name(Kind::Key);
        let body = manifest(Kind::Key, &name, spec);
        self.push(group, what, Kind::Key, Some(name), Body::Json(body), expect);
    }

    /// A KeyVersion with this spec (any JSON), under a fresh name.
    fn version(
        &mut self,
        group: &'static str,
        what: impl Into<String>,
        spec: Value,
        expect: Expect,
    ) {
        let name = self.next_name(Kind::KeyVersion);
        let body = manifest(Kind::KeyVersion, &name, spec);
        self.push(
            group,
            what,
            Kind::KeyVersion,
            Some(name),
            Body::Json(body),
            expect,
        );
    }

    fn push(
        &mut self,
        group: &'static str,
        what: impl Into<String>,
        kind: Kind,
        name: Option<String>,
        body: Body,
        expect: Expect,
    ) {
        self.cases.push(Case {
            group,
            what: what.into(),
            kind,
            name,
            body,
            expect,
        });
    }
}

fn manifest(kind: Kind, name: &str, spec: Value) -> Value {
    let kind = match kind {
        Kind::Key => "Key",
        Kind::KeyVersion => "KeyVersion",
    };
    json!({"apiVersion": "keyward.dev/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec})
}

/// Valid Keys the KeyVersion cases refer to, created (and settled) before the corpus.
const TARGET_AES: &str = "target-aes";
const TARGET_EC: &str = "target-ec";
/// A Key that exists but is invalid (no store).
const TARGET_INVALID: &str = "target-invalid";

/// One leaf (or object) of a CRD's `spec` schema.
struct Field {
    /// Path below `spec`, e.g. ["keyRef", "name"].
    path: Vec<String>,
    schema: Value,
}

impl Field {
    fn dotted(&self) -> String {
        format!("spec.{}", self.path.join("."))
    }
    fn type_(&self) -> &str {
        self.schema["type"].as_str().unwrap_or("")
    }
}

/// Every property below `spec` of a CRD's schema, objects and leaves, depth first.
fn fields(crd_spec_schema: &Value) -> Vec<Field> {
    fn walk(schema: &Value, path: &mut Vec<String>, out: &mut Vec<Field>) {
        let Some(properties) = schema["properties"].as_object() else {
            return;
        };
        for (name, property) in properties {
            path.push(name.clone());
            out.push(Field {
                path: path.clone(),
                schema: property.clone(),
            });
            walk(property, path, out);
            path.pop();
        }
    }
    let mut out = Vec::new();
    walk(crd_spec_schema, &mut Vec::new(), &mut out);
    out
}

fn spec_schema(
    crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Value {
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("a schema");
    serde_json::to_value(schema).unwrap()["properties"]["spec"].clone()
}

/// `value` at `path` in an otherwise empty object.
fn at_path(path: &[String], value: Value) -> Value {
    path.iter()
        .rev()
        .fold(value, |inner, name| json!({ name.as_str(): inner }))
}

/// Values of every JSON type but `type_`.
fn wrong_types(type_: &str) -> Vec<(&'static str, Value)> {
    let all = [
        ("number", json!(42)),
        ("float", json!(4.2)),
        ("true", json!(true)),
        ("false", json!(false)),
        ("string \"true\"", json!("true")),
        ("string \"yes\"", json!("yes")),
        ("string \"7\"", json!("7")),
        ("empty object", json!({})),
        ("object", json!({"name": "x"})),
        ("empty array", json!([])),
        ("array of string", json!(["x"])),
    ];
    all.into_iter()
        .filter(|(_, value)| match type_ {
            "string" => !value.is_string(),
            "boolean" => !value.is_boolean(),
            "integer" => !value.is_i64(),
            "object" => !value.is_object(),
            _ => false,
        })
        .collect()
}

/// The Key fields whose free text is valid whatever it holds.
const FREE_TEXT: &[&str] = &["description"];

/// A valid value for a top-level string field of the Key, to append hostile characters to.
fn valid_string(field: &Field) -> Option<String> {
    if let Some(first) = field.schema["enum"].as_array().and_then(|e| e.first()) {
        return first.as_str().map(str::to_string);
    }
    match field.path.join(".").as_str() {
        "description" => Some("a key".into()),
        "rotationInterval" => Some("7d".into()),
        "secretName" => Some("a-secret".into()),
        _ => None,
    }
}

/// Hostile characters, named.
const HOSTILE_CHARS: &[(&str, &str)] = &[
    ("NUL", "\u{0}"),
    ("BEL", "\u{7}"),
    ("ESC sequence", "\u{1b}[31m"),
    ("newline", "\n"),
    ("CRLF", "\r\n"),
    ("right-to-left override", "\u{202e}"),
    ("emoji", "🔑"),
    ("combining mark", "e\u{301}\u{302}\u{303}"),
    ("byte order mark", "\u{feff}"),
    ("zero-width joiner", "\u{200d}"),
    ("private-use character", "\u{e000}"),
    ("unpaired-looking replacement character", "\u{fffd}"),
];

/// Case and whitespace variants of a KMS value, without the value itself or another valid
/// value.
fn near_misses(value: &str, valid: &[String]) -> Vec<(String, String)> {
    let mut title = value.to_lowercase();
    if let Some(first) = title.get(..1) {
        title = format!("{}{}", first.to_uppercase(), &title[1..]);
    }
    let variants = [
        ("lowercase", value.to_lowercase()),
        ("uppercase", value.to_uppercase()),
        ("title case", title),
        ("leading space", format!(" {value}")),
        ("trailing space", format!("{value} ")),
        ("trailing newline", format!("{value}\n")),
        ("leading tab", format!("\t{value}")),
        ("no-break space", format!("{value}\u{a0}")),
        ("zero-width space", format!("{value}\u{200b}")),
        ("fullwidth", value.chars().map(fullwidth).collect()),
    ];
    let mut seen = BTreeSet::new();
    variants
        .into_iter()
        .filter(|(_, v)| !valid.contains(v) && seen.insert(v.clone()))
        .map(|(label, v)| (label.to_string(), v))
        .collect()
}

fn fullwidth(c: char) -> char {
    match c {
        '!'..='~' => char::from_u32(c as u32 - 0x21 + 0xff01).unwrap_or(c),
        other => other,
    }
}

fn corpus() -> Corpus {
    let mut c = Corpus {
        cases: Vec::new(),
        keys: 0,
        versions: 0,
    };
    let key_fields = fields(&spec_schema(Key::crd()));
    let version_fields = fields(&spec_schema(KeyVersion::crd()));

    // Wrong JSON types, for every field of both CRDs (nested ones included).
    for field in &key_fields {
        for (label, value) in wrong_types(field.type_()) {
            c.key(
                "wrong type",
                format!("{} = {label}", field.dotted()),
                at_path(&field.path, value),
                Expect::Refused,
            );
        }
    }
    for field in &version_fields {
        for (label, value) in wrong_types(field.type_()) {
            c.version(
                "wrong type",
                format!("{} = {label}", field.dotted()),
                at_path(&field.path, value),
                Expect::Refused,
            );
        }
    }

    // Every enum value of every field in the wrong case, with whitespace, look-alikes.
    for field in &key_fields {
        let Some(values) = field.schema["enum"].as_array() else {
            continue;
        };
        let valid: Vec<String> = values
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        for value in &valid {
            for (label, variant) in near_misses(value, &valid) {
                c.key(
                    "enum value misspelt",
                    format!("{} = {value} ({label})", field.dotted()),
                    at_path(&field.path, json!(variant)),
                    Expect::Refused,
                );
            }
        }
    }

    // Integer bounds, for every integer field.
    for field in &key_fields {
        if field.type_() != "integer" {
            continue;
        }
        let mut values = vec![("huge", json!(i64::MAX)), ("negative", json!(-1))];
        if let Some(min) = field.schema["minimum"].as_i64() {
            values.push(("below the minimum", json!(min - 1)));
        }
        if let Some(max) = field.schema["maximum"].as_i64() {
            values.push(("above the maximum", json!(max + 1)));
        }
        for (label, value) in values {
            c.key(
                "integer out of bounds",
                format!("{} = {label}", field.dotted()),
                at_path(&field.path, value),
                Expect::Refused,
            );
        }
    }

    // Explicit nulls, for every top-level field: the fields are nullable, but null is not
    // among an enum's values.
    let mut all_null = serde_json::Map::new();
    for field in key_fields.iter().filter(|f| f.path.len() == 1) {
        let enumerated = field.schema["enum"].is_array();
        if !enumerated {
            all_null.insert(field.path[0].clone(), Value::Null);
        }
        c.key(
            "explicit null",
            format!("{} = null", field.dotted()),
            at_path(&field.path, Value::Null),
            if enumerated {
                Expect::Refused
            } else {
                Expect::Ready
            },
        );
    }
    c.key(
        "explicit null",
        "every field without an enum null at once",
        Value::Object(all_null),
        Expect::Ready,
    );

    // Unicode and control characters in every top-level string field of the Key.
    for field in key_fields.iter().filter(|f| f.path.len() == 1) {
        if field.type_() != "string" {
            continue;
        }
        let Some(valid) = valid_string(field) else {
            continue;
        };
        let free = FREE_TEXT.contains(&field.path[0].as_str());
        for (label, chars) in HOSTILE_CHARS {
            let mut spec = at_path(&field.path, json!(format!("{valid}{chars}")));
            if field.path[0] == "rotationInterval" {
                spec["enableAutomaticRotation"] = json!(true);
            }
            let expect = if free { Expect::Ready } else { Expect::Refused };
            c.key(
                "unicode and control characters",
                format!("{} with {label}", field.dotted()),
                spec,
                expect,
            );
        }
        // Empty strings.
        let expect = if free { Expect::Ready } else { Expect::Refused };
        c.key(
            "empty string",
            format!("{} = \"\"", field.dotted()),
            at_path(&field.path, json!("")),
            expect,
        );
    }

    // Description sizes: characters, not bytes, count.
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

    // Rotation intervals, with rotation on (the pattern is the API server's, the bounds and
    // sizes the controller's) and off (ignored).
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

    // The rules only the controller knows.
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
            "secretName of another key's material store",
            json!({"secretName": format!("{TARGET_AES}.keyward-material")}),
            "spec.secretName",
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

    // secretName values that are not DNS subdomain names, and lengths.
    for bad in [
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
        &"a".repeat(254),
    ] {
        c.key(
            "secretName",
            format!("secretName {:?}", shorten(bad)),
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

    // Object names.
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
        (
            "another key's store name (its consumer Secret name collides)",
            format!("{TARGET_AES}.keyward-material"),
            Expect::Rejected("spec.secretName"),
        ),
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

    // Objects malformed as a whole.
    let whole: Vec<(&str, Kind, Value, Expect)> = vec![
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
    ];
    for (label, kind, body, expect) in whole {
        let name = body["metadata"]["name"].as_str().map(str::to_string);
        c.push("whole object", label, kind, name, Body::Json(body), expect);
    }

    // KeyVersion references: other namespaces, paths, missing and unsuitable keys. What is
    // not an object name is refused by the schema: no Key could ever have it.
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

    // JSON and YAML as the API server parses them, not as Rust would.
    let raw: Vec<(&str, Vec<u8>, &'static str, Expect)> = vec![
        ("JSON: keySpec twice (the last one wins)",
            br#"{"apiVersion":"keyward.dev/v1alpha1","kind":"Key","metadata":{"name":"dup-json"},"spec":{"keySpec":"RSA_2048","keySpec":"Aliyun_AES_256"}}"#.to_vec(),
            "application/json", Expect::Ready),
        ("JSON: invalid UTF-8 in description",
            [&br#"{"apiVersion":"keyward.dev/v1alpha1","kind":"Key","metadata":{"name":"bad-utf8"},"spec":{"description":"a"#[..], &[0xff, 0xfe, 0xc3], &br#""}}"#[..]].concat(),
            "application/json", Expect::Ready),
        ("JSON: lone surrogate escape in description",
            br#"{"apiVersion":"keyward.dev/v1alpha1","kind":"Key","metadata":{"name":"lone-surrogate"},"spec":{"description":"\ud800"}}"#.to_vec(),
            "application/json", Expect::Ready),
        ("JSON: lone surrogate escape in keySpec",
            br#"{"apiVersion":"keyward.dev/v1alpha1","kind":"Key","metadata":{"name":"surrogate-spec"},"spec":{"keySpec":"RSA_2048\udfff"}}"#.to_vec(),
            "application/json", Expect::Refused),
        ("JSON: trailing garbage",
            br#"{"apiVersion":"keyward.dev/v1alpha1","kind":"Key","metadata":{"name":"trailing"},"spec":{}} {"#.to_vec(),
            "application/json", Expect::Refused),
        ("JSON: truncated",
            br#"{"apiVersion":"keyward.dev/v1alpha1","kind":"Key","metadata":{"name":"truncated"},"spec":{"#.to_vec(),
            "application/json", Expect::Refused),
        ("JSON: empty body", Vec::new(), "application/json", Expect::Refused),
        ("JSON: an array of Keys",
            br#"[{"apiVersion":"keyward.dev/v1alpha1","kind":"Key","metadata":{"name":"in-array"},"spec":{}}]"#.to_vec(),
            "application/json", Expect::Refused),
        ("JSON: comments",
            b"{\"apiVersion\":\"keyward.dev/v1alpha1\",\"kind\":\"Key\",/* c */\"metadata\":{\"name\":\"comment\"},\"spec\":{}}".to_vec(),
            "application/json", Expect::Refused),
        ("JSON: number 1e400 for a boolean",
            br#"{"apiVersion":"keyward.dev/v1alpha1","kind":"Key","metadata":{"name":"big-number"},"spec":{"enableAutomaticRotation":1e400}}"#.to_vec(),
            "application/json", Expect::Refused),
        ("JSON: description nested 100 arrays deep",
            format!(r#"{{"apiVersion":"keyward.dev/v1alpha1","kind":"Key","metadata":{{"name":"deep"}},"spec":{{"description":{}"x"{}}}}}"#, "[".repeat(100), "]".repeat(100)).into_bytes(),
            "application/json", Expect::Refused),
        ("YAML: keySpec: [Aliyun_AES_256]",
            b"apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: yaml-list}\nspec:\n  keySpec: [Aliyun_AES_256]\n".to_vec(),
            "application/yaml", Expect::Refused),
        ("YAML: enableAutomaticRotation: \"yes\"",
            b"apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: yaml-quoted-yes}\nspec:\n  enableAutomaticRotation: \"yes\"\n".to_vec(),
            "application/yaml", Expect::Refused),
        ("YAML: keySpec: NO (a YAML 1.1 boolean)",
            b"apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: yaml-no}\nspec:\n  keySpec: NO\n".to_vec(),
            "application/yaml", Expect::Refused),
        ("YAML: description: 0x1F (an integer)",
            b"apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: yaml-hex}\nspec:\n  description: 0x1F\n".to_vec(),
            "application/yaml", Expect::Refused),
        ("YAML: secretName: 1e3 (a number)",
            b"apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: yaml-float}\nspec:\n  secretName: 1e3\n".to_vec(),
            "application/yaml", Expect::Refused),
        ("YAML: description: ~ (null)",
            b"apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: yaml-null}\nspec:\n  description: ~\n".to_vec(),
            "application/yaml", Expect::Ready),
        ("YAML: keySpec twice",
            b"apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: yaml-dup}\nspec:\n  keySpec: RSA_2048\n  keySpec: Aliyun_AES_256\n".to_vec(),
            "application/yaml", Expect::Ready),
        ("YAML: tab indentation",
            b"apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata:\n\tname: yaml-tab\nspec: {}\n".to_vec(),
            "application/yaml", Expect::Refused),
        ("YAML: alias bomb (billion laughs)",
            billion_laughs(),
            "application/yaml", Expect::Refused),
        ("YAML: rotationInterval: 7d with enableAutomaticRotation: on (YAML 1.1 true)",
            b"apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: yaml-on}\nspec:\n  enableAutomaticRotation: on\n  rotationInterval: 7d\n".to_vec(),
            "application/yaml", Expect::Ready),
        ("YAML: enableAutomaticRotation: yes and no interval (YAML 1.1 true)",
            b"apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: yaml-yes}\nspec:\n  enableAutomaticRotation: yes\n".to_vec(),
            "application/yaml", Expect::Rejected("spec.rotationInterval")),
        ("YAML: a multi-line description with a document marker",
            b"apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: yaml-block}\nspec:\n  description: |\n    line one\n    ---\n    line three\n".to_vec(),
            "application/yaml", Expect::Ready),
    ];
    for (label, bytes, content_type, expect) in raw {
        let name = raw_name(&bytes);
        c.push(
            "JSON/YAML parsing",
            label,
            Kind::Key,
            name,
            Body::Raw(bytes, content_type),
            expect,
        );
    }
    c
}

/// The object name in a raw JSON or YAML body, when it has one.
fn raw_name(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let after = text
        .split_once("\"name\":\"")
        .or_else(|| text.split_once("{name: "))
        .or_else(|| text.split_once("\tname: "))?
        .1;
    let end = after.find(['"', '}', '\n'])?;
    Some(after[..end].trim().to_string())
}

/// Nine levels of nine aliases: a billion strings if expanded.
fn billion_laughs() -> Vec<u8> {
    let mut yaml = String::from(
        "apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: yaml-bomb}\nx0: &a0 [\"lol\"]\n",
    );
    for level in 1..10 {
        let refs = vec![format!("*a{}", level - 1); 9].join(", ");
        yaml.push_str(&format!("x{level}: &a{level} [{refs}]\n"));
    }
    yaml.push_str("spec:\n  description: *a9\n");
    yaml.into_bytes()
}

fn shorten(text: &str) -> String {
    if text.chars().count() > 40 {
        format!(
            "{}... ({} chars)",
            text.chars().take(12).collect::<String>(),
            text.chars().count()
        )
    } else {
        text.to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Running it

async fn submit(env: &TestEnv, case: &Case) -> Result<Value, Outcome> {
    let path = format!(
        "/apis/keyward.dev/v1alpha1/namespaces/{}/{}",
        env.namespace,
        case.kind.plural()
    );
    let (bytes, content_type) = match &case.body {
        Body::Json(value) => (serde_json::to_vec(value).unwrap(), "application/json"),
        Body::Raw(bytes, content_type) => (bytes.clone(), *content_type),
    };
    let request = http::Request::post(path)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::ACCEPT, "application/json")
        .body(bytes)
        .unwrap();
    match env.client.request::<Value>(request).await {
        Ok(created) => Ok(created),
        Err(kube::Error::Api(status)) if (400..500).contains(&status.code) => {
            Err(Outcome::Refused(status.code, status.message))
        }
        Err(kube::Error::Api(status)) => Err(Outcome::ServerError(format!(
            "{} {}",
            status.code, status.message
        ))),
        Err(other) => Err(Outcome::ServerError(other.to_string())),
    }
}

fn dynamic_api(env: &TestEnv, kind: Kind) -> Api<DynamicObject> {
    let resource = match kind {
        Kind::Key => ApiResource::erase::<Key>(&()),
        Kind::KeyVersion => ApiResource::erase::<KeyVersion>(&()),
    };
    Api::namespaced_with(env.client.clone(), &env.namespace, &resource)
}

/// The Ready outcome of a stored object, as JSON.
fn ready_outcome(object: &DynamicObject) -> Outcome {
    let generation = object.metadata.generation;
    let conditions = object.data["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let Some(ready) = conditions.iter().find(|c| c["type"] == "Ready") else {
        return Outcome::Pending;
    };
    if ready["observedGeneration"].as_i64() != generation {
        return Outcome::Pending;
    }
    let reason = ready["reason"].as_str().unwrap_or("").to_string();
    match ready["status"].as_str() {
        Some("True") => Outcome::Ready(reason),
        _ => Outcome::NotReady {
            reason,
            message: ready["message"].as_str().unwrap_or("").to_string(),
        },
    }
}

/// Every object of `kind` in the namespace, by name.
async fn stored(env: &TestEnv, kind: Kind) -> BTreeMap<String, DynamicObject> {
    dynamic_api(env, kind)
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|o| (o.name_any(), o))
        .collect()
}

/// Creates the Keys the KeyVersion cases refer to and waits until each has settled.
async fn create_targets(env: &TestEnv) {
    env.apply_key(&format!(
        "apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {{name: {TARGET_AES}}}\nspec: {{}}\n"
    ))
    .await;
    env.apply_key(&format!("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {{name: {TARGET_EC}}}\nspec: {{keySpec: EC_P256, keyUsage: SIGN/VERIFY}}\n")).await;
    env.apply_key(&format!("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {{name: {TARGET_INVALID}}}\nspec: {{keySpec: EC_P256}}\n")).await;
    env.wait_ready(TARGET_AES).await;
    env.wait_ready(TARGET_EC).await;
    env.wait_reason(TARGET_INVALID, "InvalidParameter").await;
}

struct Observed {
    outcome: Outcome,
    /// The stored name, for created objects (generateName gives one).
    stored_name: Option<String>,
}

/// What a corpus run found.
struct Report {
    summary: String,
    mismatches: Vec<String>,
}

impl Report {
    fn assert_all_as_expected(&self, total: usize) {
        assert!(
            self.mismatches.is_empty(),
            "{}\n{} of {total} manifests did not get their outcome:\n  {}",
            self.summary,
            self.mismatches.len(),
            self.mismatches.join("\n  ")
        );
    }
}

/// Submits every case, waits for the created objects to settle, and checks what the namespace
/// holds afterwards: refused objects do not exist, the operator runs and never panicked, and
/// material exists for valid Keys only. Outcomes that differ from the expected ones are
/// returned, with the summary table, for the caller to assert.
async fn run_corpus(env: &mut TestEnv, operator: usize, cases: &[Case]) -> Report {
    let mut results: Vec<Observed> = Vec::with_capacity(cases.len());
    for case in cases {
        let result = match submit(env, case).await {
            Ok(created) => Observed {
                outcome: Outcome::Pending,
                stored_name: created["metadata"]["name"].as_str().map(str::to_string),
            },
            Err(outcome) => Observed {
                outcome,
                stored_name: None,
            },
        };
        results.push(result);
    }

    // Wait until every created object reached its expected outcome, or time is up.
    let deadline = Instant::now() + SETTLE;
    loop {
        let keys = stored(env, Kind::Key).await;
        let versions = stored(env, Kind::KeyVersion).await;
        let mut settled = true;
        for (case, result) in cases.iter().zip(results.iter_mut()) {
            let Some(name) = &result.stored_name else {
                continue;
            };
            let objects = match case.kind {
                Kind::Key => &keys,
                Kind::KeyVersion => &versions,
            };
            result.outcome = match objects.get(name) {
                Some(object) => ready_outcome(object),
                None => Outcome::Vanished,
            };
            settled &= satisfies(case.kind, &case.expect, &result.outcome);
        }
        if settled || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let summary = summary_table(cases, &results);
    println!("{summary}");
    let mut mismatches: Vec<String> = cases
        .iter()
        .zip(&results)
        .filter(|(case, result)| !satisfies(case.kind, &case.expect, &result.outcome))
        .map(|(case, result)| {
            format!(
                "{:?} {} [{}]: expected {:?}, got {:?}",
                case.kind,
                case.name.as_deref().map(shorten).unwrap_or_default(),
                case.what,
                case.expect,
                shorten_outcome(&result.outcome)
            )
        })
        .collect();

    // Refused objects do not exist; the stored ones are exactly those created.
    let keys = stored(env, Kind::Key).await;
    let versions = stored(env, Kind::KeyVersion).await;
    let created: BTreeSet<(Kind, String)> = cases
        .iter()
        .zip(&results)
        .filter_map(|(c, r)| Some((c.kind, r.stored_name.clone()?)))
        .collect();
    let targets = [TARGET_AES, TARGET_EC, TARGET_INVALID];
    let existing: BTreeSet<(Kind, String)> = keys
        .keys()
        .filter(|n| !targets.contains(&n.as_str()))
        .map(|n| (Kind::Key, n.clone()))
        .chain(versions.keys().map(|n| (Kind::KeyVersion, n.clone())))
        .collect();
    for (kind, name) in existing.difference(&created) {
        mismatches.push(format!(
            "{kind:?} {} exists but was refused or never sent",
            shorten(name)
        ));
    }

    // The operator survived it all and never panicked.
    if !env.operator_running(operator) {
        mismatches.push("the operator exited".into());
    }
    if env.operator_log(operator).contains("panicked") {
        mismatches.push("the operator panicked".into());
    }

    // Material exists for the valid Keys only: a store and a consumer Secret each.
    let valid_keys: BTreeSet<String> = cases
        .iter()
        .zip(&results)
        .filter(|(c, _)| c.kind == Kind::Key && c.expect == Expect::Ready)
        .filter_map(|(_, r)| r.stored_name.clone())
        .chain(
            [TARGET_AES, TARGET_EC]
                .into_iter()
                .filter(|t| keys.contains_key(*t))
                .map(str::to_string),
        )
        .collect();
    let managed: Vec<Secret> = env.managed_secrets().await;
    for secret in &managed {
        let owner = secret.annotations().get("keyward.dev/key");
        if !owner.is_some_and(|o| valid_keys.contains(o)) {
            mismatches.push(format!(
                "Secret {} belongs to {:?}, not to a valid Key",
                shorten(&secret.name_any()),
                owner.map(|o| shorten(o))
            ));
        }
    }
    let all: BTreeSet<String> = env
        .secrets()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|s| s.name_any())
        .collect();
    for (name, key) in &keys {
        if valid_keys.contains(name) {
            continue;
        }
        if all.contains(&keyward::store::store_name(name)) {
            mismatches.push(format!(
                "a material store for invalid Key {}",
                shorten(name)
            ));
        }
        let consumer = key.data["spec"]["secretName"].as_str().unwrap_or(name);
        let anothers = [TARGET_AES, TARGET_EC]
            .iter()
            .any(|t| consumer.starts_with(t));
        if !anothers && all.contains(consumer) {
            mismatches.push(format!(
                "a consumer Secret for invalid Key {}",
                shorten(name)
            ));
        }
    }
    let with_material = valid_keys
        .iter()
        .filter(|k| all.contains(&keyward::store::store_name(k)))
        .count();
    if managed.len() != 2 * with_material {
        mismatches.push(format!(
            "{} managed Secrets for {with_material} valid Keys with material",
            managed.len()
        ));
    }
    Report {
        summary,
        mismatches,
    }
}

/// Counts per group and outcome, and the inputs that are valid after all.
fn summary_table(cases: &[Case], results: &[Observed]) -> String {
    let columns = [
        "refused (4xx)",
        "Ready=False",
        "WaitingForKey",
        "Ready",
        "no condition",
        "vanished",
        "server error",
    ];
    let mut table: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    for (case, result) in cases.iter().zip(results) {
        *table
            .entry(case.group)
            .or_default()
            .entry(result.outcome.column())
            .or_default() += 1;
    }
    let mut summary = format!(
        "{} manifests ({} Key, {} KeyVersion)\n{:<32}",
        cases.len(),
        cases.iter().filter(|c| c.kind == Kind::Key).count(),
        cases.iter().filter(|c| c.kind == Kind::KeyVersion).count(),
        "group"
    );
    for column in columns {
        summary.push_str(&format!("{column:>15}"));
    }
    summary.push_str(&format!("{:>8}\n", "total"));
    let mut totals: BTreeMap<&str, usize> = BTreeMap::new();
    for (group, counts) in &table {
        summary.push_str(&format!("{group:<32}"));
        for column in columns {
            let n = counts.get(column).copied().unwrap_or(0);
            *totals.entry(column).or_default() += n;
            summary.push_str(&format!("{n:>15}"));
        }
        summary.push_str(&format!("{:>8}\n", counts.values().sum::<usize>()));
    }
    summary.push_str(&format!("{:<32}", "all"));
    for column in columns {
        summary.push_str(&format!("{:>15}", totals.get(column).copied().unwrap_or(0)));
    }
    summary.push_str(&format!("{:>8}\n", cases.len()));
    let valid: Vec<&str> = cases
        .iter()
        .filter(|c| c.expect == Expect::Ready)
        .map(|c| c.what.as_str())
        .collect();
    if !valid.is_empty() {
        summary.push_str(&format!(
            "valid inputs ({}): {}\n",
            valid.len(),
            valid.join("; ")
        ));
    }
    summary
}

/// A namespace, one operator, and the Keys the KeyVersion cases refer to.
async fn environment(test: &str) -> (TestEnv, usize) {
    let mut env = TestEnv::new(test).await;
    let operator = env.start_operator(&[]);
    create_targets(&env).await;
    (env, operator)
}

/// The whole corpus against one operator.
#[tokio::test]
async fn hostile_and_broken_manifests_are_refused_or_rejected_and_never_crash_the_operator() {
    let (mut env, operator) = environment("hostile-input").await;
    let cases = corpus().cases;
    assert!(cases.len() >= 200, "{} cases", cases.len());
    run_corpus(&mut env, operator, &cases)
        .await
        .assert_all_as_expected(cases.len());
}

/// Text the API server stores (it arrives as JSON) that YAML cannot carry unescaped (DEL, C1
/// control characters, U+FFFE/U+FFFF): a status write parsed as YAML (a server-side apply)
/// would fail on it for good. (In keyRef.name the schema refuses them.)
fn yaml_unprintable_corpus() -> Vec<Case> {
    let mut c = Corpus {
        cases: Vec::new(),
        keys: 0,
        versions: 0,
    };
    for (label, text) in YAML_UNPRINTABLE {
        c.key(
            "YAML-unprintable text",
            format!("spec.description with {label}"),
            json!({ "description": format!("a key{text}") }),
            Expect::Ready,
        );
        if *label == "DEL" {
            continue; // not even a URI character: see key_refs_that_are_not_object_names_...
        }
        c.version(
            "YAML-unprintable text",
            format!("keyRef.name with {label}"),
            json!({"keyRef": {"name": format!("no-such-key{text}")}}),
            Expect::Refused,
        );
    }
    c.cases
}

const YAML_UNPRINTABLE: &[(&str, &str)] = &[
    ("DEL", "\u{7f}"),
    ("C1 control U+0080", "\u{80}"),
    ("C1 control CSI U+009B", "\u{9b}"),
    ("non-character U+FFFE", "\u{fffe}"),
    ("non-character U+FFFF", "\u{ffff}"),
];

#[tokio::test]
async fn text_yaml_cannot_carry_unescaped_still_gets_a_status() {
    let (mut env, operator) = environment("hostile-yaml-text").await;
    let cases = yaml_unprintable_corpus();
    run_corpus(&mut env, operator, &cases)
        .await
        .assert_all_as_expected(cases.len());
}

/// KeyVersions whose keyRef.name could not even be put in a request path (the API server
/// refuses `.` and `..` as names, the HTTP client characters a URI cannot hold): the schema
/// refuses them, as it does every name no Key can have. (Requests stored before the schema
/// said so get InvalidParameter: the planner's unit tests.)
fn unusable_key_ref_corpus() -> Vec<Case> {
    let mut c = Corpus {
        cases: Vec::new(),
        keys: 0,
        versions: 0,
    };
    let mut references: Vec<(String, String)> = vec![
        (".".into(), "\".\"".into()),
        ("..".into(), "\"..\"".into()),
        ("%2e%2e".into(), "a percent-encoded \"..\"".into()),
        ("no such key".into(), "an ASCII space".into()),
        ("a<b>".into(), "angle brackets".into()),
        (format!("{TARGET_EC}\u{7f}"), "DEL".into()),
        (format!("{TARGET_EC}\t"), "a tab".into()),
    ];
    for (label, chars) in HOSTILE_CHARS
        .iter()
        .filter(|(_, c)| c.chars().any(char::is_control))
    {
        references.push((format!("{TARGET_EC}{chars}"), (*label).into()));
    }
    for (reference, label) in references {
        c.version(
            "keyRef not a path segment",
            format!("keyRef.name with {label}"),
            json!({"keyRef": {"name": reference}}),
            Expect::Refused,
        );
    }
    c.cases
}

#[tokio::test]
async fn key_refs_that_are_not_object_names_are_refused() {
    let (mut env, operator) = environment("hostile-keyref").await;
    let cases = unusable_key_ref_corpus();
    run_corpus(&mut env, operator, &cases)
        .await
        .assert_all_as_expected(cases.len());
}

#[tokio::test]
async fn a_long_non_ascii_key_ref_is_refused() {
    let (mut env, operator) = environment("hostile-store-name").await;
    let mut c = Corpus {
        cases: Vec::new(),
        keys: 0,
        versions: 0,
    };
    // 241 characters, 391 bytes: 'é' spans bytes 199..201.
    c.version(
        "long keyRef",
        "keyRef.name of 'a' and 240 'é'",
        json!({"keyRef": {"name": format!("a{}", "é".repeat(240))}}),
        Expect::Refused,
    );
    run_corpus(&mut env, operator, &c.cases)
        .await
        .assert_all_as_expected(c.cases.len());
}

fn shorten_outcome(outcome: &Outcome) -> Outcome {
    match outcome {
        Outcome::NotReady { reason, message } => Outcome::NotReady {
            reason: reason.clone(),
            message: shorten_message(message),
        },
        Outcome::Refused(code, message) => Outcome::Refused(*code, shorten_message(message)),
        other => other.clone(),
    }
}

fn shorten_message(message: &str) -> String {
    if message.chars().count() > 200 {
        format!("{}...", message.chars().take(200).collect::<String>())
    } else {
        message.to_string()
    }
}
