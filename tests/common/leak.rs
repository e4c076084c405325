//! The key-material leak check: whether any key keyward wrote into a test's namespace, any
//! AccessKey secret it issued there, or anything a test registered as secret (plaintexts sent to
//! the KMS API) appears, in any encoding, in the logs of the test's operators, in the error
//! responses the test's KMS API calls collected, or in the events and statuses of the test's
//! namespaces.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use keyward::api::{AccessKey, Key, KeyVersion};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

/// The leak check, run when a [`TestEnv`](super::TestEnv) is dropped (its operators already
/// stopped, its namespace not yet deleted). Looked for, in every encoding in
/// [`material_needles`]: every material entry and every AccessKey secret of every Secret keyward
/// manages in the namespaces, and everything registered with [`watch`]. Looked in: every file of
/// the test's log directory (the operator logs, and the error responses collected by
/// [`super::kms::KmsClient`]), after the events and the Key, KeyVersion and AccessKey objects
/// of the namespaces are written there too ([`OBJECTS_FILE`]). A finding names the Secret (or
/// the registered name), the entry, the file and the encoding, never the secret; the files are
/// redacted in place so that nothing printed afterwards (the failure dump's log tails) or kept
/// on disk repeats it.
pub async fn leak_check(client: &Client, namespaces: &[&str], log_dir: &Path) -> Vec<String> {
    let lp = ListParams::default().labels("app.kubernetes.io/managed-by=keyward");
    let mut secrets = Vec::new();
    for namespace in namespaces {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let mut attempts = 0;
        loop {
            match api.list(&lp).await {
                Ok(list) => break secrets.extend(list.items),
                // A test that disturbed the API server may leave it briefly unavailable.
                Err(_) if attempts < 10 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    return vec![format!("cannot list {namespace}'s Secrets to check: {e}")];
                }
            }
        }
    }
    let mut needles = watched_needles(log_dir);
    for secret in &secrets {
        let data = secret.data.clone().unwrap_or_default();
        for (entry, bytes) in &data {
            if is_credential_entry(entry) {
                for (encoding, needle) in secret_needles(&bytes.0) {
                    needles.push((
                        format!("Secret {} entry {entry}", secret.name_any()),
                        encoding,
                        needle,
                    ));
                }
                continue;
            }
            if !is_material_entry(entry) {
                continue;
            }
            let public = public_entry(entry)
                .and_then(|p| data.get(&p))
                .map(|b| &b.0[..]);
            for (encoding, needle) in material_needles(&bytes.0, public) {
                needles.push((
                    format!("Secret {} entry {entry}", secret.name_any()),
                    encoding,
                    needle,
                ));
            }
        }
    }
    if let Err(e) = write_objects(client, namespaces, log_dir).await {
        return vec![format!(
            "cannot read the namespaces' events and objects to check: {e}"
        )];
    }
    scan_logs(log_dir, &needles)
}

/// The file of the log directory that holds what the cluster told about the test's
/// namespaces: their events, and their Keys, KeyVersions and AccessKeys (status included).
pub const OBJECTS_FILE: &str = "cluster-objects.log";

/// Writes the namespaces' events and keyward objects, one JSON document a line, into
/// [`OBJECTS_FILE`], for [`scan_logs`] to read like any log.
async fn write_objects(
    client: &Client,
    namespaces: &[&str],
    log_dir: &Path,
) -> Result<(), kube::Error> {
    let mut lines = Vec::new();
    for namespace in namespaces {
        let lp = ListParams::default();
        for event in Api::<Event>::namespaced(client.clone(), namespace)
            .list(&lp)
            .await?
        {
            lines.push(serde_json::to_string(&event).unwrap_or_default());
        }
        for key in Api::<Key>::namespaced(client.clone(), namespace)
            .list(&lp)
            .await?
        {
            lines.push(serde_json::to_string(&key).unwrap_or_default());
        }
        for version in Api::<KeyVersion>::namespaced(client.clone(), namespace)
            .list(&lp)
            .await?
        {
            lines.push(serde_json::to_string(&version).unwrap_or_default());
        }
        for access_key in Api::<AccessKey>::namespaced(client.clone(), namespace)
            .list(&lp)
            .await?
        {
            lines.push(serde_json::to_string(&access_key).unwrap_or_default());
        }
    }
    lines.push(String::new());
    let _ = std::fs::write(log_dir.join(OBJECTS_FILE), lines.join("\n"));
    Ok(())
}

/// Whether a Secret entry holds an AccessKey secret (the issued Secret's and keyward's own
/// credential copy's).
pub fn is_credential_entry(entry: &str) -> bool {
    entry == "accessKeySecret"
}

/// Where a test's registered secrets are listed: beside its log directory, not in it, so that
/// the list is not itself scanned.
fn watch_list(log_dir: &Path) -> PathBuf {
    log_dir.with_extension("watched")
}

