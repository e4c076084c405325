//! The PKCS#11 backend of `protectionLevel: HSM` keys: every version is generated inside the
//! token, stays there as a sensitive, non-extractable object, and every operation with it runs
//! in the module (docs/hsm.md).
//!
//! One PKCS#11 context per process ([`Hsm`], shared by the controllers and the KMS API). A
//! session is used by one thread at a time: operations run on blocking threads, each with a
//! session taken from an idle pool and handed back after. One session stays open for the life of
//! the process, holding the user login that every session of the process shares.

mod capability;
mod object;
mod ops;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as Pkcs11Error, RvError};
use cryptoki::object::{ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

pub use capability::Capabilities;
pub use object::{VersionObjects, derived_key_id, derived_version_id};
pub use ops::{Generated, Token};

use crate::api::KeySpec;

/// Where the token is and how to log in to it (`--pkcs11-*`).
pub struct Pkcs11Config {
    pub module: PathBuf,
    pub token_label: String,
    pub pin: AuthPin,
}

/// Why an HSM operation failed. Messages name the module, token, key and step; never a PIN or
/// key bytes.
#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    #[error("PKCS#11 {step} failed: {source}")]
    Module {
        step: &'static str,
        #[source]
        source: Pkcs11Error,
    },
    #[error("no slot of PKCS#11 module {module} holds a token labelled {label:?} (tokens: {seen})")]
    TokenMissing {
        module: String,
        label: String,
        seen: String,
    },
    #[error("the HSM token holds no key object for {0}")]
    ObjectMissing(VersionObjects),
    #[error("the HSM token holds a private key but no public key for {0}")]
    HalfPair(VersionObjects),
    #[error("PKCS#11 module {module} cannot hold {spec} keys: {why}")]
    Unsupported {
        module: String,
        spec: KeySpec,
        why: String,
    },
    #[error("a blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// `step` as the name of a failed PKCS#11 call.
fn failed(step: &'static str) -> impl FnOnce(Pkcs11Error) -> HsmError {
    move |source| HsmError::Module { step, source }
}

/// The process's one PKCS#11 context, logged in to the configured token.
#[derive(Clone)]
pub struct Hsm(Arc<Inner>);

struct Inner {
    pkcs11: Pkcs11,
    slot: Slot,
    module: String,
    token_label: String,
    capabilities: Capabilities,
    /// Sessions no thread is using.
    idle: Mutex<Vec<Session>>,
    /// Object handles already found, by version and class: token object handles hold across
    /// the process's sessions, so a hot key is found once, not once per operation.
    handles: Mutex<HashMap<(Vec<u8>, cryptoki_sys::CK_OBJECT_CLASS), ObjectHandle>>,
    /// One generation at a time: "find, else generate" must not run twice at once for a version.
    generating: Mutex<()>,
    /// Objects on the token that no store records, as the last audit found.
    unrecorded: AtomicUsize,
    /// Holds the user login for the process (it ends when the last session closes).
    _login: Mutex<Session>,
}

/// Idle sessions kept for reuse; more are opened when needed and closed when handed back.
const MAX_IDLE_SESSIONS: usize = 32;

impl Hsm {
    /// Loads the module, finds the token by label and logs in, then reads what the token
    /// supports. Blocking: run it before the runtime is busy, or on a blocking thread.
    pub fn open(config: Pkcs11Config) -> Result<Hsm, HsmError> {
        let module = config.module.display().to_string();
        let pkcs11 = load(&config.module)?;
        let slot = find_token(&pkcs11, &config.token_label, &module)?;
        let login = pkcs11
            .open_rw_session(slot)
            .map_err(failed("C_OpenSession"))?;
        match login.login(UserType::User, Some(&config.pin)) {
            Ok(()) | Err(Pkcs11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(failed("C_Login")(e)),
        }
        // Each mechanism asked for by type: the whole list holds vendor mechanisms that the
        // PKCS#11 crate reports, one error line each, as unknown.
        let capabilities = capability::discover(&login, |mechanism| {
            pkcs11.get_mechanism_info(slot, mechanism).is_ok()
        });
        Ok(Hsm(Arc::new(Inner {
            pkcs11,
            slot,
            module,
            token_label: config.token_label,
            capabilities,
            idle: Mutex::default(),
            handles: Mutex::default(),
            generating: Mutex::default(),
            unrecorded: AtomicUsize::new(0),
            _login: Mutex::new(login),
        })))
    }

    /// The module's path, as configured.
    pub fn module(&self) -> &str {
        &self.0.module
    }

    pub fn token_label(&self) -> &str {
        &self.0.token_label
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.0.capabilities
    }

    /// Records what the start-up audit found: objects no store records.
    pub fn set_unrecorded(&self, count: usize) {
        self.0.unrecorded.store(count, Ordering::Relaxed);
    }

    /// The HSM's series, in the Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        use crate::runtime::metrics::header;
        header(
            out,
            "keyward_hsm_key_spec_supported",
            "gauge",
            "1 for each key spec the PKCS#11 module can generate and use, 0 for the others.",
        );
        for spec in KeySpec::ALL {
            let supported = u8::from(self.0.capabilities.supports(*spec));
            let _ = writeln!(
                out,
                "keyward_hsm_key_spec_supported{{key_spec=\"{spec}\"}} {supported}"
            );
        }
        header(
            out,
            "keyward_hsm_orphaned_objects",
            "gauge",
            "Key objects on the HSM token that no key's store records, as found at start-up \
             (docs/hsm.md: inspect them with pkcs11-tool).",
        );
        let _ = writeln!(
            out,
            "keyward_hsm_orphaned_objects {}",
            self.0.unrecorded.load(Ordering::Relaxed)
        );
    }

    /// Runs `operation` on a blocking thread with a session of its own.
    pub async fn run<R, F>(&self, operation: F) -> Result<R, HsmError>
    where
        R: Send + 'static,
        F: FnOnce(&Token<'_>) -> Result<R, HsmError> + Send + 'static,
    {
        let hsm = self.clone();
        tokio::task::spawn_blocking(move || hsm.run_blocking(operation)).await?
    }

    /// Runs `operation` on this thread with a session of its own.
    pub fn run_blocking<R>(
        &self,
        operation: impl FnOnce(&Token<'_>) -> Result<R, HsmError>,
    ) -> Result<R, HsmError> {
        let session = self.take_session()?;
        let result = operation(&Token::new(self, &session));
        // A session the module no longer knows is closed rather than handed to the next caller.
        let lost = matches!(
            &result,
            Err(HsmError::Module {
                source: Pkcs11Error::Pkcs11(
                    RvError::SessionHandleInvalid
                        | RvError::SessionClosed
                        | RvError::DeviceRemoved
                        | RvError::TokenNotPresent,
                    _
                ),
                ..
            })
        );
        if !lost {
            self.give_back(session);
        }
        result
    }

    fn take_session(&self) -> Result<Session, HsmError> {
        if let Some(session) = self.0.idle.lock().expect("idle sessions").pop() {
            return Ok(session);
        }
        self.0
            .pkcs11
            .open_rw_session(self.0.slot)
            .map_err(failed("C_OpenSession"))
    }

    fn give_back(&self, session: Session) {
        let mut idle = self.0.idle.lock().expect("idle sessions");
        if idle.len() < MAX_IDLE_SESSIONS {
            idle.push(session);
        }
    }

    fn cached_handle(&self, id: &[u8], class: ObjectClass) -> Option<ObjectHandle> {
        let handles = self.0.handles.lock().expect("object handles");
        handles.get(&(id.to_vec(), *class)).copied()
    }

    fn remember_handle(&self, id: &[u8], class: ObjectClass, handle: ObjectHandle) {
        let mut handles = self.0.handles.lock().expect("object handles");
        handles.insert((id.to_vec(), *class), handle);
    }

    fn forget_handles(&self, id: &[u8]) {
        let mut handles = self.0.handles.lock().expect("object handles");
        handles.retain(|(cached, _), _| cached != id);
    }
}

impl std::fmt::Debug for Hsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hsm")
            .field("module", &self.0.module)
            .field("token_label", &self.0.token_label)
            .finish_non_exhaustive()
    }
}

fn load(module: &Path) -> Result<Pkcs11, HsmError> {
    let pkcs11 = Pkcs11::new(module).map_err(failed("loading the module"))?;
    // The module may use the OS's locks: sessions of this process run on many threads.
    pkcs11
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(failed("C_Initialize"))?;
    Ok(pkcs11)
}

fn find_token(pkcs11: &Pkcs11, label: &str, module: &str) -> Result<Slot, HsmError> {
    let slots = pkcs11
        .get_slots_with_initialized_token()
        .map_err(failed("C_GetSlotList"))?;
    let mut seen = Vec::new();
    for slot in slots {
        let info = pkcs11
            .get_token_info(slot)
            .map_err(failed("C_GetTokenInfo"))?;
        // Labels are blank-padded to 32 bytes on the wire.
        let found = info.label().trim_end();
        if found == label {
            return Ok(slot);
        }
        seen.push(format!("{found:?}"));
    }
    Err(HsmError::TokenMissing {
        module: module.to_string(),
        label: label.to_string(),
        seen: match seen.is_empty() {
            true => "none".into(),
            false => seen.join(", "),
        },
    })
}
