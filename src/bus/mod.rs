//! The bus between nodes (`--bus redis://...`): Redis pub/sub, driven by
//! the `redis` crate's blocking client on two threads of its own, so the
//! event loop never waits on Redis and carries no async runtime.
//!
//! - `bus-publish` takes [`Shared`] facts from a bounded queue and
//!   PUBLISHes each once (pipelined, all that are queued at once): a
//!   conversation's messages, typing and receipts on that conversation's
//!   channel, everything else (accounts, friendships, memberships, edits)
//!   on the node-wide channel.
//! - `bus-subscribe` listens on the node-wide channel and on the channels
//!   of the conversations the hub asks for (those with members logged in
//!   here), and hands what it reads to the loop through a bounded channel
//!   and the loop's `Waker`, as the storage thread does.
//!
//! Both reconnect by themselves with a growing pause ([`BACKOFF_MAX`]);
//! the subscriber then subscribes again and says so ([`Incoming::Connected`]),
//! and the hub reads what it missed meanwhile from the store. Redis pub/sub
//! is at most once, so nothing here retries a message: what is lost is
//! read from the store (`chat::Sequencer`).

pub mod codec;

use std::collections::BTreeSet;
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use crate::chat::{ConvId, Shared};
pub use codec::{CodecError, Envelope};

/// Longest pause between two attempts to reach Redis.
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// First pause after a failed attempt; doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(50);

/// How long the subscriber waits for a message before it looks at its
/// orders (new subscriptions): the delay of a new subscription at most.
const SUBSCRIBER_POLL: Duration = Duration::from_millis(20);

/// Most facts one pipeline publishes.
const PUBLISH_BATCH: usize = 1024;

/// What the subscriber hands the loop.
#[derive(Debug)]
pub enum Incoming {
    /// A fact another node published (this node's own are dropped).
    Fact(Shared),
    /// (Re)connected and subscribed to every channel asked for: what was
    /// published meanwhile is lost, so every subscribed conversation is
    /// read from the store.
    Connected,
    /// Now listening to these conversations: read what they have had.
    Subscribed(Vec<ConvId>),
}

/// Counts kept by the bus threads (STATS `bus_*`).
#[derive(Debug, Default)]
pub struct BusCounters {
    pub published: std::sync::atomic::AtomicU64,
    /// Facts not published: Redis unreachable, or the queue full.
    pub publish_dropped: std::sync::atomic::AtomicU64,
    pub received: std::sync::atomic::AtomicU64,
    /// Messages that did not decode (another version, damage).
    pub malformed: std::sync::atomic::AtomicU64,
    pub reconnects: std::sync::atomic::AtomicU64,
}

enum Order {
    Subscribe(Vec<ConvId>),
    Unsubscribe(Vec<ConvId>),
}

/// Handle to the bus threads; they stop when it is dropped.
pub struct Bus {
    publish: mpsc::SyncSender<Shared>,
    orders: mpsc::Sender<Order>,
    pub counters: Arc<BusCounters>,
    /// The last fact met a full queue.
    queue_full: std::cell::Cell<bool>,
}

/// Channel names: `<prefix>:all` and `<prefix>:c:<conversation id>`.
#[derive(Debug, Clone)]
struct Channels {
    prefix: String,
}

impl Channels {
    fn all(&self) -> String {
        format!("{}:all", self.prefix)
    }

    fn conv(&self, conv: ConvId) -> String {
        format!("{}:c:{}", self.prefix, conv.0)
    }

    fn of(&self, shared: &Shared) -> String {
        match shared.conv() {
            Some(conv) => self.conv(conv),
            None => self.all(),
        }
    }
}

