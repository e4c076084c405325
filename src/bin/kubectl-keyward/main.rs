//! `kubectl keyward`: the KMS API over keyward's resources, answering with the KMS's response
//! documents (JSON, or XML with `--format xml`), and keys tried through keyward's KMS API.
//!
//! Thin on purpose: arguments, the API calls and the exit status. Here: the commands that read
//! the resources (the documents are rendered by `keyward::kms::response`; no Secret is read).
//! [`kms_api`]: `encrypt`, `decrypt`, `sign` and `verify` through the KMS API, with credentials
//! found by [`credentials`] (an AccessKey's Secret, a ServiceAccount token).

mod credentials;
mod kms_api;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use keyward::api::key_version::{KeyRef, KeyVersionMetadata, KeyVersionRequest};
use keyward::api::{Key, KeyVersion};
use keyward::kms::response::{self, Format, KmsError};
use keyward::kms::schedule::{Interval, parse_interval};
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Api, Client, Config, ResourceExt};

#[derive(Parser)]
#[command(
    name = "kubectl-keyward",
    bin_name = "kubectl keyward",
    version,
    about = "The KMS API over keyward Keys: prints the KMS response documents, and tries \
             keys through keyward's KMS API",
    after_help = "describe-key, list-key-versions and create-key-version read the resources \
                  with your kubeconfig; errors print the KMS error document ({RequestId, Code, \
                  Message}) on stdout and exit with status 1.\n\n\
                  encrypt, decrypt, sign and verify call the KMS API (--endpoint, or \
                  KEYWARD_KMS_ENDPOINT) as an AccessKey (--access-key NAME) or a ServiceAccount \
                  (--service-account NAME, --token-file FILE) of -n's namespace; RBAC on \
                  keys.keyward.dev decides (verbs encrypt, decrypt, asymmetricsign, \
                  asymmetricverify, and getpublickey for SM2DSA). Errors print the KMS's code \
                  and message on stderr and exit with status 1.\n\n\
                  Example:\n  \
                  echo -n 'card 4111' | kubectl keyward encrypt -n shop --key alias/payments \\\n      \
                  --access-key api --endpoint https://keyward-kms.keyward:8443 --ca-file ca.crt"
)]
struct Cli {
    /// The namespace of the Key (default: the kubeconfig context's namespace, else default).
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,

    /// The format of the response document (describe-key, list-key-versions,
    /// create-key-version; encrypt, decrypt, sign and verify take -o json).
    #[arg(long, value_enum, default_value_t = OutputFormat::Json, global = true)]
    format: OutputFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the KeyMetadata of Key NAME (the CreateKey / DescribeKey response).
    DescribeKey {
        /// The name of the Key.
        name: String,
    },
    /// Print every version of Key NAME, oldest first (the ListKeyVersions response).
    ListKeyVersions {
        /// The name of the Key.
        name: String,
    },
    /// Create a new version of asymmetric Key NAME (the CreateKeyVersion response).
    ///
    /// Creates a KeyVersion object NAME-xxxxx, waits until the operator creates the version or
    /// rejects the request, and prints the response. The KeyVersion stays as the record of the
    /// request; its name is printed on stderr.
    CreateKeyVersion {
        /// The name of the Key.
        name: String,

        /// How long to wait for the request to be answered, integer[unit] (d, h, m or s).
        #[arg(long, default_value = "60s", value_parser = interval_arg)]
        timeout: Interval,
    },
    #[command(flatten)]
    Api(kms_api::ApiCommand),
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Json,
    Xml,
}

fn interval_arg(text: &str) -> Result<Interval, String> {
    parse_interval(text).map_err(|e| format!("{text:?}: {e}"))
}

