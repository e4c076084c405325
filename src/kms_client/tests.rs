//! The client's requests are the SDK's: the same signature as requests captured from
//! `alibabacloud-kms20160120` (src/service/signing/fixtures), and accepted by the server's
//! verifier, which refuses them under another secret or once altered.

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use jiff::Timestamp;
use serde_json::Value;

use super::signer::{Signed, Unsigned, sign};
use super::{Credentials, transport::Endpoint};
use crate::service::request::ApiRequest;
use crate::service::signing::{self, Claim};

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture JSON")
}

fn header<'a>(fixture: &'a Value, name: &str) -> &'a str {
    fixture["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .and_then(|h| h[1].as_str())
        .unwrap_or_else(|| panic!("the fixture has no {name} header"))
}

/// The fixture's call, with the parameters in the order the SDK put them in the query.
fn unsigned_from(fixture: &Value, extra_headers: &[&str]) -> Unsigned {
    let params = fixture["expect"]["params"].as_object().unwrap();
    let mut query: Vec<(String, String)> = params
        .iter()
        .map(|(n, v)| (n.clone(), v.as_str().unwrap().to_string()))
        .collect();
    query.sort();
    Unsigned {
        host: header(fixture, "host").to_string(),
        action: fixture["expect"]["action"].as_str().unwrap().to_string(),
        query,
        form: Vec::new(),
        headers: extra_headers
            .iter()
            .map(|name| (name.to_string(), header(fixture, name).to_string()))
            .collect(),
    }
}

fn date(fixture: &Value) -> Timestamp {
    header(fixture, "x-acs-date").parse().unwrap()
}

/// The headers the SDK set itself (not those its HTTP library adds), lower-cased and sorted.
fn sdk_headers(fixture: &Value) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = fixture["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let name = h[0].as_str().unwrap().to_ascii_lowercase();
            (name, h[1].as_str().unwrap().to_string())
        })
        .filter(|(name, _)| name != "accept-encoding" && name != "content-length")
        .collect();
    headers.sort();
    headers
}

fn sorted(headers: &[(String, String)]) -> Vec<(String, String)> {
    let mut headers = headers.to_vec();
    headers.sort();
    headers
}

#[test]
fn an_access_key_signature_is_the_one_the_tea_sdk_sent() {
    let fixture = fixture(include_str!(
        "../service/signing/fixtures/acs3-encrypt-specials.json"
    ));
    let credentials = Credentials::access_key(
        fixture["expect"]["access_key_id"].as_str().unwrap(),
        fixture["secret"].as_str().unwrap(),
    );
    let call = unsigned_from(&fixture, &["user-agent", "x-acs-credentials-provider"]);
    let nonce = header(&fixture, "x-acs-signature-nonce");
    let signed = sign(&call, &credentials, date(&fixture), nonce);
    assert_eq!(sorted(&signed.headers), sdk_headers(&fixture));
    assert!(signed.body.is_empty());
}

#[test]
fn a_bearer_request_is_the_one_the_tea_sdk_sent() {
    let fixture = fixture(include_str!(
        "../service/signing/fixtures/tea-bearer-encrypt.json"
    ));
    let credentials = Credentials::bearer(fixture["expect"]["token"].as_str().unwrap());
    let call = unsigned_from(&fixture, &["user-agent"]);
    let nonce = header(&fixture, "x-acs-signature-nonce");
    let signed = sign(&call, &credentials, date(&fixture), nonce);
    assert_eq!(sorted(&signed.headers), sdk_headers(&fixture));
    // The same parameters (the SDK's query uses `+` for spaces, the client `%20`).
    let parsed = parse(&signed);
    let sdk = parse(&Signed {
        target: fixture["target"].as_str().unwrap().to_string(),
        headers: signed.headers.clone(),
        body: Vec::new(),
    });
    assert_eq!(parsed.params(), sdk.params());
    assert_eq!(parsed.param("SignatureType"), Some("BEARERTOKEN"));
}

