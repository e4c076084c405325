//! The KMS API's cryptography, measured in one run on this machine:
//!
//! * AES-256-GCM, encrypt + decrypt of 1 KiB with key setup (what one Encrypt and one Decrypt
//!   request do): `ring` against RustCrypto's `aes-gcm`, the measurement behind
//!   `src/kms/crypto/symmetric.rs` using `ring`;
//! * SM4-GCM the same way (`aes-gcm`'s generic GCM over `sm4`);
//! * the whole envelope (`kms::crypto::encrypt` + `decrypt`: IV from the OS, header, context)
//!   for both symmetric specs;
//! * signatures per second for each AsymmetricSign algorithm, and verifications per second.
//!
//! Prints operations per second (median of repeated rounds, one thread).
//!
//!     cargo bench --bench crypto            (CRYPTO_ROUNDS=5 CRYPTO_SECONDS=1 by default)

use std::hint::black_box;
use std::time::{Duration, Instant};

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{AeadInOut, KeyInit, Nonce};
use aes_gcm::{Aes256Gcm, AesGcm};
use keyward::api::{KeySpec, KeyUsage};
use keyward::kms::crypto::asymmetric::{self, Algorithm, PrivateKey, PublicKey, sm2_digest};
use keyward::kms::crypto::{self, EncryptionContext};
use keyward::kms::material::{self, Material};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce as RingNonce, UnboundKey};
use sha2::{Digest, Sha256};

const MESSAGE_LEN: usize = 1024;

/// Operations per second of `op`, over one round of about `budget`.
fn rate(budget: Duration, mut op: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u32;
    while n < 3 || start.elapsed() < budget {
        op();
        n += 1;
    }
    f64::from(n) / start.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// ring AES-256-GCM: set up the key, seal 1 KiB, set up the key again, open it.
fn ring_aes(key: &[u8], iv: [u8; 12], message: &[u8]) {
    let sealing = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).unwrap());
    let mut buf = message.to_vec();
    let tag = sealing
        .seal_in_place_separate_tag(
            RingNonce::assume_unique_for_key(iv),
            Aad::from(b"aad"),
            &mut buf,
        )
        .unwrap();
    let opening = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).unwrap());
    opening
        .open_in_place_separate_tag(
            RingNonce::assume_unique_for_key(iv),
            Aad::from(b"aad"),
            tag,
            &mut buf,
            0..,
        )
        .unwrap();
    black_box(&buf);
}

/// RustCrypto GCM over any 128-bit block cipher (AES-256 or SM4), the same steps.
fn rustcrypto_gcm<C: KeyInit + AeadInOut<NonceSize = U12>>(
    key: &[u8],
    iv: [u8; 12],
    message: &[u8],
) {
    let sealing = C::new_from_slice(key).unwrap();
    let mut buf = message.to_vec();
    let nonce = Nonce::<C>::from(iv);
    let tag = sealing
        .encrypt_inout_detached(&nonce, b"aad", buf.as_mut_slice().into())
        .unwrap();
    let opening = C::new_from_slice(key).unwrap();
    opening
        .decrypt_inout_detached(&nonce, b"aad", buf.as_mut_slice().into(), &tag)
        .unwrap();
    black_box(&buf);
}

fn keys(spec: KeySpec, usage: KeyUsage) -> (PrivateKey, PublicKey) {
    let Material::Asymmetric {
        private_pem,
        public_pem,
    } = material::generate(spec).unwrap()
    else {
        unreachable!()
    };
    (
        PrivateKey::from_pkcs8_pem(spec, usage, &private_pem).unwrap(),
        PublicKey::from_spki_pem(spec, usage, &public_pem).unwrap(),
    )
}

