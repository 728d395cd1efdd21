//! The chat domain: users, sessions, conversations and friendships.
//!
//! The [`Hub`] is sans-IO. It takes an input (a parsed command from session S,
//! a finished password hash, a committed storage batch) and appends what
//! should happen to an [`Out`]: lines for sessions, hashing jobs, storage
//! writes. It never sees a socket, a thread or a clock it does not read itself,
//! so it is unit-tested directly and the server loop stays a thin driver.

mod accounts;
mod apply;
mod attach;
mod changes;
mod error;
mod found;
mod friends;
mod history;
mod inbox;
mod membership;
mod moderation;
mod names;
mod order;
mod output;
mod presence;
mod push;
mod reactions;
mod rooms;
mod say;
mod shared;
mod state;
mod sync;
pub mod types;

use std::borrow::Cow;
use std::collections::HashMap;

pub use apply::Change;
pub use error::ChatError;
pub use friends::{FriendChange, FriendError, Friends};
pub use membership::Membership;
pub use moderation::AUDIT_KEPT;
pub use order::Sequencer;
pub use output::{
    Audience, Body, Emit, Event, FriendNews, InboxEntry, MemberInfo, Out, Output, Part, Posted,
    Presence, Progress, Reply, RequestInfo, RoomInfo,
};
pub use push::{Pusher, PusherChange};
pub use reactions::{ReactionChange, Reactions};
pub use shared::{Shared, Subscriptions};
pub use state::{Conv, Member, Msg, User};
pub use sync::{CURSOR_ROWS, Cursor};
use types::Table;
pub use types::{AuditAction, ConvId, ConvKind, MsgState, RequestState, Seq, UserId};

use crate::protocol::codec::Directory;
use crate::protocol::{Command, ParseError, Target, help};
use crate::store::{self, Answer, Assigned, Snapshot, StoreError, Write};

/// A connection, as the hub knows it. The driver packs its slot number (low
/// 32 bits, for a direct lookup) with a serial that is never reused (high
/// 32 bits), so an answer for a closed session can never reach the next
/// connection that gets the same slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl SessionId {
    pub fn new(serial: u32, slot: u32) -> Self {
        SessionId((u64::from(serial) << 32) | u64::from(slot))
    }

    pub fn slot(self) -> usize {
        (self.0 & 0xFFFF_FFFF) as usize
    }
}

/// Logs show the serial: the order in which connections came in.
impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0 >> 32)
    }
}

/// Context carried through the password-hashing pool.
#[derive(Debug)]
pub enum AuthCtx {
    Register {
        sid: SessionId,
        name: String,
    },
    Login {
        sid: SessionId,
        user: Option<UserId>,
    },
}

/// Context carried through the storage thread; acted on once durable.
#[derive(Debug)]
pub enum Pending {
    /// Send these events, then this reply; with `--bus`, publish the
    /// change that was committed.
    Reply {
        sid: SessionId,
        reply: Reply,
        events: Vec<Emit>,
        shared: Option<Change>,
    },
    /// Messages of a conversation that the bus did not bring (a gap, a
    /// position check, a new subscription), to be sequenced.
    Fill { conv: ConvId },
    /// The newest messages of a conversation this node did not listen to,
    /// taken silently as its copy (`--bus`); for a user who joined it on
    /// another node, with where that JOIN put their cursor.
    Warmed {
        conv: ConvId,
        joiner: Option<(UserId, Seq)>,
    },
    /// Where a JOIN made on another node put the joiner's cursors (`--bus`).
    JoinedAt { conv: ConvId, user: UserId },
    /// A JOIN of a conversation this node did not listen to: its replay is
    /// made once the node's copy has been brought up to date (`--bus`).
    ColdJoined(Box<shared::ColdJoin>),
    /// Publish this message and answer its sender. Under `--durability
    /// sync` its seq is 0 until the commit assigns one.
    Said {
        sid: SessionId,
        conv: ConvId,
        msg: Msg,
        ack: Ack,
    },
    /// May this session fetch this blob?
    FetchAccess { sid: SessionId, blob: String },
    /// A conversation is founded: apply it with the id its commit assigned,
    /// answer its founder, run what waited for it.
    Founded(Box<found::Founding>),
    /// A node-wide change applied here is in the change log: publish it
    /// with its entry's id.
    Logged(Change),
    /// Change log entries past this node's position, to apply in order.
    LogRead,
    /// Finish a registration: add the account, with the id its commit
    /// assigned, and log the session in.
    Registered {
        sid: SessionId,
        name: String,
        phc: String,
    },
    /// Older messages for HISTORY.
    History {
        sid: SessionId,
        conv: ConvId,
        limit: usize,
    },
    /// Matches for SEARCH.
    Search { sid: SessionId, conv: ConvId },
    /// Where a SYNC's conversations end in the store (`--bus`).
    SyncPlan {
        sid: SessionId,
        ranges: std::collections::VecDeque<sync::Range>,
        from: sync::Start,
    },
    /// The next chunk of a SYNC stream.
    SyncChunk { sid: SessionId },
    /// The message STATUS asked about, when it is no longer in memory.
    Status {
        sid: SessionId,
        conv: ConvId,
        seq: Seq,
    },
    /// The message an EDIT or DELETE names, to judge whether it may be changed.
    ChangeTarget { sid: SessionId, edit: history::Edit },
    /// The outcome of an EDIT or DELETE.
    Changed {
        sid: SessionId,
        conv: ConvId,
        by: UserId,
    },
}