/// Registers `secret` (a plaintext sent to the KMS API, say), named `what`, for the leak check
/// of the test whose log directory is `log_dir`: from then on it must appear in none of the
/// places [`leak_check`] looks. At least 16 bytes, so that it cannot be found by chance.
pub fn watch(log_dir: &Path, what: &str, secret: &[u8]) {
    assert!(
        secret.len() >= MIN_NEEDLE,
        "a watched secret needs at least {MIN_NEEDLE} bytes to be told from chance ({what})"
    );
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let line = serde_json::json!({"what": what, "hex": hex}).to_string();
    let mut list = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(watch_list(log_dir))
        .expect("the leak check's watch list");
    // One write per line: tests register secrets from concurrent calls.
    list.write_all(format!("{line}\n").as_bytes())
        .expect("the leak check's watch list");
}

/// The needles of everything registered with [`watch`]; the list is removed once read.
fn watched_needles(log_dir: &Path) -> Vec<(String, String, Vec<u8>)> {
    let path = watch_list(log_dir);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    let mut needles = Vec::new();
    for line in text.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).expect("a watch list line");
        let hex = entry["hex"].as_str().unwrap_or_default();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        for (encoding, needle) in secret_needles(&bytes) {
            let what = format!("watched {}", entry["what"].as_str().unwrap_or_default());
            needles.push((what, encoding, needle));
        }
    }
    needles
}

