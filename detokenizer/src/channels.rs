//! The service's channel sinks: where a resolved message goes, by URL.
//!
//! - `file:PATH`: one JSON line per delivery, appended and synced (the embedded mode's
//!   `deliveries.jsonl` format).
//! - `http://…` / `https://…`: a webhook. One POST of JSON per delivery, with the
//!   match id as `Idempotency-Key`, so a retried or re-delivered match is recognised by
//!   the receiver. 2xx is accepted; 408, 429, 5xx and connection failures are retried
//!   with backoff; any other status is a permanent refusal.
//! - `smtp://HOST:PORT` (plain, for a local relay), `smtp+starttls://HOST:PORT`,
//!   `smtps://HOST:PORT`: email through lettre, from the address given with
//!   `?from=ADDR`. A transient SMTP reply (4xx) is retried; a permanent one (5xx) is a
//!   hard bounce.

use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lettre::message::Mailbox;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use persona_event::Match;
use persona_privacy::{CustomerKey, Pii};

/// One message, resolved and filled in: it holds PII and lives only inside the
/// trusted zone.
#[derive(Debug)]
pub struct Outgoing<'a> {
    pub decision: &'a Match,
    pub customer_key: &'a CustomerKey,
    pub to: &'a Pii<String>,
    pub title: &'a Pii<String>,
    pub message: &'a Pii<String>,
}

/// Why a channel did not take a message. Reasons name statuses and codes, never an
/// address or the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Worth another try later (the channel is down, busy or timed out).
    Transient(String),
    /// Will not be taken, ever; `bounce` when the address itself is bad (a hard
    /// bounce), which the cloud learns as an opt-out of the channel.
    Permanent { reason: String, bounce: bool },
}

/// A channel sink.
#[derive(Debug)]
pub enum Sink {
    File(FileSink),
    Webhook(Webhook),
    Smtp(Smtp),
}

impl Sink {
    /// The sink a URL names (see the module docs).
    pub fn parse(url: &str) -> Result<Sink, String> {
        Sink::parse_with(url, &Auth::default())
    }

    /// [`Sink::parse`], with the secrets a webhook or an SMTP server asks for (kept
    /// out of the URL, which is logged and shown in errors).
    pub fn parse_with(url: &str, auth: &Auth) -> Result<Sink, String> {
        if let Some(path) = url.strip_prefix("file:") {
            return Ok(Sink::File(FileSink {
                path: PathBuf::from(path),
                lock: Mutex::new(()),
            }));
        }
        if url.starts_with("http://") || url.starts_with("https://") {
            let uri = http::Uri::from_str(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
            return Ok(Sink::Webhook(Webhook::new(uri, auth.webhook_bearer.clone())?));
        }
        if url.starts_with("smtp://") || url.starts_with("smtps://") || url.starts_with("smtp+starttls://") {
            return Smtp::parse(url, auth.smtp.clone()).map(Sink::Smtp);
        }
        Err(format!(
            "`{url}`: a channel sink is file:PATH, http(s)://URL, smtp://HOST:PORT?from=ADDR, \
             smtp+starttls://… or smtps://…"
        ))
    }

    /// The name the audit trail gives the sink.
    pub fn name(&self) -> &'static str {
        match self {
            Sink::File(_) => "file",
            Sink::Webhook(_) => "webhook",
            Sink::Smtp(_) => "smtp",
        }
    }

    /// Hands one message over. `Ok` means the channel accepted it.
    pub async fn send(&self, out: &Outgoing<'_>) -> Result<(), Refused> {
        match self {
            Sink::File(f) => f.send(out),
            Sink::Webhook(w) => w.send(out).await,
            Sink::Smtp(s) => s.send(out).await,
        }
    }
}

fn body(out: &Outgoing<'_>) -> serde_json::Value {
    let m = out.decision;
    serde_json::json!({
        "match_id": m.match_id,
        "customer_key": out.customer_key.expose_secret(),
        "channel": m.channel,
        "to": out.to.expose(),
        "offer": m.offer,
        "variant": m.variant,
        "title": out.title.expose(),
        "message": out.message.expose(),
    })
}

/// Appends deliveries to a JSON Lines file.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    lock: Mutex<()>,
}

impl FileSink {
    fn send(&self, out: &Outgoing<'_>) -> Result<(), Refused> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut line = body(out).to_string();
        line.push('\n');
        let failed = |e: std::io::Error| Refused::Transient(format!("{}: {e}", self.path.display()));
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(failed)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(failed)?;
        file.write_all(line.as_bytes()).map_err(failed)?;
        file.sync_data().map_err(failed)
    }
}

type HttpsConnector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Secrets of the sinks.
#[derive(Clone, Default)]
pub struct Auth {
    /// Sent to webhooks as `Authorization: Bearer TOKEN`.
    pub webhook_bearer: Option<String>,
    /// SMTP AUTH user name and password.
    pub smtp: Option<(String, String)>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("webhook_bearer", &self.webhook_bearer.as_ref().map(|_| "<redacted>"))
            .field("smtp", &self.smtp.as_ref().map(|(user, _)| (user, "<redacted>")))
            .finish()
    }
}

