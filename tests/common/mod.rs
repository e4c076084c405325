//! The integration-test harness: a real API server, one namespace per test, and the real
//! `keyward` binary running as a local process (there is no kubelet on the test cluster).
//!
//! The cluster comes from `KEYWARD_TEST_KUBECONFIG`; `hack/test.sh` starts one and sets it.
//! When a test fails, the harness prints what the namespace held (Keys with their status,
//! Secrets without their data, events) and the operator's log.
//!
//! Where things are:
//! * [`cluster`]: the test cluster itself (kubeconfig, client, CRDs);
//! * [`env`]: [`TestEnv`], one test's namespace and operator processes, cleaned up (and
//!   checked for leaks, and dumped on failure) when dropped;
//! * [`objects`]: applying, reading and waiting for Keys, KeyVersions, Secrets and events;
//! * [`kms`]: calling the KMS API through the official SDKs, with AccessKeys and RBAC grants;
//! * [`leak`]: the key-material leak check run on the operators' logs;
//! * [`manifests`]: Key and KeyVersion manifests, and the files of examples/;
//! * [`operator`]: operator processes a test starts itself, and what operators tell (log
//!   fields, HTTP endpoints);
//! * [`scratch`] and [`openssl`]: private scratch directories, and the one way to run the
//!   OpenSSL CLI.
//!
//! The names nearly every test uses are re-exported here (`common::TestEnv`,
//! `common::CONVERGE`, `common::entry`, ...); benches/cluster includes this file too.
#![allow(dead_code)] // each test binary uses a different part of the harness
#![allow(unused_imports)] // and a different part of what is re-exported below

pub mod cluster;
pub mod env;
pub mod helm;
pub mod hsm;
pub mod kms;
pub mod leak;
pub mod manifests;
pub mod objects;
pub mod openssl;
pub mod operator;
pub mod pauses;
pub mod scratch;

pub use cluster::{client, install_crds, kubeconfig_path};
pub use env::{CONVERGE, OPERATOR_LOG_LEVEL, TestEnv, eventually};
pub use manifests::{example_files, key_manifest, key_version_manifest};
pub use objects::{
    data_digest, entry, entry_names, ready_message, ready_reason, record_of, symmetric_material,
};
pub use operator::http_get;