/// Every encoding in which a secret that is not a key (an AccessKey secret, a plaintext) could
/// appear: those of [`byte_encodings`], as long as [`MIN_NEEDLE`] at least, and the text
/// percent-encoded as a URL query or form carries it.
pub fn secret_needles(secret: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut needles = byte_encodings("", secret);
    let escaped: String = secret
        .iter()
        .map(|&b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    needles.push(("percent-encoded".into(), escaped.into_bytes()));
    needles.retain(|(_, needle)| needle.len() >= MIN_NEEDLE);
    needles
}

/// Whether a Secret entry holds key material: the store's `<versionId>.key` and
/// `<versionId>.private.pem`, the consumer's `key` and `private.pem`. Public keys, ids and the
/// store's record (`key.json`) are not secret.
pub fn is_material_entry(entry: &str) -> bool {
    entry == "key"
        || entry == "private.pem"
        || entry.ends_with(".key")
        || entry.ends_with(".private.pem")
}

/// The public key entry that goes with a private key entry.
fn public_entry(entry: &str) -> Option<String> {
    Some(format!("{}public.pem", entry.strip_suffix("private.pem")?))
}

/// Needles shorter than this are not looked for: a PEM's short last line (`Ag==`) would be
/// found by chance. Every key has longer needles that cover the same bytes.
const MIN_NEEDLE: usize = 16;

/// Every encoding in which `material` (a Secret entry's bytes) could appear in a log, named:
/// the raw bytes, lower- and uppercase hex, standard and URL-safe base64 with and without
/// padding (also as a substring of a longer base64 text, at each of the three byte
/// alignments), the byte list Rust's `Debug` and JSON print; for a PEM private key also the
/// PEM text (with its newlines escaped too), each base64 body line, the DER bytes and the
/// PKCS#8 privateKey field in all of the byte encodings above, and an EC key's scalar.
/// `public` is the matching public key PEM, if any: needles that also occur in its encodings
/// (parts of an RSA modulus) are not secret and are left out.
pub fn material_needles(material: &[u8], public: Option<&[u8]>) -> Vec<(String, Vec<u8>)> {
    let mut needles = byte_encodings("", material);
    if let Ok(text) = std::str::from_utf8(material)
        && text.starts_with("-----BEGIN")
    {
        needles.push(("PEM text".into(), material.to_vec()));
        needles.push((
            "PEM text, newlines escaped".into(),
            text.replace('\n', "\\n").into_bytes(),
        ));
        for (i, line) in text.lines().filter(|l| !l.starts_with("-----")).enumerate() {
            needles.push((format!("PEM body line {}", i + 1), line.as_bytes().to_vec()));
        }
        if let Ok((_, der)) = pkcs8::der::pem::decode_vec(material) {
            needles.extend(byte_encodings("DER ", &der));
            if let Ok(info) = pkcs8::PrivateKeyInfoRef::try_from(der.as_slice()) {
                let field = info.private_key.as_bytes();
                needles.extend(byte_encodings("PKCS#8 privateKey field ", field));
            }
            if let Some(scalar) = ec_scalar(&der) {
                needles.extend(byte_encodings("EC private scalar ", &scalar));
            }
        }
    }
    let public_forms: Vec<Vec<u8>> = public
        .map(|pem| {
            let mut forms = byte_encodings("", pem);
            if let Ok((_, der)) = pkcs8::der::pem::decode_vec(pem) {
                forms.extend(byte_encodings("", &der));
            }
            forms.into_iter().map(|(_, f)| f).collect()
        })
        .unwrap_or_default();
    needles.retain(|(_, needle)| {
        needle.len() >= MIN_NEEDLE
            && !public_forms
                .iter()
                .any(|form| form.windows(needle.len()).any(|w| w == needle))
    });
    needles
}

/// The secret scalar of a PKCS#8 EC private key (P-256, secp256k1 or SM2).
fn ec_scalar(der: &[u8]) -> Option<Vec<u8>> {
    use pkcs8::DecodePrivateKey;
    if let Ok(key) = p256::SecretKey::from_pkcs8_der(der) {
        return Some(key.to_bytes().to_vec());
    }
    if let Ok(key) = k256::SecretKey::from_pkcs8_der(der) {
        return Some(key.to_bytes().to_vec());
    }
    if let Ok(key) = sm2::SecretKey::from_pkcs8_der(der) {
        return Some(key.to_bytes().to_vec());
    }
    None
}

/// `bytes` raw, as hex, as base64 and as a byte list; `prefix` names what the bytes are.
fn byte_encodings(prefix: &str, bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let list = |sep: &str| {
        let items: Vec<String> = bytes.iter().map(u8::to_string).collect();
        format!("[{}]", items.join(sep)).into_bytes()
    };
    let mut out = vec![
        (format!("{prefix}raw bytes"), bytes.to_vec()),
        (format!("{prefix}hex"), hex.clone().into_bytes()),
        (
            format!("{prefix}uppercase hex"),
            hex.to_uppercase().into_bytes(),
        ),
        (
            format!("{prefix}base64"),
            STANDARD.encode(bytes).into_bytes(),
        ),
        (
            format!("{prefix}base64 unpadded"),
            STANDARD_NO_PAD.encode(bytes).into_bytes(),
        ),
        (
            format!("{prefix}URL-safe base64"),
            URL_SAFE.encode(bytes).into_bytes(),
        ),
        (
            format!("{prefix}URL-safe base64 unpadded"),
            URL_SAFE_NO_PAD.encode(bytes).into_bytes(),
        ),
        (format!("{prefix}byte list (Debug)"), list(", ")),
        (format!("{prefix}byte list (JSON)"), list(",")),
    ];
    // Inside a longer base64 text the bytes start at any offset: for offsets 1 and 2 (mod 3),
    // the characters that depend on these bytes alone.
    for shift in 1..=2usize {
        let mut shifted = vec![0u8; shift];
        shifted.extend_from_slice(bytes);
        let whole = (shifted.len() / 3) * 3;
        for (name, engine) in [
            ("base64", &STANDARD_NO_PAD),
            ("URL-safe base64", &URL_SAFE_NO_PAD),
        ] {
            // Skip the characters mixing in the unknown bytes before (the first 8*shift bits
            // and the rest of their sextet) and after (a partial last group).
            let encoded = engine.encode(&shifted[..whole]);
            let skip = (8 * shift).div_ceil(6);
            if encoded.len() > skip {
                out.push((
                    format!("{prefix}{name} at byte offset {shift} of a longer text"),
                    encoded.as_bytes()[skip..].to_vec(),
                ));
            }
        }
    }
    out
}

/// Looks for every needle in every log file of `log_dir`; returns one line per finding and
/// replaces every byte of every occurrence with `<redacted>` in the files.
fn scan_logs(log_dir: &Path, needles: &[(String, String, Vec<u8>)]) -> Vec<String> {
    if needles.is_empty() {
        return Vec::new();
    }
    let matcher = aho_corasick::AhoCorasick::new(needles.iter().map(|(_, _, n)| n))
        .expect("leak-check patterns");
    let mut findings = std::collections::BTreeSet::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(log_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for path in files {
        let Ok(log) = std::fs::read(&path) else {
            continue;
        };
        let file = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let mut ranges = Vec::new();
        for hit in matcher.find_overlapping_iter(&log) {
            let (entry, encoding, _) = &needles[hit.pattern().as_usize()];
            findings.insert(format!("{entry} is in {file} as {encoding}"));
            ranges.push(hit.range());
        }
        if ranges.is_empty() {
            continue;
        }
        ranges.sort_by_key(|r| r.start);
        let mut redacted = Vec::with_capacity(log.len());
        let mut at = 0;
        for range in ranges {
            if range.start > at {
                redacted.extend_from_slice(&log[at..range.start]);
                redacted.extend_from_slice(b"<redacted>");
            }
            at = at.max(range.end);
        }
        redacted.extend_from_slice(&log[at..]);
        let _ = std::fs::write(&path, redacted);
    }
    findings.into_iter().collect()
}
