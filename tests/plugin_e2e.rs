//! `kubectl keyward` against a real API server and operator: the KMS response documents it
//! prints match the resources' status, in the seed's shapes, and failures are KMS errors with
//! exit status 1.

mod common;

use std::process::Command;

use common::{TestEnv, key_manifest};
use keyward::api::key::KeyVersionEntry;
use keyward::api::{Key, KeyMetadata, KeyVersion};
use kube::Api;
use serde_json::Value;

/// What one run of the plugin did.
#[derive(Debug)]
struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The stdout as JSON.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    fn assert_success(&self) -> &Self {
        assert_eq!(self.status, 0, "the plugin failed: {self:?}");
        self
    }
}

/// Runs `kubectl-keyward -n <namespace> ARGS` with the test cluster's kubeconfig.
async fn plugin(env: &TestEnv, args: &[&str]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kubectl-keyward"));
    command
        .args(["-n", &env.namespace])
        .args(args)
        .env("KUBECONFIG", common::kubeconfig_path());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("run kubectl-keyward");
    Run {
        status: output.status.code().expect("exited"),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    }
}

fn is_uuid_v4(text: &str) -> bool {
    uuid::Uuid::parse_str(text)
        .is_ok_and(|u| u.get_version_num() == 4 && u.hyphenated().to_string() == text)
}

/// The seed's KeyMetadata fields in the sample's order, each with the value the Key's status
/// holds (absent: empty).
fn expected_fields(m: &KeyMetadata) -> Vec<(&'static str, String)> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    vec![
        ("CreationDate", m.creation_date.clone()),
        ("Description", m.description.clone()),
        ("KeyId", m.key_id.clone()),
        ("KeySpec", m.key_spec.to_string()),
        ("KeyState", m.key_state.to_string()),
        ("KeyUsage", m.key_usage.to_string()),
        ("PrimaryKeyVersion", opt(&m.primary_key_version)),
        ("DeleteDate", opt(&m.delete_date)),
        ("Creator", m.creator.clone()),
        ("Arn", m.arn.clone()),
        ("Origin", m.origin.to_string()),
        ("MaterialExpireTime", opt(&m.material_expire_time)),
        ("ProtectionLevel", m.protection_level.to_string()),
        ("LastRotationDate", opt(&m.last_rotation_date)),
        ("AutomaticRotation", m.automatic_rotation.to_string()),
        ("RotationInterval", opt(&m.rotation_interval)),
        ("NextRotationDate", opt(&m.next_rotation_date)),
    ]
}

/// The text of the elements named `name` in a simple XML document, unescaped, in order.
fn xml_texts(xml: &str, name: &str) -> Vec<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut texts = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let end = after
            .find(&close)
            .unwrap_or_else(|| panic!("<{name}> is not closed: {xml}"));
        texts.push(unescape(&after[..end]));
        rest = &after[end + close.len()..];
    }
    texts
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The names of the elements in an XML document, in order of their opening tags.
fn xml_element_names(xml: &str) -> Vec<String> {
    xml.split('<')
        .skip(1)
        .filter(|tag| !tag.starts_with('/'))
        .map(|tag| tag.split('>').next().unwrap().to_string())
        .collect()
}