/// POSTs deliveries as JSON.
pub struct Webhook {
    uri: http::Uri,
    client: Client<HttpsConnector, Full<Bytes>>,
    /// `Authorization` header value, if any.
    authorization: Option<http::HeaderValue>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

/// How long one webhook call may take.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

impl Webhook {
    fn new(uri: http::Uri, bearer: Option<String>) -> Result<Self, String> {
        let authorization = bearer
            .map(|token| {
                let mut value = http::HeaderValue::try_from(format!("Bearer {token}"))
                    .map_err(|_| "the webhook token is not a valid header value".to_owned())?;
                value.set_sensitive(true);
                Ok::<_, String>(value)
            })
            .transpose()?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("no TLS roots for the webhook: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            uri,
            client: Client::builder(TokioExecutor::new()).build(connector),
            authorization,
        })
    }

    async fn send(&self, out: &Outgoing<'_>) -> Result<(), Refused> {
        let mut request = http::Request::post(self.uri.clone());
        if let Some(value) = &self.authorization {
            request = request.header(http::header::AUTHORIZATION, value.clone());
        }
        let request = request
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", out.decision.match_id.as_str())
            .body(Full::new(Bytes::from(body(out).to_string())))
            .map_err(|e| Refused::Permanent {
                reason: format!("cannot build the request: {e}"),
                bounce: false,
            })?;
        let response = tokio::time::timeout(WEBHOOK_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| Refused::Transient("webhook timed out".to_owned()))?
            .map_err(|e| Refused::Transient(format!("webhook unreachable: {}", error_kind(&e))))?;
        let status = response.status();
        // Drain the body so the connection can be reused.
        let _ = response.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else if status.is_server_error()
            || status == http::StatusCode::TOO_MANY_REQUESTS
            || status == http::StatusCode::REQUEST_TIMEOUT
        {
            Err(Refused::Transient(format!("webhook answered {status}")))
        } else {
            Err(Refused::Permanent {
                reason: format!("webhook answered {status}"),
                bounce: status == http::StatusCode::GONE,
            })
        }
    }
}

/// The kind of a client error, without the URL or anything the request carried.
fn error_kind(e: &hyper_util::client::legacy::Error) -> String {
    if e.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    }
}

/// Sends deliveries as email.
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    host: String,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp").field("host", &self.host).finish_non_exhaustive()
    }
}

impl Smtp {
    fn parse(url: &str, credentials: Option<(String, String)>) -> Result<Self, String> {
        let (scheme, rest) = url.split_once("://").expect("checked by the caller");
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let authority = authority.trim_end_matches('/');
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                Some(p.parse::<u16>().map_err(|_| format!("`{url}`: bad port `{p}`"))?),
            ),
            None => (authority, None),
        };
        let from = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("from="))
            .ok_or_else(|| format!("`{url}`: say the sender with ?from=ADDR"))?;
        let from: Mailbox = from
            .parse()
            .map_err(|e| format!("`{url}`: the sender is not an address: {e}"))?;
        let tls = |host: &str| TlsParameters::new(host.to_owned()).map_err(|e| format!("`{url}`: TLS: {e}"));
        let (tls, default_port) = match scheme {
            "smtp" => (Tls::None, 25),
            "smtp+starttls" => (Tls::Required(tls(host)?), 587),
            _ => (Tls::Wrapper(tls(host)?), 465),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port.unwrap_or(default_port))
            .tls(tls)
            .timeout(Some(Duration::from_secs(30)));
        if let Some((user, password)) = credentials {
            builder = builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
                user, password,
            ));
        }
        let transport = builder.build();
        Ok(Self {
            transport,
            from,
            host: host.to_owned(),
        })
    }

    async fn send(&self, out: &Outgoing<'_>) -> Result<(), Refused> {
        let to: Mailbox = out.to.expose().parse().map_err(|_| Refused::Permanent {
            reason: "the vaulted email is not an address".to_owned(),
            bounce: true,
        })?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(out.title.expose())
            .message_id(Some(format!("<{}@persona>", out.decision.match_id.as_str())))
            .body(out.message.expose().to_owned())
            .map_err(|e| Refused::Permanent {
                reason: format!(
                    "cannot build the email: {}",
                    e.to_string().split(':').next().unwrap_or("invalid")
                ),
                bounce: false,
            })?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(Refused::Permanent {
                reason: format!("SMTP refused: {}", smtp_code(&e)),
                bounce: true,
            }),
            Err(e) => Err(Refused::Transient(format!("SMTP: {}", smtp_code(&e)))),
        }
    }
}

/// The SMTP status code of an error, or its class (a server's message may echo the
/// address, so it is not kept).
fn smtp_code(e: &lettre::transport::smtp::Error) -> String {
    match e.status() {
        Some(code) => format!("{code}"),
        None if e.is_transient() => "transient failure".to_owned(),
        None if e.is_timeout() => "timed out".to_owned(),
        None => "connection failed".to_owned(),
    }
}
