//! Where the KMS API is and one keep-alive HTTP/1.1 connection to it, plain or TLS (rustls with
//! the ring provider, trusting a CA bundle you name, else the system's roots).

use std::path::Path;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};

use super::error::ClientError;
use super::signer::Signed;

/// `https://host[:port]`, `http://host[:port]`, or `host[:port]` (HTTPS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    /// The host as it goes in the `Host` header (`[::1]` for IPv6), with the port if given.
    pub authority: String,
    host: String,
    port: u16,
}

impl Endpoint {
    pub fn parse(text: &str) -> Result<Endpoint, ClientError> {
        let bad = |why: &str| ClientError::Config(format!("endpoint {text:?}: {why}"));
        let (tls, rest) = match text.split_once("://") {
            Some(("https", rest)) => (true, rest),
            Some(("http", rest)) => (false, rest),
            Some(_) => return Err(bad("the scheme must be https:// or http://")),
            None => (true, text),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return Err(bad("give host[:port] only; the KMS API is served on /"));
        }
        let uri: http::uri::Authority = authority.parse().map_err(|_| bad("not host[:port]"))?;
        let host = uri.host().trim_start_matches('[').trim_end_matches(']');
        Ok(Endpoint {
            tls,
            authority: authority.to_string(),
            host: host.to_string(),
            port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
        })
    }
}

/// Opens connections to one endpoint.
#[derive(Clone)]
pub struct Connector {
    endpoint: Endpoint,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl Connector {
    /// For HTTPS, `ca_file` (PEM) is the only trust anchor when given; else the system's roots.
    pub fn new(endpoint: Endpoint, ca_file: Option<&Path>) -> Result<Connector, ClientError> {
        let tls = match endpoint.tls {
            false => None,
            true => {
                let config =
                    ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
                        .with_safe_default_protocol_versions()
                        .map_err(|e| ClientError::Config(format!("TLS: {e}")))?
                        .with_root_certificates(roots(ca_file)?)
                        .with_no_client_auth();
                let name = ServerName::try_from(endpoint.host.clone()).map_err(|_| {
                    ClientError::Config(format!(
                        "{:?} is not a host name TLS can verify",
                        endpoint.host
                    ))
                })?;
                Some((TlsConnector::from(Arc::new(config)), name))
            }
        };
        if ca_file.is_some() && tls.is_none() {
            return Err(ClientError::Config(
                "a CA file was given for a plain http:// endpoint: use https://".into(),
            ));
        }
        Ok(Connector { endpoint, tls })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// A new keep-alive connection.
    pub async fn connect(&self) -> Result<Connection, ClientError> {
        let address = (self.endpoint.host.as_str(), self.endpoint.port);
        let tcp = TcpStream::connect(address).await.map_err(|e| {
            ClientError::transport(&format!("connecting to {}", self.endpoint.authority), e)
        })?;
        // Requests are small and answered one at a time: send each at once.
        tcp.set_nodelay(true)
            .map_err(|e| ClientError::transport("TCP_NODELAY", e))?;
        let sender = match &self.tls {
            None => handshake(tcp).await?,
            Some((connector, name)) => {
                let stream = connector.connect(name.clone(), tcp).await.map_err(|e| {
                    ClientError::transport(&format!("TLS with {}", self.endpoint.authority), e)
                })?;
                handshake(stream).await?
            }
        };
        Ok(Connection {
            connector: self.clone(),
            sender,
        })
    }
}

fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, ClientError> {
    let mut roots = RootCertStore::empty();
    let certificates: Vec<CertificateDer<'static>> = match ca_file {
        Some(path) => CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<_, _>>())
            .map_err(|e| ClientError::Config(format!("CA file {}: {e}", path.display())))?,
        None => rustls_native_certs::load_native_certs().certs,
    };
    let (added, _) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(ClientError::Config(match ca_file {
            Some(path) => format!("CA file {} holds no usable certificate", path.display()),
            None => "no system CA certificates found: give a CA file".into(),
        }));
    }
    Ok(roots)
}

async fn handshake<S>(stream: S) -> Result<SendRequest<Full<Bytes>>, ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ClientError::transport("HTTP/1.1 handshake", e))?;
    tokio::spawn(async move {
        // Ends when the server closes the connection or the sender is dropped.
        let _ = connection.await;
    });
    Ok(sender)
}

/// One connection, one request at a time; reopened if the server closed it between requests.
pub struct Connection {
    connector: Connector,
    sender: SendRequest<Full<Bytes>>,
}

impl Connection {
    /// Sends `request`; the status and body of the answer.
    pub async fn send(&mut self, request: Signed) -> Result<(u16, Bytes), ClientError> {
        // Nothing is sent on a connection that is not ready, so reopening it is safe.
        if self.sender.ready().await.is_err() {
            self.sender = self.connector.connect().await?.sender;
        }
        let mut builder = hyper::Request::post(request.target);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let http_request = builder
            .body(Full::new(Bytes::from(request.body)))
            .map_err(|e| ClientError::Config(format!("the request cannot be sent: {e}")))?;
        let response = self
            .sender
            .send_request(http_request)
            .await
            .map_err(|e| ClientError::transport("sending the request", e))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::transport("reading the answer", e))?
            .to_bytes();
        Ok((status, body))
    }
}
