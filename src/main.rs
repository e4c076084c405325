//! The `keyward` binary: `keyward run` (the controller) and `keyward crd` (the CRD YAML).

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use keyward::cluster::Kube;
use keyward::hsm::{Hsm, Pkcs11Config};
use keyward::kms::rules::{HsmSupport, RuleSettings};
use keyward::kms::schedule::{Interval, parse_interval};
use keyward::plan::PlanSettings;
use keyward::reconcile::{self, Context, Scope};
use keyward::runtime::http;
use keyward::runtime::leader::{Candidate, LeaseConfig};
use keyward::runtime::metrics::Telemetry;
use keyward::runtime::shutdown::Shutdown;
use keyward::service::server::Transport;

#[derive(Parser)]
#[command(
    name = "keyward",
    version,
    about = "KMS-grade customer master keys for Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller against the cluster of the current kubeconfig (or in-cluster config).
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions as YAML.
    Crd {
        /// Write one file per CRD into this directory instead (as in the repository's crds/).
        #[arg(long)]
        out_dir: Option<std::path::PathBuf>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The region in ARNs; a mainland-China region (cn-*, not cn-hongkong) makes HSM keys
    /// default to Aliyun_SM4.
    #[arg(long, env = "KEYWARD_REGION", default_value = "local")]
    region: String,

    /// The account id in ARNs and Creator (default: the UID of the kube-system namespace).
    #[arg(long, env = "KEYWARD_ACCOUNT_ID")]
    account_id: Option<String>,

    /// Watch Keys in this namespace only (default: all namespaces).
    #[arg(long, env = "KEYWARD_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,

    /// The namespace that holds every key's material store: keyward's own, never a tenant's
    /// (default: $POD_NAMESPACE, else `keyward`). Tenants must not be able to read or write
    /// Secrets there.
    #[arg(long, env = "KEYWARD_STORE_NAMESPACE")]
    store_namespace: Option<String>,

    /// Shortest rotationInterval accepted, integer[unit] (the KMS: 7d).
    #[arg(long, env = "KEYWARD_MIN_ROTATION_INTERVAL", default_value = "7d", value_parser = interval_arg)]
    min_rotation_interval: Interval,

    /// Longest rotationInterval accepted, integer[unit] (the KMS: 730d).
    #[arg(long, env = "KEYWARD_MAX_ROTATION_INTERVAL", default_value = "730d", value_parser = interval_arg)]
    max_rotation_interval: Interval,

    /// Shortest time between two versions of an asymmetric key, integer[unit] (the KMS: 7d).
    #[arg(long, env = "KEYWARD_KEY_VERSION_MIN_INTERVAL", default_value = "7d", value_parser = interval_arg)]
    key_version_min_interval: Interval,

    /// Most asymmetric key versions each namespace's keys may hold, initial versions included
    /// (the KMS: 50 per user and region; a namespace is keyward's user).
    #[arg(
        long,
        env = "KEYWARD_MAX_ASYMMETRIC_KEY_VERSIONS",
        default_value_t = 50
    )]
    max_asymmetric_key_versions: usize,

    /// The length of one "day" of a pending deletion window, integer[unit]. For tests and
    /// development only (for example 1s): in production a day is a day.
    #[arg(long, env = "KEYWARD_PENDING_WINDOW_UNIT", default_value = "1d", value_parser = interval_arg)]
    pending_window_unit: Interval,

    /// Most Keys (and, separately, material stores) reconciled at once. Past a few dozen,
    /// more only adds API connections and TLS handshakes: the API server is the limit.
    #[arg(long, env = "KEYWARD_CONCURRENT_RECONCILES", default_value_t = 32,
        value_parser = clap::value_parser!(u16).range(1..))]
    concurrent_reconciles: u16,

    /// Serve /healthz, /readyz and /metrics on this address.
    #[arg(long, env = "KEYWARD_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: std::net::SocketAddr,

    /// Serve the KMS API (Alibaba Cloud KMS's RPC API, 2016-01-20) on this address; off when
    /// unset. Every replica serves it, leader or not.
    #[arg(long, env = "KEYWARD_KMS_API_ADDR")]
    kms_api_addr: Option<std::net::SocketAddr>,

    /// The KMS API's TLS certificate chain (PEM), e.g. a cert-manager Secret's tls.crt.
    #[arg(long, env = "KEYWARD_KMS_API_TLS_CERT", requires = "kms_api_tls_key")]
    kms_api_tls_cert: Option<std::path::PathBuf>,

    /// The private key (PEM) of --kms-api-tls-cert.
    #[arg(long, env = "KEYWARD_KMS_API_TLS_KEY", requires = "kms_api_tls_cert")]
    kms_api_tls_key: Option<std::path::PathBuf>,

    /// Serve the KMS API over plain HTTP: only for local development and tests (credentials
    /// and plaintexts would cross the network unencrypted).
    #[arg(
        long,
        env = "KEYWARD_KMS_API_INSECURE_HTTP",
        conflicts_with = "kms_api_tls_cert"
    )]
    kms_api_insecure_http: bool,

    /// Signed requests whose nonces the API remembers, per replica, for the 15 minutes a
    /// signature is valid (on the order of 100 bytes each, estimated): past it, signed requests are refused with 503
    /// until nonces expire. The default allows about 111 signed requests/s sustained.
    #[arg(long, env = "KEYWARD_KMS_API_NONCE_CAPACITY", default_value_t = keyward::service::signing::NonceCache::DEFAULT_CAPACITY)]
    kms_api_nonce_capacity: usize,

    /// The PKCS#11 module (a shared library) of the HSM that `protectionLevel: HSM` keys are
    /// generated and used in; without it HSM keys are refused (docs/hsm.md).
    #[arg(long, env = "KEYWARD_PKCS11_MODULE", requires = "pkcs11_token_label")]
    pkcs11_module: Option<std::path::PathBuf>,

    /// The label of the token in the module that holds keyward's keys.
    #[arg(long, env = "KEYWARD_PKCS11_TOKEN_LABEL", requires = "pkcs11_module")]
    pkcs11_token_label: Option<String>,

    /// A file holding the token's user PIN (a trailing newline is ignored), e.g. a mounted
    /// Secret. Else the PIN is read from $KEYWARD_PKCS11_PIN, never from the command line.
    #[arg(long, env = "KEYWARD_PKCS11_PIN_FILE", requires = "pkcs11_module")]
    pkcs11_pin_file: Option<std::path::PathBuf>,

    /// Elect a leader among replicas with a coordination.k8s.io Lease; only the leader runs the
    /// controllers, and it stops at once if it loses the Lease.
    #[arg(long, env = "KEYWARD_LEADER_ELECT")]
    leader_elect: bool,

    /// Namespace of the leader Lease (default: $POD_NAMESPACE, else `default`).
    #[arg(long, env = "KEYWARD_LEADER_ELECTION_NAMESPACE")]
    leader_election_namespace: Option<String>,

    /// Name of the leader Lease.
    #[arg(long, env = "KEYWARD_LEADER_ELECTION_LEASE", default_value = "keyward")]
    leader_election_lease: String,

    /// How long the Lease stays valid without renewal, integer[unit]: a standby takes over
    /// within about this long after the leader dies.
    #[arg(
        long,
        env = "KEYWARD_LEADER_ELECTION_LEASE_DURATION",
        default_value = "15s",
        value_parser = interval_arg
    )]
    leader_election_lease_duration: Interval,

    /// Log filter, as RUST_LOG (for example info, or keyward=debug,kube=info).
    #[arg(long, env = "KEYWARD_LOG_LEVEL", default_value = "info")]
    log_level: String,

    /// Log format.
    #[arg(long, env = "KEYWARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The longest a rotating key waits before its schedule is looked at again: the most a
