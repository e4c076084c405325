//! How a key version's objects are named on the token, and the templates they are made with.
//!
//! Every object of a version carries the same `CKA_ID`, derived from its KeyId and
//! KeyVersionId, and the `CKA_LABEL` `keyward/<KeyId>/<KeyVersionId>`: the id finds the objects
//! again (a fixed-length attribute every token indexes), the label tells a person (and the
//! start-up audit) whose they are.

use std::fmt;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use sha2::{Digest, Sha256};

use crate::api::{KeySpec, KeyUsage};

/// What every object label starts with.
const LABEL_PREFIX: &str = "keyward/";

/// Domain separation of the id derivation; bumped only with a new naming scheme.
const ID_DOMAIN: &[u8] = b"keyward-hsm-v1";

/// DER of the named curve OIDs (`CKA_EC_PARAMS`).
const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const SECP256K1_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];

/// The token objects of one key version: found by [`VersionObjects::id`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VersionObjects {
    pub key_id: String,
    pub key_version_id: String,
}

impl VersionObjects {
    pub fn new(key_id: &str, key_version_id: &str) -> Self {
        VersionObjects {
            key_id: key_id.to_string(),
            key_version_id: key_version_id.to_string(),
        }
    }

    /// `CKA_ID`: the first 16 bytes of SHA-256("keyward-hsm-v1" NUL KeyId NUL KeyVersionId).
    pub fn id(&self) -> Vec<u8> {
        let digest = Sha256::new()
            .chain_update(ID_DOMAIN)
            .chain_update([0])
            .chain_update(self.key_id.as_bytes())
            .chain_update([0])
            .chain_update(self.key_version_id.as_bytes())
            .finalize();
        digest[..16].to_vec()
    }

    /// `CKA_LABEL`: `keyward/<KeyId>/<KeyVersionId>`.
    pub fn label(&self) -> String {
        format!("{LABEL_PREFIX}{}/{}", self.key_id, self.key_version_id)
    }

    /// The version a label names, if it is one of keyward's.
    pub fn from_label(label: &str) -> Option<Self> {
        let (key_id, key_version_id) = label.strip_prefix(LABEL_PREFIX)?.split_once('/')?;
        (!key_id.is_empty() && !key_version_id.is_empty() && !key_version_id.contains('/'))
            .then(|| VersionObjects::new(key_id, key_version_id))
    }

    fn naming(&self) -> [Attribute; 2] {
        [
            Attribute::Id(self.id()),
            Attribute::Label(self.label().into_bytes()),
        ]
    }
}

/// The KeyId of a new HSM key: derived from its Key object's UID, so that every attempt to
/// create the key (a crash may end one after its objects were generated) names the same
/// objects. A UUID (version 8).
pub fn derived_key_id(key_uid: &str) -> String {
    derived_uuid(&[b"key", key_uid.as_bytes()])
}

/// The id of an HSM key's version number `ordinal` (0 for the initial version): every attempt
/// to add that version names the same objects, and finds those a crashed attempt generated.
pub fn derived_version_id(key_id: &str, ordinal: usize) -> String {
    derived_uuid(&[
        b"version",
        key_id.as_bytes(),
        ordinal.to_string().as_bytes(),
    ])
}

fn derived_uuid(parts: &[&[u8]]) -> String {
    let mut hash = Sha256::new().chain_update(ID_DOMAIN);
    for part in parts {
        hash.update([0]);
        hash.update(part);
    }
    let digest = hash.finalize();
    let bytes: [u8; 16] = digest[..16].try_into().expect("16 of 32 bytes");
    uuid::Uuid::new_v8(bytes).to_string()
}

impl fmt::Display for VersionObjects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "version {} of key {}", self.key_version_id, self.key_id)
    }
}

/// The named curve of an EC key spec, as `CKA_EC_PARAMS`.
pub(super) fn curve(spec: KeySpec) -> Option<&'static [u8]> {
    match spec {
        KeySpec::EcP256 => Some(P256_OID),
        KeySpec::EcP256K => Some(SECP256K1_OID),
        _ => None,
    }
}

/// A secret key that never leaves the token: sensitive (its value cannot be read) and not
/// extractable (it cannot be wrapped out), token-resident and private (only after login).
pub(super) fn secret_key_template(objects: &VersionObjects, value_len: u64) -> Vec<Attribute> {
    let mut template = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::ValueLen(value_len.into()),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
    ];
    template.extend(kept_secret());
    template.extend(objects.naming());
    template
}