/// How a published message is acknowledged to its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    /// `OK SAY <conv> <seq> <msgid>`
    Say,
    /// `OK REPLY <conv> <seq> <msgid>`: a message answering this seq.
    Reply(Seq),
    /// `OK ATTACH <conv> <seq> <msgid> <blob-id>`
    Attach(String),
}

/// Context carried through the blob thread.
#[derive(Debug)]
pub enum BlobCtx {
    /// An upload's body was stored.
    Put {
        sid: SessionId,
        upload: Box<attach::Upload>,
    },
    /// A chunk of a FETCH stream was read.
    Read { sid: SessionId },
}

/// When a change counts as done: what an `OK` promises survives. The hub
/// treats `Sync` and `Write` alike (OK and events after the commit); they
/// differ in how the store commits (see [`Durability::fsync_each_commit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    /// OK once the commit is on disk (fsynced): survives a crash of linechat
    /// and of the machine.
    Sync,
    /// OK once the commit is written to the OS; the disk follows within half a
    /// second. Survives a crash of linechat, not a power loss.
    Write,
    /// OK at once; the storage thread commits milliseconds later. A crash may
    /// lose the last acknowledged changes. Single node only.
    Async,
}

impl Durability {
    /// Whether every commit is fsynced before it counts (otherwise the WAL is
    /// fsynced by the checkpointer, at most half a second later).
    pub fn fsync_each_commit(self) -> bool {
        self == Durability::Sync
    }
}

#[derive(Debug, Clone)]
pub struct HubConfig {
    pub durability: Durability,
    /// Messages each conversation keeps in memory, and replays on JOIN.
    pub recent: usize,
    /// Longest message text in bytes.
    pub max_text: usize,
    /// Presence events are sent to co-members of rooms up to this size only.
    pub presence_room_limit: usize,
    /// Most bytes in one chunk of a SYNC stream; kept well under the outbox
    /// limit so a stream can never trip it.
    pub sync_chunk_bytes: usize,
    pub max_sessions_per_user: usize,
    pub max_rooms_per_user: usize,
    pub max_room_members: usize,
    /// Largest attachment in bytes.
    pub max_attachment: u64,
    /// Other nodes share the store (`--bus`): committed changes, typing and
    /// receipts are handed to the driver to publish ([`Shared`]), and
    /// messages reach the tables through the [`Sequencer`].
    pub clustered: bool,
    /// PUSHER ADD may name a gateway at a private address (tests).
    pub push_allow_private: bool,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            durability: Durability::Sync,
            recent: 100,
            max_text: 4000,
            presence_room_limit: 500,
            sync_chunk_bytes: 64 * 1024,
            max_sessions_per_user: 32,
            max_rooms_per_user: 1000,
            max_room_members: 100_000,
            max_attachment: 16 << 20,
            clustered: false,
            push_allow_private: false,
        }
    }
}

/// Counters read by STATS.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub messages_in: u64,
    pub deliveries_out: u64,
    pub commits: u64,
    /// Messages the storage thread has made durable.
    pub messages_stored: u64,
    pub commit_micros_total: u64,
    pub commit_micros_last: u64,
}

#[derive(Debug, Default)]
struct SessionState {
    user: Option<UserId>,
    /// A password is being hashed, or a stream (SYNC, FETCH) or an upload
    /// is under way, for this session; its next command waits.
    busy: bool,
    /// An accepted ATTACH whose body the driver is reading.
    /// Boxed: rare, and every idle session carries this field.
    upload: Option<Box<attach::Upload>>,
}

