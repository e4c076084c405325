//! Calling the KMS API as its users do: the official Alibaba Cloud KMS SDKs from PyPI, driven
//! through hack/kms-sdk.py, with AccessKeys, ServiceAccount tokens and RBAC grants made on the
//! real API server.

use std::io::Write;
use std::process::{Command, Stdio};

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use keyward::api::AccessKey;
use kube::Api;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::operator::logged_field;
use super::{TestEnv, eventually};

pub const SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/hack/kms-sdk.py");
pub const BOTH_SDKS: [&str; 2] = ["v1", "tea"];

pub type Outcome = Result<Value, (String, String, Option<u64>)>;

/// One call through `sdk`; the response body, or the error's (code, message, status).
pub fn call(
    sdk: &str,
    endpoint: &str,
    pair: &(String, String),
    action: &str,
    params: Value,
) -> Outcome {
    run_sdk(json!({
        "sdk": sdk, "endpoint": endpoint, "access_key_id": pair.0,
        "access_key_secret": pair.1, "action": action, "params": params,
    }))
}

/// One call through the current SDK with a bearer token instead of a pair.
pub fn call_with_token(endpoint: &str, token: &str, action: &str, params: Value) -> Outcome {
    run_sdk(json!({
        "sdk": "tea", "endpoint": endpoint, "bearer_token": token, "action": action,
        "params": params,
    }))
}

pub fn run_sdk(job: Value) -> Outcome {
    let (sdk, action) = (job["sdk"].clone(), job["action"].clone());
    let mut child = Command::new(SDK)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hack/kms-sdk.py");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(job.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().expect("hack/kms-sdk.py");
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{sdk} {action}: no JSON ({e}); stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    if let Some(body) = answer.get("ok") {
        return Ok(body.clone());
    }
    let error = &answer["error"];
    Err((
        error["code"].as_str().unwrap_or_default().to_string(),
        error["message"].as_str().unwrap_or_default().to_string(),
        error["status"].as_u64(),
    ))
}

pub async fn create_service_account(env: &TestEnv, name: &str) {
    let accounts: Api<ServiceAccount> = Api::namespaced(env.client.clone(), &env.namespace);
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    accounts
        .create(&PostParams::default(), &account)
        .await
        .expect("create ServiceAccount");
}

/// A Role granting `verbs` on keys.keyward.dev, bound to ServiceAccount `account`.
pub async fn grant(env: &TestEnv, account: &str, verbs: &[&str]) {
    let name = format!("{account}-kms");
    let role = Role {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..ObjectMeta::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["keyward.dev".into()]),
            resources: Some(vec!["keys".into()]),
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            ..PolicyRule::default()
        }]),
    };
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name,
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: account.into(),
            namespace: Some(env.namespace.clone()),
            ..Subject::default()
        }]),
    };
    let roles: Api<Role> = Api::namespaced(env.client.clone(), &env.namespace);
    let bindings: Api<RoleBinding> = Api::namespaced(env.client.clone(), &env.namespace);
    roles
        .create(&PostParams::default(), &role)
        .await
        .expect("create Role");
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .expect("create RoleBinding");
}

/// An AccessKey for `account`, Ready; its pair as issued.
pub async fn access_key(env: &TestEnv, name: &str, account: &str) -> (String, String) {
    let manifest = json!({
        "apiVersion": "keyward.dev/v1alpha1", "kind": "AccessKey",
        "metadata": {"name": name, "namespace": env.namespace},
        "spec": {"serviceAccountName": account},
    });
    let api: Api<AccessKey> = Api::namespaced(env.client.clone(), &env.namespace);
    api.patch(
        name,
        &PatchParams::apply("keyward-tests"),
        &Patch::Apply(&manifest),
    )
    .await
    .expect("apply AccessKey");
    let secret = eventually(&format!("AccessKey {name} issued"), || async {
        let ready = api.get(name).await.ok()?.status?.access_key_id?;
        let secret = env.secret(name).await?;
        Some((ready, secret))
    })
    .await
    .1;
    let entry = |n: &str| String::from_utf8(secret.data.as_ref().unwrap()[n].0.clone()).unwrap();
    (entry("accessKeyId"), entry("accessKeySecret"))
}

/// A token of ServiceAccount `account` for `audience` (the TokenRequest API).
pub async fn service_account_token(env: &TestEnv, account: &str, audience: &str) -> String {
    let accounts: Api<ServiceAccount> = Api::namespaced(env.client.clone(), &env.namespace);
    let request = json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"audiences": [audience], "expirationSeconds": 600},
    });
    let issued: Value = accounts
        .create_subresource("token", account, &PostParams::default(), &request)
        .await
        .expect("a TokenRequest");
    issued["status"]["token"]
        .as_str()
        .expect("a token")
        .to_string()
}

pub async fn kms_api_endpoint(env: &TestEnv) -> String {
    eventually("the KMS API address in the log", || async {
        logged_field(&env.operator_log(0), "serving the KMS API", "kms_api_addr")
            .map(str::to_string)
    })
    .await
}

pub fn openssl_digest(message: &[u8]) -> Vec<u8> {
    super::openssl::openssl(&["dgst", "-sha256", "-binary"], message)
}

/// Whether OpenSSL verifies `signature` (DER ECDSA) of `message` with the SPKI `pem`.
pub fn openssl_verifies(pem: &str, message: &[u8], signature: &[u8]) -> bool {
    let scratch = super::scratch::Scratch::new("kms-api-verify");
    let key = scratch.write("public.pem", pem.as_bytes());
    let sig = scratch.write("signature.der", signature);
    let msg = scratch.write("message", message);
    Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(&key)
        .arg("-signature")
        .arg(&sig)
        .arg(&msg)
        .output()
        .expect("run openssl")
        .status
        .success()
}