/// wall-clock jump or a suspended process can delay a rotation.
const MAX_REQUEUE: std::time::Duration = std::time::Duration::from_secs(600);

/// How long after SIGTERM or SIGINT the process may take to stop, reconciles in flight and the
/// Lease's release included, before it exits anyway: well within Kubernetes' default 30 s.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The most a leader waits, once its controllers have stopped, to hand the Lease over.
const RELEASE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The most the process waits, once its controllers have stopped, for its last events to be
/// posted.
const EVENT_FLUSH: std::time::Duration = std::time::Duration::from_secs(1);

fn interval_arg(text: &str) -> Result<Interval, String> {
    parse_interval(text).map_err(|e| format!("{text:?}: {e}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd { out_dir } => print_crds(out_dir.as_deref()),
        Command::Run(args) => run(*args).await,
    }
}

fn print_crds(out_dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    let crds = keyward::api::crds();
    match out_dir {
        None => {
            let documents: Vec<String> = crds.iter().map(keyward::api::crd_yaml).collect();
            print!("{}", documents.join("---\n"));
        }
        Some(dir) => {
            for crd in &crds {
                let path = dir.join(format!("{}.yaml", kube::ResourceExt::name_any(crd)));
                std::fs::write(&path, keyward::api::crd_yaml(crd))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
    }
    Ok(())
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(&args.log_level, args.log_format)?;
    // First, so that no signal finds the process without its handler.
    let shutdown = Shutdown::on_signals(SHUTDOWN_GRACE).context("listening for SIGTERM")?;
    warn_about_development_aids(&args);
    anyhow::ensure!(
        args.min_rotation_interval <= args.max_rotation_interval,
        "--min-rotation-interval {} is longer than --max-rotation-interval {}",
        args.min_rotation_interval,
        args.max_rotation_interval
    );
    let hsm = open_hsm(&args).await?;
    let client = keyward::cluster::client()
        .await
        .context("no usable kubeconfig or in-cluster config")?;
    let kube = Kube::new(client, std::env::var("HOSTNAME").ok());
    let account_id = match args.account_id {
        Some(id) => id,
        None => kube
            .cluster_account_id()
            .await
            .context("reading the kube-system namespace for the default --account-id")?,
    };
    let settings = PlanSettings {
        rules: RuleSettings {
            region: args.region,
            min_rotation_interval: args.min_rotation_interval,
            max_rotation_interval: args.max_rotation_interval,
            hsm: hsm.as_ref().map(|hsm| HsmSupport {
                module: hsm.module().to_string(),
                unsupported: hsm.capabilities().unsupported.clone(),
            }),
        },
        account_id,
        max_requeue: MAX_REQUEUE,
        key_version_min_interval: args.key_version_min_interval,
        max_asymmetric_versions: args.max_asymmetric_key_versions,
        pending_window_unit: args.pending_window_unit,
    };
    tracing::info!(
        region = %settings.rules.region, account_id = %settings.account_id,
        namespace = args.watch_namespace.as_deref().unwrap_or("(all)"), "keyward starting"
    );
    let store_namespace = args
        .store_namespace
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "keyward".into());
    kube.check_namespace(&store_namespace)
        .await
        .with_context(|| format!("checking --store-namespace {store_namespace}"))?;
    tracing::info!(%store_namespace, "material stores are kept in the store namespace");
    let scope = Scope {
        namespace: args.watch_namespace,
        store_namespace,
        concurrency: args.concurrent_reconciles,
    };
    let telemetry = Arc::new(Telemetry::new(settings.max_asymmetric_versions));
    if let Some(hsm) = hsm.clone() {
        telemetry.also_render(Box::new(move |out| hsm.render_metrics(out)));
    }
    let (listener, http_addr) = http::bind(args.http_addr)
        .await
        .with_context(|| format!("binding --http-addr {}", args.http_addr))?;
    tracing::info!(%http_addr, "serving /healthz, /readyz and /metrics");
    tokio::spawn(http::serve(listener, telemetry.clone()));
    if let Some(addr) = args.kms_api_addr {
        let transport = match (&args.kms_api_tls_cert, &args.kms_api_tls_key) {
            (Some(cert), Some(key)) => Transport::Tls(keyward::service::tls::acceptor(cert, key)?),
            _ if args.kms_api_insecure_http => Transport::Plain,
            _ => anyhow::bail!(
                "--kms-api-addr needs --kms-api-tls-cert and --kms-api-tls-key (or, for local \
                 development only, --kms-api-insecure-http)"
            ),
        };
        let api = ApiSettings {
            rules: settings.rules.clone(),
            nonce_capacity: args.kms_api_nonce_capacity,
            hsm: hsm.clone(),
        };
        serve_kms_api(addr, transport, &kube, &scope, api, &telemetry).await?;
    }
    let ctx =
        Arc::new(Context::new(kube.clone(), settings, scope, telemetry.clone()).with_hsm(hsm));

    if args.leader_elect {
        let config = lease_config(
            args.leader_election_namespace,
            args.leader_election_lease,
            args.leader_election_lease_duration,
        );
        let identity = config.identity.clone();
        let candidate = Candidate::new(kube.client().clone(), config);
        run_as_candidate(ctx, candidate, identity, shutdown).await;
    } else {
        telemetry.set_leader(true);
        reconcile::run(ctx, shutdown).await;
    }
    kube.flush_events(EVENT_FLUSH).await;
    tracing::info!("keyward stopped");
    Ok(())
}

/// What the KMS API is configured with, besides where it listens.
struct ApiSettings {
    rules: RuleSettings,
    nonce_capacity: usize,
    hsm: Option<Hsm>,
}

/// Opens the HSM of `--pkcs11-module`, if one is set: the token must be reachable and the PIN
/// right, or keyward does not start. Logs which key specs the module can hold.
async fn open_hsm(args: &RunArgs) -> anyhow::Result<Option<Hsm>> {
    let (Some(module), Some(token_label)) = (&args.pkcs11_module, &args.pkcs11_token_label) else {
        return Ok(None);
    };
    let pin = match &args.pkcs11_pin_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading --pkcs11-pin-file {}", path.display()))?,
        None => std::env::var("KEYWARD_PKCS11_PIN").map_err(|_| {
            anyhow::anyhow!(
                "--pkcs11-module needs the token's user PIN: set --pkcs11-pin-file (a file, e.g. \
                 a mounted Secret) or $KEYWARD_PKCS11_PIN"
            )
        })?,
    };
    let config = Pkcs11Config {
        module: module.clone(),
        token_label: token_label.clone(),
        pin: pin.trim_end_matches(['\n', '\r']).to_string().into(),
    };
    let hsm = tokio::task::spawn_blocking(move || Hsm::open(config))
        .await?
        .with_context(|| format!("opening the HSM token {token_label:?} of --pkcs11-module"))?;
    let capabilities = hsm.capabilities();
    let supported: Vec<&str> = capabilities.supported.iter().map(|s| s.as_str()).collect();
    tracing::info!(module = %hsm.module(), token = %hsm.token_label(),
        supported = %supported.join(","), "HSM token reachable; HSM keys are generated in it");
    for (spec, why) in &capabilities.unsupported {
        tracing::info!(key_spec = %spec, reason = %why, "the HSM cannot hold this key spec");
    }
    for (algorithm, why) in &capabilities.unsupported_algorithms {
        tracing::info!(%algorithm, reason = %why,
            "the HSM cannot run this algorithm; HSM keys refuse it");
    }
    Ok(Some(hsm))
}

/// Starts the KMS API on `addr`, with its own caches (a standby serves it too).
async fn serve_kms_api(
    addr: std::net::SocketAddr,
    transport: Transport,
    kube: &Kube,
    scope: &Scope,
    settings: ApiSettings,
    telemetry: &Telemetry,
) -> anyhow::Result<()> {
    let (caches, watches) = keyward::service::caches::Caches::start(kube.client().clone(), scope);
    tokio::spawn(watches);
    let ctx = Arc::new(keyward::service::ApiContext {
        kube: kube.clone(),
        watch_namespace: scope.namespace.clone(),
        rules: settings.rules,
        caches,
        nonces: keyward::service::signing::NonceCache::new(settings.nonce_capacity),
        authorizer: Default::default(),
        token_reviews: Default::default(),
        stats: Default::default(),
        hsm: settings.hsm,
    });
    let gate = ctx.clone();
    telemetry.also_ready_when(Box::new(move || gate.caches.synced()));
    let section = ctx.clone();
    telemetry.also_render(Box::new(move |out| section.render_metrics(out)));
    let (listener, bound) = http::bind(addr)
        .await
        .with_context(|| format!("binding --kms-api-addr {addr}"))?;
    match transport {
        Transport::Tls(_) => tracing::info!(kms_api_addr = %bound, "serving the KMS API (HTTPS)"),
        Transport::Plain => tracing::warn!(kms_api_addr = %bound,
            "serving the KMS API over plain HTTP (--kms-api-insecure-http): for development only"),
    }
    tokio::spawn(keyward::service::server::serve(listener, transport, ctx));
    Ok(())
}

/// The Lease this replica competes for, and the identity it holds it under: the pod name and
/// a random suffix, so that a restarted pod is not taken for the one before it.
fn lease_config(namespace: Option<String>, name: String, duration: Interval) -> LeaseConfig {
    let identity = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .map(|name| format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]))
        .unwrap_or_else(|_| uuid::Uuid::new_v4().to_string());
    LeaseConfig {
        namespace: namespace
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into()),
        name,
        identity,
        duration: std::time::Duration::from_secs(duration.as_secs()),
    }
}

