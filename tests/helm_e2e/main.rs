//! The Helm chart (charts/keyward), proven with the real Helm v4 SDK and the real API server.
//!
//! Helm runs through hack/helm.py (helm-python-sdk, which bundles Helm v4's Go SDK; the script
//! creates its own virtualenv on first use). The rendering tests check the objects the chart
//! makes; the cluster tests install, upgrade and uninstall it, and run the operator as a local
//! process with the Deployment's own arguments and the chart's ServiceAccount (impersonated),
//! so that every Key and KeyVersion of examples/ reconciling proves the chart's RBAC is enough.
//!
//! Server-side apply, on the 1.20 test server: Helm v4 installs with server-side apply by
//! default. That fails there for the CRDs: the server's typed patch refuses the CEL
//! `x-kubernetes-validations` ("failed to create typed patch object: ...
//! x-kubernetes-validations: field not declared in schema"), after every other object was
//! applied, leaving a failed release. Before that, Helm's client-side OpenAPI validation
//! refuses the same unknown field. So the tests install with `--server-side false
//! --disable-openapi-validation` (Helm CLI: `--server-side=false
//! --disable-openapi-validation`): client-side apply creates the CRDs, and the 1.20 server
//! drops the CEL rules as it does for `kubectl create`. Upgrades keep the release's apply
//! method (Helm's "auto"), so they are client-side too. docs/operations.md tells users the same.
//!
//! Where things are: Helm itself is run below; [`chart`] reads what the chart renders and
//! what it should render (rules, values); [`rendering`] holds the tests that lint and render
//! the chart; [`cluster`] installs releases and runs the operator as the chart would;
//! [`install`] holds the tests on the API server. [`kms_api`] and [`hsm`] render the KMS API's
//! and the PKCS#11 module's values; [`kms_api_install`] and [`hsm_install`] put them on the
//! API server.

#[path = "../common/mod.rs"]
mod common;

mod chart;
mod cluster;
mod hsm;
mod hsm_install;
mod install;
mod kms_api;
mod kms_api_install;
mod rendering;

use common::helm::{CHART, helm, helm_result};