/// The KMS error document a failed run printed, checked for shape: (Code, Message).
fn kms_error(run: &Run) -> (String, String) {
    assert_eq!(run.status, 1, "expected a KMS error: {run:?}");
    let json = run.json();
    let object = json.as_object().expect("an object");
    let mut fields: Vec<&str> = object.keys().map(String::as_str).collect();
    fields.sort();
    assert_eq!(fields, ["Code", "Message", "RequestId"], "{run:?}");
    assert!(is_uuid_v4(json["RequestId"].as_str().unwrap()), "{run:?}");
    // In the order of the brief: RequestId, Code, Message.
    let at = |f: &str| run.stdout.find(&format!("\"{f}\"")).unwrap();
    assert!(at("RequestId") < at("Code") && at("Code") < at("Message"));
    (
        json["Code"].as_str().unwrap().to_string(),
        json["Message"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn describe_key_prints_the_keys_status_as_the_create_key_response() {
    let env = TestEnv::with_operator("plugin-describe").await;
    let description = "Payments & <refunds> \"quoted\" 'single'";
    env.apply_key(&key_manifest(
        "payments",
        &format!(
            "{{description: {}, enableAutomaticRotation: true, rotationInterval: 365d}}",
            serde_json::to_string(description).unwrap()
        ),
    ))
    .await;
    let key = env.wait_ready("payments").await;
    let metadata = key.status.unwrap().key_metadata.unwrap();
    assert_eq!(metadata.description, description);
    let expected = expected_fields(&metadata);

    // JSON: every seed field, in the sample's order, with the status's values.
    let run = plugin(&env, &["describe-key", "payments"]).await;
    run.assert_success();
    let json = run.json();
    let object = json.as_object().unwrap();
    assert_eq!(object.len(), 2, "KeyMetadata and RequestId only: {json}");
    let printed = json["KeyMetadata"].as_object().expect("KeyMetadata");
    assert_eq!(printed.len(), expected.len(), "{json}");
    for (field, value) in &expected {
        assert_eq!(printed[*field], Value::from(value.as_str()), "{field}");
    }
    let positions: Vec<usize> = expected
        .iter()
        .map(|(field, _)| run.stdout.find(&format!("\"{field}\"")).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "fields out of the sample's order: {}",
        run.stdout
    );
    assert!(run.stdout.find("\"KeyMetadata\"") < run.stdout.find("\"RequestId\""));
    assert_eq!(printed["DeleteDate"], "", "absent fields are empty strings");
    assert_eq!(printed["MaterialExpireTime"], "");
    assert_eq!(printed["RotationInterval"], "31536000s");
    let first_id = json["RequestId"].as_str().unwrap().to_string();
    assert!(is_uuid_v4(&first_id), "RequestId {first_id}");

    // XML: the same values, parsed back; the same element order.
    let run = plugin(&env, &["describe-key", "payments", "--format", "xml"]).await;
    run.assert_success();
    let xml = run.stdout.trim_end();
    assert!(
        xml.starts_with("<KMS>\n    <KeyMetadata>\n        <CreationDate>"),
        "{xml}"
    );
    assert!(xml.ends_with("</RequestId>\n</KMS>"), "{xml}");
    let mut names = vec!["KMS".to_string(), "KeyMetadata".to_string()];
    names.extend(expected.iter().map(|(f, _)| f.to_string()));
    names.push("RequestId".into());
    assert_eq!(xml_element_names(xml), names);
    for (field, value) in &expected {
        assert_eq!(xml_texts(xml, field), [value.as_str()], "{field}");
    }
    assert!(
        xml.contains(
            "<Description>Payments &amp; &lt;refunds&gt; &quot;quoted&quot; &apos;single&apos;\
             </Description>"
        ),
        "{xml}"
    );
    let second_id = xml_texts(xml, "RequestId").remove(0);
    assert!(is_uuid_v4(&second_id), "RequestId {second_id}");

    // A fresh RequestId per call.
    let third_id = plugin(&env, &["describe-key", "payments"]).await.json()["RequestId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(first_id, second_id);
    assert_ne!(first_id, third_id);
    assert_ne!(second_id, third_id);
}

#[tokio::test]
async fn create_key_version_adds_a_version_that_list_key_versions_then_lists() {
    let mut env = TestEnv::new("plugin-key-version").await;
    env.start_operator(&["--key-version-min-interval", "0s"]);
    env.apply_key(&key_manifest(
        "signer",
        "{keySpec: EC_P256, keyUsage: SIGN/VERIFY}",
    ))
    .await;
    let key = env.wait_ready("signer").await;
    let metadata = key.status.as_ref().unwrap().key_metadata.clone().unwrap();
    let initial = key.status.unwrap().key_versions;
    assert_eq!(initial.len(), 1);

    let run = plugin(&env, &["create-key-version", "signer"]).await;
    run.assert_success();
    let json = run.json();
    let object = json.as_object().unwrap();
    let mut fields: Vec<&String> = object.keys().collect();
    fields.sort();
    assert_eq!(fields, ["KeyVersion", "RequestId"], "{json}");
    let version = json["KeyVersion"].as_object().unwrap();
    assert_eq!(version.len(), 3, "{json}");
    let at = |f: &str| run.stdout.find(&format!("\"{f}\"")).unwrap();
    assert!(at("KeyId") < at("KeyVersionId") && at("KeyVersionId") < at("CreationDate"));
    assert_eq!(version["KeyId"], metadata.key_id.as_str());
    let version_id = version["KeyVersionId"].as_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&version_id).is_ok(), "{version_id}");
    assert_ne!(version_id, initial[0].key_version_id);
    let creation_date = version["CreationDate"].as_str().unwrap().to_string();
    assert!(creation_date.parse::<jiff::Timestamp>().is_ok());
    assert!(is_uuid_v4(json["RequestId"].as_str().unwrap()));

    // The KeyVersion stays as the record of the request, and its name is on stderr.
    assert_request_recorded(&env, &run, &version_id, &creation_date).await;

    // The Key's status lists the new version after the initial one.
    let key = env
        .wait_key("signer", "listing the new version", |k: &Key| {
            k.status.as_ref().is_some_and(|s| {
                s.key_versions
                    .iter()
                    .any(|v| v.key_version_id == version_id)
            })
        })
        .await;
    let versions = key.status.unwrap().key_versions;
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0], initial[0]);
    assert_eq!(versions[1].key_version_id, version_id);
    assert_eq!(versions[1].creation_date, creation_date);

    // ListKeyVersions: every version, oldest first, on one page.
    assert_list_key_versions(&env, &metadata.key_id, &versions).await;

    // An asymmetric key has no primary version: DescribeKey prints it empty.
    let run = plugin(&env, &["describe-key", "signer"]).await;
    let json = run.assert_success().json();
    assert_eq!(json["KeyMetadata"]["PrimaryKeyVersion"], "");
    assert_eq!(
        json["KeyMetadata"]["LastRotationDate"],
        creation_date.as_str()
    );
}

