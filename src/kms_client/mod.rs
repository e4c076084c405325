//! A client of keyward's KMS API (the Alibaba Cloud KMS RPC API, 2016-01-20), for the kubectl
//! plugin and the benchmarks. It signs as the current official SDK does (ACS3-HMAC-SHA256,
//! parameters in the query) or sends a ServiceAccount token, over one keep-alive connection per
//! [`Session`], and turns the KMS error document into [`ClientError::Kms`]. It shares only the
//! signature's encodings with the server (`crate::service::signing::encoding`); its tests
//! check its signatures with the server's verifier and against the SDK's own captured requests.
//!
//! Reading order: [`credentials`] -> [`signer`] (the request on the wire, pure) ->
//! [`transport`] (endpoint and connection) -> [`operations`] (typed calls and answers).

pub mod credentials;
pub mod error;
pub mod operations;
pub mod signer;
pub mod transport;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

use jiff::Timestamp;
use serde::Deserialize;
use serde::de::DeserializeOwned;

pub use credentials::Credentials;
pub use error::{ClientError, KmsFailure};
pub use operations::{Opened, PublicKeyAnswer, Sealed, Signature, Verified};
use signer::Unsigned;
use transport::{Connection, Connector, Endpoint};

const USER_AGENT: &str = concat!("keyward-kms-client/", env!("CARGO_PKG_VERSION"));

/// An endpoint and the credentials to call it with. Cheap to clone.
#[derive(Clone)]
pub struct KmsClient {
    inner: Arc<Inner>,
}

struct Inner {
    connector: Connector,
    credentials: Credentials,
}

impl KmsClient {
    /// `endpoint` is `https://host:port`, `http://host:port` or `host:port` (HTTPS); `ca_file`
    /// the PEM bundle to trust for HTTPS (default: the system's roots).
    pub fn new(
        endpoint: &str,
        ca_file: Option<&Path>,
        credentials: Credentials,
    ) -> Result<KmsClient, ClientError> {
        let connector = Connector::new(Endpoint::parse(endpoint)?, ca_file)?;
        Ok(KmsClient {
            inner: Arc::new(Inner {
                connector,
                credentials,
            }),
        })
    }

    /// Opens a keep-alive connection for a sequence of calls.
    pub async fn session(&self) -> Result<Session, ClientError> {
        Ok(Session {
            client: self.clone(),
            connection: self.inner.connector.connect().await?,
        })
    }
}

/// One connection's calls, one at a time.
pub struct Session {
    client: KmsClient,
    connection: Connection,
}

/// The error document of the KMS.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorDocument {
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    request_id: String,
}

impl Session {
    /// Calls `action` with `params` (sent in the query, as the SDK sends them) and reads the
    /// answer as `T`; an error document is [`ClientError::Kms`].
    pub async fn call<T: DeserializeOwned>(
        &mut self,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        let inner = &self.client.inner;
        let unsigned = Unsigned {
            host: inner.connector.endpoint().authority.clone(),
            action: action.to_string(),
            query: params
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            form: Vec::new(),
            headers: vec![("user-agent".into(), USER_AGENT.into())],
        };
        let signed = signer::sign(
            &unsigned,
            &inner.credentials,
            Timestamp::now(),
            &signer::nonce(),
        );
        let (status, body) = self.connection.send(signed).await?;
        if status == 200 {
            return serde_json::from_slice(&body).map_err(|_| ClientError::Response {
                status,
                what: "the action's JSON document",
            });
        }
        let error: ErrorDocument =
            serde_json::from_slice(&body).map_err(|_| ClientError::Response {
                status,
                what: "a KMS error document",
            })?;
        Err(ClientError::Kms(KmsFailure {
            status,
            code: error.code,
            message: error.message,
            request_id: error.request_id,
        }))
    }
}