/// What a successful command answers.
enum Response {
    Key(Box<keyward::api::KeyMetadata>),
    Versions {
        key_id: String,
        versions: Vec<keyward::api::key::KeyVersionEntry>,
    },
    Version(KeyVersionMetadata),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Api(command) = cli.command {
        return kms_api::run(command, cli.namespace).await;
    }
    let format = match cli.format {
        OutputFormat::Json => Format::Json,
        OutputFormat::Xml => Format::Xml,
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    match run(&cli).await {
        Ok(response) => {
            let document = match response {
                Response::Key(metadata) => response::describe_key(&metadata, &request_id, format),
                Response::Versions { key_id, versions } => {
                    response::list_key_versions(&key_id, &versions, &request_id, format)
                }
                Response::Version(version) => {
                    response::create_key_version(&version, &request_id, format)
                }
            };
            println!("{document}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            println!("{}", response::error(&error, &request_id, format));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> Result<Response, KmsError> {
    let config = Config::infer().await.map_err(KmsError::internal)?;
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(KmsError::internal)?;
    let keys: Api<Key> = Api::namespaced(client.clone(), &namespace);
    match &cli.command {
        Command::DescribeKey { name } => {
            let key = get_key(&keys, name).await?;
            let metadata = response::key_metadata(&key)?;
            Ok(Response::Key(Box::new(metadata.clone())))
        }
        Command::ListKeyVersions { name } => {
            let key = get_key(&keys, name).await?;
            let key_id = response::key_metadata(&key)?.key_id.clone();
            let versions = key.status.map(|s| s.key_versions).unwrap_or_default();
            Ok(Response::Versions { key_id, versions })
        }
        Command::CreateKeyVersion { name, timeout } => {
            let key = get_key(&keys, name).await?;
            response::key_version_precheck(&key)?;
            let requests: Api<KeyVersion> = Api::namespaced(client, &namespace);
            create_key_version(&requests, name, *timeout).await
        }
        Command::Api(_) => unreachable!("main runs the KMS API commands"),
    }
}

/// The Key, or `Forbidden.KeyNotFound`.
async fn get_key(keys: &Api<Key>, name: &str) -> Result<Key, KmsError> {
    keys.get_opt(name)
        .await
        .map_err(KmsError::internal)?
        .ok_or_else(KmsError::key_not_found)
}

async fn create_key_version(
    requests: &Api<KeyVersion>,
    key: &str,
    timeout: Interval,
) -> Result<Response, KmsError> {
    let request = KeyVersion {
        metadata: ObjectMeta {
            generate_name: Some(format!("{key}-")),
            ..ObjectMeta::default()
        },
        spec: KeyVersionRequest {
            key_ref: KeyRef {
                name: key.to_string(),
            },
        },
        status: None,
    };
    let created = requests
        .create(&PostParams::default(), &request)
        .await
        .map_err(KmsError::internal)?;
    let name = created.name_any();
    eprintln!("keyversion.keyward.dev/{name} created");

    let settled = await_condition(requests.clone(), &name, |request: Option<&KeyVersion>| {
        request.is_some_and(|r| response::key_version_outcome(r).is_some())
    });
    let wait = Duration::from_secs(timeout.as_secs());
    match tokio::time::timeout(wait, settled).await {
        Ok(Ok(Some(request))) => match response::key_version_outcome(&request) {
            Some(outcome) => outcome.map(Response::Version),
            None => Err(KmsError::internal(format!(
                "KeyVersion {name} did not settle"
            ))),
        },
        Ok(Ok(None)) => Err(KmsError::internal(format!(
            "KeyVersion {name} was deleted before it was answered"
        ))),
        Ok(Err(error)) => Err(KmsError::internal(error)),
        Err(_) => {
            // Say where the request stands, if the API server still answers.
            let state = match requests.get_opt(&name).await {
                Ok(Some(request)) => request
                    .status
                    .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"))
                    .map(|c| format!("; Ready is {} ({}): {}", c.status, c.reason, c.message))
                    .unwrap_or_else(|| "; the operator has not answered it".to_string()),
                _ => String::new(),
            };
            Err(KmsError::new(
                response::TIMEOUT,
                format!("KeyVersion {name} was not answered within {timeout}{state}"),
            ))
        }
    }
}