/// The KeyVersion that `run` (a create-key-version) made stays as the record of the request,
/// answered with `version_id` created at `creation_date`, and its name is on stderr.
async fn assert_request_recorded(env: &TestEnv, run: &Run, version_id: &str, creation_date: &str) {
    let requests: Api<KeyVersion> = Api::namespaced(env.client.clone(), &env.namespace);
    let listed = requests.list(&Default::default()).await.unwrap().items;
    assert_eq!(listed.len(), 1);
    let request = &listed[0];
    let name = request.metadata.name.clone().unwrap();
    assert!(name.starts_with("signer-"), "{name}");
    assert_eq!(request.metadata.generate_name.as_deref(), Some("signer-"));
    assert_eq!(request.spec.key_ref.name, "signer");
    assert!(run.stderr.contains(&name), "stderr: {}", run.stderr);
    let response = request
        .status
        .as_ref()
        .unwrap()
        .key_version
        .clone()
        .unwrap();
    assert_eq!(response.key_version_id, version_id);
    assert_eq!(response.creation_date, creation_date);
}

/// ListKeyVersions, as JSON and as XML: every one of `versions` of key `key_id`, oldest first,
/// on one page.
async fn assert_list_key_versions(env: &TestEnv, key_id: &str, versions: &[KeyVersionEntry]) {
    let run = plugin(env, &["list-key-versions", "signer"]).await;
    run.assert_success();
    let json = run.json();
    let listed = json["KeyVersions"]["KeyVersion"].as_array().expect("list");
    assert_eq!(listed.len(), 2, "{json}");
    for (printed, version) in listed.iter().zip(versions) {
        assert_eq!(
            printed,
            &serde_json::json!({
                "KeyId": key_id,
                "KeyVersionId": version.key_version_id,
                "CreationDate": version.creation_date,
            })
        );
    }
    assert_eq!(json["TotalCount"], 2);
    assert_eq!(json["PageNumber"], 1);
    assert_eq!(json["PageSize"], 2);
    assert!(is_uuid_v4(json["RequestId"].as_str().unwrap()));
    let at = |f: &str| run.stdout.find(&format!("\"{f}\"")).unwrap();
    assert!(
        at("KeyVersions") < at("TotalCount")
            && at("TotalCount") < at("PageNumber")
            && at("PageNumber") < at("PageSize")
            && at("PageSize") < at("RequestId"),
        "{}",
        run.stdout
    );

    let run = plugin(env, &["list-key-versions", "signer", "--format", "xml"]).await;
    run.assert_success();
    let xml = run.stdout.trim_end();
    assert!(xml.starts_with("<KMS>\n    <KeyVersions>\n        <KeyVersion>\n"));
    assert_eq!(
        xml_texts(xml, "KeyVersionId"),
        versions
            .iter()
            .map(|v| v.key_version_id.clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(xml_texts(xml, "KeyId"), vec![key_id.to_string(); 2]);
    assert_eq!(xml_texts(xml, "TotalCount"), ["2"]);
    assert_eq!(xml_texts(xml, "PageNumber"), ["1"]);
    assert_eq!(xml_texts(xml, "PageSize"), ["2"]);
}

#[tokio::test]
async fn create_key_version_on_a_symmetric_key_is_rejected_with_the_kms_code() {
    let env = TestEnv::with_operator("plugin-rejected").await;
    env.apply_key(&key_manifest("sym", "{}")).await;
    env.wait_ready("sym").await;

    let run = plugin(&env, &["create-key-version", "sym"]).await;
    let (code, message) = kms_error(&run);
    assert_eq!(code, "Rejected.UnsupportedOperation");
    assert!(
        message.starts_with("CreateKeyVersion is available only for asymmetric keys"),
        "the code is not repeated in the message: {message}"
    );
    assert!(
        run.stderr.contains("keyversion.keyward.dev/sym-"),
        "{run:?}"
    );

    let run = plugin(&env, &["create-key-version", "sym", "--format", "xml"]).await;
    assert_eq!(run.status, 1, "{run:?}");
    let xml = run.stdout.trim_end();
    assert_eq!(
        xml_element_names(xml),
        ["Error", "RequestId", "Code", "Message"]
    );
    assert_eq!(xml_texts(xml, "Code"), ["Rejected.UnsupportedOperation"]);
    assert!(is_uuid_v4(&xml_texts(xml, "RequestId")[0]));

    // Both requests stay, rejected, as the record.
    let requests: Api<KeyVersion> = Api::namespaced(env.client.clone(), &env.namespace);
    assert_eq!(
        requests
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    let key = env.key("sym").await;
    assert_eq!(
        key.status.unwrap().key_versions.len(),
        1,
        "no version added"
    );
}

#[tokio::test]
async fn missing_and_invalid_keys_are_kms_errors() {
    let env = TestEnv::with_operator("plugin-errors").await;

    for command in ["describe-key", "list-key-versions", "create-key-version"] {
        let run = plugin(&env, &[command, "nope"]).await;
        let (code, message) = kms_error(&run);
        assert_eq!(code, "Forbidden.KeyNotFound", "{command}");
        assert_eq!(message, "The specified key does not exist.", "{command}");
    }
    let run = plugin(&env, &["--format", "xml", "describe-key", "nope"]).await;
    assert_eq!(run.status, 1);
    assert_eq!(
        run.stdout.trim_end(),
        format!(
            "<Error>\n    <RequestId>{}</RequestId>\n    <Code>Forbidden.KeyNotFound</Code>\n    \
             <Message>The specified key does not exist.</Message>\n</Error>",
            xml_texts(&run.stdout, "RequestId")[0]
        )
    );
    let requests: Api<KeyVersion> = Api::namespaced(env.client.clone(), &env.namespace);
    assert!(
        requests
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "no request is made for a missing key"
    );

    // An invalid Key was never created: its Ready condition's code.
    env.apply_key(&key_manifest("bad", "{keySpec: EC_P256}"))
        .await;
    env.wait_reason("bad", "InvalidParameter").await;
    for command in ["describe-key", "list-key-versions", "create-key-version"] {
        let (code, message) = kms_error(&plugin(&env, &[command, "bad"]).await);
        assert_eq!(code, "InvalidParameter", "{command}");
        assert!(message.starts_with("spec.keyUsage"), "{command}: {message}");
    }
    assert!(
        requests
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn create_key_version_times_out_when_no_operator_answers() {
    // No operator: the Key is never created and the request never answered.
    let env = TestEnv::new("plugin-timeout").await;
    env.apply_key(&key_manifest(
        "signer",
        "{keySpec: EC_P256, keyUsage: SIGN/VERIFY}",
    ))
    .await;
    let run = plugin(&env, &["create-key-version", "signer", "--timeout", "2s"]).await;
    let (code, message) = kms_error(&run);
    assert_eq!(code, "Timeout");
    assert!(message.contains("was not answered within 2s"), "{message}");
    let requests: Api<KeyVersion> = Api::namespaced(env.client.clone(), &env.namespace);
    assert_eq!(
        requests
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}
