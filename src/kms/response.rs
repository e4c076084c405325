//! The KMS response documents of the seed pages, rendered from the resources (pure).
//!
//! `kubectl keyward` prints what the KMS API would answer: the CreateKey / DescribeKey
//! response from a Key's `status.keyMetadata`, ListKeyVersions from `status.keyVersions`,
//! CreateKeyVersion from a KeyVersion's `status.keyVersion`, and the KMS error document. Each
//! response is one serde struct whose fields are declared in the order of the seed's samples;
//! the JSON form is that struct, and the XML form is written from the same serialization, so
//! the two can never disagree on names, nesting or order. Every KeyMetadata field is always
//! present: a field absent from status is an empty string, as the seed's samples show for
//! `DeleteDate` and `MaterialExpireTime`.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde::Serialize;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::api::key::KeyVersionEntry;
use crate::api::key_version::{KeyVersion, KeyVersionMetadata};
use crate::api::{Key, KeyMetadata};
use crate::kms::reason::Reason;

/// The output format of a response document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `{"KeyMetadata": {...}, "RequestId": "..."}`, indented with 4 spaces.
    Json,
    /// `<KMS><KeyMetadata>...</KeyMetadata><RequestId>...</RequestId></KMS>` (`<Error>` for
    /// errors), one element per line, indented with 4 spaces.
    Xml,
}

/// The code of a missing key, as the KMS answers for an unknown KeyId.
pub const KEY_NOT_FOUND: &str = "Forbidden.KeyNotFound";
/// The message that goes with [`KEY_NOT_FOUND`].
pub const KEY_NOT_FOUND_MESSAGE: &str = "The specified key does not exist.";
/// The code of a request that did not settle in time.
pub const TIMEOUT: &str = "Timeout";
/// The code of any other failure (the API server could not be reached, refused a call, ...).
pub const INTERNAL_FAILURE: &str = "InternalFailure";

/// A KMS error: its code (`Rejected.UnsupportedOperation`) and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmsError {
    pub code: String,
    pub message: String,
}

impl KmsError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        KmsError {
            code: code.into(),
            message: message.into(),
        }
    }

    /// `Forbidden.KeyNotFound`: the key does not exist (or was never created).
    pub fn key_not_found() -> Self {
        KmsError::new(KEY_NOT_FOUND, KEY_NOT_FOUND_MESSAGE)
    }

    /// `InternalFailure` with the text of the error.
    pub fn internal(error: impl fmt::Display) -> Self {
        KmsError::new(INTERNAL_FAILURE, error.to_string())
    }

    /// The error a condition message reports: keyward's messages start with the KMS code
    /// followed by `": "` (`Rejected.UnsupportedOperation: CreateKeyVersion is ...`). `None`
    /// when the message does not start with a code.
    pub fn from_condition_message(message: &str) -> Option<Self> {
        let (code, rest) = message.split_once(": ")?;
        let is_code = code.starts_with(|c: char| c.is_ascii_uppercase())
            && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '.');
        is_code.then(|| KmsError::new(code, rest))
    }
}

impl fmt::Display for KmsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// The Ready condition of a resource's status conditions.
fn ready(conditions: &[Condition]) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == "Ready")
}

/// The KeyMetadata of a Key, or the error DescribeKey answers while the key does not exist:
/// the code its Ready condition reports (an invalid Key: `InvalidParameter`, ...), else
/// `Forbidden.KeyNotFound`.
pub fn key_metadata(key: &Key) -> Result<&KeyMetadata, KmsError> {
    let status = key.status.as_ref();
    if let Some(metadata) = status.and_then(|s| s.key_metadata.as_ref()) {
        return Ok(metadata);
    }
    Err(status
        .and_then(|s| ready(&s.conditions))
        .and_then(|c| KmsError::from_condition_message(&c.message))
        .unwrap_or_else(KmsError::key_not_found))
}

/// Whether a CreateKeyVersion request for this Key is refused before it is made: the Key has
/// no KeyMetadata and the controller already said why (it is invalid). A Key the controller
/// has not looked at yet (no Ready condition) is not refused: the request waits for it.
pub fn key_version_precheck(key: &Key) -> Result<(), KmsError> {
    let status = key.status.as_ref();
    let has_metadata = status.is_some_and(|s| s.key_metadata.is_some());
    let judged = status.is_some_and(|s| ready(&s.conditions).is_some());
    if has_metadata || !judged {
        return Ok(());
    }
    key_metadata(key).map(|_| ())
}

