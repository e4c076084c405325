//! One KMS API request, parsed once at the boundary (pure).
//!
//! The KMS API is RPC style: every operation is a `POST /` (a few SDK calls use `GET`) whose
//! parameters are in the URL query and, for some operations of the tea SDK, in an
//! `application/x-www-form-urlencoded` body. [`ApiRequest::parse`] turns the method, URI,
//! headers and body into typed values: lower-cased headers, the query pairs as sent, the body,
//! and the merged parameters (query + form body, form-decoded: `+` is a space, `%XX` a byte,
//! the bytes UTF-8). Anything ambiguous is refused here, with a message saying what to change:
//! a parameter given twice, an invalid escape, a body the parameters cannot be read from, an
//! `Action` parameter and an `x-acs-action` header that disagree. Signature verification
//! ([`crate::service::signing`]) and the operations then read the typed value only.
//!
//! An [`ApiRequest`] holds credentials (a bearer token, a signature) and the caller's data (a
//! plaintext): its `Debug` shows names and sizes, never values.

use std::collections::BTreeMap;
use std::fmt;

use http::{HeaderMap, Method, StatusCode, Uri};

use crate::kms::response::Format;

/// The largest body accepted. A KMS RPC body only carries a few form parameters (the tea SDK
/// sends `Recipient`); the server should stop reading at this size, and parsing refuses more.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The parameter naming the operation (signature v1 SDKs; signed there).
pub const ACTION_PARAM: &str = "Action";
/// The header naming the operation (ACS3 SDKs; signed there).
pub const ACTION_HEADER: &str = "x-acs-action";
/// The parameter naming the API version.
pub const VERSION_PARAM: &str = "Version";
/// The header naming the API version.
pub const VERSION_HEADER: &str = "x-acs-version";
/// The parameter selecting the response format (`JSON` or `XML`, any case).
pub const FORMAT_PARAM: &str = "Format";

const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// Headers whose meaning is a single value: a request carrying one of them twice is refused,
/// so that no reader can pick a different copy than the signature covered.
fn is_single_valued(name: &str) -> bool {
    matches!(name, "authorization" | "content-type" | "accept" | "host")
        || name.starts_with("x-acs-")
}

/// A parsed KMS API request.
#[derive(Clone)]
pub struct ApiRequest {
    method: Method,
    path: String,
    raw_query: String,
    headers: BTreeMap<String, Vec<String>>,
    body: Vec<u8>,
    query: Vec<(String, String)>,
    params: BTreeMap<String, String>,
    format: Format,
}