/// A map keyed by ids the server assigns (users, conversations, sessions).
/// Clients cannot choose these keys, so SipHash's resistance to crafted
/// collisions buys nothing here, and a faster hash is a large share of the
/// per-delivery work (delivery cursors are looked up for every recipient).
/// Maps keyed by names that clients choose keep the standard hasher.
pub(crate) type IdMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
pub type IdSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

pub struct Hub {
    cfg: HubConfig,
    users: Table<UserId, User>,
    by_name: HashMap<Box<str>, UserId>,
    /// Names with a registration in flight, so two cannot race for one name.
    reserved: HashMap<String, SessionId>,
    convs: Table<ConvId, Conv>,
    rooms: HashMap<String, ConvId>,
    directs: IdMap<(UserId, UserId), ConvId>,
    friends: Friends,
    reactions: Reactions,
    pushers: push::Pushers,
    sessions: IdMap<SessionId, SessionState>,
    cursors: IdMap<(UserId, ConvId), Cursor>,
    /// Cursors changed since they were last handed to storage.
    dirty_cursors: IdSet<(UserId, ConvId)>,
    /// Conversations being founded (`--durability sync`), with the commands
    /// waiting for them.
    founding: HashMap<found::ConvKey, Vec<(SessionId, found::Parked)>>,
    /// Messages posted under `--durability async` this turn, not yet
    /// published. Every input but a SAY publishes them first, so what it
    /// reads or changes is as if each SAY had been published at once.
    unpublished: say::Unpublished,
    syncs: IdMap<SessionId, sync::SyncJob>,
    streamed: sync::Streamed,
    fetches: IdMap<SessionId, attach::FetchJob>,
    /// When each (user, conversation) last sent a TYPING event (Unix ms).
    typing: IdMap<(UserId, ConvId), i64>,
    /// Orders messages from this node's commits and the bus (`--bus`).
    sequencer: Sequencer,
    /// Orders node-wide changes by their change log ids (`--bus`).
    changes: changes::ChangeLog,
    /// Conversations with members logged in here: the bus channels this
    /// node listens to (`--bus`).
    subscribed: IdSet<ConvId>,
    /// Per conversation, its members logged in here (`--bus`).
    members_here: IdMap<ConvId, u32>,
    /// Conversations whose `members_here` changed since the driver last
    /// asked for [`Hub::subscriptions`].
    touched: Vec<ConvId>,
    /// Users online on other nodes (`--bus`), as the last presence
    /// snapshot from Redis said.
    elsewhere: IdSet<UserId>,
    /// A PHC string that unknown users are verified against, so a failed
    /// login takes as long whether or not the user exists.
    decoy_phc: String,
    env: Box<dyn Env>,
    pub counters: Counters,
}

/// Where the hub gets the time and new message ids. They are passed in, so
/// the hub is deterministic: its unit tests run on a fixed clock with
/// predictable ids and assert exact lines.
pub trait Env: Send {
    /// Unix ms.
    fn now_ms(&self) -> i64;
    /// The id of a new message.
    fn msg_id(&mut self) -> uuid::Uuid;
}

/// The real clock, and UUIDv7 ids (time-ordered).
pub struct SystemEnv;

impl Env for SystemEnv {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    fn msg_id(&mut self) -> uuid::Uuid {
        uuid::Uuid::now_v7()
    }
}

/// A clock that stands still and ids that count up from 1: hub tests (and
/// property tests) see the same times and msgids on every run.
#[derive(Debug, Clone, Copy)]
pub struct FixedEnv {
    /// Unix ms that `now_ms` answers.
    pub now: i64,
    next_id: u128,
}

impl FixedEnv {
    pub fn at(now: i64) -> Self {
        FixedEnv { now, next_id: 1 }
    }
}

impl Env for FixedEnv {
    fn now_ms(&self) -> i64 {
        self.now
    }

    fn msg_id(&mut self) -> uuid::Uuid {
        let id = uuid::Uuid::from_u128(self.next_id);
        self.next_id += 1;
        id
    }
}