/// The outcome of a KeyVersion (a CreateKeyVersion request): `None` while it is not settled,
/// the response once its Ready condition is True (reason `Created`), or the KMS error once it
/// is False with a `Rejected*` reason.
pub fn key_version_outcome(request: &KeyVersion) -> Option<Result<KeyVersionMetadata, KmsError>> {
    let status = request.status.as_ref()?;
    let ready = ready(&status.conditions)?;
    match ready.status.as_str() {
        "True" if ready.reason == Reason::Created => status.key_version.clone().map(Ok),
        "False" if ready.reason.starts_with("Rejected") => {
            Some(Err(KmsError::from_condition_message(&ready.message)
                .unwrap_or_else(|| {
                    KmsError::new(ready.reason.clone(), ready.message.clone())
                })))
        }
        _ => None,
    }
}

// The documents, fields in the order of the seed's samples.

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeKeyResponse<'a> {
    key_metadata: KeyMetadataDocument<'a>,
    request_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyMetadataDocument<'a> {
    creation_date: &'a str,
    description: &'a str,
    key_id: &'a str,
    key_spec: &'a str,
    key_state: &'a str,
    key_usage: &'a str,
    primary_key_version: &'a str,
    delete_date: &'a str,
    creator: &'a str,
    arn: &'a str,
    origin: &'a str,
    material_expire_time: &'a str,
    protection_level: &'a str,
    last_rotation_date: &'a str,
    automatic_rotation: &'a str,
    rotation_interval: &'a str,
    next_rotation_date: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListKeyVersionsResponse<'a> {
    key_versions: KeyVersionList<'a>,
    total_count: usize,
    page_number: usize,
    page_size: usize,
    request_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyVersionList<'a> {
    key_version: Vec<KeyVersionDocument<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyVersionDocument<'a> {
    key_id: &'a str,
    key_version_id: &'a str,
    creation_date: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListKeysResponse<'a> {
    keys: KeyList<'a>,
    total_count: usize,
    page_number: usize,
    page_size: usize,
    request_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyList<'a> {
    key: Vec<KeyEntry<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyEntry<'a> {
    key_id: &'a str,
    key_arn: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyVersionResponse<'a> {
    key_version: KeyVersionDocument<'a>,
    request_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorResponse<'a> {
    request_id: &'a str,
    code: &'a str,
    message: &'a str,
}

/// The CreateKey / DescribeKey response for a key's metadata.
pub fn describe_key(metadata: &KeyMetadata, request_id: &str, format: Format) -> String {
    let document = DescribeKeyResponse {
        key_metadata: KeyMetadataDocument {
            creation_date: &metadata.creation_date,
            description: &metadata.description,
            key_id: &metadata.key_id,
            key_spec: metadata.key_spec.as_str(),
            key_state: metadata.key_state.as_str(),
            key_usage: metadata.key_usage.as_str(),
            primary_key_version: optional(&metadata.primary_key_version),
            delete_date: optional(&metadata.delete_date),
            creator: &metadata.creator,
            arn: &metadata.arn,
            origin: metadata.origin.as_str(),
            material_expire_time: optional(&metadata.material_expire_time),
            protection_level: metadata.protection_level.as_str(),
            last_rotation_date: optional(&metadata.last_rotation_date),
            automatic_rotation: metadata.automatic_rotation.as_str(),
            rotation_interval: optional(&metadata.rotation_interval),
            next_rotation_date: optional(&metadata.next_rotation_date),
        },
        request_id,
    };
    render(&document, "KMS", format)
}

/// The ListKeyVersions response: every version of the key on one page, oldest first.
pub fn list_key_versions(
    key_id: &str,
    versions: &[KeyVersionEntry],
    request_id: &str,
    format: Format,
) -> String {
    list_key_versions_page(
        key_id,
        versions,
        versions.len(),
        1,
        versions.len(),
        request_id,
        format,
    )
}

/// One page of the ListKeyVersions response: the versions on it, of `total` in all.
pub fn list_key_versions_page(
    key_id: &str,
    page: &[KeyVersionEntry],
    total: usize,
    page_number: usize,
    page_size: usize,
    request_id: &str,
    format: Format,
) -> String {
    let document = ListKeyVersionsResponse {
        key_versions: KeyVersionList {
            key_version: page
                .iter()
                .map(|v| KeyVersionDocument {
                    key_id,
                    key_version_id: &v.key_version_id,
                    creation_date: &v.creation_date,
                })
                .collect(),
        },
        total_count: total,
        page_number,
        page_size,
        request_id,
    };
    render(&document, "KMS", format)
}