/// The key pair of an asymmetric version: the mechanism, then the public and private
/// templates. The private key is kept like a secret key; the public key is public.
pub(super) fn key_pair_templates(
    objects: &VersionObjects,
    spec: KeySpec,
    usage: KeyUsage,
) -> Option<(Mechanism<'static>, Vec<Attribute>, Vec<Attribute>)> {
    let encrypts = usage == KeyUsage::EncryptDecrypt;
    let mut public = vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Encrypt(encrypts),
        Attribute::Verify(!encrypts),
        Attribute::Wrap(false),
        Attribute::Derive(false),
    ];
    let mechanism = match spec {
        KeySpec::Rsa2048 => {
            public.push(Attribute::ModulusBits(2048.into()));
            public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
            Mechanism::RsaPkcsKeyPairGen
        }
        KeySpec::EcP256 | KeySpec::EcP256K => {
            public.push(Attribute::EcParams(curve(spec)?.to_vec()));
            Mechanism::EccKeyPairGen
        }
        KeySpec::AliyunAes256 | KeySpec::AliyunSm4 | KeySpec::EcSm2 => return None,
    };
    public.extend(objects.naming());
    let mut private = vec![
        Attribute::Decrypt(encrypts),
        Attribute::Sign(!encrypts),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
    ];
    private.extend(kept_secret());
    private.extend(objects.naming());
    Some((mechanism, public, private))
}

/// The attributes that keep a key inside the token.
fn kept_secret() -> [Attribute; 4] {
    [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_16_bytes_distinct_per_version_and_stable() {
        let a = VersionObjects::new("k1", "v1");
        assert_eq!(a.id().len(), 16);
        assert_eq!(a.id(), VersionObjects::new("k1", "v1").id());
        assert_ne!(a.id(), VersionObjects::new("k1", "v2").id());
        assert_ne!(a.id(), VersionObjects::new("k2", "v1").id());
        // The separator keeps ("k1v", "1") apart from ("k1", "v1").
        assert_ne!(a.id(), VersionObjects::new("k1v", "1").id());
    }

    #[test]
    fn derived_ids_are_stable_uuids_distinct_per_key_and_ordinal() {
        let key_id = derived_key_id("5b0c6a52-uid");
        assert_eq!(key_id, derived_key_id("5b0c6a52-uid"));
        assert_ne!(key_id, derived_key_id("another-uid"));
        let parsed = uuid::Uuid::parse_str(&key_id).unwrap();
        assert_eq!(parsed.get_version_num(), 8);
        let first = derived_version_id(&key_id, 0);
        assert_eq!(first, derived_version_id(&key_id, 0));
        assert_ne!(first, derived_version_id(&key_id, 1));
        assert_ne!(first, derived_version_id("other", 0));
        assert_ne!(first, key_id);
    }

    #[test]
    fn labels_name_the_key_and_version_and_parse_back() {
        let a = VersionObjects::new("3f1c2a4e", "7a1b2c3d");
        assert_eq!(a.label(), "keyward/3f1c2a4e/7a1b2c3d");
        assert_eq!(VersionObjects::from_label(&a.label()), Some(a));
        for other in [
            "",
            "keyward/",
            "keyward/k",
            "keyward//v",
            "keyward/k/",
            "other/k/v",
        ] {
            assert_eq!(VersionObjects::from_label(other), None, "{other:?}");
        }
        assert_eq!(VersionObjects::from_label("keyward/k/v/x"), None);
    }

    #[test]
    fn secret_and_private_templates_keep_the_key_in_the_token() {
        let objects = VersionObjects::new("k", "v");
        let secret = secret_key_template(&objects, 32);
        let (_, public, private) =
            key_pair_templates(&objects, KeySpec::EcP256, KeyUsage::SignVerify).unwrap();
        for template in [&secret, &private] {
            for kept in kept_secret() {
                assert!(template.contains(&kept), "{kept:?} missing");
            }
        }
        assert!(public.contains(&Attribute::Private(false)));
        assert!(private.contains(&Attribute::Sign(true)));
        assert!(private.contains(&Attribute::Decrypt(false)));
        assert!(key_pair_templates(&objects, KeySpec::EcSm2, KeyUsage::SignVerify).is_none());
    }
}
