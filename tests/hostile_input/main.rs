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
//!
//! Where things are: [`case`] (what a case is, the names it gets), the corpus by kind of input
//! ([`schema`]: generated from the CRDs' schemas; [`values`]: single fields from tables;
//! [`objects`]: whole objects and KeyVersion references; [`parsing`]: raw JSON and YAML), and
//! [`run`] (submitting a corpus and checking what came of it). The tests are below, each with
//! its corpus.

#[path = "../common/mod.rs"]
mod common;

mod case;
mod objects;
mod parsing;
mod run;
mod schema;
mod values;

use serde_json::json;

use case::{Case, Corpus, Expect, TARGET_EC};
use run::{environment, run_corpus};
use schema::HOSTILE_CHARS;

/// The whole corpus, group by group. The order names the cases (k-001, k-002, ...).
fn corpus() -> Corpus {
    let mut c = Corpus {
        cases: Vec::new(),
        keys: 0,
        versions: 0,
    };
    schema::schema_cases(&mut c);
    values::description_sizes(&mut c);
    values::rotation_intervals(&mut c);
    values::seed_rules(&mut c);
    values::secret_names(&mut c);
    values::secret_refs(&mut c);
    values::object_names(&mut c);
    objects::whole_objects(&mut c);
    objects::key_refs(&mut c);
    parsing::raw_bodies(&mut c);
    c
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