/// One page of the ListKeys response: `(KeyId, ARN)` of the keys on it, of `total` in all.
pub fn list_keys(
    page: &[(&str, &str)],
    total: usize,
    page_number: usize,
    page_size: usize,
    request_id: &str,
    format: Format,
) -> String {
    let document = ListKeysResponse {
        keys: KeyList {
            key: page
                .iter()
                .map(|(key_id, key_arn)| KeyEntry { key_id, key_arn })
                .collect(),
        },
        total_count: total,
        page_number,
        page_size,
        request_id,
    };
    render(&document, "KMS", format)
}

/// The CreateKeyVersion response for a created version.
pub fn create_key_version(
    version: &KeyVersionMetadata,
    request_id: &str,
    format: Format,
) -> String {
    let document = KeyVersionResponse {
        key_version: KeyVersionDocument {
            key_id: &version.key_id,
            key_version_id: &version.key_version_id,
            creation_date: &version.creation_date,
        },
        request_id,
    };
    render(&document, "KMS", format)
}

/// The DescribeKeyVersion response: one version of a key.
pub fn describe_key_version(
    key_id: &str,
    version: &KeyVersionEntry,
    request_id: &str,
    format: Format,
) -> String {
    let document = KeyVersionResponse {
        key_version: KeyVersionDocument {
            key_id,
            key_version_id: &version.key_version_id,
            creation_date: &version.creation_date,
        },
        request_id,
    };
    render(&document, "KMS", format)
}

/// Any other response document (fields serialized in their declared order, `KMS` the XML
/// root), for the API's operations whose documents live beside their handlers.
pub fn document(document: &impl Serialize, format: Format) -> String {
    render(document, "KMS", format)
}

/// The KMS error document.
pub fn error(error: &KmsError, request_id: &str, format: Format) -> String {
    let document = ErrorResponse {
        request_id,
        code: &error.code,
        message: &error.message,
    };
    render(&document, "Error", format)
}

/// An optional KeyMetadata field: absent is an empty string, as in the seed's samples.
fn optional(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("")
}

fn render(document: &impl Serialize, xml_root: &str, format: Format) -> String {
    match format {
        Format::Json => to_json(document),
        Format::Xml => to_xml(xml_root, document),
    }
}

/// Pretty JSON with 4-space indentation (as `kubectl -o json`), without a final newline.
fn to_json(document: &impl Serialize) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    document
        .serialize(&mut serializer)
        .expect("response documents always serialize");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// The document's serialization as XML under `root`: an object's fields are child elements in
/// order, a list is its element repeated (`"KeyVersion": [a, b]` is two `<KeyVersion>`), a
/// scalar is escaped text, an empty value is `<Name></Name>`. No final newline.
fn to_xml(root: &str, document: &impl Serialize) -> String {
    // serde_json::Value would sort the fields; read the serialization back in order instead.
    let json = serde_json::to_string(document).expect("response documents always serialize");
    let tree: Node = serde_json::from_str(&json).expect("a serialization reads back");
    let mut out = String::new();
    write_element(&mut out, root, &tree, 0);
    out.truncate(out.trim_end().len());
    out
}

/// A serialized document with the order of its fields kept.
enum Node {
    Text(String),
    List(Vec<Node>),
    Object(Vec<(String, Node)>),
}

fn write_element(out: &mut String, name: &str, node: &Node, depth: usize) {
    let indent = "    ".repeat(depth);
    match node {
        Node::Text(text) => {
            out.push_str(&format!("{indent}<{name}>{}</{name}>\n", escape(text)));
        }
        Node::List(items) => {
            for item in items {
                write_element(out, name, item, depth);
            }
        }
        Node::Object(fields) => {
            let mut children = String::new();
            for (field, value) in fields {
                write_element(&mut children, field, value, depth + 1);
            }
            if children.is_empty() {
                out.push_str(&format!("{indent}<{name}></{name}>\n"));
            } else {
                out.push_str(&format!("{indent}<{name}>\n{children}{indent}</{name}>\n"));
            }
        }
    }
}