impl Hub {
    /// Builds the in-memory tables from what storage loaded.
    pub fn new(cfg: HubConfig, snapshot: Snapshot, decoy_phc: String, env: Box<dyn Env>) -> Hub {
        let mut hub = Hub {
            cfg,
            users: Table::default(),
            by_name: HashMap::new(),
            reserved: HashMap::new(),
            convs: Table::default(),
            rooms: HashMap::new(),
            directs: IdMap::default(),
            friends: Friends::default(),
            reactions: Reactions::default(),
            pushers: push::Pushers::default(),
            sessions: IdMap::default(),
            cursors: IdMap::default(),
            dirty_cursors: IdSet::default(),
            founding: HashMap::new(),
            unpublished: say::Unpublished::default(),
            syncs: IdMap::default(),
            streamed: sync::Streamed::default(),
            fetches: IdMap::default(),
            typing: IdMap::default(),
            sequencer: Sequencer::default(),
            changes: changes::ChangeLog::starting_at(snapshot.log_head),
            subscribed: IdSet::default(),
            members_here: IdMap::default(),
            touched: Vec::new(),
            elsewhere: IdSet::default(),
            decoy_phc,
            env,
            counters: Counters::default(),
        };
        hub.load(snapshot);
        hub
    }

    fn load(&mut self, snap: Snapshot) {
        for row in snap.users {
            self.by_name.insert(row.name.as_str().into(), row.id);
            self.users
                .insert(row.id, User::new(row.name, row.phc, row.last_seen));
        }
        for row in snap.convs {
            let mut conv = Conv::new(row.id, row.kind, row.name);
            conv.last_seq = row.last_seq;
            conv.recent = row.recent.into_iter().map(Msg::from).collect();
            if row.kind != ConvKind::Direct {
                self.rooms.insert(conv.name.clone(), row.id);
            }
            self.convs.insert(row.id, conv);
        }
        for m in snap.members {
            let (Some(conv), Some(user)) = (self.convs.get_mut(m.conv), self.users.get_mut(m.user))
            else {
                continue;
            };
            conv.members.push(Member {
                user: m.user,
                admin: m.admin,
                joined: m.joined,
            });
            user.convs.push(m.conv);
        }
        for conv in self.convs.values() {
            if conv.kind == ConvKind::Direct
                && let [a, b] = conv.members[..]
            {
                self.directs.insert(pair(a.user, b.user), conv.id);
            }
        }
        self.friends
            .load(&snap.friendships, &snap.requests, &snap.blocks);
        self.reactions = Reactions::load(snap.reactions);
        self.pushers = push::Pushers::load(snap.pushers);
        self.load_moderation(moderation::Loaded {
            bans: snap.bans,
            mutes: snap.mutes,
            topics: snap.topics,
            audit: snap.audit,
        });
        for (user, conv, delivered, read) in snap.cursors {
            self.cursors
                .insert((user, conv), Cursor { delivered, read });
        }
    }

    pub fn config(&self) -> &HubConfig {
        &self.cfg
    }

    /// The time now, Unix ms, from the hub's [`Env`].
    fn now(&self) -> i64 {
        self.env.now_ms()
    }

    /// A new connection.
    pub fn connect(&mut self, sid: SessionId) {
        self.sessions.insert(sid, SessionState::default());
    }

    /// A connection closed, for whatever reason.
    pub fn disconnect(&mut self, sid: SessionId, out: &mut Out) {
        self.flush_posts(out);
        let Some(state) = self.sessions.remove(&sid) else {
            return;
        };
        self.reserved.retain(|_, s| *s != sid);
        self.syncs.remove(&sid);
        self.streamed.forget(sid);
        self.fetches.remove(&sid);
        if let Some(uid) = state.user {
            self.logout(sid, uid, out);
        }
    }

