//! The HSM half of the KMS API benchmark: a SoftHSM2 token for the operator's HSM keys (made
//! by `hack/softhsm.sh`), and the same operations called on the PKCS#11 module directly by
//! this process, in the same run, as the baseline keyward's overhead is measured against.

use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const SECP256K1: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];

/// A token of the run's own, removed when dropped.
pub struct Token {
    dir: PathBuf,
}

impl Token {
    /// Made before the process starts threads: it points SoftHSM2 (read by the module in this
    /// process and in the operator, which inherits the environment) at the token.
    pub fn init() -> Token {
        let dir =
            std::env::temp_dir().join(format!("keyward-bench-softhsm-{}", std::process::id()));
        let output =
            std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/hack/softhsm.sh"))
                .arg("init")
                .arg(&dir)
                .output()
                .expect("run hack/softhsm.sh");
        assert!(
            output.status.success(),
            "hack/softhsm.sh: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let token = Token { dir };
        // SAFETY: main calls this before it starts any thread.
        unsafe { std::env::set_var("SOFTHSM2_CONF", token.conf()) };
        token
    }

    pub fn conf(&self) -> String {
        self.dir.join("softhsm2.conf").display().to_string()
    }

    /// The operator's flags for this token.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--pkcs11-module".into(),
            MODULE.into(),
            "--pkcs11-token-label".into(),
            "keyward".into(),
            "--pkcs11-pin-file".into(),
            self.dir.join("pin").display().to_string(),
        ]
    }

    fn pin(&self) -> String {
        std::fs::read_to_string(self.dir.join("pin"))
            .expect("the PIN")
            .trim()
            .to_string()
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What is measured on the module directly, each the counterpart of an API operation.
#[derive(Clone, Copy, Debug)]
pub enum Direct {
    EncryptAes,
    DecryptAes,
    SignRsaPss,
    SignP256,
    SignP256k,
    GenerateAes,
    GenerateP256,
    GenerateRsa,
}

impl Direct {
    pub fn label(self) -> &'static str {
        match self {
            Direct::EncryptAes => "C_Encrypt AES-256-GCM 1 KiB",
            Direct::DecryptAes => "C_Decrypt AES-256-GCM 1 KiB",
            Direct::SignRsaPss => "C_Sign RSA-2048 PSS",
            Direct::SignP256 => "C_Sign ECDSA P-256",
            Direct::SignP256k => "C_Sign ECDSA secp256k1",
            Direct::GenerateAes => "C_GenerateKey AES-256 (token object)",
            Direct::GenerateP256 => "C_GenerateKeyPair P-256 (token objects)",
            Direct::GenerateRsa => "C_GenerateKeyPair RSA-2048 (token objects)",
        }
    }
}

/// The module, logged in, with a session holding the keys the operations use.
pub struct Module {
    pkcs11: Pkcs11,
    keys: Session,
    handles: Handles,
}

/// The slot and the keys' handles: what each thread's session works with.
#[derive(Clone, Copy)]
struct Handles {
    slot: Slot,
    aes: ObjectHandle,
    rsa: ObjectHandle,
    p256: ObjectHandle,
    p256k: ObjectHandle,
}

impl Module {
    pub fn open(token: &Token) -> Module {
        let pkcs11 = Pkcs11::new(MODULE).expect("load the module");
        pkcs11
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .expect("C_Initialize");
        let slot = pkcs11.get_slots_with_token().expect("slots")[0];
        let keys = pkcs11.open_rw_session(slot).expect("a session");
        keys.login(UserType::User, Some(&AuthPin::new(token.pin().into())))
            .expect("login");
        let aes = keys
            .generate_key(&Mechanism::AesKeyGen, &aes_template(false))
            .expect("an AES key");
        let (_, rsa) = keys
            .generate_key_pair(
                &Mechanism::RsaPkcsKeyPairGen,
                &rsa_public(false),
                &private(false),
            )
            .expect("an RSA pair");
        let (_, p256) = keys
            .generate_key_pair(
                &Mechanism::EccKeyPairGen,
                &ec_public(P256, false),
                &private(false),
            )
            .expect("a P-256 pair");
        let (_, p256k) = keys
            .generate_key_pair(
                &Mechanism::EccKeyPairGen,
                &ec_public(SECP256K1, false),
                &private(false),
            )
            .expect("a secp256k1 pair");
        Module {
            pkcs11,
            keys,
            handles: Handles {
                slot,
                aes,
                rsa,
                p256,
                p256k,
            },
        }
    }

