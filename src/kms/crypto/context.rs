//! The `EncryptionContext` parameter of Encrypt, Decrypt and GenerateDataKey (and ReEncrypt's
//! `SourceEncryptionContext` / `DestinationEncryptionContext`): a JSON text holding an object
//! whose keys and values are all strings, e.g. `{"Example":"Example"}`.
//!
//! The SDKs send it differently (the v2 SDK compactly, `{"k":"v"}`; v1 users pass their own
//! `json.dumps`, `{"k": "v"}`), and the KMS treats two contexts with the same pairs in any order
//! and spacing as equal. So the text is parsed once into a sorted map, and what is authenticated
//! is [`EncryptionContext::canonical_bytes`], which depends on the pairs only.
//!
//! An absent parameter, an empty text and `{}` are the same, empty, context.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use crate::kms::error::{Code, Rejection, quote};

/// The longest EncryptionContext text the KMS accepts, in characters.
pub const MAX_CHARS: usize = 8192;

/// What the parameter must look like, for error messages.
const EXPECTED: &str = "a JSON object whose keys and values are all strings, \
     like {\"Example\":\"Example\"}";

/// A parsed EncryptionContext: string keys to string values, sorted by key.
///
/// Not key material: `Debug` prints the pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncryptionContext(BTreeMap<String, String>);

impl EncryptionContext {
    /// The empty context (no EncryptionContext parameter).
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parses the `EncryptionContext` parameter; `None` (the parameter is absent) and an empty
    /// text are the empty context.
    pub fn from_param(text: Option<&str>) -> Result<Self, Rejection> {
        Self::parse("EncryptionContext", text.unwrap_or(""))
    }

    /// Parses `text` as the parameter named `parameter` (the name appears in messages, e.g.
    /// `SourceEncryptionContext`). Refused with `InvalidParameter`, saying the expected shape:
    /// anything that is not a JSON object of strings, a key given twice, or a text longer than
    /// [`MAX_CHARS`].
    pub fn parse(parameter: &str, text: &str) -> Result<Self, Rejection> {
        if text.trim().is_empty() {
            return Ok(Self::empty());
        }
        let chars = text.chars().count();
        if chars > MAX_CHARS {
            return Err(Rejection::new(
                Code::InvalidParameter,
                format!("{parameter} is {chars} characters long; at most {MAX_CHARS} are allowed"),
            ));
        }
        serde_json::from_str::<StringMap>(text)
            .map(|map| EncryptionContext(map.0))
            .map_err(|error| {
                Rejection::new(
                    Code::InvalidParameter,
                    format!("{parameter} must be {EXPECTED}: {error}"),
                )
            })
    }

    /// Builds a context from pairs (tests and callers that hold a map already); a key given
    /// twice keeps its last value.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        EncryptionContext(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// The value of `key`, if the context has it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pairs, sorted by key (byte order of their UTF-8).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The bytes that are authenticated with a ciphertext: the pairs sorted by key, each length
    /// prefixed so that no two different maps encode alike:
    ///
    /// ```text
    /// u32 BE  number of pairs
    /// then, per pair in key order:
    ///   u32 BE  length of the key in bytes,   the key (UTF-8)
    ///   u32 BE  length of the value in bytes, the value (UTF-8)
    /// ```
    ///
    /// The empty context encodes as four zero bytes. Whitespace, key order and JSON escapes in
    /// the original text do not matter: `{"a":"1","b":"2"}`, `{ "b": "2", "a": "\u0031" }` give
    /// the same bytes.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let size = 4 + self
            .iter()
            .map(|(k, v)| 8 + k.len() + v.len())
            .sum::<usize>();
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(&length_u32(self.0.len()).to_be_bytes());
        for (key, value) in self.iter() {
            for part in [key, value] {
                out.extend_from_slice(&length_u32(part.len()).to_be_bytes());
                out.extend_from_slice(part.as_bytes());
            }
        }
        out
    }
}

/// Lengths here are bounded by [`MAX_CHARS`] (or by memory for contexts built in code).
fn length_u32(len: usize) -> u32 {
    u32::try_from(len).expect("an EncryptionContext part longer than 4 GiB")
}

/// A JSON object of strings that refuses a key given twice (serde_json would keep the last one
/// silently, and two readers of the same text could then disagree on the context).
struct StringMap(BTreeMap<String, String>);

impl<'de> Deserialize<'de> for StringMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(StringMapVisitor)
    }
}

struct StringMapVisitor;

