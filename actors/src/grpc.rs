//! The gRPC services a shard serves (persona.v1, plus grpc.health.v1 and server
//! reflection): Publish onto the bus, and Decide, GetProfile and Explain answered by
//! the customer's actor. Any shard accepts any token: a call for a partition another
//! shard owns is forwarded to it (the owner from the lease table, its address from the
//! shard registry in Redis), once: a forwarded call that lands on a shard that does
//! not own the partition either (a move in flight) fails with FAILED_PRECONDITION, and
//! the client retries.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use persona_bus::redis::RedisBus;
use persona_proto::v1::{
    self, AcquireReply, AcquireRequest, DecideReply, DecideRequest, ExplainReply, ExplainRequest, GetProfileRequest,
    HandoffChunk, PartitionRequest, Profile, PublishReply, PublishRequest, StoreEntry,
};
use persona_proto::{
    Persona, PersonaClient, PersonaServer, ShardControl, ShardControlServer, instant, micros, to_wire_map, token,
};
use tokio::sync::Mutex;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

use crate::moves::Mover;
use crate::{Decision, ShardHandle};

/// Metadata on a call one shard forwards to another.
const FORWARDED: &str = "x-persona-forwarded";

/// persona.v1.Persona on one shard.
#[derive(Clone)]
pub struct PersonaService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PersonaService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersonaService")
            .field("shard", &self.inner.shard.name())
            .finish_non_exhaustive()
    }
}

struct Inner {
    shard: ShardHandle,
    bus: RedisBus,
    peers: Mutex<HashMap<String, PersonaClient<Channel>>>,
    tls: Option<persona_proto::tls::MutualTls>,
}

/// Where a call goes.
enum Route {
    Here,
    Owner(PersonaClient<Channel>),
}

impl PersonaService {
    /// The service of `shard`; calls it forwards to other shards go over mutual TLS
    /// when `tls` is given.
    pub fn new(shard: ShardHandle, bus: RedisBus, tls: Option<persona_proto::tls::MutualTls>) -> Self {
        PersonaService {
            inner: Arc::new(Inner {
                shard,
                bus,
                peers: Mutex::new(HashMap::new()),
                tls,
            }),
        }
    }

    async fn route<T>(&self, token: &persona_event::Token, request: &Request<T>) -> Result<Route, Status> {
        let (p, owned) = self.inner.shard.partition(token);
        if owned {
            return Ok(Route::Here);
        }
        if request.metadata().contains_key(FORWARDED) {
            return Err(Status::failed_precondition(format!(
                "partition {p} is not owned by shard `{}` (moving?); retry",
                self.inner.shard.name()
            )));
        }
        let bus = &self.inner.bus;
        let leases = bus.leases().await.map_err(unavailable)?;
        let owner = leases
            .into_iter()
            .find(|l| l.partition == p)
            .ok_or_else(|| Status::unavailable(format!("partition {p} has no owner")))?;
        let mut peers = self.inner.peers.lock().await;
        if let Some(client) = peers.get(&owner.shard) {
            return Ok(Route::Owner(client.clone()));
        }
        let address = bus
            .shard_address(&owner.shard)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| Status::unavailable(format!("shard `{}` has no registered address", owner.shard)))?;
        let channel = persona_proto::tls::connect(&address, self.inner.tls.as_ref())
            .await
            .map_err(|e| Status::unavailable(format!("shard `{}`: {e}", owner.shard)))?;
        let client = PersonaClient::new(channel);
        peers.insert(owner.shard, client.clone());
        Ok(Route::Owner(client))
    }

    /// Decide, answered here or by the owner of the customer's partition.
    async fn answer_decide(&self, request: Request<DecideRequest>) -> Result<Response<DecideReply>, Status> {
        let wire = request
            .get_ref()
            .event
            .clone()
            .ok_or_else(|| Status::invalid_argument("event: missing"))?;
        let event = persona_event::Event::try_from(wire)?;
        if let Route::Owner(mut owner) = self.route(&event.token, &request).await? {
            return owner.decide(forwarded(request.into_inner())).await;
        }
        let shard = &self.inner.shard;
        let (partition, _) = shard.partition(&event.token);
        let decision = shard.decide(event).await.map_err(internal)?;
        let mut reply = DecideReply {
            partition,
            shard: shard.name().to_owned(),
            ..DecideReply::default()
        };
        match decision {
            None | Some(Decision::None) => {}
            Some(Decision::Send(m)) => reply.r#match = Some(wire_match(&m, false)),
            Some(Decision::Deferred(m, due)) => {
                reply.r#match = Some(wire_match(&m, false));
                reply.deferred_until_micros = Some(due);
            }
            Some(Decision::Control(sent)) => {
                reply.r#match = Some(v1::Match {
                    offer: sent.offer,
                    variant: sent.variant,
                    channel: sent.channel.as_str().to_owned(),
                    ts_micros: sent.at,
                    control: true,
                    ..v1::Match::default()
                });
            }
        }
        Ok(Response::new(reply))
    }
}

