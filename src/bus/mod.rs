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
//! - `bus-presence` keeps this node's online users in Redis, a set under a
//!   key of its own with a TTL that each heartbeat renews, registers the
//!   node's heartbeat in a sorted set of nodes, and reads the sets of the
//!   other live nodes: who is online elsewhere ([`Incoming::Presence`]).
//!   A node that dies (or stops) stops renewing: its users drop out within
//!   the TTL plus a heartbeat.
//!
//! All three reconnect by themselves with a growing pause ([`BACKOFF_MAX`]);
//! the subscriber then subscribes again and says so ([`Incoming::Connected`]),
//! and the hub reads what it missed meanwhile from the store. Redis pub/sub
//! is at most once, so nothing here retries a message: what is lost is
//! read from the store (`chat::Sequencer`).

pub mod codec;

use std::collections::BTreeSet;
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use crate::chat::{ConvId, Shared, UserId};
pub use codec::{CodecError, Envelope};

/// Longest pause between two attempts to reach Redis.
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// First pause after a failed attempt; doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(50);

/// How long the subscriber waits for a message before it looks at its
/// orders (new subscriptions): the delay of a new subscription at most.
/// (Should the wait end inside a message, the client loses its place in
/// the stream: the next read fails, and the subscriber reconnects and
/// catches up from the store like after any other loss.)
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
    /// The users online on the other live nodes.
    Presence(crate::chat::IdSet<UserId>),
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
    heartbeats: mpsc::SyncSender<Vec<UserId>>,
    pub counters: Arc<BusCounters>,
    /// The last fact met a full queue.
    queue_full: std::cell::Cell<bool>,
}

/// Redis names: channels `<prefix>:all` and `<prefix>:c:<conversation
/// id>`, keys `<prefix>:nodes` and `<prefix>:presence:<node>`.
#[derive(Debug, Clone)]
struct Channels {
    prefix: String,
}

impl Channels {
    fn all(&self) -> String {
        format!("{}:all", self.prefix)
    }

    /// The sorted set of live nodes, scored by their last heartbeat.
    fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// The set of users online on `node`.
    fn presence(&self, node: u64) -> String {
        format!("{}:presence:{node}", self.prefix)
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
    /// How long this node's presence lasts in Redis without a heartbeat.
    pub presence_ttl: Duration,
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
        // One heartbeat waits at most: a slow Redis skips beats, it does
        // not queue them.
        let (heartbeats, beats) = mpsc::sync_channel(1);
        {
            let presence = Presence {
                client: client.clone(),
                node,
                channels: channels.clone(),
                ttl: cfg.presence_ttl,
                incoming: incoming.clone(),
                wake: Arc::clone(&wake),
            };
            thread::Builder::new()
                .name("bus-presence".into())
                .spawn(move || presence.run(&beats))?;
        }
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
            heartbeats,
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

    /// Renews this node's presence with the users online here, and asks
    /// who is online elsewhere; skipped while the last one is under way.
    pub fn heartbeat(&self, online: Vec<UserId>) {
        let _ = self.heartbeats.try_send(online);
    }

    pub fn subscribe(&self, convs: Vec<ConvId>) {
        let _ = self.orders.send(Order::Subscribe(convs));
    }

    pub fn unsubscribe(&self, convs: Vec<ConvId>) {
        let _ = self.orders.send(Order::Unsubscribe(convs));
    }
}

/// The presence heartbeat's thread.
struct Presence {
    client: redis::Client,
    node: u64,
    channels: Channels,
    ttl: Duration,
    incoming: mpsc::SyncSender<Incoming>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl Presence {
    fn run(self, beats: &mpsc::Receiver<Vec<UserId>>) {
        let mut conn: Option<redis::Connection> = None;
        while let Ok(online) = beats.recv() {
            if conn.is_none() {
                match self.client.get_connection() {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        log::warn!("bus: cannot reach Redis for presence: {e}");
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            match self.beat(c, &online) {
                Ok(elsewhere) => {
                    if self.incoming.send(Incoming::Presence(elsewhere)).is_err() {
                        return;
                    }
                    (self.wake)();
                }
                Err(e) => {
                    log::warn!("bus: presence heartbeat failed: {e}");
                    conn = None;
                }
            }
        }
    }

    /// Writes this node's online users (replacing the last set, atomically,
    /// with the TTL), its heartbeat, and reads the other live nodes' users.
    fn beat(
        &self,
        c: &mut redis::Connection,
        online: &[UserId],
    ) -> redis::RedisResult<crate::chat::IdSet<UserId>> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let ttl_ms = self.ttl.as_millis() as i64;
        let nodes = self.channels.nodes();
        let mine = self.channels.presence(self.node);
        let mut pipe = redis::pipe();
        pipe.atomic().del(&mine).ignore();
        if !online.is_empty() {
            pipe.sadd(&mine, online.iter().map(|u| u.0).collect::<Vec<u32>>())
                .ignore();
        }
        pipe.pexpire(&mine, ttl_ms)
            .ignore()
            .zadd(&nodes, self.node.to_string(), now_ms)
            .ignore()
            .zrembyscore(&nodes, "-inf", now_ms - ttl_ms)
            .ignore()
            .zrange(&nodes, 0, -1);
        let (live,): (Vec<String>,) = pipe.query(c)?;
        let others: Vec<String> = live
            .into_iter()
            .filter(|n| *n != self.node.to_string())
            .collect();
        let mut elsewhere = crate::chat::IdSet::default();
        if others.is_empty() {
            return Ok(elsewhere);
        }
        let mut read = redis::pipe();
        for n in others.iter().filter_map(|n| n.parse().ok()) {
            read.smembers(self.channels.presence(n));
        }
        let sets: Vec<Vec<u32>> = read.query(c)?;
        elsewhere.extend(sets.into_iter().flatten().map(UserId));
        Ok(elsewhere)
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