fn parse(signed: &Signed) -> ApiRequest {
    let uri: Uri = signed.target.parse().expect("a request target");
    let mut headers = HeaderMap::new();
    for (name, value) in &signed.headers {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    ApiRequest::parse(&Method::POST, &uri, &headers, &signed.body).expect("the server parses it")
}

/// Every character a canonicalisation could treat specially, in names' values and a form body.
fn awkward_call() -> Unsigned {
    let specials = "a b+c/d*e~f=g&h é 密钥 😀 %41 -_.!'()";
    Unsigned {
        host: "kms.example:8443".into(),
        action: "Decrypt".into(),
        query: vec![
            ("KeyId".into(), "alias/payments".into()),
            ("Plaintext".into(), specials.into()),
            ("EncryptionContext".into(), r#"{"k":"v w+x"}"#.into()),
            ("Empty".into(), String::new()),
        ],
        form: vec![("Recipient".into(), specials.into())],
        headers: vec![("user-agent".into(), "test agent/1.0".into())],
    }
}

#[test]
fn the_servers_verifier_accepts_the_clients_signature_and_nothing_else() {
    let secret = "client/Secret+With=Specials&";
    let credentials = Credentials::access_key("KWAKclienttest", secret);
    let now: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
    let call = awkward_call();
    let signed = sign(&call, &credentials, now, "0123456789abcdef0123456789abcdef");
    let request = parse(&signed);
    assert_eq!(request.param("Recipient"), Some(call.form[0].1.as_str()));
    assert_eq!(request.param("Plaintext"), Some(call.query[1].1.as_str()));
    assert_eq!(request.action(), Some("Decrypt"));
    let Claim::Signed(claim) = signing::claim(&request).expect("a claim") else {
        panic!("not a signed claim");
    };
    assert_eq!(claim.access_key_id(), "KWAKclienttest");
    assert_eq!(claim.timestamp(), now);
    signing::verify(&request, &claim, secret.as_bytes()).expect("the signature holds");
    signing::check_time(&claim, now).expect("in time");

    let wrong = signing::verify(&request, &claim, b"another secret").unwrap_err();
    assert_eq!(wrong.code().as_str(), "SignatureDoesNotMatch");

    // A parameter changed after signing.
    let mut altered = signed.clone();
    altered.target = altered.target.replace("payments", "payrolls");
    let altered = parse(&altered);
    let Claim::Signed(claim) = signing::claim(&altered).unwrap() else {
        panic!("not a signed claim");
    };
    assert!(signing::verify(&altered, &claim, secret.as_bytes()).is_err());
}

#[test]
fn signatures_differ_by_nonce_and_are_fresh_each_call() {
    let credentials = Credentials::access_key("KWAKclienttest", "s");
    let now = Timestamp::now();
    let (a, b) = (super::signer::nonce(), super::signer::nonce());
    assert_ne!(a, b);
    assert_eq!(a.len(), 32);
    let auth = |nonce: &str| {
        let signed = sign(&awkward_call(), &credentials, now, nonce);
        signed
            .headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .unwrap()
            .1
            .clone()
    };
    assert_ne!(auth(&a), auth(&b));
}

#[test]
fn debug_output_shows_no_secret_token_or_header_value() {
    let pair = Credentials::access_key("KWAKvisible", "the-secret-value");
    let token = Credentials::bearer("the-token-value\n");
    assert!(!format!("{pair:?}").contains("the-secret-value"));
    assert!(format!("{pair:?}").contains("KWAKvisible"));
    assert!(!format!("{token:?}").contains("the-token-value"));
    let signed = sign(&awkward_call(), &token, Timestamp::now(), "n");
    assert!(!format!("{signed:?}").contains("the-token-value"));
    let header = &signed
        .headers
        .iter()
        .find(|(n, _)| n == "x-acs-bearer-token");
    assert_eq!(header.unwrap().1, "the-token-value", "the token is trimmed");
}

#[test]
fn endpoints_name_a_scheme_host_and_port_only() {
    let plain = Endpoint::parse("http://127.0.0.1:8080").unwrap();
    assert!(!plain.tls);
    assert_eq!(plain.authority, "127.0.0.1:8080");
    let tls = Endpoint::parse("kms.shop.svc:8443").unwrap();
    assert!(tls.tls);
    assert_eq!(tls.authority, "kms.shop.svc:8443");
    assert!(Endpoint::parse("https://[::1]:8443/").unwrap().tls);
    for bad in [
        "ftp://host",
        "https://host/path",
        "",
        "https://user@host",
        "http://",
    ] {
        assert!(Endpoint::parse(bad).is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn an_unknown_algorithm_is_refused_before_anything_is_sent() {
    let error = super::operations::algorithm("ECDSA_SHA_384").unwrap_err();
    assert!(error.to_string().contains("ECDSA_SHA_256"), "{error}");
}
