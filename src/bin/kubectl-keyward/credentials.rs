//! Where `encrypt`, `decrypt`, `sign` and `verify` get their credentials, through the
//! kubeconfig: an AccessKey's issued Secret, a fresh ServiceAccount token for the audience
//! `keyward` (TokenRequest), or a token file. Nothing read here is printed.

use std::path::PathBuf;

use clap::Args;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use keyward::api::AccessKey;
use keyward::kms_client::Credentials;
use keyward::service::identity::TOKEN_AUDIENCE;
use keyward::store::credential::{ACCESS_KEY_ID_ENTRY, ACCESS_KEY_SECRET_ENTRY};
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::{Value, json};

/// How long a token requested with `--service-account` lives (the API server's minimum).
const TOKEN_SECONDS: i64 = 600;

/// Exactly one way to authenticate.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct CredentialArgs {
    /// Sign with the pair issued by AccessKey NAME (read from its Secret in -n's namespace).
    #[arg(long, value_name = "NAME")]
    access_key: Option<String>,

    /// Act as ServiceAccount NAME of -n's namespace with a token for the audience "keyward"
    /// (a TokenRequest: you need create on serviceaccounts/token).
    #[arg(long, value_name = "NAME")]
    service_account: Option<String>,

    /// Send the ServiceAccount token in FILE (a projected token, audience "keyward").
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

impl CredentialArgs {
    /// The credentials asked for. `kube` is only used for `--access-key` and
    /// `--service-account`.
    pub async fn resolve(
        &self,
        kube: impl AsyncFnOnce() -> Result<(Client, String), String>,
    ) -> Result<Credentials, String> {
        if let Some(path) = &self.token_file {
            let token = std::fs::read_to_string(path)
                .map_err(|e| format!("reading the token file {}: {e}", path.display()))?;
            return Ok(Credentials::bearer(token));
        }
        let (client, namespace) = kube().await?;
        match (&self.access_key, &self.service_account) {
            (Some(name), _) => access_key(client, &namespace, name).await,
            (_, Some(name)) => service_account_token(client, &namespace, name).await,
            _ => unreachable!("clap requires one credential"),
        }
    }
}

async fn access_key(client: Client, namespace: &str, name: &str) -> Result<Credentials, String> {
    let access_keys: Api<AccessKey> = Api::namespaced(client.clone(), namespace);
    let access_key = access_keys
        .get_opt(name)
        .await
        .map_err(|e| format!("reading AccessKey {name} in namespace {namespace}: {e}"))?
        .ok_or_else(|| format!("there is no AccessKey {name} in namespace {namespace}"))?;
    let secret_name = access_key
        .status
        .and_then(|s| s.secret_name)
        .ok_or_else(|| {
            format!(
                "AccessKey {name} in namespace {namespace} has not been issued a pair yet \
                 (status.secretName is empty): wait until it is Ready"
            )
        })?;
    let secrets: Api<Secret> = Api::namespaced(client, namespace);
    let secret = secrets
        .get(&secret_name)
        .await
        .map_err(|e| format!("reading Secret {secret_name} of AccessKey {name}: {e}"))?;
    let data = secret.data.unwrap_or_default();
    let entry = |entry: &str| {
        data.get(entry)
            .and_then(|value| String::from_utf8(value.0.clone()).ok())
            .ok_or_else(|| format!("Secret {secret_name} has no text entry {entry}"))
    };
    Ok(Credentials::access_key(
        entry(ACCESS_KEY_ID_ENTRY)?,
        entry(ACCESS_KEY_SECRET_ENTRY)?,
    ))
}

async fn service_account_token(
    client: Client,
    namespace: &str,
    name: &str,
) -> Result<Credentials, String> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client, namespace);
    let request = json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"audiences": [TOKEN_AUDIENCE], "expirationSeconds": TOKEN_SECONDS},
    });
    let issued: Value = accounts
        .create_subresource("token", name, &PostParams::default(), &request)
        .await
        .map_err(|e| {
            format!("requesting a token for ServiceAccount {name} in namespace {namespace}: {e}")
        })?;
    issued["status"]["token"]
        .as_str()
        .map(Credentials::bearer)
        .ok_or_else(|| "the TokenRequest answered without a token".to_string())
}
