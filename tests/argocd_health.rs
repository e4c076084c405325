//! The Argo CD health checks in docs/argocd/, run by a real Lua 5.1 interpreter (Argo CD's
//! dialect) on Keys and KeyVersions as the API server returns them.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::TestEnv;
use keyward::api::KeyVersion;
use kube::Api;
use serde_json::Value;

/// A JSON value as a Lua table constructor (null fields are left out, as Argo CD sees them).
fn lua(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(lua).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), lua(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

fn lua_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\{}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Runs a health script on an object, returning (status, message).
fn health(script: &str, object: &Value) -> (String, String) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/argocd")
        .join(script);
    let body = std::fs::read_to_string(path).expect("health script");
    let program = format!(
        "local function check(obj)\n{body}\nend\nlocal hs = check({})\nio.write(hs.status, \"\\n\", hs.message or \"\")\n",
        lua(object)
    );
    let mut child = Command::new("lua5.1")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lua5.1 (installed by hack/local-cluster.sh)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(program.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "lua failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (status, message) = text.split_once('\n').unwrap_or((&text, ""));
    (status.to_string(), message.to_string())
}

#[tokio::test]
async fn key_health_follows_readiness_on_real_statuses() {
    let mut env = TestEnv::new("argocd-key").await;
    env.apply_key(
        "apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: fresh}\nspec: {}\n",
    )
    .await;
    let unreconciled = serde_json::to_value(env.key("fresh").await).unwrap();
    assert_eq!(health("key-health.lua", &unreconciled).0, "Progressing");

    env.start_operator(&[]);
    env.apply_key("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: bad}\nspec: {keySpec: EC_P256}\n").await;
    env.apply_key("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: byok}\nspec: {origin: EXTERNAL}\n").await;
    let ready = env.wait_ready("fresh").await;
    let bad = env.wait_reason("bad", "InvalidParameter").await;
    let byok = env.wait_reason("byok", "PendingImport").await;

    let (status, message) = health("key-health.lua", &serde_json::to_value(&ready).unwrap());
    assert_eq!(status, "Healthy");
    assert!(message.contains("is Enabled"), "{message}");
    let (status, message) = health("key-health.lua", &serde_json::to_value(&bad).unwrap());
    assert_eq!(status, "Degraded");
    assert!(message.starts_with("InvalidParameter: "), "{message}");
    assert_eq!(
        health("key-health.lua", &serde_json::to_value(&byok).unwrap()).0,
        "Suspended"
    );

    // A spec change keyward has not seen yet is not reported healthy on the old status.
    let mut edited = serde_json::to_value(&ready).unwrap();
    edited["metadata"]["generation"] = Value::from(ready.metadata.generation.unwrap() + 1);
    assert_eq!(health("key-health.lua", &edited).0, "Progressing");
}

#[tokio::test]
async fn key_version_health_follows_the_request_on_real_statuses() {
    let mut env = TestEnv::new("argocd-keyversion").await;
    env.start_operator(&["--key-version-min-interval", "0s"]);
    env.apply_key("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: rsa}\nspec: {keySpec: RSA_2048}\n").await;
    env.apply_key("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: aes}\nspec: {}\n")
        .await;
    env.wait_ready("rsa").await;
    env.wait_ready("aes").await;
    let request = |name: &str, key: &str| {
        format!(
            "apiVersion: keyward.dev/v1alpha1\nkind: KeyVersion\nmetadata: {{name: {name}}}\nspec: {{keyRef: {{name: {key}}}}}\n"
        )
    };
    env.apply_key_version(&request("created", "rsa")).await;
    env.apply_key_version(&request("refused", "aes")).await;
    env.apply_key_version(&request("waiting", "no-such-key"))
        .await;

    let api: Api<KeyVersion> = Api::namespaced(env.client.clone(), &env.namespace);
    let expected = [
        ("created", "Healthy"),
        ("refused", "Degraded"),
        ("waiting", "Progressing"),
    ];
    for (name, want) in expected {
        let deadline = std::time::Instant::now() + common::CONVERGE;
        loop {
            let object = serde_json::to_value(api.get(name).await.unwrap()).unwrap();
            let (status, message) = health("keyversion-health.lua", &object);
            if status == want && !message.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name}: {status} ({message}), wanted {want}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

#[test]
fn json_becomes_the_lua_table_argo_cd_would_see() {
    let value = serde_json::json!({"a": [1, "x\"y"], "b": null, "c": {"d": true}});
    assert_eq!(
        lua(&value),
        r#"{["a"] = {1, "x\"y"}, ["c"] = {["d"] = true}}"#
    );
}
