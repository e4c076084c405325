//! Failures to carry out a plan: the API server could not be reached or refused, or material
//! could not be minted. They are retried with backoff, unlike a [`crate::kms::error::Rejection`],
//! which is reported on the resource.

/// A failure to carry out a plan; retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("minting key material failed: {0}")]
    Material(#[from] crate::kms::material::MaterialError),
    #[error("a blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("the object has no {0}")]
    MissingObjectField(&'static str),
    #[error("the cached {0} is behind the cluster; planning again from a fresh read")]
    Stale(&'static str),
    #[error("namespace {0} does not exist: create it, or name another with --store-namespace")]
    NamespaceMissing(String),
    #[error("waiting for the controller's answer failed: {0}")]
    Wait(String),
    #[error("the HSM failed: {0}")]
    Hsm(#[from] crate::hsm::HsmError),
    #[error(
        "key {0} is an HSM key, and this keyward runs without an HSM: start it with \
         --pkcs11-module, --pkcs11-token-label and --pkcs11-pin-file (docs/hsm.md)"
    )]
    NoHsm(String),
}

impl Error {
    /// A bounded label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => "Conflict",
            Error::Kube(_) => "KubeApi",
            Error::Material(_) => "Material",
            Error::Join(_) => "Runtime",
            Error::MissingObjectField(_) => "InvalidObject",
            Error::NamespaceMissing(_) => "NamespaceMissing",
            Error::Stale(_) => "Stale",
            Error::Wait(_) => "KubeApi",
            Error::Hsm(_) | Error::NoHsm(_) => "Hsm",
        }
    }
}