    /// Holds the session's next commands until [`Hub::unbusy`]: its current
    /// one is not answered yet in a way the driver could order later
    /// answers behind (a hash, a stream, a second storage round).
    fn hold(&mut self, sid: SessionId) {
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.busy = true;
        }
    }

    /// Lets the session's next commands in again.
    fn unbusy(&mut self, sid: SessionId) {
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.busy = false;
        }
    }

    /// Whether the driver may hand this session its next command now.
    pub fn accepts_input(&self, sid: SessionId) -> bool {
        self.sessions.get(&sid).is_some_and(|s| !s.busy)
    }

    pub fn user_of(&self, sid: SessionId) -> Option<UserId> {
        self.sessions.get(&sid).and_then(|s| s.user)
    }

    pub fn sessions_online(&self) -> usize {
        self.sessions.len()
    }

    pub fn users_online(&self) -> usize {
        self.users.values().filter(|u| u.online()).count()
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// A line the framer or parser refused.
    pub fn bad_line(&mut self, sid: SessionId, err: ParseError, out: &mut Out) {
        self.flush_posts(out);
        out.reply(sid, Reply::Refused(err));
    }

    /// One parsed command from session `sid`.
    pub fn handle(&mut self, sid: SessionId, cmd: Command<'_>, out: &mut Out) {
        if self.publishes_first(&cmd) {
            self.flush_posts(out);
        }
        if let Err(e) = self.dispatch(sid, cmd, out) {
            out.reply(sid, Reply::Failed(e));
        }
    }

    fn dispatch(
        &mut self,
        sid: SessionId,
        cmd: Command<'_>,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        let user = self.user_of(sid);
        match (cmd, user) {
            (Command::Help(verb), _) => {
                let topic = match verb {
                    None => None,
                    Some(v) => Some(help::verb(v).ok_or(ChatError::NoSuchHelp)?),
                };
                out.reply(sid, Reply::Help(topic));
            }
            (Command::Ping(token), _) => out.reply(sid, Reply::Pong(token.map(str::to_string))),
            (Command::Quit, _) => {
                out.reply(sid, Reply::Quit);
                out.to(sid, Output::Close);
            }
            (
                Command::Register {
                    user: name,
                    password,
                },
                None,
            ) => self.register(sid, name, password, out)?,
            (
                Command::Login {
                    user: name,
                    password,
                },
                None,
            ) => self.login(sid, name, password, out)?,
            (Command::Register { .. } | Command::Login { .. }, Some(_)) => {
                return Err(ChatError::AlreadyLoggedIn);
            }
            (_, None) => return Err(ChatError::NotLoggedIn),
            (Command::Join(room), Some(uid)) => self.join(sid, uid, room, out)?,
            (Command::Create(room), Some(uid)) => self.create(sid, uid, room, out)?,
            (Command::Leave(room), Some(uid)) => self.leave(sid, uid, room, out)?,
            (Command::Who(room), Some(uid)) => self.who(sid, uid, room, out)?,
            (Command::Rooms, Some(uid)) => self.list_rooms(sid, uid, out),
            (Command::Inbox, Some(uid)) => self.inbox(sid, uid, out),
            (Command::Add { room, user }, Some(uid)) => self.add(sid, uid, room, user, out)?,
            (Command::Kick { room, user }, Some(uid)) => self.kick(sid, uid, room, user, out)?,
            (Command::Op { room, user }, Some(uid)) => self.op(sid, uid, room, user, out)?,
            (Command::Say { to, text }, Some(uid)) => self.say(sid, uid, to, text, out)?,
            (Command::Presence(name), Some(_)) => self.presence_query(sid, name, out)?,
            (Command::Friend(cmd), Some(uid)) => self.friend(sid, uid, cmd, out)?,
            (Command::Stats, Some(_)) => out.to(sid, Output::Stats),
            (
                Command::History {
                    conv,
                    before,
                    limit,
                },
                Some(uid),
            ) => self.history(sid, uid, conv, before, limit, out)?,
            (
                Command::Search {
                    conv,
                    before,
                    words,
                },
                Some(uid),
            ) => self.search(sid, uid, conv, before, words, out)?,
            (Command::Delete { conv, seq }, Some(uid)) => {
                self.change(sid, uid, conv, seq, None, out)?
            }
            (
                Command::React {
                    conv,
                    seq,
                    reaction,
                    added,
                },
                Some(uid),
            ) => self.react(sid, uid, conv, seq, reaction, added, out)?,
            (
                Command::Moderate {
                    room,
                    user,
                    action,
                    minutes,
                },
                Some(uid),
            ) => self.moderation_command(sid, uid, room, user, action, minutes, out)?,
            (Command::Away(text), Some(uid)) => self.away(sid, uid, text, out)?,
            (Command::Pusher(cmd), Some(uid)) => self.pusher(sid, uid, cmd, out)?,
            (Command::Topic { room, text }, Some(uid)) => {
                self.topic_command(sid, uid, room, text, out)?
            }
            (Command::Audit { room, limit }, Some(uid)) => {
                self.audit_command(sid, uid, room, limit, out)?
            }
            (Command::Reactions { conv, seq }, Some(uid)) => {
                self.list_reactions(sid, uid, conv, seq, out)?
            }
            (Command::Reply { to, seq, text }, Some(uid)) => {
                self.reply(sid, uid, to, seq, text, out)?
            }
            (Command::Edit { conv, seq, text }, Some(uid)) => {
                self.change(sid, uid, conv, seq, Some(text), out)?
            }
            (Command::Sync(range), Some(uid)) => self.sync(sid, uid, range, out)?,
            (Command::Read { conv, seq }, Some(uid)) => self.read(sid, uid, conv, seq, out)?,
            (Command::Status { conv, seq }, Some(uid)) => self.status(sid, uid, conv, seq, out)?,
            (Command::Typing(conv), Some(uid)) => self.typing(sid, uid, conv, out)?,
            (
                Command::Attach {
                    conv,
                    name,
                    mime,
                    size,
                },
                Some(uid),
            ) => self.attach(sid, uid, conv, name, mime, size, out)?,
            (Command::Fetch(blob), Some(uid)) => self.fetch(sid, uid, blob, out)?,
        }
        Ok(())
    }

    /// Makes `writes` durable, then sends `reply` to `sid` and the events in
    /// `ev` to whoever they are for, and shares `change` with the other
    /// nodes: at once under `--durability async`, after the commit under
    /// `sync`, so nobody hears of a change a crash could undo.
    fn commit(
        &mut self,
        sid: SessionId,
        writes: Vec<Write>,
        reply: Reply,
        events: Vec<Emit>,
        change: Change,
        out: &mut Out,
    ) {
        match self.cfg.durability {
            Durability::Sync | Durability::Write => {
                let mut writes = writes;
                self.log_write(&mut writes, || change.clone());
                let shared = self.cfg.clustered.then_some(change);
                let pending = Pending::Reply {
                    sid,
                    reply,
                    events,
                    shared,
                };
                out.store.push(store::Request::write(writes, Some(pending)));
                out.defer(sid);
            }
            Durability::Async => {
                out.store.push(store::Request::write(writes, None));
                out.emits.extend(events);
                out.reply(sid, reply);
                self.share(|| Shared::Change(change), out);
            }
        }
    }

    /// A command's commit is in: its events go out, its answer completes,
    /// and its change (`--bus`) is published with its change log id.
    fn replied(
        &mut self,
        sid: SessionId,
        reply: Reply,
        events: Vec<Emit>,
        shared: Option<Change>,
        log: Option<u64>,
        out: &mut Out,
    ) {
        out.emits.extend(events);
        out.complete(sid, reply);
        if let Some(change) = shared {
            self.logged(log, change, out);
        }
    }

    /// Writes that nobody waits for (last-seen times, for instance).
    fn persist(&mut self, writes: Vec<Write>, out: &mut Out) {
        out.store.push(store::Request::write(writes, None));
    }

    /// A storage batch came back.
    pub fn committed(&mut self, done: store::Committed<Pending>, out: &mut Out) {
        self.flush_posts(out);
        self.counters.commits += 1;
        self.counters.messages_stored += done.messages;
        let micros = u64::try_from(done.took.as_micros()).unwrap_or(u64::MAX);
        self.counters.commit_micros_last = micros;
        self.counters.commit_micros_total += micros;
        // Consecutive messages of one conversation are fanned out as one batch.
        let mut run: Vec<(SessionId, Msg, Ack)> = Vec::new();
        let mut run_conv = ConvId::default();
        for (pending, answer) in done.done {
            let pending = match (pending, &answer) {
                (
                    Pending::Said {
                        sid,
                        conv,
                        mut msg,
                        ack,
                    },
                    Ok(answer),
                ) => {
                    if let Some(seq) = assigned(answer).iter().find_map(Assigned::seq) {
                        msg.seq = seq;
                    }
                    if !run.is_empty() && run_conv != conv {
                        self.publish(run_conv, std::mem::take(&mut run), out);
                    }
                    run_conv = conv;
                    run.push((sid, msg, ack));
                    continue;
                }
                (pending, _) => pending,
            };
            if !run.is_empty() {
                self.publish(run_conv, std::mem::take(&mut run), out);
            }
            let answer = match answer {
                Ok(answer) => answer,
                Err(e) => {
                    self.storage_failed(pending, &e, out);
                    continue;
                }
            };
            // The change log entry the commit made, if any (`--bus`).
            let log = assigned(&answer).iter().find_map(Assigned::log);
            match pending {
                Pending::Reply {
                    sid,
                    reply,
                    events,
                    shared,
                } => self.replied(sid, reply, events, shared, log, out),
                Pending::Fill { conv } => self.filled(conv, answer, out),
                Pending::Warmed { conv, joiner } => self.warmed(conv, joiner, answer, out),
                Pending::JoinedAt { conv, user } => self.joined_at(conv, user, answer, out),
                Pending::ColdJoined(join) => self.cold_joined(*join, log, out),
                Pending::Said {
                    sid,
                    conv,
                    msg,
                    ack,
                } => self.publish(conv, vec![(sid, msg, ack)], out),
                Pending::FetchAccess { sid, blob } => self.fetch_answer(sid, blob, answer, out),
                Pending::Founded(f) => match assigned(&answer).iter().find_map(Assigned::conv) {
                    Some(conv) => self.founded(conv, *f, true, log, out),
                    None => self.founding_failed(*f, ChatError::Internal, out),
                },
                Pending::Registered { sid, name, phc } => {
                    self.reserved.remove(&name);
                    let Some(user) = assigned(&answer).iter().find_map(Assigned::user) else {
                        self.registered(sid, Err(ChatError::Internal), out);
                        continue;
                    };
                    let change = Change::Registered { user, name, phc };
                    self.logged(log, change.clone(), out);
                    self.apply(change, out);
                    self.registered(sid, Ok(user), out);
                }
                Pending::Logged(change) => self.logged(log, change, out),
                Pending::LogRead => self.log_read(answer, out),
                Pending::History { sid, conv, limit } => {
                    self.history_answer(sid, conv, limit, answer, out)
                }
                Pending::Search { sid, conv } => self.search_answer(sid, conv, answer, out),
                Pending::SyncPlan { sid, ranges, from } => {
                    self.sync_planned(sid, ranges, from, answer, out)
                }
                Pending::SyncChunk { sid } => self.sync_chunk(sid, answer, out),
                Pending::Status { sid, conv, seq } => {
                    self.status_answer(sid, conv, seq, answer, out)
                }
                Pending::ChangeTarget { sid, edit } => self.change_target(sid, edit, answer, out),
                Pending::Changed { sid, conv, by } => self.changed(sid, conv, by, answer, out),
            }
        }
        if !run.is_empty() {
            self.publish(run_conv, run, out);
        }
    }

    /// A storage request failed or was refused: its command gets the ERR
    /// that [`storage_error`] names.
    fn storage_failed(&mut self, pending: Pending, e: &StoreError, out: &mut Out) {
        let err = self.storage_error(&pending, e);
        let sid = match pending {
            Pending::Registered { sid, name, .. } => {
                self.reserved.remove(&name);
                return self.registered(sid, Err(err), out);
            }
            Pending::Founded(f) => return self.founding_failed(*f, err, out),
            // The read is asked again once overdue (`Hub::retry_fills`).
            Pending::Fill { .. } | Pending::LogRead => return,
            // The copy stays as it was: what follows is read as a gap.
            Pending::Warmed { joiner: None, .. } => return,
            Pending::Warmed {
                conv,
                joiner: Some((user, _)),
            }
            | Pending::JoinedAt { conv, user } => {
                return self.joined_elsewhere_undone(conv, user);
            }
            Pending::ColdJoined(join) => {
                self.streamed.uncover(join.conv, join.sid);
                join.sid
            }
            // Only the other nodes miss it (an AWAY, a rejected pusher):
            // the storage thread has logged why.
            Pending::Logged(_) => return,
            // A stream's answer is its newest deferred one (`Out::finish`).
            Pending::SyncPlan { sid, .. } => {
                self.streamed.forget(sid);
                self.unbusy(sid);
                return out.finish(sid, Reply::Failed(err));
            }
            Pending::SyncChunk { sid } => {
                self.syncs.remove(&sid);
                self.streamed.forget(sid);
                self.unbusy(sid);
                return out.finish(sid, Reply::Failed(err));
            }
            Pending::Reply { sid, .. }
            | Pending::Said { sid, .. }
            | Pending::History { sid, .. }
            | Pending::Search { sid, .. }
            | Pending::Status { sid, .. }
            | Pending::Changed { sid, .. } => sid,
            Pending::FetchAccess { sid, .. } | Pending::ChangeTarget { sid, .. } => {
                self.unbusy(sid);
                sid
            }
        };
        out.fail(sid, err);
    }

    /// The conversation a client names, which the caller must belong to:
    /// `#room`, or `@user` for an existing direct conversation (even after
    /// the friendship ended: history belongs to the conversation).
    fn member_conv(&self, uid: UserId, target: Target<'_>) -> Result<ConvId, ChatError> {
        let conv = match target {
            Target::Room(room) => {
                let name = names::room(room)?;
                *self.rooms.get(&name).ok_or(ChatError::NoSuchRoom)?
            }
            Target::User(name) => {
                let other = self.find_user(name)?;
                *self
                    .directs
                    .get(&pair(uid, other))
                    .ok_or_else(|| ChatError::NoConversation(self.name(other).to_string()))?
            }
        };
        let c = self.conv(conv)?;
        if c.member(uid).is_none() {
            return Err(ChatError::NotMember(c.name.clone()));
        }
        Ok(conv)
    }

    /// A conversation the hub's own indexes point at.
    fn conv(&self, id: ConvId) -> Result<&Conv, ChatError> {
        self.convs.get(id).ok_or(ChatError::NoSuchConversation)
    }

    /// The open sessions of `user` on this node; none for an unknown id.
    pub fn sessions_of(&self, user: UserId) -> &[SessionId] {
        self.users.get(user).map_or(&[], |u| &u.sessions)
    }

    /// The conversations `user` is a member of; none for an unknown id.
    fn convs_of(&self, user: UserId) -> &[ConvId] {
        self.users.get(user).map_or(&[], |u| &u.convs)
    }

    /// A user's name; empty for an unknown id, which then matches no one.
    fn name(&self, user: UserId) -> &str {
        self.users.get(user).map_or("", |u| &u.name)
    }

    /// The kind of a conversation and its members, for fan-out.
    pub fn conv_members(&self, conv: ConvId) -> Option<(ConvKind, &[Member])> {
        self.convs.get(conv).map(|c| (c.kind, &c.members[..]))
    }

    fn find_user(&self, name: &str) -> Result<UserId, ChatError> {
        let name = names::user(name).map_err(|_| ChatError::NoSuchUser)?;
        self.by_name
            .get(name.as_str())
            .copied()
            .ok_or(ChatError::NoSuchUser)
    }
}