impl<'de> Visitor<'de> for StringMapVisitor {
    type Value = StringMap;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<StringMap, A::Error> {
        let mut map = BTreeMap::new();
        while let Some(key) = access.next_key::<String>()? {
            let value = access.next_value::<String>()?;
            if map.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "the key {} is given twice",
                    quote(&key)
                )));
            }
            map.insert(key, value);
        }
        Ok(StringMap(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<EncryptionContext, Rejection> {
        EncryptionContext::parse("EncryptionContext", text)
    }

    #[test]
    fn same_map_in_any_spacing_order_or_escaping_gives_identical_bytes() {
        let texts = [
            r#"{"a":"1","b":"2 3"}"#,
            r#"{"b":"2 3","a":"1"}"#,
            "{ \"b\" : \"2 3\" ,\n\t\"a\": \"1\" }",
            r#"{"\u0061":"\u0031","b":"2\u00203"}"#,
        ];
        let expected = parse(texts[0]).unwrap().canonical_bytes();
        for text in texts {
            let context = parse(text).unwrap();
            assert_eq!(context.canonical_bytes(), expected, "{text}");
            assert_eq!(context.get("b"), Some("2 3"));
        }
    }

    #[test]
    fn different_maps_give_different_bytes() {
        let maps = [
            r#"{}"#,
            r#"{"a":""}"#,
            r#"{"":"a"}"#,
            r#"{"a":"b"}"#,
            r#"{"ab":""}"#,
            r#"{"a":"b","c":"d"}"#,
            r#"{"a":"bc","":"d"}"#,
            r#"{"A":"b"}"#,
        ];
        let bytes: Vec<Vec<u8>> = maps
            .iter()
            .map(|m| parse(m).unwrap().canonical_bytes())
            .collect();
        for (i, a) in bytes.iter().enumerate() {
            for (j, b) in bytes.iter().enumerate() {
                assert_eq!(i == j, a == b, "{} vs {}", maps[i], maps[j]);
            }
        }
    }

    #[test]
    fn canonical_bytes_are_length_prefixed_pairs_in_key_order() {
        let context = parse(r#"{"b":"xy","a":"é"}"#).unwrap();
        assert_eq!(
            context.canonical_bytes(),
            [
                &[0, 0, 0, 2][..],
                &[0, 0, 0, 1],
                b"a",
                &[0, 0, 0, 2],
                "é".as_bytes(),
                &[0, 0, 0, 1],
                b"b",
                &[0, 0, 0, 2],
                b"xy",
            ]
            .concat()
        );
    }

    #[test]
    fn absent_empty_and_empty_object_are_the_empty_context() {
        for context in [
            EncryptionContext::from_param(None).unwrap(),
            EncryptionContext::from_param(Some("")).unwrap(),
            EncryptionContext::from_param(Some("  ")).unwrap(),
            EncryptionContext::from_param(Some("{}")).unwrap(),
            EncryptionContext::from_param(Some(" { } ")).unwrap(),
        ] {
            assert!(context.is_empty());
            assert_eq!(context, EncryptionContext::empty());
            assert_eq!(context.canonical_bytes(), [0, 0, 0, 0]);
        }
    }

    #[test]
    fn anything_but_an_object_of_strings_is_invalid_parameter_saying_the_shape() {
        for text in [
            r#"["a","b"]"#,
            r#""a""#,
            "42",
            "null",
            r#"{"a":1}"#,
            r#"{"a":null}"#,
            r#"{"a":true}"#,
            r#"{"a":["b"]}"#,
            r#"{"a":{"b":"c"}}"#,
            r#"{"a":"b",}"#,
            r#"{"a":"b"} x"#,
            r#"{"a":"b"}{}"#,
            r#"{a:"b"}"#,
            "{'a':'b'}",
            r#"{"a":"b""#,
        ] {
            let rejection = parse(text).unwrap_err();
            assert_eq!(rejection.code, Code::InvalidParameter, "{text}");
            assert!(
                rejection.detail.starts_with(
                    "EncryptionContext must be a JSON object whose keys and values are all strings"
                ),
                "{text}: {rejection}"
            );
        }
    }

    #[test]
    fn a_key_given_twice_is_refused() {
        let rejection = parse(r#"{"a":"1","a":"2"}"#).unwrap_err();
        assert_eq!(rejection.code, Code::InvalidParameter);
        assert!(
            rejection.detail.contains(r#"the key "a" is given twice"#),
            "{rejection}"
        );
    }

    #[test]
    fn the_parameter_name_appears_in_the_message() {
        let rejection = EncryptionContext::parse("SourceEncryptionContext", "[]").unwrap_err();
        assert!(
            rejection
                .detail
                .starts_with("SourceEncryptionContext must be"),
            "{rejection}"
        );
    }

    #[test]
    fn more_than_8192_characters_is_refused() {
        let fits = format!(r#"{{"k":"{}"}}"#, "é".repeat(MAX_CHARS - 8));
        assert_eq!(fits.chars().count(), MAX_CHARS);
        assert!(parse(&fits).is_ok());
        let long = format!(r#"{{"k":"{}"}}"#, "é".repeat(MAX_CHARS - 7));
        let rejection = parse(&long).unwrap_err();
        assert_eq!(rejection.code, Code::InvalidParameter);
        assert!(rejection.detail.contains("8193 characters"), "{rejection}");
    }

    #[test]
    fn from_pairs_equals_parsed_text() {
        assert_eq!(
            EncryptionContext::from_pairs([("b", "2"), ("a", "1")]),
            parse(r#"{"a":"1","b":"2"}"#).unwrap()
        );
    }
}