impl ApiRequest {
    /// Parses a request. `headers` is what the HTTP server received (over HTTP/2, where there is
    /// no `Host` header, the URI's authority stands in for it).
    pub fn parse(
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<ApiRequest, RequestError> {
        if *method != Method::POST && *method != Method::GET {
            return Err(RequestError::new(
                RequestCode::UnsupportedHttpMethod,
                format!("method {method} is not supported: the KMS API takes POST (or GET)"),
            ));
        }
        if body.len() > MAX_BODY_BYTES {
            return Err(RequestError::new(
                RequestCode::BodyTooLarge,
                format!(
                    "the body is {} bytes; the KMS API accepts at most {MAX_BODY_BYTES}",
                    body.len()
                ),
            ));
        }
        let headers = parse_headers(uri, headers)?;
        let raw_query = uri.query().unwrap_or("").to_owned();
        let query = decode_form(raw_query.as_bytes(), Origin::Query)?;
        let form = form_body(&headers, body)?;

        let mut params = BTreeMap::new();
        for (name, value) in query.iter().cloned().chain(form) {
            if params.contains_key(&name) {
                return Err(RequestError::invalid(format!(
                    "parameter {} is given more than once (query and body count together): send it once",
                    quoted(&name)
                )));
            }
            params.insert(name, value);
        }

        let request = ApiRequest {
            method: method.clone(),
            path: uri.path().to_owned(),
            raw_query,
            headers,
            body: body.to_vec(),
            query,
            params,
            format: Format::Json,
        };
        request.refuse_disagreement(ACTION_PARAM, ACTION_HEADER)?;
        request.refuse_disagreement(VERSION_PARAM, VERSION_HEADER)?;
        let format = request.requested_format()?;
        Ok(ApiRequest { format, ..request })
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The URI path as sent (still percent-encoded); `/` for every KMS operation.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The URL query as sent, without the `?`.
    pub fn raw_query(&self) -> &str {
        &self.raw_query
    }

    /// The query parameters, decoded, in the order sent (each name once).
    pub fn query_params(&self) -> &[(String, String)] {
        &self.query
    }

    /// Every parameter, query and form body merged, decoded, sorted by name.
    pub fn params(&self) -> &BTreeMap<String, String> {
        &self.params
    }

    /// A parameter from the query or the form body.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// The first value of a header; `name` is lower-case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).first().map(String::as_str)
    }

    /// Every value of a header, in the order received; `name` is lower-case.
    pub fn header_values(&self, name: &str) -> &[String] {
        self.headers.get(name).map_or(&[], Vec::as_slice)
    }

    /// The names of the headers present, lower-case and sorted.
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        self.headers.keys().map(String::as_str)
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The operation: the `Action` parameter, else the `x-acs-action` header (parsing refused
    /// a request in which both are present and differ).
    pub fn action(&self) -> Option<&str> {
        self.param(ACTION_PARAM)
            .or_else(|| self.header(ACTION_HEADER))
    }

    /// The API version: the `Version` parameter, else the `x-acs-version` header.
    pub fn version(&self) -> Option<&str> {
        self.param(VERSION_PARAM)
            .or_else(|| self.header(VERSION_HEADER))
    }

    /// The response format asked for: the `Format` parameter, else an `Accept` header naming
    /// XML, else JSON.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Refuses a request whose parameter and header say different things.
    fn refuse_disagreement(&self, param: &str, header: &str) -> Result<(), RequestError> {
        match (self.param(param), self.header(header)) {
            (Some(from_param), Some(from_header)) if from_param != from_header => {
                Err(RequestError::invalid(format!(
                    "the {param} parameter ({}) and the {header} header ({}) disagree: send one, or the same in both",
                    quoted(from_param),
                    quoted(from_header)
                )))
            }
            _ => Ok(()),
        }
    }

    fn requested_format(&self) -> Result<Format, RequestError> {
        if let Some(format) = self.param(FORMAT_PARAM) {
            return match format.to_ascii_uppercase().as_str() {
                "JSON" => Ok(Format::Json),
                "XML" => Ok(Format::Xml),
                _ => Err(RequestError::new(
                    RequestCode::InvalidFormat,
                    format!("Format is {}: it must be JSON or XML", quoted(format)),
                )),
            };
        }
        let accept = self.header("accept").unwrap_or("").to_ascii_lowercase();
        let names_xml = accept.split(',').any(|media| {
            let media = media.split(';').next().unwrap_or("").trim();
            media == "application/xml" || media == "text/xml"
        });
        Ok(if names_xml { Format::Xml } else { Format::Json })
    }
}

impl fmt::Debug for ApiRequest {
    /// Names and sizes only: values may be a bearer token, a signature or a plaintext.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("action", &self.action())
            .field("params", &self.params.keys().collect::<Vec<_>>())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body_bytes", &self.body.len())
            .field("format", &self.format)
            .finish()
    }
}

fn parse_headers(
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<BTreeMap<String, Vec<String>>, RequestError> {
    let mut parsed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        let name = name.as_str();
        let value = std::str::from_utf8(value.as_bytes())
            .map_err(|_| RequestError::invalid(format!("header {name} is not valid UTF-8")))?;
        let values = parsed.entry(name.to_owned()).or_default();
        if !values.is_empty() && is_single_valued(name) {
            return Err(RequestError::invalid(format!(
                "header {name} is sent more than once: send it once"
            )));
        }
        values.push(value.to_owned());
    }
    if let (None, Some(authority)) = (parsed.get("host"), uri.authority()) {
        parsed.insert("host".to_owned(), vec![authority.as_str().to_owned()]);
    }
    Ok(parsed)
}

/// The form body's parameters. An empty body has none, whatever its declared type (the tea
/// SDK's Decrypt declares a form and sends nothing); any other body must be a UTF-8 form, and
/// is refused rather than ignored.
fn form_body(
    headers: &BTreeMap<String, Vec<String>>,
    body: &[u8],
) -> Result<Vec<(String, String)>, RequestError> {
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let content_type = headers.get("content-type").and_then(|v| v.first());
    let Some(content_type) = content_type else {
        return Err(RequestError::invalid(format!(
            "the body has no Content-Type: send its parameters as {FORM_CONTENT_TYPE}"
        )));
    };
    let mut parts = content_type.split(';').map(str::trim);
    let media = parts.next().unwrap_or("");
    if !media.eq_ignore_ascii_case(FORM_CONTENT_TYPE) {
        return Err(RequestError::invalid(format!(
            "the body is {}: the KMS API reads parameters from {FORM_CONTENT_TYPE} bodies only",
            quoted(media)
        )));
    }
    for part in parts {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        let value = value.trim_matches('"');
        if name.trim().eq_ignore_ascii_case("charset") && !value.eq_ignore_ascii_case("utf-8") {
            return Err(RequestError::invalid(format!(
                "the body's charset is {}: the KMS API reads UTF-8 only",
                quoted(value)
            )));
        }
    }
    decode_form(body, Origin::Body)
}

/// Where a parameter came from, for messages.
#[derive(Clone, Copy)]
enum Origin {
    Query,
    Body,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Origin::Query => "query",
            Origin::Body => "body",
        }
    }
}