fn unavailable(e: impl std::fmt::Display) -> Status {
    Status::unavailable(e.to_string())
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

fn forwarded<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    request
}

fn wire_match(m: &persona_event::Match, control: bool) -> v1::Match {
    v1::Match {
        control,
        ..v1::Match::from(m)
    }
}

#[tonic::async_trait]
impl Persona for PersonaService {
    async fn publish(&self, request: Request<PublishRequest>) -> Result<Response<PublishReply>, Status> {
        // The caller's trace context (gRPC metadata `traceparent`) goes on with the events.
        let trace = persona_proto::trace::from_metadata(request.metadata());
        let events = request
            .into_inner()
            .events
            .into_iter()
            .map(persona_event::Event::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        self.inner
            .bus
            .publish_traced(&events, trace.as_deref())
            .await
            .map_err(unavailable)?;
        Ok(Response::new(PublishReply {
            accepted: events.len() as u64,
        }))
    }

    async fn publish_stream(&self, request: Request<Streaming<v1::Event>>) -> Result<Response<PublishReply>, Status> {
        let trace = persona_proto::trace::from_metadata(request.metadata());
        let mut stream = request.into_inner();
        let mut batch = Vec::with_capacity(512);
        let mut accepted = 0u64;
        while let Some(event) = stream.message().await? {
            batch.push(persona_event::Event::try_from(event)?);
            if batch.len() == 512 {
                self.inner
                    .bus
                    .publish_traced(&batch, trace.as_deref())
                    .await
                    .map_err(unavailable)?;
                accepted += batch.len() as u64;
                batch.clear();
            }
        }
        self.inner
            .bus
            .publish_traced(&batch, trace.as_deref())
            .await
            .map_err(unavailable)?;
        accepted += batch.len() as u64;
        Ok(Response::new(PublishReply { accepted }))
    }

    async fn decide(&self, request: Request<DecideRequest>) -> Result<Response<DecideReply>, Status> {
        let started = std::time::Instant::now();
        let reply = self.answer_decide(request).await;
        crate::metrics::shard_metrics()
            .decide_seconds
            .observe(started.elapsed().as_secs_f64());
        reply
    }

    async fn get_profile(&self, request: Request<GetProfileRequest>) -> Result<Response<Profile>, Status> {
        let who = token("token", &request.get_ref().token)?;
        if let Route::Owner(mut owner) = self.route(&who, &request).await? {
            return owner.get_profile(forwarded(request.into_inner())).await;
        }
        let at = request
            .get_ref()
            .as_of_micros
            .map(|t| instant("as_of_micros", t))
            .transpose()?;
        let shard = &self.inner.shard;
        let Some(customer) = shard.customer(&who).await.map_err(internal)? else {
            return Ok(Response::new(Profile {
                token: who.to_string(),
                ..Profile::default()
            }));
        };
        let engine = shard.engine();
        let view = customer.features.view(&engine.features, at);
        let dated = |m: &std::collections::BTreeMap<String, persona_offers::Dated>| {
            m.iter().map(|(k, d)| (k.clone(), v1::Value::from(&d.value))).collect()
        };
        Ok(Response::new(Profile {
            token: who.to_string(),
            known: true,
            as_of_micros: micros(view.at()),
            features: to_wire_map(&view.all()),
            profile: dated(&customer.profile),
            prefs: dated(&customer.prefs),
            contacts: customer.contacts.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn explain(&self, request: Request<ExplainRequest>) -> Result<Response<ExplainReply>, Status> {
        let who = token("token", &request.get_ref().token)?;
        if let Route::Owner(mut owner) = self.route(&who, &request).await? {
            return owner.explain(forwarded(request.into_inner())).await;
        }
        let message = request.into_inner();
        let at = message.as_of_micros.map(|t| instant("as_of_micros", t)).transpose()?;
        let explained = self
            .inner
            .shard
            .explain(&who, &message.offer, at)
            .await
            .map_err(internal)?;
        let Some(e) = explained else {
            return Ok(Response::new(ExplainReply {
                offer: message.offer,
                ..ExplainReply::default()
            }));
        };
        let clauses = e
            .clauses
            .iter()
            .map(|c| v1::Clause {
                text: c.text.clone(),
                value: Some(v1::Value::from(&c.value)),
                passed: c.passed,
                features: to_wire_map(&c.features.iter().cloned().collect()),
            })
            .collect();
        let (variant, channel, blocked_by) = match &e.outcome {
            Ok((variant, channel)) => (variant.clone(), channel.as_str().to_owned(), String::new()),
            Err(gate) => (String::new(), String::new(), gate.describe().to_owned()),
        };
        Ok(Response::new(ExplainReply {
            found: true,
            offer: e.offer,
            at_micros: micros(e.at),
            clauses,
            variant,
            channel,
            blocked_by,
            control: e.control,
        }))
    }
}

/// persona.v1.ShardControl: partition moves between shards.
#[derive(Clone, Debug)]
pub struct ControlService {
    mover: Arc<Mover>,
}

impl ControlService {
    pub fn new(mover: Arc<Mover>) -> Self {
        ControlService { mover }
    }
}

fn move_status(e: crate::Error) -> Status {
    match e {
        crate::Error::Move(reason) => Status::failed_precondition(reason),
        other => Status::internal(other.to_string()),
    }
}

type HandoffStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<HandoffChunk, Status>> + Send>>;

#[tonic::async_trait]
impl ShardControl for ControlService {
    type HandoffStream = HandoffStream;

    async fn handoff(&self, request: Request<PartitionRequest>) -> Result<Response<HandoffStream>, Status> {
        let entries = self
            .mover
            .release(request.into_inner().partition)
            .await
            .map_err(move_status)?;
        let chunks: Vec<Result<HandoffChunk, Status>> = entries
            .chunks(1000)
            .map(|chunk| {
                Ok(HandoffChunk {
                    entries: chunk
                        .iter()
                        .map(|(key, value)| StoreEntry {
                            key: key.clone(),
                            value: value.clone(),
                        })
                        .collect(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn acquire(&self, request: Request<AcquireRequest>) -> Result<Response<AcquireReply>, Status> {
        let acquired = self
            .mover
            .acquire(request.into_inner().partition)
            .await
            .map_err(move_status)?;
        Ok(Response::new(AcquireReply {
            from_shard: acquired.from,
            entries: acquired.entries,
            epoch: acquired.epoch,
        }))
    }
}

/// Serves persona.v1 (and ShardControl when the shard can move partitions),
/// grpc.health.v1 (SERVING while it runs) and server reflection on `addr` until
/// `shutdown` resolves; over mutual TLS when `tls` is given (clients must present a
/// certificate its CA signed).
pub async fn serve(
    service: PersonaService,
    control: Option<ControlService>,
    addr: SocketAddr,
    tls: Option<persona_proto::tls::MutualTls>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), crate::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<PersonaServer<PersonaService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(persona_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| crate::Error::Actor(format!("reflection: {e}")))?;
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = &tls {
        let config = tls.server().map_err(|e| crate::Error::Actor(e.to_string()))?;
        server = server
            .tls_config(config)
            .map_err(|e| crate::Error::Actor(format!("TLS: {e}")))?;
    }
    server
        .add_service(health)
        .add_service(reflection)
        .add_service(PersonaServer::new(service))
        .add_optional_service(control.map(ShardControlServer::new))
        .serve_with_shutdown(addr, shutdown)
        .await
        .map_err(|e| crate::Error::Actor(format!("gRPC server on {addr}: {e}")))
}