/// Escapes text for an XML element: the five predefined entities, `\r` as a character
/// reference (so it survives line-end normalisation), and the C0 controls XML 1.0 cannot
/// carry at all replaced by U+FFFD.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Text(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Text(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Text(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Text(v.to_string()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Text(v.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Text(String::new()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut fields = Vec::new();
        while let Some(field) = map.next_entry::<String, Node>()? {
            fields.push(field);
        }
        Ok(Node::Object(fields))
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::api::key_version::{KeyRef, KeyVersionRequest, KeyVersionStatus};
    use crate::api::{
        AutomaticRotation, KeyRequest, KeySpec, KeyState, KeyStatus, KeyUsage, Origin,
        ProtectionLevel,
    };

    /// The CreateKey page's sample success responses, verbatim.
    const CREATE_KEY_XML: &str = "<KMS>
    <KeyMetadata>
        <CreationDate>2016-03-25T10:42:40Z</CreationDate>
        <Description>key description example</Description>
        <KeyId>08c33a6f-4e0a-4a1b-a3fa-7ddfa1d4****</KeyId>
        <KeySpec>Aliyun_AES_256</KeySpec>
        <KeyState>Enabled</KeyState>
        <KeyUsage>ENCRYPT/DECRYPT</KeyUsage>
        <PrimaryKeyVersion>0ec2d249-9f64-4d8f-9587-1215525e****</PrimaryKeyVersion>
        <DeleteDate></DeleteDate>
        <Creator>123456</Creator>
        <Arn>acs:kms:cn-hangzhou:123456:key/08c33a6f-4e0a-4a1b-a3fa-7ddfa1d4****</Arn>
        <Origin>Aliyun_KMS</Origin>
        <MaterialExpireTime></MaterialExpireTime>
        <ProtectionLevel>SOFTWARE</ProtectionLevel>
        <LastRotationDate>2016-03-25T10:42:40Z</LastRotationDate>
        <AutomaticRotation>Enabled</AutomaticRotation>
        <RotationInterval>31536000s</RotationInterval>
        <NextRotationDate>2017-03-25T10:42:40Z</NextRotationDate>
    </KeyMetadata>
    <RequestId>3455b9b4-95c1-419d-b310-db6a53b09a39</RequestId>
</KMS>";

    const CREATE_KEY_JSON: &str = r#"{
        "KeyMetadata": {
                "CreationDate": "2016-03-25T10:42:40Z",
                "Description": "key description example",
                "KeyId": "08c33a6f-4e0a-4a1b-a3fa-7ddfa1d4****",
                "KeySpec": "Aliyun_AES_256",
                "KeyState": "Enabled",
                "KeyUsage": "ENCRYPT/DECRYPT",
                "PrimaryKeyVersion": "0ec2d249-9f64-4d8f-9587-1215525e****",
                "DeleteDate": "",
                "Creator":"123456",
                "Arn":"acs:kms:cn-hangzhou:123456:key/08c33a6f-4e0a-4a1b-a3fa-7ddfa1d4****",
                "Origin":"Aliyun_KMS",
                "MaterialExpireTime":"",
                "ProtectionLevel":"SOFTWARE",
                "LastRotationDate":"2016-03-25T10:42:40Z",
                "AutomaticRotation": "Enabled",
                "RotationInterval": "31536000s",
                "NextRotationDate":"2017-03-25T10:42:40Z"
        },
        "RequestId": "3455b9b4-95c1-419d-b310-db6a53b09a39"
}"#;

    /// The CreateKeyVersion page's sample success responses, verbatim.
    const CREATE_KEY_VERSION_XML: &str = "<KMS>
    <KeyVersion>
        <KeyId>0b30658a-ed1a-4922-b8f7-a673ca9c****</KeyId>
        <KeyVersionId>c0a3d5dc-0b47-4199-a050-b289349a****</KeyVersionId>
        <CreationDate>2019-08-02T10:38:27Z</CreationDate>
    </KeyVersion>
    <RequestId>b96f250a-4b75-498c-91be-22c6928f85be</RequestId>