fn main() {
    // `cargo bench` passes --bench; under `cargo test --all-targets` this runs as a quick smoke
    // test of the harness, one short round.
    let measuring = std::env::args().any(|a| a == "--bench");
    let setting = |name: &str, default: f64| {
        let value = std::env::var(name).ok().and_then(|v| v.parse().ok());
        if measuring {
            value.unwrap_or(default)
        } else {
            0.0
        }
    };
    let rounds = setting("CRYPTO_ROUNDS", 5.0).max(1.0) as usize;
    let seconds = setting("CRYPTO_SECONDS", 1.0);
    let budget = Duration::from_secs_f64(seconds);
    let measure =
        |op: &mut dyn FnMut()| median((0..rounds).map(|_| rate(budget, &mut *op)).collect());

    let message = vec![0x5au8; MESSAGE_LEN];
    let key32 = [7u8; 32];
    let key16 = [9u8; 16];
    let iv = [3u8; 12];

    println!(
        "symmetric, encrypt + decrypt of {MESSAGE_LEN} bytes with key setup, per second \
         (median of {rounds} rounds of {seconds}s, one thread)"
    );
    // Interleaved rounds, so both AES implementations see the same machine load.
    let (mut ring_rates, mut rustcrypto_rates) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        ring_rates.push(rate(budget, || ring_aes(&key32, iv, &message)));
        rustcrypto_rates.push(rate(budget, || {
            rustcrypto_gcm::<Aes256Gcm>(&key32, iv, &message)
        }));
    }
    let (ring_rate, rustcrypto_rate) = (median(ring_rates), median(rustcrypto_rates));
    let mib = |ops: f64| ops * 2.0 * MESSAGE_LEN as f64 / (1024.0 * 1024.0);
    println!(
        "{:<40} {:>12.0} /s {:>9.1} MiB/s",
        "AES-256-GCM ring",
        ring_rate,
        mib(ring_rate)
    );
    println!(
        "{:<40} {:>12.0} /s {:>9.1} MiB/s",
        "AES-256-GCM aes-gcm (RustCrypto)",
        rustcrypto_rate,
        mib(rustcrypto_rate)
    );
    println!(
        "{:<40} {:>12.2}",
        "ring / aes-gcm",
        ring_rate / rustcrypto_rate
    );
    let sm4 = measure(&mut || rustcrypto_gcm::<AesGcm<sm4::Sm4, U12>>(&key16, iv, &message));
    println!(
        "{:<40} {:>12.0} /s {:>9.1} MiB/s",
        "SM4-GCM aes-gcm + sm4 (RustCrypto)",
        sm4,
        mib(sm4)
    );

    let context = EncryptionContext::from_pairs([("app", "bench")]);
    for spec in [KeySpec::AliyunAes256, KeySpec::AliyunSm4] {
        let Material::Symmetric { key } = material::generate(spec).unwrap() else {
            unreachable!()
        };
        let (key_id, version) = (
            uuid::Uuid::new_v4().to_string(),
            uuid::Uuid::new_v4().to_string(),
        );
        let ops = measure(&mut || {
            let blob = crypto::encrypt(spec, &key, &key_id, &version, &message, &context).unwrap();
            black_box(crypto::decrypt(spec, &key, &blob, &context).unwrap());
        });
        println!(
            "{:<40} {:>12.0} /s {:>9.1} MiB/s",
            format!("envelope {spec} (keyward)"),
            ops,
            mib(ops)
        );
    }

    println!();
    println!("AsymmetricSign / AsymmetricVerify of a 32-byte digest, per second");
    println!(
        "{:<28} {:<10} {:>12} {:>12}",
        "algorithm", "key spec", "sign/s", "verify/s"
    );
    for (spec, alg) in [
        (KeySpec::Rsa2048, Algorithm::RsaPssSha256),
        (KeySpec::Rsa2048, Algorithm::RsaPkcs1Sha256),
        (KeySpec::EcP256, Algorithm::EcdsaSha256),
        (KeySpec::EcP256K, Algorithm::EcdsaSha256),
        (KeySpec::EcSm2, Algorithm::Sm2Dsa),
    ] {
        let (private, public) = keys(spec, KeyUsage::SignVerify);
        let digest: [u8; 32] = if alg == Algorithm::Sm2Dsa {
            sm2_digest(&public, b"message").unwrap()
        } else {
            Sha256::digest(b"message").into()
        };
        let signature = asymmetric::sign(&private, alg, &digest).unwrap();
        let signs = measure(&mut || {
            black_box(asymmetric::sign(&private, alg, &digest).unwrap());
        });
        let verifies = measure(&mut || {
            assert!(asymmetric::verify(&public, alg, &digest, &signature).unwrap());
        });
        println!(
            "{:<28} {:<10} {:>12.0} {:>12.0}",
            alg.as_str(),
            spec.as_str(),
            signs,
            verifies
        );
    }
}
