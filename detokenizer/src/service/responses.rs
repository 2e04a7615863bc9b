//! Inbound responses: what a channel learns after a delivery (a STOP reply to an SMS,
//! an unsubscribe link, an open, a click, a hard bounce reported later) comes back
//! here as `POST /v1/responses` with `{"match_id": "mt_…", "response": R}`, R one of
//! `opened`, `positive`, `negative` (an `offer_response` event with that outcome),
//! `stop` or `bounce` (a `preference` event opting her out of the match's channel).
//! The match id is all the caller needs: the service's store knows the token, offer,
//! variant and channel it was delivered with. Answers: 202 when the event is on the
//! bus, 404 for a match id this service did not handle, 400 for anything else.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::sync::watch;

use super::{DetokenizerService, ServiceError};

/// The largest request body taken.
const MAX_BODY: usize = 16 * 1024;

/// A response a channel reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelResponse {
    Opened,
    Positive,
    Negative,
    /// An unsubscribe (an SMS STOP reply, a list-unsubscribe).
    Stop,
    /// A hard bounce reported after the channel had accepted the message.
    Bounce,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    match_id: String,
    response: ChannelResponse,
}

/// Serves `POST /v1/responses` on `addr` until `stop` turns true.
pub async fn serve(
    service: Arc<DetokenizerService>,
    addr: SocketAddr,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ServiceError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServiceError::Io {
            path: addr.to_string().into(),
            source,
        })?;
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "responses endpoint: accept failed");
                    continue;
                }
            },
            _ = stop.changed() => return Ok(()),
        };
        let service = service.clone();
        tokio::spawn(async move {
            let handler = service_fn(move |req| {
                let service = service.clone();
                async move { Ok::<_, Infallible>(handle(&service, req).await) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), handler)
                .await
            {
                tracing::debug!(error = %e, "responses endpoint: connection ended");
            }
        });
    }
}

async fn handle(service: &DetokenizerService, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::POST || req.uri().path() != "/v1/responses" {
        return reply(StatusCode::NOT_FOUND, "POST /v1/responses only");
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return reply(StatusCode::BAD_REQUEST, "the body is unreadable or larger than 16 KiB"),
    };
    let body: Body = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            // serde's message names the field or the expected values, never the input.
            let reason = format!(
                "expected {{\"match_id\", \"response\"}}: {}",
                e.to_string().split(" at line").next().unwrap_or("")
            );
            return reply(StatusCode::BAD_REQUEST, &reason);
        }
    };
    match service.respond(&body.match_id, body.response).await {
        Ok(Some(())) => reply(StatusCode::ACCEPTED, "accepted"),
        Ok(None) => reply(StatusCode::NOT_FOUND, "no delivered match with this id"),
        Err(e) => {
            tracing::error!(error = %crate::error_chain(&e), "responses endpoint: cannot record a response");
            reply(StatusCode::SERVICE_UNAVAILABLE, "cannot record the response now; retry")
        }
    }
}

fn reply(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *response.status_mut() = status;
    response
}
