//! Cases generated from the CRDs' own schemas, so that every field is covered, new ones
//! included: wrong JSON types, misspelt enum values, integers out of bounds, explicit nulls,
//! and unicode and control characters in strings.

use std::collections::BTreeSet;

use keyward::api::{Key, KeyVersion};
use kube::CustomResourceExt;
use serde_json::{Value, json};

use crate::case::{Corpus, Expect};

/// Every case generated from the schemas, group by group.
pub fn schema_cases(c: &mut Corpus) {
    let key_fields = fields(&spec_schema(Key::crd()));
    let version_fields = fields(&spec_schema(KeyVersion::crd()));

    wrong_types_cases(c, &key_fields, &version_fields);
    enum_cases(c, &key_fields);
    integer_cases(c, &key_fields);
    null_cases(c, &key_fields);
    unicode_cases(c, &key_fields);
}

/// Wrong JSON types, for every field of both CRDs (nested ones included).
fn wrong_types_cases(c: &mut Corpus, key_fields: &[Field], version_fields: &[Field]) {
    for field in key_fields {
        for (label, value) in wrong_types(field.type_()) {
            c.key(
                "wrong type",
                format!("{} = {label}", field.dotted()),
                at_path(&field.path, value),
                Expect::Refused,
            );
        }
    }
    for field in version_fields {
        for (label, value) in wrong_types(field.type_()) {
            c.version(
                "wrong type",
                format!("{} = {label}", field.dotted()),
                at_path(&field.path, value),
                Expect::Refused,
            );
        }
    }
}

/// Every enum value of every field in the wrong case, with whitespace, look-alikes.
fn enum_cases(c: &mut Corpus, key_fields: &[Field]) {
    for field in key_fields {
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
}

/// Integer bounds, for every integer field.
fn integer_cases(c: &mut Corpus, key_fields: &[Field]) {
    for field in key_fields {
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
}

/// Explicit nulls, for every top-level field: the fields are nullable, but null is not among
/// an enum's values.
fn null_cases(c: &mut Corpus, key_fields: &[Field]) {
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
}

/// Unicode and control characters in every top-level string field of the Key.
fn unicode_cases(c: &mut Corpus, key_fields: &[Field]) {
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
}

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
pub const HOSTILE_CHARS: &[(&str, &str)] = &[
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