/// Decodes `application/x-www-form-urlencoded` pairs: `&`-separated (empty segments skipped),
/// name and value split at the first `=` (a missing `=` is an empty value), `+` a space, `%XX`
/// a byte, the bytes UTF-8. A name given twice is refused.
fn decode_form(raw: &[u8], origin: Origin) -> Result<Vec<(String, String)>, RequestError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for segment in raw.split(|&b| b == b'&').filter(|s| !s.is_empty()) {
        let split = segment.iter().position(|&b| b == b'=');
        let (name, value) = match split {
            Some(at) => (&segment[..at], &segment[at + 1..]),
            None => (segment, &b""[..]),
        };
        let name = decode_component(name).map_err(|why| {
            RequestError::invalid(format!("a {} parameter name {why}", origin.as_str()))
        })?;
        if name.is_empty() {
            return Err(RequestError::invalid(format!(
                "a {} parameter has an empty name",
                origin.as_str()
            )));
        }
        let value = decode_component(value).map_err(|why| {
            RequestError::invalid(format!(
                "the value of {} parameter {} {why}",
                origin.as_str(),
                quoted(&name)
            ))
        })?;
        if pairs.iter().any(|(seen, _)| *seen == name) {
            return Err(RequestError::invalid(format!(
                "{} parameter {} is given more than once: send it once",
                origin.as_str(),
                quoted(&name)
            )));
        }
        pairs.push((name, value));
    }
    Ok(pairs)
}

fn decode_component(raw: &[u8]) -> Result<String, &'static str> {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut rest = raw;
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        match byte {
            b'+' => bytes.push(b' '),
            b'%' => {
                let (high, low) = match rest {
                    [high, low, ..] => (hex_digit(*high), hex_digit(*low)),
                    _ => (None, None),
                };
                let (Some(high), Some(low)) = (high, low) else {
                    return Err(
                        "has a % that is not followed by two hex digits (write a literal % as %25)",
                    );
                };
                bytes.push(high << 4 | low);
                rest = &rest[2..];
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).map_err(|_| "is not UTF-8 once percent-decoded")
}

fn hex_digit(byte: u8) -> Option<u8> {
    char::from(byte).to_digit(16).map(|d| d as u8)
}

/// A name or value for a message: quoted, escaped, and cut short.
fn quoted(text: &str) -> String {
    const MAX_CHARS: usize = 64;
    let mut shown: String = text.chars().take(MAX_CHARS).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}

/// What is wrong with a request, as the KMS API answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestCode {
    /// A parameter, header or body that cannot be read unambiguously.
    InvalidParameter,
    /// `Format` is neither JSON nor XML.
    InvalidFormat,
    /// Neither POST nor GET.
    UnsupportedHttpMethod,
    /// The body is larger than [`MAX_BODY_BYTES`].
    BodyTooLarge,
}

