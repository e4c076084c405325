//! The encodings both signatures are built from: RFC 3986 percent-encoding, lower-case hex,
//! SHA-256. Shared with the KMS API client (`crate::kms_client`), which signs what this verifies.

/// RFC 3986 percent-encoding of the UTF-8 bytes: `A-Z a-z 0-9 - _ . ~` stay, every other byte
/// is `%XX` with upper-case hex. This is what both SDKs produce (Python's `quote(s, safe='~')`,
/// and the v1 SDK's `quote_plus` with its `+`, `*` and `%7E` fix-ups).
pub(crate) fn percent_encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                encoded.push(char::from(byte))
            }
            _ => {
                encoded.push('%');
                encoded.push(char::from(HEX[usize::from(byte >> 4)]));
                encoded.push(char::from(HEX[usize::from(byte & 0xf)]));
            }
        }
    }
    encoded
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]])
        .map(char::from)
        .collect()
}

/// Hex of either case; `None` if `text` is not whole bytes of hex.
pub(crate) fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digits: Option<Vec<u8>> = text
        .chars()
        .map(|c| c.to_digit(16).map(|d| d as u8))
        .collect();
    let digits = digits?;
    if digits.len() % 2 != 0 {
        return None;
    }
    Some(
        digits
            .chunks(2)
            .map(|pair| pair[0] << 4 | pair[1])
            .collect(),
    )
}

/// Lower-case hex of the SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_keeps_only_the_unreserved_set() {
        assert_eq!(
            percent_encode("a b+c/d*e~f=g&h é-_.!'()"),
            "a%20b%2Bc%2Fd%2Ae~f%3Dg%26h%20%C3%A9-_.%21%27%28%29"
        );
        assert_eq!(percent_encode(""), "");
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(decode_hex("00ABff"), Some(vec![0x00, 0xab, 0xff]));
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
