//! The KMS value sets of the seed documents, spelled exactly as the KMS spells them.
//!
//! The Key spec keeps these as strings (see `api::key`), so that a value the CRD schema did not
//! catch still reaches the controller's rules and gets a precise error instead of breaking the
//! watch. These enums are what the rules parse those strings into.

use serde::{Deserialize, Serialize};

/// Defines a closed set of KMS values with their exact, case-sensitive spelling.
macro_rules! kms_values {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in the seed's order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The KMS spelling.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the exact (case-sensitive) KMS spelling.
            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|value| value.as_str() == text)
            }

            /// The allowed values, quoted and comma-separated, for error messages.
            pub fn allowed() -> String {
                Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

kms_values! {
    /// The type of a customer master key (CreateKey `KeySpec`).
    KeySpec {
        AliyunAes256 = "Aliyun_AES_256",
        AliyunSm4 = "Aliyun_SM4",
        Rsa2048 = "RSA_2048",
        EcP256 = "EC_P256",
        EcP256K = "EC_P256K",
        EcSm2 = "EC_SM2",
    }
}

kms_values! {
    /// The purpose of a key (CreateKey `KeyUsage`).
    KeyUsage {
        EncryptDecrypt = "ENCRYPT/DECRYPT",
        SignVerify = "SIGN/VERIFY",
    }
}

kms_values! {
    /// The source of the key material (CreateKey `Origin`).
    Origin {
        AliyunKms = "Aliyun_KMS",
        External = "EXTERNAL",
    }
}

kms_values! {
    /// The protection level of a key (CreateKey `ProtectionLevel`).
    ProtectionLevel {
        Software = "SOFTWARE",
        Hsm = "HSM",
    }
}

kms_values! {
    /// The state of a key (KeyMetadata `KeyState`).
    KeyState {
        Enabled = "Enabled",
        Disabled = "Disabled",
        PendingDeletion = "PendingDeletion",
        PendingImport = "PendingImport",
    }
}

kms_values! {
    /// Whether automatic rotation runs (KeyMetadata `AutomaticRotation`).
    AutomaticRotation {
        Enabled = "Enabled",
        Disabled = "Disabled",
        /// Rotation is configured but does not run, because the key is not Enabled.
        Suspended = "Suspended",
    }
}

impl KeySpec {
    /// Symmetric keys encrypt only and are the only ones that rotate automatically.
    pub const fn is_symmetric(self) -> bool {
        matches!(self, KeySpec::AliyunAes256 | KeySpec::AliyunSm4)
    }

    /// The usages the seed's table allows for this key spec.
    pub const fn supported_usages(self) -> &'static [KeyUsage] {
        match self {
            KeySpec::AliyunAes256 | KeySpec::AliyunSm4 => &[KeyUsage::EncryptDecrypt],
            KeySpec::EcP256 | KeySpec::EcP256K => &[KeyUsage::SignVerify],
            KeySpec::Rsa2048 | KeySpec::EcSm2 => &[KeyUsage::EncryptDecrypt, KeyUsage::SignVerify],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_case_sensitively() {
        assert_eq!(
            KeySpec::parse("Aliyun_AES_256"),
            Some(KeySpec::AliyunAes256)
        );
        assert_eq!(KeySpec::parse("aliyun_aes_256"), None);
        assert_eq!(
            KeyUsage::parse("ENCRYPT/DECRYPT"),
            Some(KeyUsage::EncryptDecrypt)
        );
        assert_eq!(KeyUsage::parse("encrypt/decrypt"), None);
        assert_eq!(Origin::parse("EXTERNAL"), Some(Origin::External));
        assert_eq!(Origin::parse("External"), None);
        assert_eq!(ProtectionLevel::parse("hsm"), None);
    }

    #[test]
    fn spellings_round_trip_through_serde() {
        for spec in KeySpec::ALL {
            let json = serde_json::to_string(spec).unwrap();
            assert_eq!(json, format!("\"{}\"", spec.as_str()));
            assert_eq!(&serde_json::from_str::<KeySpec>(&json).unwrap(), spec);
        }
    }

    #[test]
    fn usage_table_matches_the_seed() {
        use KeySpec::*;
        use KeyUsage::*;
        let table = [
            (AliyunAes256, vec![EncryptDecrypt]),
            (AliyunSm4, vec![EncryptDecrypt]),
            (Rsa2048, vec![EncryptDecrypt, SignVerify]),
            (EcP256, vec![SignVerify]),
            (EcP256K, vec![SignVerify]),
            (EcSm2, vec![EncryptDecrypt, SignVerify]),
        ];
        for (spec, usages) in table {
            assert_eq!(spec.supported_usages(), usages.as_slice(), "{spec}");
        }
    }
}