</KMS>";

    const CREATE_KEY_VERSION_JSON: &str = r#"{
        "KeyVersion": {
                "KeyId": "0b30658a-ed1a-4922-b8f7-a673ca9c****",
                "KeyVersionId": "c0a3d5dc-0b47-4199-a050-b289349a****",
                "CreationDate": "2019-08-02T10:38:27Z"
        },
        "RequestId": "b96f250a-4b75-498c-91be-22c6928f85be"
}"#;

    /// The KeyMetadata of the CreateKey sample, as status holds it.
    fn sample_metadata() -> KeyMetadata {
        KeyMetadata {
            arn: "acs:kms:cn-hangzhou:123456:key/08c33a6f-4e0a-4a1b-a3fa-7ddfa1d4****".into(),
            automatic_rotation: AutomaticRotation::Enabled,
            creation_date: "2016-03-25T10:42:40Z".into(),
            creator: "123456".into(),
            delete_date: None,
            description: "key description example".into(),
            key_id: "08c33a6f-4e0a-4a1b-a3fa-7ddfa1d4****".into(),
            key_spec: KeySpec::AliyunAes256,
            key_state: KeyState::Enabled,
            key_usage: KeyUsage::EncryptDecrypt,
            last_rotation_date: Some("2016-03-25T10:42:40Z".into()),
            material_expire_time: None,
            next_rotation_date: Some("2017-03-25T10:42:40Z".into()),
            origin: Origin::AliyunKms,
            primary_key_version: Some("0ec2d249-9f64-4d8f-9587-1215525e****".into()),
            protection_level: ProtectionLevel::Software,
            rotation_interval: Some("31536000s".into()),
        }
    }

    /// JSON text without the whitespace between tokens: equal compact forms mean the same
    /// names, values, nesting and field order.
    fn compact(json: &str) -> String {
        let mut out = String::new();
        let (mut in_string, mut escaped) = (false, false);
        for c in json.chars() {
            if in_string {
                out.push(c);
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_string = false,
                    _ => {}
                }
            } else if c == '"' {
                in_string = true;
                out.push(c);
            } else if !c.is_whitespace() {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn describe_key_json_is_the_create_key_sample() {
        let json = describe_key(
            &sample_metadata(),
            "3455b9b4-95c1-419d-b310-db6a53b09a39",
            Format::Json,
        );
        assert_eq!(compact(&json), compact(CREATE_KEY_JSON));
        // The layout: 4-space indentation, one field a line.
        assert!(
            json.starts_with(
                "{\n    \"KeyMetadata\": {\n        \"CreationDate\": \"2016-03-25T10:42:40Z\",\n"
            ),
            "{json}"
        );
        assert!(
            json.ends_with(
                "\n    },\n    \"RequestId\": \"3455b9b4-95c1-419d-b310-db6a53b09a39\"\n}"
            ),
            "{json}"
        );
    }

    #[test]
    fn describe_key_xml_is_the_create_key_sample() {
        let xml = describe_key(
            &sample_metadata(),
            "3455b9b4-95c1-419d-b310-db6a53b09a39",
            Format::Xml,
        );
        assert_eq!(xml, CREATE_KEY_XML);
    }

    #[test]
    fn create_key_version_is_the_create_key_version_sample() {
        let version = KeyVersionMetadata {
            key_id: "0b30658a-ed1a-4922-b8f7-a673ca9c****".into(),
            key_version_id: "c0a3d5dc-0b47-4199-a050-b289349a****".into(),
            creation_date: "2019-08-02T10:38:27Z".into(),
        };
        let id = "b96f250a-4b75-498c-91be-22c6928f85be";
        let json = create_key_version(&version, id, Format::Json);
        assert_eq!(compact(&json), compact(CREATE_KEY_VERSION_JSON));
        assert_eq!(
            json,
            r#"{
    "KeyVersion": {
        "KeyId": "0b30658a-ed1a-4922-b8f7-a673ca9c****",
        "KeyVersionId": "c0a3d5dc-0b47-4199-a050-b289349a****",
        "CreationDate": "2019-08-02T10:38:27Z"
    },
    "RequestId": "b96f250a-4b75-498c-91be-22c6928f85be"
}"#
        );
        assert_eq!(
            create_key_version(&version, id, Format::Xml),
            CREATE_KEY_VERSION_XML
        );
    }

    #[test]
    fn fields_absent_from_status_are_empty_strings_in_the_samples_order() {
        // An asymmetric key without rotation: no PrimaryKeyVersion, RotationInterval,
        // NextRotationDate; no description either.
        let metadata = KeyMetadata {
            key_spec: KeySpec::EcP256,
            key_usage: KeyUsage::SignVerify,
            automatic_rotation: AutomaticRotation::Disabled,
            description: String::new(),
            primary_key_version: None,
            rotation_interval: None,
            next_rotation_date: None,
            last_rotation_date: None,
            ..sample_metadata()
        };
        let json = describe_key(&metadata, "r-1", Format::Json);
        let expected = r#"{"KeyMetadata":{"CreationDate":"2016-03-25T10:42:40Z","Description":"","KeyId":"08c33a6f-4e0a-4a1b-a3fa-7ddfa1d4****","KeySpec":"EC_P256","KeyState":"Enabled","KeyUsage":"SIGN/VERIFY","PrimaryKeyVersion":"","DeleteDate":"","Creator":"123456","Arn":"acs:kms:cn-hangzhou:123456:key/08c33a6f-4e0a-4a1b-a3fa-7ddfa1d4****","Origin":"Aliyun_KMS","MaterialExpireTime":"","ProtectionLevel":"SOFTWARE","LastRotationDate":"","AutomaticRotation":"Disabled","RotationInterval":"","NextRotationDate":""},"RequestId":"r-1"}"#;
        assert_eq!(compact(&json), expected);
        let xml = describe_key(&metadata, "r-1", Format::Xml);
        for empty in [
            "Description",
            "PrimaryKeyVersion",
            "DeleteDate",
            "MaterialExpireTime",
            "LastRotationDate",
            "RotationInterval",
            "NextRotationDate",
        ] {
            let line = format!("\n        <{empty}></{empty}>\n");
            assert!(xml.contains(&line), "{empty} missing or not empty:\n{xml}");
        }
        assert_eq!(xml.lines().count(), 17 + 5, "{xml}");
    }

    #[test]
    fn present_optional_fields_are_printed() {
        let metadata = KeyMetadata {
            key_state: KeyState::PendingDeletion,
            delete_date: Some("2020-07-06T18:22:03Z".into()),
            material_expire_time: Some("2021-07-06T18:22:03Z".into()),
            automatic_rotation: AutomaticRotation::Suspended,
            ..sample_metadata()
        };
        let xml = describe_key(&metadata, "r", Format::Xml);
        assert!(xml.contains("\n        <DeleteDate>2020-07-06T18:22:03Z</DeleteDate>\n"));
        assert!(
            xml.contains(
                "\n        <MaterialExpireTime>2021-07-06T18:22:03Z</MaterialExpireTime>\n"
            )
        );
        assert!(xml.contains("\n        <KeyState>PendingDeletion</KeyState>\n"));
        assert!(xml.contains("\n        <AutomaticRotation>Suspended</AutomaticRotation>\n"));
        let json: serde_json::Value =
            serde_json::from_str(&describe_key(&metadata, "r", Format::Json)).unwrap();
        assert_eq!(json["KeyMetadata"]["DeleteDate"], "2020-07-06T18:22:03Z");
        assert_eq!(
            json["KeyMetadata"]["MaterialExpireTime"],
            "2021-07-06T18:22:03Z"
        );
    }

    #[test]
    fn text_is_escaped_in_xml_and_json() {
        let metadata = KeyMetadata {
            description: "a & b <c> \"d\" 'e' \\ f".into(),
            ..sample_metadata()
        };
        let xml = describe_key(&metadata, "r", Format::Xml);
        assert!(
            xml.contains(
                "<Description>a &amp; b &lt;c&gt; &quot;d&quot; &apos;e&apos; \\ f</Description>"
            ),
            "{xml}"
        );
        let json = describe_key(&metadata, "r", Format::Json);
        assert!(
            json.contains(r#""Description": "a & b <c> \"d\" 'e' \\ f","#),
            "{json}"
        );
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["KeyMetadata"]["Description"], metadata.description);
    }

    #[test]
    fn escape_keeps_xml_well_formed() {
        assert_eq!(escape("&&amp;"), "&amp;&amp;amp;");
        assert_eq!(escape("line\nnext\ttab"), "line\nnext\ttab");
        assert_eq!(escape("cr\r\n"), "cr&#13;\n");
        assert_eq!(escape("bell\u{7}nul\u{0}"), "bell\u{FFFD}nul\u{FFFD}");
        assert_eq!(escape("密钥 ключ"), "密钥 ключ");
    }

    fn versions() -> Vec<KeyVersionEntry> {
        vec![
            KeyVersionEntry {
                key_version_id: "2ab1a983-7072-4bbc-a582-584b5bd8****".into(),
                creation_date: "2016-03-25T10:42:40Z".into(),
            },
            KeyVersionEntry {
                key_version_id: "c0a3d5dc-0b47-4199-a050-b289349a****".into(),
                creation_date: "2019-08-02T10:38:27Z".into(),
            },
        ]
    }

    #[test]
    fn list_key_versions_lists_every_version_on_one_page() {
        let key_id = "0b30658a-ed1a-4922-b8f7-a673ca9c****";
        let json = list_key_versions(key_id, &versions(), "r-2", Format::Json);
        assert_eq!(
            json,
            r#"{
    "KeyVersions": {
        "KeyVersion": [
            {
                "KeyId": "0b30658a-ed1a-4922-b8f7-a673ca9c****",
                "KeyVersionId": "2ab1a983-7072-4bbc-a582-584b5bd8****",
                "CreationDate": "2016-03-25T10:42:40Z"
            },
            {
                "KeyId": "0b30658a-ed1a-4922-b8f7-a673ca9c****",
                "KeyVersionId": "c0a3d5dc-0b47-4199-a050-b289349a****",
                "CreationDate": "2019-08-02T10:38:27Z"
            }
        ]
    },
    "TotalCount": 2,
    "PageNumber": 1,
    "PageSize": 2,
    "RequestId": "r-2"
}"#
        );
        assert_eq!(
            list_key_versions(key_id, &versions(), "r-2", Format::Xml),
            "<KMS>
    <KeyVersions>
        <KeyVersion>
            <KeyId>0b30658a-ed1a-4922-b8f7-a673ca9c****</KeyId>
            <KeyVersionId>2ab1a983-7072-4bbc-a582-584b5bd8****</KeyVersionId>
            <CreationDate>2016-03-25T10:42:40Z</CreationDate>
        </KeyVersion>
        <KeyVersion>
            <KeyId>0b30658a-ed1a-4922-b8f7-a673ca9c****</KeyId>
            <KeyVersionId>c0a3d5dc-0b47-4199-a050-b289349a****</KeyVersionId>
            <CreationDate>2019-08-02T10:38:27Z</CreationDate>
        </KeyVersion>
    </KeyVersions>
    <TotalCount>2</TotalCount>
    <PageNumber>1</PageNumber>
    <PageSize>2</PageSize>
    <RequestId>r-2</RequestId>
</KMS>"
        );
    }

    #[test]
    fn list_key_versions_without_versions_is_an_empty_list() {
        let json = list_key_versions("k", &[], "r", Format::Json);
        assert_eq!(
            compact(&json),
            r#"{"KeyVersions":{"KeyVersion":[]},"TotalCount":0,"PageNumber":1,"PageSize":0,"RequestId":"r"}"#
        );
        let xml = list_key_versions("k", &[], "r", Format::Xml);
        assert!(
            xml.starts_with(
                "<KMS>\n    <KeyVersions></KeyVersions>\n    <TotalCount>0</TotalCount>\n"
            ),
            "{xml}"
        );
    }

    #[test]
    fn error_documents() {
        let error = KmsError::new(
            "Rejected.UnsupportedOperation",
            "key <signer> & \"friends\" is symmetric",
        );
        assert_eq!(
            super::error(&error, "r-3", Format::Json),
            r#"{
    "RequestId": "r-3",
    "Code": "Rejected.UnsupportedOperation",
    "Message": "key <signer> & \"friends\" is symmetric"
}"#
        );
        assert_eq!(
            super::error(&error, "r-3", Format::Xml),
            "<Error>
    <RequestId>r-3</RequestId>
    <Code>Rejected.UnsupportedOperation</Code>
    <Message>key &lt;signer&gt; &amp; &quot;friends&quot; is symmetric</Message>
</Error>"
        );
        assert_eq!(
            compact(&super::error(&KmsError::key_not_found(), "r", Format::Json)),
            r#"{"RequestId":"r","Code":"Forbidden.KeyNotFound","Message":"The specified key does not exist."}"#
        );
        assert_eq!(
            KmsError::internal("connection refused"),
            KmsError::new("InternalFailure", "connection refused")
        );
    }

    #[test]
    fn condition_messages_give_their_kms_code() {
        assert_eq!(
            KmsError::from_condition_message(
                "Rejected.UnsupportedOperation: CreateKeyVersion is available only for \
                 asymmetric keys; key sym (k-1) is Aliyun_AES_256: symmetric keys rotate"
            ),
            Some(KmsError::new(
                "Rejected.UnsupportedOperation",
                "CreateKeyVersion is available only for asymmetric keys; key sym (k-1) is \
                 Aliyun_AES_256: symmetric keys rotate"
            ))
        );
        assert_eq!(
            KmsError::from_condition_message("Unsupported.ProtectionLevel: no HSM").map(|e| e.code),
            Some("Unsupported.ProtectionLevel".to_string())
        );
        for not_a_code in [
            "waiting for Key signer to be created",
            "key k: ready",
            "Key ready: yes",
            "",
            "InvalidParameter",
        ] {
            assert_eq!(
                KmsError::from_condition_message(not_a_code),
                None,
                "{not_a_code}"
            );
        }
    }

    fn condition(status: &str, reason: &str, message: &str) -> Condition {
        Condition {
            type_: "Ready".into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: Some(1),
            last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
        }
    }

    fn key(status: Option<KeyStatus>) -> Key {
        let mut key = Key::new("payments", KeyRequest::default());
        key.status = status;
        key
    }

    #[test]
    fn a_key_without_metadata_is_not_found_or_reports_its_code() {
        let created = key(Some(KeyStatus {
            key_metadata: Some(sample_metadata()),
            ..KeyStatus::default()
        }));
        assert_eq!(key_metadata(&created), Ok(&sample_metadata()));
        assert_eq!(key_version_precheck(&created), Ok(()));

        let unseen = key(None);
        assert_eq!(key_metadata(&unseen), Err(KmsError::key_not_found()));
        assert_eq!(
            key_version_precheck(&unseen),
            Ok(()),
            "a request waits for a Key the controller has not seen yet"
        );

        let invalid = key(Some(KeyStatus {
            conditions: vec![condition(
                "False",
                "InvalidParameter",
                "InvalidParameter: spec.keyUsage defaults to ENCRYPT/DECRYPT, which is not \
                 supported by key spec EC_P256; set spec.keyUsage: SIGN/VERIFY",
            )],
            ..KeyStatus::default()
        }));
        let expected = KmsError::new(
            "InvalidParameter",
            "spec.keyUsage defaults to ENCRYPT/DECRYPT, which is not supported by key spec \
             EC_P256; set spec.keyUsage: SIGN/VERIFY",
        );
        assert_eq!(key_metadata(&invalid), Err(expected.clone()));
        assert_eq!(key_version_precheck(&invalid), Err(expected));

        let uncoded = key(Some(KeyStatus {
            conditions: vec![condition("False", "Pending", "still thinking")],
            ..KeyStatus::default()
        }));
        assert_eq!(key_metadata(&uncoded), Err(KmsError::key_not_found()));
    }

    fn request(status: Option<KeyVersionStatus>) -> KeyVersion {
        let mut request = KeyVersion::new(
            "signer-abcde",
            KeyVersionRequest {
                key_ref: KeyRef {
                    name: "signer".into(),
                },
            },
        );
        request.status = status;
        request
    }

    #[test]
    fn key_version_outcomes() {
        let version = KeyVersionMetadata {
            key_id: "k-1".into(),
            key_version_id: "v-2".into(),
            creation_date: "2019-08-02T10:38:27Z".into(),
        };
        let created = request(Some(KeyVersionStatus {
            key_version: Some(version.clone()),
            conditions: vec![condition("True", "Created", "version v-2 of k-1")],
            observed_generation: Some(1),
        }));
        assert_eq!(key_version_outcome(&created), Some(Ok(version)));

        let rejected = request(Some(KeyVersionStatus {
            conditions: vec![condition(
                "False",
                "RejectedLimitExceeded",
                "Rejected.LimitExceeded: 50 asymmetric key versions exist",
            )],
            ..KeyVersionStatus::default()
        }));
        assert_eq!(
            key_version_outcome(&rejected),
            Some(Err(KmsError::new(
                "Rejected.LimitExceeded",
                "50 asymmetric key versions exist"
            )))
        );

        let uncoded = request(Some(KeyVersionStatus {
            conditions: vec![condition("False", "RejectedDisabled", "key is disabled")],
            ..KeyVersionStatus::default()
        }));
        assert_eq!(
            key_version_outcome(&uncoded),
            Some(Err(KmsError::new("RejectedDisabled", "key is disabled")))
        );

        for unsettled in [
            request(None),
            request(Some(KeyVersionStatus::default())),
            request(Some(KeyVersionStatus {
                conditions: vec![condition(
                    "False",
                    "WaitingForKey",
                    "waiting for Key signer to exist in this namespace",
                )],
                ..KeyVersionStatus::default()
            })),
            // Ready without the response is not an answer yet.
            request(Some(KeyVersionStatus {
                conditions: vec![condition("True", "Created", "")],
                ..KeyVersionStatus::default()
            })),
        ] {
            assert_eq!(key_version_outcome(&unsettled), None, "{unsettled:?}");
        }
    }
}