/// Names for the codecs: what the hub's ids are called.
impl Directory for Hub {
    fn user_name(&self, user: UserId) -> &str {
        self.name(user)
    }

    fn conv_name(&self, conv: ConvId, viewer: Option<UserId>) -> Cow<'_, str> {
        let Some(c) = self.convs.get(conv) else {
            return Cow::Borrowed("");
        };
        match viewer {
            Some(viewer) if c.kind == ConvKind::Direct => {
                Cow::Owned(format!("@{}", self.name(self.other_member(conv, viewer))))
            }
            _ => Cow::Borrowed(&c.name),
        }
    }
}

impl Hub {
    /// The one place where a store error becomes a chat error: a refusal
    /// means what the command asked about is gone, taken, or no longer
    /// allowed (another node's commit got there first); an unreachable
    /// database is UNAVAILABLE; anything else is STORAGE.
    fn storage_error(&self, pending: &Pending, e: &StoreError) -> ChatError {
        match (pending, e) {
            (Pending::Changed { .. }, StoreError::NotFound | StoreError::Conflict(_)) => {
                ChatError::NoSuchMessage
            }
            (Pending::FetchAccess { .. }, StoreError::NotFound) => ChatError::NoSuchBlob,
            (Pending::Registered { .. }, StoreError::Conflict(_) | StoreError::NameTaken(_)) => {
                ChatError::UserExists
            }
            (Pending::Founded(f), StoreError::NameTaken(_)) if f.kind != ConvKind::Direct => {
                ChatError::RoomExists(f.name.clone())
            }
            (Pending::Said { sid, .. }, &StoreError::NotMember(conv)) => {
                ChatError::NotMember(self.conv_name(conv, self.user_of(*sid)).into_owned())
            }
            (_, StoreError::Unreachable(_)) => ChatError::Unavailable,
            (_, StoreError::InDoubt(_)) => ChatError::InDoubt,
            _ => ChatError::Storage,
        }
    }
}

/// What a commit assigned to its request's writes.
fn assigned(answer: &Answer) -> &[Assigned] {
    match answer {
        Answer::Done(assigned) => assigned,
        _ => &[],
    }
}

/// The key of a direct conversation: the two users, lower id first.
fn pair(a: UserId, b: UserId) -> (UserId, UserId) {
    (a.min(b), a.max(b))
}

#[cfg(test)]
mod tests;