/// Waits for the leader Lease, then runs the controllers for as long as it is held, until
/// `shutdown`. A replica that loses the Lease exits at once: another may hold it already.
async fn run_as_candidate(
    ctx: Arc<Context>,
    candidate: Candidate,
    identity: String,
    shutdown: Shutdown,
) {
    let telemetry = ctx.telemetry.clone();
    // A standby has nothing to sync: it is ready while it waits.
    telemetry.set_ready(true);
    tracing::info!(%identity, "waiting for the leader Lease");
    let won = tokio::select! {
        won = candidate.acquire() => won,
        () = shutdown.requested() => {
            // A write taking the Lease may have been in flight: hand it on if it was.
            candidate.release(RELEASE_TIMEOUT).await;
            return;
        }
    };
    tracing::info!(%identity, "acquired the leader Lease");
    telemetry.set_ready(false);
    telemetry.set_leader(true);
    tokio::select! {
        // The controllers stop only at `shutdown`, with nothing left in flight: a standby may
        // take over at once.
        () = reconcile::run(ctx, shutdown) => candidate.release(RELEASE_TIMEOUT).await,
        () = candidate.hold(won) => {
            // Another replica may hold the Lease already: not one more write.
            tracing::error!(%identity, "lost the leader Lease; stopping at once");
            std::process::exit(1);
        }
    }
}

/// The flags that shorten a time the KMS fixes, for tests and development: each is logged as
/// a warning at start-up while in effect, so that none runs in production unnoticed.
fn warn_about_development_aids(args: &RunArgs) {
    let (day, week) = (Interval::from_days(1), Interval::from_days(7));
    let aids = [
        (
            args.pending_window_unit != day,
            "--pending-window-unit",
            args.pending_window_unit,
            day,
            "one day of a deletion's pending window lasts",
        ),
        (
            args.min_rotation_interval < week,
            "--min-rotation-interval",
            args.min_rotation_interval,
            week,
            "keys may rotate every",
        ),
        (
            args.key_version_min_interval < week,
            "--key-version-min-interval",
            args.key_version_min_interval,
            week,
            "asymmetric keys may get a new version every",
        ),
    ];
    for (_, flag, value, kms, effect) in aids.into_iter().filter(|aid| aid.0) {
        tracing::warn!(
            flag, %value, kms = %kms,
            "development aid in effect: {effect} {value} instead of {kms}; not for production"
        );
    }
}

fn init_logging(filter: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).context("invalid --log-level")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}