/// Where and how the bus connects.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// `redis://host:port`.
    pub url: String,
    /// Channel names start with this, so clusters can share one Redis.
    pub prefix: String,
    /// Facts waiting to be published, and received ones waiting for the
    /// loop; past it a fact to publish is dropped (and read from the store
    /// by the other nodes), and the subscriber stops reading from Redis.
    pub queue: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus address: {0}")]
    Url(#[from] redis::RedisError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Bus {
    /// Starts the threads. Redis need not be up: they keep trying.
    pub fn start(
        cfg: BusConfig,
        incoming: mpsc::SyncSender<Incoming>,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> Result<Bus, BusError> {
        let client = redis::Client::open(cfg.url.as_str())?;
        // A random id: this node's own messages come back on its channels.
        let node: u64 = rand_node_id();
        let channels = Channels { prefix: cfg.prefix };
        let counters = Arc::new(BusCounters::default());
        let (publish, queued) = mpsc::sync_channel(cfg.queue);
        let (orders, orders_rx) = mpsc::channel();
        {
            let client = client.clone();
            let channels = channels.clone();
            let counters = Arc::clone(&counters);
            thread::Builder::new()
                .name("bus-publish".into())
                .spawn(move || publisher(&client, node, &channels, &queued, &counters))?;
        }
        {
            let counters = Arc::clone(&counters);
            thread::Builder::new()
                .name("bus-subscribe".into())
                .spawn(move || {
                    let sub = Subscriber {
                        client,
                        node,
                        channels,
                        orders: orders_rx,
                        incoming,
                        wake,
                        counters,
                        wanted: BTreeSet::new(),
                    };
                    sub.run();
                })?;
        }
        Ok(Bus {
            publish,
            orders,
            counters,
            queue_full: std::cell::Cell::new(false),
        })
    }

    /// Queues a fact to publish; dropped (counted, and logged once per run
    /// of drops) when the queue is full.
    pub fn publish(&self, shared: Shared) {
        let full = self.publish.try_send(shared).is_err();
        if full {
            bump(&self.counters.publish_dropped, 1);
        }
        if self.queue_full.replace(full) != full && full {
            log::warn!("bus: publish queue full (--bus-queue); dropping until it drains");
        }
    }

    pub fn subscribe(&self, convs: Vec<ConvId>) {
        let _ = self.orders.send(Order::Subscribe(convs));
    }

    pub fn unsubscribe(&self, convs: Vec<ConvId>) {
        let _ = self.orders.send(Order::Unsubscribe(convs));
    }
}

fn rand_node_id() -> u64 {
    // A UUIDv7's low 64 bits are random.
    uuid::Uuid::now_v7().as_u64_pair().1
}

fn bump(counter: &std::sync::atomic::AtomicU64, n: u64) {
    counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
}

/// The next pause after a failed attempt.
fn backoff(pause: Duration) -> Duration {
    (pause * 2).clamp(BACKOFF_MIN, BACKOFF_MAX)
}

/// Publishes queued facts until the handle is dropped. While Redis is
/// unreachable, what comes in meanwhile is dropped: the other nodes read it
/// from the store once their position checks run.
fn publisher(
    client: &redis::Client,
    node: u64,
    channels: &Channels,
    queued: &mpsc::Receiver<Shared>,
    counters: &BusCounters,
) {
    let mut conn: Option<redis::Connection> = None;
    let mut pause = Duration::ZERO;
    let mut batch = Vec::new();
    while let Ok(first) = queued.recv() {
        batch.push(first);
        while batch.len() < PUBLISH_BATCH {
            match queued.try_recv() {
                Ok(s) => batch.push(s),
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        if conn.is_none() {
            match client.get_connection() {
                Ok(c) => {
                    conn = Some(c);
                    pause = Duration::ZERO;
                }
                Err(e) => {
                    log::warn!("bus: cannot reach Redis to publish: {e}");
                    bump(&counters.publish_dropped, n);
                    batch.clear();
                    pause = backoff(pause);
                    thread::sleep(pause);
                    continue;
                }
            }
        }
        let mut pipe = redis::pipe();
        for shared in batch.drain(..) {
            pipe.cmd("PUBLISH")
                .arg(channels.of(&shared))
                .arg(codec::encode(node, &shared))
                .ignore();
        }
        let Some(c) = conn.as_mut() else { continue };
        match pipe.exec(c) {
            Ok(()) => bump(&counters.published, n),
            Err(e) => {
                log::warn!("bus: publish failed: {e}");
                bump(&counters.publish_dropped, n);
                conn = None;
            }
        }
    }
}

struct Subscriber {
    client: redis::Client,
    node: u64,
    channels: Channels,
    orders: mpsc::Receiver<Order>,
    incoming: mpsc::SyncSender<Incoming>,
    wake: Arc<dyn Fn() + Send + Sync>,
    counters: Arc<BusCounters>,
    /// The conversations the hub wants to hear.
    wanted: BTreeSet<ConvId>,
}

/// Why a subscriber's session with Redis ended.
enum Ended {
    /// The server stopped: the thread ends.
    Stopped,
    /// Redis went away: connect again.
    Lost,
}

impl Subscriber {
    fn run(mut self) {
        let mut pause = Duration::ZERO;
        let mut connected_before = false;
        loop {
            if !self.take_orders() {
                return;
            }
            let mut conn = match self.client.get_connection() {
                Ok(c) => c,
                Err(e) => {
                    if connected_before || pause.is_zero() {
                        log::warn!("bus: cannot reach Redis to subscribe: {e}");
                    }
                    pause = backoff(pause);
                    thread::sleep(pause);
                    continue;
                }
            };
            pause = Duration::ZERO;
            if connected_before {
                bump(&self.counters.reconnects, 1);
                log::info!("bus: reconnected to Redis");
            }
            connected_before = true;
            match self.listen(&mut conn) {
                Ended::Stopped => return,
                Ended::Lost => {}
            }
        }
    }

    /// Applies the hub's orders to `wanted`; false once the server is gone.
    fn take_orders(&mut self) -> bool {
        loop {
            match self.orders.try_recv() {
                Ok(Order::Subscribe(convs)) => self.wanted.extend(convs),
                Ok(Order::Unsubscribe(convs)) => {
                    for c in convs {
                        self.wanted.remove(&c);
                    }
                }
                Err(mpsc::TryRecvError::Empty) => return true,
                Err(mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn hand(&self, incoming: Incoming) -> bool {
        if self.incoming.send(incoming).is_err() {
            return false;
        }
        (self.wake)();
        true
    }

    fn listen(&mut self, conn: &mut redis::Connection) -> Ended {
        let mut pubsub = conn.as_pubsub();
        let mut names: Vec<String> = self.wanted.iter().map(|&c| self.channels.conv(c)).collect();
        names.push(self.channels.all());
        let ready = pubsub
            .set_read_timeout(Some(SUBSCRIBER_POLL))
            .and_then(|()| pubsub.subscribe(&names));
        if let Err(e) = ready {
            log::warn!("bus: subscribing failed: {e}");
            return Ended::Lost;
        }
        if !self.hand(Incoming::Connected) {
            return Ended::Stopped;
        }
        loop {
            let mut added = Vec::new();
            let mut removed = Vec::new();
            loop {
                match self.orders.try_recv() {
                    Ok(Order::Subscribe(convs)) => added.extend(convs),
                    Ok(Order::Unsubscribe(convs)) => removed.extend(convs),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return Ended::Stopped,
                }
            }
            if !removed.is_empty() {
                for c in &removed {
                    self.wanted.remove(c);
                }
                let names: Vec<String> = removed.iter().map(|&c| self.channels.conv(c)).collect();
                if let Err(e) = pubsub.unsubscribe(&names) {
                    log::warn!("bus: unsubscribing failed: {e}");
                    return Ended::Lost;
                }
            }
            if !added.is_empty() {
                self.wanted.extend(added.iter().copied());
                let names: Vec<String> = added.iter().map(|&c| self.channels.conv(c)).collect();
                if let Err(e) = pubsub.subscribe(&names) {
                    log::warn!("bus: subscribing failed: {e}");
                    return Ended::Lost;
                }
                if !self.hand(Incoming::Subscribed(added)) {
                    return Ended::Stopped;
                }
            }
            let msg = match pubsub.get_message() {
                Ok(msg) => msg,
                Err(e) if e.is_timeout() => continue,
                Err(e) => {
                    log::warn!("bus: lost Redis: {e}");
                    return Ended::Lost;
                }
            };
            bump(&self.counters.received, 1);
            match codec::decode(msg.get_payload_bytes()) {
                Ok(env) if env.node == self.node => {}
                Ok(env) => {
                    if !self.hand(Incoming::Fact(env.shared)) {
                        return Ended::Stopped;
                    }
                }
                Err(e) => {
                    bump(&self.counters.malformed, 1);
                    log::warn!("bus: dropped a message on {}: {e}", msg.get_channel_name());
                }
            }
        }
    }
}