impl RequestCode {
    /// The code of the error document.
    pub const fn as_str(self) -> &'static str {
        match self {
            RequestCode::InvalidParameter => "InvalidParameter",
            RequestCode::InvalidFormat => "InvalidParameter.Format",
            RequestCode::UnsupportedHttpMethod => "UnsupportedHTTPMethod",
            RequestCode::BodyTooLarge => "RequestBodyTooLarge",
        }
    }

    pub const fn status(self) -> StatusCode {
        match self {
            RequestCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// A request refused before authentication. The message names parameters and headers but
/// never carries their values, except short quoted excerpts of the offending name or value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct RequestError {
    code: RequestCode,
    message: String,
}

impl RequestError {
    fn new(code: RequestCode, message: String) -> Self {
        RequestError { code, message }
    }

    fn invalid(message: String) -> Self {
        RequestError::new(RequestCode::InvalidParameter, message)
    }

    pub fn code(&self) -> RequestCode {
        self.code
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// The `Message` of the error document.
    pub fn message(&self) -> &str {
        &self.message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(
        method: Method,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<ApiRequest, RequestError> {
        let uri: Uri = target.parse().unwrap();
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
            );
        }
        ApiRequest::parse(&method, &uri, &map, body)
    }

    fn post(
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<ApiRequest, RequestError> {
        parse(Method::POST, target, headers, body)
    }

    const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

    #[test]
    fn form_decoding_reads_plus_as_space_and_percent_as_utf8_bytes() {
        let request = post(
            "/?A=a+b%2Bc%2Fd%2Ae~f%3Dg%26h%20%C3%A9&Empty=&Bare",
            &[],
            b"",
        )
        .unwrap();
        assert_eq!(request.param("A"), Some("a b+c/d*e~f=g&h é"));
        assert_eq!(request.param("Empty"), Some(""));
        assert_eq!(request.param("Bare"), Some(""));
        assert_eq!(
            request.raw_query(),
            "A=a+b%2Bc%2Fd%2Ae~f%3Dg%26h%20%C3%A9&Empty=&Bare"
        );
        let names: Vec<_> = request
            .query_params()
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(names, ["A", "Empty", "Bare"]);
    }

    #[test]
    fn query_and_form_body_merge() {
        let request = post("/?KeyId=k", &[FORM], b"Recipient=%7B%22a%22%3A+1%7D").unwrap();
        assert_eq!(request.param("KeyId"), Some("k"));
        assert_eq!(request.param("Recipient"), Some("{\"a\": 1}"));
        assert_eq!(request.query_params().len(), 1);
        assert_eq!(request.body(), b"Recipient=%7B%22a%22%3A+1%7D");
    }

    #[test]
    fn a_parameter_given_twice_is_refused() {
        let in_query = post("/?KeyId=a&KeyId=b", &[], b"").unwrap_err();
        assert_eq!(in_query.code(), RequestCode::InvalidParameter);
        assert!(in_query.message().contains("\"KeyId\""), "{in_query}");
        let across = post("/?KeyId=a", &[FORM], b"KeyId=a").unwrap_err();
        assert!(across.message().contains("query and body"), "{across}");
        let in_body = post("/", &[FORM], b"R=1&R=1").unwrap_err();
        assert_eq!(in_body.code(), RequestCode::InvalidParameter);
        // Names compare after decoding.
        assert!(post("/?Key%49d=a&KeyId=b", &[], b"").is_err());
    }

    #[test]
    fn invalid_escapes_and_invalid_utf8_are_refused() {
        for target in ["/?A=%zz", "/?A=%4", "/?A=%C3", "/?%FF=1", "/?=1"] {
            let error = post(target, &[], b"").unwrap_err();
            assert_eq!(error.code(), RequestCode::InvalidParameter, "{target}");
            assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        }
        let error = post("/", &[FORM], b"A=\xff").unwrap_err();
        assert!(error.message().contains("not UTF-8"), "{error}");
    }

    #[test]
    fn a_body_that_is_not_a_utf8_form_is_refused_not_ignored() {
        assert!(post("/", &[], b"A=1").is_err());
        assert!(post("/", &[("content-type", "application/json")], b"{}").is_err());
        assert!(
            post(
                "/",
                &[(
                    "content-type",
                    "application/x-www-form-urlencoded; charset=latin1"
                )],
                b"A=1"
            )
            .is_err()
        );
        let ok = post(
            "/",
            &[(
                "content-type",
                "application/x-www-form-urlencoded; charset=UTF-8",
            )],
            b"A=1",
        )
        .unwrap();
        assert_eq!(ok.param("A"), Some("1"));
        // An empty body is no body, whatever its declared type (the tea SDK's Decrypt).
        assert!(post("/", &[("content-type", "application/json")], b"").is_ok());
    }

    #[test]
    fn a_body_above_the_limit_is_refused() {
        let body = vec![b'a'; MAX_BODY_BYTES + 1];
        let error = post("/", &[FORM], &body).unwrap_err();
        assert_eq!(error.code(), RequestCode::BodyTooLarge);
        assert_eq!(error.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(post("/", &[FORM], &vec![b'a'; MAX_BODY_BYTES]).is_ok());
    }

    #[test]
    fn only_post_and_get_are_accepted() {
        assert!(parse(Method::GET, "/?Action=ListKeys", &[], b"").is_ok());
        let error = parse(Method::PUT, "/", &[], b"").unwrap_err();
        assert_eq!(error.code(), RequestCode::UnsupportedHttpMethod);
    }

    #[test]
    fn action_comes_from_the_parameter_else_the_header() {
        let from_param = post("/?Action=Encrypt", &[], b"").unwrap();
        assert_eq!(from_param.action(), Some("Encrypt"));
        let from_header = post(
            "/",
            &[("x-acs-action", "Decrypt"), ("x-acs-version", "2016-01-20")],
            b"",
        )
        .unwrap();
        assert_eq!(from_header.action(), Some("Decrypt"));
        assert_eq!(from_header.version(), Some("2016-01-20"));
        let both = post("/?Action=Encrypt", &[("x-acs-action", "Encrypt")], b"").unwrap();
        assert_eq!(both.action(), Some("Encrypt"));
        assert_eq!(post("/", &[], b"").unwrap().action(), None);
    }

    #[test]
    fn an_action_parameter_and_header_that_disagree_are_refused() {
        let error = post("/?Action=Encrypt", &[("x-acs-action", "Decrypt")], b"").unwrap_err();
        assert_eq!(error.code(), RequestCode::InvalidParameter);
        assert!(post("/?Version=1", &[("x-acs-version", "2")], b"").is_err());
    }

    #[test]
    fn format_comes_from_the_parameter_else_accept_else_json() {
        assert_eq!(
            post("/?Format=XML", &[], b"").unwrap().format(),
            Format::Xml
        );
        assert_eq!(
            post("/?Format=json", &[("accept", "application/xml")], b"")
                .unwrap()
                .format(),
            Format::Json
        );
        assert_eq!(
            post("/", &[("accept", "text/xml; q=0.9, */*")], b"")
                .unwrap()
                .format(),
            Format::Xml
        );
        assert_eq!(
            post("/", &[("accept", "application/json")], b"")
                .unwrap()
                .format(),
            Format::Json
        );
        assert_eq!(
            post("/", &[("accept", "*/*")], b"").unwrap().format(),
            Format::Json
        );
        assert_eq!(post("/", &[], b"").unwrap().format(), Format::Json);
        let error = post("/?Format=YAML", &[], b"").unwrap_err();
        assert_eq!(error.code(), RequestCode::InvalidFormat);
        assert_eq!(error.code().as_str(), "InvalidParameter.Format");
    }

    #[test]
    fn headers_are_lower_case_and_single_valued_ones_appear_once() {
        let request = post("/", &[("X-Acs-Date", "d"), ("Via", "a"), ("Via", "b")], b"").unwrap();
        assert_eq!(request.header("x-acs-date"), Some("d"));
        assert_eq!(request.header_values("via"), ["a", "b"]);
        let error = post("/", &[("x-acs-date", "a"), ("X-ACS-DATE", "b")], b"").unwrap_err();
        assert!(error.message().contains("x-acs-date"), "{error}");
        assert!(post("/", &[("authorization", "a"), ("authorization", "b")], b"").is_err());
    }

    #[test]
    fn the_uri_authority_stands_in_for_a_missing_host_header() {
        let request = post("http://kms.example:8443/?A=1", &[], b"").unwrap();
        assert_eq!(request.header("host"), Some("kms.example:8443"));
        let with_host = post("http://other/?A=1", &[("host", "kms.example")], b"").unwrap();
        assert_eq!(with_host.header("host"), Some("kms.example"));
    }

    #[test]
    fn debug_shows_names_never_values() {
        let request = post(
            "/?Plaintext=secret-plaintext&BearerToken=secret-token",
            &[("authorization", "Bearer secret-header"), FORM],
            b"Recipient=secret-body",
        )
        .unwrap();
        let debug = format!("{request:?}");
        for secret in [
            "secret-plaintext",
            "secret-token",
            "secret-header",
            "secret-body",
        ] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert!(debug.contains("Plaintext"), "{debug}");
    }

    #[test]
    fn messages_cut_long_names_short() {
        let name = "N".repeat(500);
        let error = post(&format!("/?{name}=1&{name}=2"), &[], b"").unwrap_err();
        assert!(error.message().len() < 200, "{}", error.message());
    }
}
