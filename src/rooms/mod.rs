//! The engine: what happens in a room, whoever asks (the REST API or a socket). It owns the
//! registry of this node's active rooms and their actors, presence, following, joins and
//! leaves, this node's record, and the write paths of stores, comments and users, each
//! announced through one `publish`. Both transports call it; it calls neither.

pub mod actor;
pub mod comments;
pub mod entries;
pub mod events;
pub mod files;
pub mod first_page;
pub mod following;
pub mod hub;
pub mod identities;
pub mod membership;
pub mod nodes;
pub mod order;
pub mod outbox;
pub mod presence;
pub mod publish;
pub mod reads;
pub mod relay;
pub mod users;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::analytics::Analytics;
use crate::config::Config;
use crate::domain::{ConnectionId, NodeId, UserId};
use crate::events::EventBus;
use crate::files::Storage;
use crate::metrics::Metrics;
use crate::relay::{RedisUrl, Relay};
use crate::store::{DynStore, PageSize};

pub use hub::Hub;
pub use publish::Outcome;

/// Who made a change: the account's backend (REST), or a user on a socket, whose own socket
/// does not hear the change's events (it has the request's result).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Backend,
    User {
        user: UserId,
        connection: ConnectionId,
    },
}

impl Origin {
    /// The user who made the change; `None` for the backend.
    pub fn user(self) -> Option<UserId> {
        match self {
            Self::Backend => None,
            Self::User { user, .. } => Some(user),
        }
    }

    /// The socket that must not hear the change's events.
    pub fn connection(self) -> Option<ConnectionId> {
        match self {
            Self::Backend => None,
            Self::User { connection, .. } => Some(connection),
        }
    }
}

/// The engine's dependencies, explicit: the database, this node's room registry, the event
/// bus, the configuration and file storage. Cheap to clone.
#[derive(Clone)]
pub struct Engine(Arc<Parts>);

struct Parts {
    store: DynStore,
    hub: Hub,
    bus: EventBus,
    config: Config,
    files: Storage,
    analytics: Arc<Analytics>,
    metrics: Arc<Metrics>,
    reads: reads::RoomReads,
    identities: identities::Identities,
}

impl Engine {
    pub fn new(
        store: DynStore,
        bus: EventBus,
        config: Config,
        node_id: NodeId,
        files: Storage,
        metrics: Arc<Metrics>,
    ) -> Self {
        let first_page = PageSize {
            items: config.realtime.page_users,
            bytes: config.page_bytes(),
        };
        let shutdown = CancellationToken::new();
        // The configuration was validated: a URL that does not parse never gets here.
        let relay = match config.redis.url.as_str() {
            "" => None,
            url => RedisUrl::parse(url)
                .ok()
                .map(|url| Relay::start(url, node_id.clone(), shutdown.clone())),
        };
        let (relay, incoming) = relay.unzip();
        let hub = Hub::new(
            store.clone(),
            config.realtime.clone(),
            first_page,
            node_id,
            relay,
            shutdown,
            metrics.clone(),
        );
        // On a database other nodes share, room answers are kept only once the feed of their
        // changes is up (`follow_room_changes`).
        let reads = reads::RoomReads::new(!store.shared());
        let engine = Self(Arc::new(Parts {
            store,
            hub,
            bus,
            config,
            files,
            analytics: Arc::default(),
            metrics,
            reads,
            identities: identities::Identities::default(),
        }));
        if let Some(incoming) = incoming {
            tokio::spawn(engine.clone().receive_relayed(incoming));
        }
        engine
    }

    /// What `GET /metrics` shows.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.0.metrics
    }

    /// The activity counters the dashboard's charts are drawn from.
    pub fn analytics(&self) -> &Arc<Analytics> {
        &self.0.analytics
    }

    /// Counts one `activity` in the room (in memory; written in batches).
    pub fn count(&self, scope: crate::store::RoomScope, activity: crate::analytics::Activity) {
        self.0
            .analytics
            .record(scope.account_id, scope.room_id, activity);
    }

    pub fn store(&self) -> &DynStore {
        &self.0.store
    }

    pub fn hub(&self) -> &Hub {
        &self.0.hub
    }

    pub fn bus(&self) -> &EventBus {
        &self.0.bus
    }

    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// Room answers kept in memory (`reads`).
    pub fn room_reads(&self) -> &reads::RoomReads {
        &self.0.reads
    }

    /// The handshakes waiting for their user and room (`identities`).
    fn identities(&self) -> &identities::Identities {
        &self.0.identities
    }
}
