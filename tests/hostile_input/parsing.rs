//! Raw bodies: JSON and YAML as the API server parses them, not as Rust would (duplicate keys,
//! invalid UTF-8, YAML 1.1 booleans, alias bombs, ...), sent as bytes.

use crate::case::{Body, Corpus, Expect, Kind};

/// A raw body: what it is, its bytes, its content type, its outcome.
type Raw = (&'static str, Vec<u8>, &'static str, Expect);

/// JSON and YAML as the API server parses them, not as Rust would.
pub fn raw_bodies(c: &mut Corpus) {
    let raw: Vec<Raw> = [json_bodies(), yaml_bodies()].concat();
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
}

fn json_bodies() -> Vec<Raw> {
    vec![
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
    ]
}

fn yaml_bodies() -> Vec<Raw> {
    vec![
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
    ]
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
