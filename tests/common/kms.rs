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
    outcome(&sdk_answer(job))
}

/// The document hack/kms-sdk.py prints for `job`: `{"ok": ...}`, `{"error": ...}`, or for a
/// job that sends its request several times `{"outcomes": [...]}`.
pub fn sdk_answer(job: Value) -> Value {
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
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{sdk} {action}: no JSON ({e}); stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// One answer of hack/kms-sdk.py as an [`Outcome`].
pub fn outcome(answer: &Value) -> Outcome {
    if let Some(exception) = answer.get("sdk_exception") {
        panic!("the SDK refused the job itself (no request sent): {exception}");
    }
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

/// Every verb of the KMS API's cryptographic operations (and of describing and listing keys).
pub const CRYPTO_VERBS: [&str; 11] = [
    "encrypt",
    "decrypt",
    "generatedatakey",
    "generatedatakeywithoutplaintext",
    "getpublickey",
    "asymmetricsign",
    "asymmetricverify",
    "asymmetricencrypt",
    "asymmetricdecrypt",
    "describekey",
    "listkeys",
];

/// A caller of one test's KMS API: the endpoint, an AccessKey pair, and where the test keeps
/// its logs. Every error response it receives is appended to [`ERRORS_FILE`] there, so the
/// leak check run when the test's [`TestEnv`] is dropped looks for secrets in them too.
#[derive(Clone)]
pub struct KmsClient {
    pub endpoint: String,
    pub pair: (String, String),
    log_dir: std::path::PathBuf,
    /// Idle `hack/kms-sdk.py --serve` processes, shared by the clones.
    workers: std::sync::Arc<std::sync::Mutex<Vec<SdkWorker>>>,
}

/// A `hack/kms-sdk.py --serve` process: jobs in, one answer a line out. Its stderr (the SDKs'
/// own logging) goes to the test's log directory, where the leak check reads it too.
struct SdkWorker {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl SdkWorker {
    fn start(log_dir: &std::path::Path) -> SdkWorker {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_dir.join("kms-sdk.stderr.log"))
            .expect("the SDK's stderr log");
        let mut child = Command::new(SDK)
            .arg("--serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("run hack/kms-sdk.py --serve");
        SdkWorker {
            stdin: child.stdin.take().unwrap(),
            stdout: std::io::BufReader::new(child.stdout.take().unwrap()),
            child,
        }
    }

    fn run(&mut self, job: &Value) -> Value {
        use std::io::BufRead;
        writeln!(self.stdin, "{job}").expect("a job to hack/kms-sdk.py --serve");
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("an answer from hack/kms-sdk.py --serve");
        serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!(
                "{} {}: no answer from hack/kms-sdk.py --serve ({e}); its stderr is in \
                 kms-sdk.stderr.log of the test's log directory",
                job["sdk"], job["action"]
            )
        })
    }
}

impl Drop for SdkWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The file of a test's log directory that holds the KMS API's error responses.
pub const ERRORS_FILE: &str = "kms-api-errors.log";

impl KmsClient {
    /// A client of `env`'s operator 0's KMS API, signing with `pair`.
    pub async fn new(env: &TestEnv, pair: (String, String)) -> KmsClient {
        KmsClient {
            endpoint: kms_api_endpoint(env).await,
            pair,
            log_dir: env.log_file(ERRORS_FILE).parent().unwrap().to_path_buf(),
            workers: Default::default(),
        }
    }

    /// The same client with another pair (a stranger's, a forged one).
    pub fn with_pair(&self, pair: (String, String)) -> KmsClient {
        KmsClient {
            pair,
            ..self.clone()
        }
    }

    /// One call through `sdk` (see [`call`]); errors are recorded.
    pub fn call(&self, sdk: &str, action: &str, params: Value) -> Outcome {
        outcome(&self.run(json!({"sdk": sdk, "action": action, "params": params})))
    }

    /// A job for hack/kms-sdk.py with this client's endpoint and pair filled in (any of its
    /// fields, e.g. "timestamp", "nonce", "repeat", "raw"); the printed document. Errors, and
    /// each error among "outcomes", are recorded.
    pub fn run(&self, mut job: Value) -> Value {
        job["endpoint"] = json!(self.endpoint);
        job["access_key_id"] = json!(self.pair.0);
        job["access_key_secret"] = json!(self.pair.1);
        let idle = self.workers.lock().unwrap().pop();
        let mut worker = idle.unwrap_or_else(|| SdkWorker::start(&self.log_dir));
        let answer = worker.run(&job);
        self.workers.lock().unwrap().push(worker);
        let errors: Vec<&Value> = match answer.get("outcomes") {
            Some(outcomes) => outcomes.as_array().unwrap().iter().collect(),
            None => vec![&answer],
        };
        for error in errors.into_iter().filter_map(|a| a.get("error")) {
            let line = json!({"sdk": job["sdk"], "action": job["action"], "error": error});
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.log_dir.join(ERRORS_FILE))
                .expect("the KMS API error log");
            // One write per line: concurrent callers append whole lines.
            file.write_all(format!("{line}\n").as_bytes())
                .expect("the KMS API error log");
        }
        answer
    }

    /// Registers `secret` (a plaintext this test sends) with the leak check.
    pub fn watch(&self, what: &str, secret: &[u8]) {
        super::leak::watch(&self.log_dir, what, secret);
    }
}

/// Runs `calls` (each a blocking SDK call) at most `limit` at a time, on tokio's blocking
/// threads; their results in order. Each call starts a Python process: independent calls
/// overlap their start-up instead of queueing behind it.
pub async fn concurrently<T: Send + 'static>(
    limit: usize,
    calls: Vec<Box<dyn FnOnce() -> T + Send>>,
) -> Vec<T> {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(limit));
    let handles: Vec<_> = calls
        .into_iter()
        .map(|call| {
            let permits = permits.clone();
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await.unwrap();
                tokio::task::spawn_blocking(call).await
            })
        })
        .collect();
    // Every call ends before a failure is reported: none is cut off by the test's teardown.
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        results.push(handle.await.unwrap());
    }
    results
        .into_iter()
        .map(|result| result.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())))
        .collect()
}

/// A test's KMS API with keys to use: an operator serving it (plain HTTP), the Keys
/// (`(name, spec)` as Key YAML flow maps) Ready, and a client signing as ServiceAccount
/// `caller`, granted every verb of [`CRYPTO_VERBS`] on keys.
pub async fn kms_with_keys(env: &mut TestEnv, keys: &[(&str, &str)]) -> KmsClient {
    kms_with_keys_and_flags(env, keys, &[]).await
}

/// [`kms_with_keys`], the operator started with `flags` too.
pub async fn kms_with_keys_and_flags(
    env: &mut TestEnv,
    keys: &[(&str, &str)],
    flags: &[&str],
) -> KmsClient {
    let mut args = vec!["--kms-api-addr", "127.0.0.1:0", "--kms-api-insecure-http"];
    args.extend(flags);
    env.start_operator(&args);
    for (name, spec) in keys {
        env.apply_key(&format!(
            "apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {{name: {name}}}\nspec: {spec}\n"
        ))
        .await;
    }
    for (name, _) in keys {
        env.wait_ready(name).await;
    }
    create_service_account(env, "caller").await;
    grant(env, "caller", &CRYPTO_VERBS).await;
    let pair = access_key(env, "caller-key", "caller").await;
    KmsClient::new(env, pair).await
}

/// The SHA-256 digest of `message`, base64: AsymmetricSign's `Digest` for every algorithm but
/// SM2DSA.
pub fn sha256_digest_param(message: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(openssl_digest(message))
}