    /// `threads` threads, each with a session of its own, do `operation` `per_thread` times;
    /// operations per second, from when all are ready to when the last is done.
    pub fn rate(&self, operation: Direct, threads: usize, per_thread: usize) -> f64 {
        let start = Arc::new(Barrier::new(threads + 1));
        let blob = self.sealed();
        let (pkcs11, handles) = (&self.pkcs11, self.handles);
        let started = std::thread::scope(|scope| {
            for _ in 0..threads {
                let (start, blob) = (start.clone(), blob.clone());
                scope.spawn(move || {
                    let session = pkcs11.open_rw_session(handles.slot).expect("a session");
                    start.wait();
                    for _ in 0..per_thread {
                        once(&session, handles, operation, &blob);
                    }
                });
            }
            start.wait();
            Instant::now()
        });
        (threads * per_thread) as f64 / started.elapsed().as_secs_f64()
    }

    fn sealed(&self) -> Vec<u8> {
        let mut iv = [7u8; 12];
        let params = GcmParams::new(&mut iv, b"aad", 128.into()).expect("GCM parameters");
        self.keys
            .encrypt(&Mechanism::AesGcm(params), self.handles.aes, &[b'k'; 1024])
            .expect("C_Encrypt")
    }
}

/// One `operation` with `session`.
fn once(session: &Session, keys: Handles, operation: Direct, blob: &[u8]) {
    let digest = [0x5a; 32];
    match operation {
        Direct::EncryptAes => {
            let mut iv = [0u8; 12];
            getrandom::fill(&mut iv).expect("an IV");
            let params = GcmParams::new(&mut iv, b"aad", 128.into()).expect("GCM");
            session
                .encrypt(&Mechanism::AesGcm(params), keys.aes, &[b'k'; 1024])
                .expect("C_Encrypt");
        }
        Direct::DecryptAes => {
            let mut iv = [7u8; 12];
            let params = GcmParams::new(&mut iv, b"aad", 128.into()).expect("GCM");
            session
                .decrypt(&Mechanism::AesGcm(params), keys.aes, blob)
                .expect("C_Decrypt");
        }
        Direct::SignRsaPss => {
            let pss = Mechanism::RsaPkcsPss(PkcsPssParams {
                hash_alg: MechanismType::SHA256,
                mgf: PkcsMgfType::MGF1_SHA256,
                s_len: 32.into(),
            });
            session.sign(&pss, keys.rsa, &digest).expect("C_Sign");
        }
        Direct::SignP256 => drop(
            session
                .sign(&Mechanism::Ecdsa, keys.p256, &digest)
                .expect("C_Sign"),
        ),
        Direct::SignP256k => drop(
            session
                .sign(&Mechanism::Ecdsa, keys.p256k, &digest)
                .expect("C_Sign"),
        ),
        Direct::GenerateAes => {
            let key = session
                .generate_key(&Mechanism::AesKeyGen, &aes_template(true))
                .expect("C_GenerateKey");
            session.destroy_object(key).expect("C_DestroyObject");
        }
        Direct::GenerateP256 => {
            let (public, private) = session
                .generate_key_pair(
                    &Mechanism::EccKeyPairGen,
                    &ec_public(P256, true),
                    &private(true),
                )
                .expect("C_GenerateKeyPair");
            session.destroy_object(private).expect("C_DestroyObject");
            session.destroy_object(public).expect("C_DestroyObject");
        }
        Direct::GenerateRsa => {
            let (public, private) = session
                .generate_key_pair(
                    &Mechanism::RsaPkcsKeyPairGen,
                    &rsa_public(true),
                    &private(true),
                )
                .expect("C_GenerateKeyPair");
            session.destroy_object(private).expect("C_DestroyObject");
            session.destroy_object(public).expect("C_DestroyObject");
        }
    }
}

fn aes_template(token: bool) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::ValueLen(32.into()),
        Attribute::Token(token),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
    ]
}

fn rsa_public(token: bool) -> Vec<Attribute> {
    vec![
        Attribute::Token(token),
        Attribute::ModulusBits(2048.into()),
        Attribute::PublicExponent(vec![1, 0, 1]),
        Attribute::Verify(true),
    ]
}

fn ec_public(curve: &[u8], token: bool) -> Vec<Attribute> {
    vec![
        Attribute::Token(token),
        Attribute::EcParams(curve.to_vec()),
        Attribute::Verify(true),
    ]
}

fn private(token: bool) -> Vec<Attribute> {
    vec![
        Attribute::Token(token),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
    ]
}
