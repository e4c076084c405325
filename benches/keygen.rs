//! Key generation per key spec: keyward's code against OpenSSL, measured in the same run.
//! Prints keys per second (median of repeated rounds) and the ratio keyward / OpenSSL.
//!
//!     cargo bench --bench keygen            (KEYGEN_ROUNDS=5 KEYGEN_SECONDS=1 by default)

use std::time::{Duration, Instant};

use keyward::api::KeySpec;
use keyward::kms::material;
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;

/// Keys per second of `generate`, over one round of about `budget`.
fn rate(budget: Duration, mut generate: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u32;
    while n < 3 || start.elapsed() < budget {
        generate();
        n += 1;
    }
    f64::from(n) / start.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// OpenSSL generating the same kind of key and encoding it as keyward does (PKCS#8 + SPKI PEM).
fn openssl_generate(spec: KeySpec) {
    let pkey = match spec {
        KeySpec::AliyunAes256 | KeySpec::AliyunSm4 => {
            let mut key = vec![0u8; if spec == KeySpec::AliyunSm4 { 16 } else { 32 }];
            openssl::rand::rand_bytes(&mut key).unwrap();
            return;
        }
        KeySpec::Rsa2048 => PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(),
        KeySpec::EcP256 | KeySpec::EcP256K | KeySpec::EcSm2 => {
            let nid = match spec {
                KeySpec::EcP256 => Nid::X9_62_PRIME256V1,
                KeySpec::EcP256K => Nid::SECP256K1,
                _ => Nid::SM2,
            };
            let group = EcGroup::from_curve_name(nid).unwrap();
            PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
        }
    };
    let _private = pkey.private_key_to_pem_pkcs8().unwrap();
    let _public = pkey.public_key_to_pem().unwrap();
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
    let rounds = setting("KEYGEN_ROUNDS", 5.0).max(1.0) as usize;
    let seconds = setting("KEYGEN_SECONDS", 1.0);
    let budget = Duration::from_secs_f64(seconds);
    println!("key generation, keys/s, median of {rounds} rounds of {seconds}s (one thread each)");
    println!(
        "{:<16} {:>14} {:>14} {:>16}",
        "key spec", "keyward", "OpenSSL", "keyward/OpenSSL"
    );
    for &spec in KeySpec::ALL {
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        // Interleaved rounds, so both see the same machine load.
        for _ in 0..rounds {
            ours.push(rate(budget, || drop(material::generate(spec).unwrap())));
            theirs.push(rate(budget, || openssl_generate(spec)));
        }
        let (ours, theirs) = (median(ours), median(theirs));
        println!(
            "{:<16} {:>14.1} {:>14.1} {:>16.2}",
            spec.as_str(),
            ours,
            theirs,
            ours / theirs
        );
    }
}
