//! `encrypt`, `decrypt`, `sign` and `verify`: a key tried from a terminal through keyward's KMS
//! API (`keyward::kms_client`), with the credentials of an AccessKey or a ServiceAccount.
//!
//! Data comes from stdin (or a flag) and the answer's one useful field goes to stdout, so the
//! commands pipe into each other; `-o json` prints the whole response document instead.
//! Failures print the KMS's code and message on stderr.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::{Args, Subcommand, ValueEnum};
use keyward::kms_client::operations::algorithm;
use keyward::kms_client::{ClientError, KmsClient, Session};
use kube::{Client, Config};
use serde::Serialize;

use crate::credentials::CredentialArgs;

/// `verify`'s exit status when the KMS says the signature does not hold (errors exit 1).
pub const INVALID_SIGNATURE: u8 = 3;

#[derive(Subcommand)]
pub enum ApiCommand {
    /// Encrypt text (stdin, or --plaintext) with a symmetric key; prints the CiphertextBlob.
    Encrypt {
        /// The key: its KeyId, its ARN, or alias/<Key name> (in the caller's namespace).
        #[arg(long)]
        key: String,
        /// The plaintext (default: all of stdin, exactly; at most 6 KB of UTF-8 text).
        #[arg(long)]
        plaintext: Option<String>,
        #[command(flatten)]
        context: ContextArg,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Decrypt a CiphertextBlob (stdin, or --ciphertext-blob); prints the plaintext exactly.
    Decrypt {
        /// The CiphertextBlob (base64) that encrypt printed (default: stdin).
        #[arg(long)]
        ciphertext_blob: Option<String>,
        #[command(flatten)]
        context: ContextArg,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Sign the message on stdin with an asymmetric key; prints the signature (base64).
    ///
    /// The digest is computed here, as the KMS requires: SHA-256 of the message, or for SM2DSA
    /// SM3 over Z(A) (the version's public key, user id 1234567812345678) and the message.
    Sign {
        #[command(flatten)]
        signing: SigningArgs,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Check a signature of the message on stdin. Exit status 0: valid; 3: the signature does
    /// not hold; 1: the check could not be made.
    Verify {
        #[command(flatten)]
        signing: SigningArgs,
        /// The signature, base64 (as sign prints it).
        #[arg(long)]
        signature: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// Where the API is and who calls it.
#[derive(Args)]
pub struct ApiArgs {
    /// The KMS API: https://HOST:PORT, or http://HOST:PORT for a server started with
    /// --kms-api-insecure-http.
    #[arg(long, env = "KEYWARD_KMS_ENDPOINT")]
    endpoint: String,

    /// The CA bundle (PEM) to trust for https:// (default: the system's roots).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,

    #[command(flatten)]
    credentials: CredentialArgs,

    /// What to print: the answer's field, or the KMS's whole JSON document.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Args)]
pub struct ContextArg {
    /// The EncryptionContext, a JSON object of strings; Decrypt needs the one Encrypt had.
    #[arg(long, value_name = "JSON")]
    context: Option<String>,
}

#[derive(Args)]
pub struct SigningArgs {
    /// The key: its KeyId, its ARN, or alias/<Key name>.
    #[arg(long)]
    key: String,
    /// RSA_PSS_SHA_256, RSA_PKCS1_SHA_256 (RSA_2048), ECDSA_SHA_256 (EC_P256, EC_P256K) or
    /// SM2DSA (EC_SM2).
    #[arg(long)]
    algorithm: String,
    /// The key version (default: the newest).
    #[arg(long, value_name = "KEY_VERSION_ID")]
    key_version_id: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

/// Runs one command; its exit status.
pub async fn run(command: ApiCommand, namespace: Option<String>) -> ExitCode {
    let api = match &command {
        ApiCommand::Encrypt { api, .. }
        | ApiCommand::Decrypt { api, .. }
        | ApiCommand::Sign { api, .. }
        | ApiCommand::Verify { api, .. } => api,
    };
    let output = api.output;
    match perform(&command, api, namespace).await {
        Ok(Printed {
            text,
            document,
            status,
        }) => {
            let mut stdout = std::io::stdout().lock();
            let written = match output {
                Output::Text => stdout.write_all(&text),
                Output::Json => writeln!(stdout, "{document}"),
            };
            match written.and_then(|()| stdout.flush()) {
                Ok(()) => ExitCode::from(status),
                Err(e) => {
                    eprintln!("error: writing the answer: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// What a command prints, in either form, and its exit status.
struct Printed {
    text: Vec<u8>,
    document: String,
    status: u8,
}

impl Printed {
    fn new(text: impl Into<Vec<u8>>, document: &impl Serialize) -> Printed {
        Printed {
            text: text.into(),
            document: serde_json::to_string_pretty(document).expect("a response document"),
            status: 0,
        }
    }
}

async fn perform(
    command: &ApiCommand,
    api: &ApiArgs,
    namespace: Option<String>,
) -> Result<Printed, String> {
    let credentials = api
        .credentials
        .resolve(async || {
            let config = Config::infer()
                .await
                .map_err(|e| format!("kubeconfig: {e}"))?;
            let namespace = namespace.unwrap_or_else(|| config.default_namespace.clone());
            let client = Client::try_from(config).map_err(|e| format!("kubeconfig: {e}"))?;
            Ok((client, namespace))
        })
        .await?;
    let client = KmsClient::new(&api.endpoint, api.ca_file.as_deref(), credentials)
        .map_err(|e| e.to_string())?;
    let mut session = client.session().await.map_err(|e| e.to_string())?;
    call(command, &mut session).await.map_err(|e| match e {
        ClientError::Kms(failure) => failure.to_string(),
        other => other.to_string(),
    })
}

async fn call(command: &ApiCommand, session: &mut Session) -> Result<Printed, ClientError> {
    match command {
        ApiCommand::Encrypt {
            key,
            plaintext,
            context,
            ..
        } => {
            let plaintext = match plaintext {
                Some(text) => text.clone(),
                None => String::from_utf8(stdin()?).map_err(|_| {
                    ClientError::Config(
                        "the plaintext on stdin is not UTF-8 text: Encrypt takes text, so \
                         base64-encode binary data first"
                            .into(),
                    )
                })?,
            };
            let sealed = session
                .encrypt(key, &plaintext, context.context.as_deref())
                .await?;
            Ok(Printed::new(
                format!("{}\n", sealed.ciphertext_blob),
                &sealed,
            ))
        }
        ApiCommand::Decrypt {
            ciphertext_blob,
            context,
            ..
        } => {
            let blob = match ciphertext_blob {
                Some(blob) => blob.clone(),
                None => String::from_utf8_lossy(&stdin()?).into_owned(),
            };
            let opened = session
                .decrypt(blob.trim(), context.context.as_deref())
                .await?;
            Ok(Printed::new(opened.plaintext.expose().as_bytes(), &opened))
        }
        ApiCommand::Sign { signing, .. } => {
            let algorithm = algorithm(&signing.algorithm)?;
            let message = stdin()?;
            let version = signing.key_version_id.as_deref();
            let (digest, version) = session
                .digest(&signing.key, version, algorithm, &message)
                .await?;
            let signature = session
                .asymmetric_sign(&signing.key, version.as_deref(), algorithm, &digest)
                .await?;
            Ok(Printed::new(format!("{}\n", signature.value), &signature))
        }
        ApiCommand::Verify {
            signing, signature, ..
        } => {
            let algorithm = algorithm(&signing.algorithm)?;
            let signature = BASE64.decode(signature.trim()).map_err(|_| {
                ClientError::Config("--signature is not base64 (as sign prints it)".into())
            })?;
            let message = stdin()?;
            let version = signing.key_version_id.as_deref();
            let (digest, version) = session
                .digest(&signing.key, version, algorithm, &message)
                .await?;
            let verified = session
                .asymmetric_verify(
                    &signing.key,
                    version.as_deref(),
                    algorithm,
                    &digest,
                    &signature,
                )
                .await?;
            let (text, status) = match verified.value {
                true => ("valid\n", 0),
                false => ("invalid\n", INVALID_SIGNATURE),
            };
            Ok(Printed {
                status,
                ..Printed::new(text, &verified)
            })
        }
    }
}

fn stdin() -> Result<Vec<u8>, ClientError> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .map_err(|e| ClientError::Config(format!("reading stdin: {e}")))?;
    Ok(bytes)
}
