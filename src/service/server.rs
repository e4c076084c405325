//! The HTTP side: one request in, one document out. Requests are logged by action, caller and
//! outcome only: a query string can carry a bearer token or a plaintext, so none is logged.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::error::ApiError;
use super::request::{ApiRequest, MAX_BODY_BYTES};
use super::{ApiContext, actions, identity};
use crate::kms::response::{self, Format};

/// How connections arrive: TLS, or plain HTTP (`--kms-api-insecure-http`).
#[derive(Clone)]
pub enum Transport {
    Plain,
    Tls(TlsAcceptor),
}

/// Serves until the process ends.
pub async fn serve(listener: TcpListener, transport: Transport, ctx: Arc<ApiContext>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a KMS API connection failed");
                continue;
            }
        };
        let (ctx, transport) = (ctx.clone(), transport.clone());
        tokio::spawn(async move {
            match transport {
                Transport::Plain => connection(stream, ctx).await,
                Transport::Tls(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => connection(stream, ctx).await,
                    Err(e) => tracing::debug!(error = %e, "KMS API TLS handshake failed"),
                },
            }
        });
    }
}

async fn connection<S>(stream: S, ctx: Arc<ApiContext>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| answer(request, ctx.clone()));
    if let Err(e) = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(error = %e, "KMS API connection ended with an error");
    }
}

async fn answer(
    request: Request<Incoming>,
    ctx: Arc<ApiContext>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let request_id = uuid::Uuid::new_v4().to_string().to_uppercase();
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            let error = ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestBodyTooLarge",
                format!("The request body is larger than {MAX_BODY_BYTES} bytes."),
            );
            return Ok(document(Err(error), &request_id, Format::Json));
        }
    };
    let parsed = ApiRequest::parse(&parts.method, &parts.uri, &parts.headers, &body);
    let format = parsed
        .as_ref()
        .map(ApiRequest::format)
        .unwrap_or(Format::Json);
    let (outcome, action) = match parsed {
        Ok(request) => {
            let outcome = handle(&ctx, &request, &request_id).await;
            (outcome, request.action().map(str::to_string))
        }
        Err(e) => (Err(e.into()), None),
    };
    let code = outcome.as_ref().err().map(|e| e.error.code.as_str());
    ctx.stats.answered(action.as_deref(), code);
    Ok(document(outcome, &request_id, format))
}

async fn handle(
    ctx: &ApiContext,
    request: &ApiRequest,
    request_id: &str,
) -> Result<String, ApiError> {
    if !ctx.caches.synced() {
        return Err(ApiError::unavailable(
            "keyward is still reading the cluster's Keys and AccessKeys; try again shortly.",
        ));
    }
    let action = request
        .action()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ApiError::missing("Action"))?
        .to_string();
    let caller = match identity::identify(ctx, request).await {
        Ok(caller) => caller,
        Err(error) => {
            tracing::info!(%action, code = %error.error.code, "KMS API request refused");
            return Err(error);
        }
    };
    let outcome = actions::perform(ctx, &caller, request, &action, request_id).await;
    match &outcome {
        Ok(_) => tracing::debug!(%action, caller = %caller.username, "KMS API request served"),
        Err(error) => tracing::info!(%action, caller = %caller.username,
            code = %error.error.code, "KMS API request refused"),
    }
    outcome
}

fn document(
    outcome: Result<String, ApiError>,
    request_id: &str,
    format: Format,
) -> Response<Full<Bytes>> {
    let (status, body) = match outcome {
        Ok(body) => (StatusCode::OK, body),
        Err(error) => (
            error.status,
            response::error(&error.error, request_id, format),
        ),
    };
    let content_type = match format {
        Format::Json => "application/json;charset=utf-8",
        Format::Xml => "text/xml;charset=utf-8",
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("x-acs-request-id", request_id)
        .body(Full::new(Bytes::from(body)))
        .expect("a response of a status, two headers and a body")
}
