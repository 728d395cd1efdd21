//! A backend that keeps every table in memory: what the hub's unit tests run
//! against, so they need no database. It keeps the SQLite backend's rules
//! (uniqueness, the change's compare-and-set, cursors merging by maximum,
//! blob reference counting) and answers the same queries, but nothing
//! survives the process.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use super::backend::remove_blob_file;
use super::change_log;
use super::{
    Answer, Assigned, AuditRow, Backend, ConvEnd, ConvId, ConvKind, ConvRow, MemberRow, MsgState,
    Query, RequestRow, RequestState, Seq, Snapshot, StoreError, StoredMessage, UserId, UserRow,
    Write,
};

#[derive(Debug, Default)]
pub struct MemoryBackend {
    tables: Tables,
    /// Where attachment bodies live, if anywhere: a blob no message holds
    /// any more is deleted there, as the SQLite backend does.
    blob_dir: Option<PathBuf>,
}

/// Every table; a transaction works on a copy and keeps it only if every
/// step succeeds. Copying is linear in the data, which is fine at the sizes
/// tests use, and the reason this backend is not for a server.
#[derive(Debug, Default, Clone)]
struct Tables {
    users: BTreeMap<UserId, UserRow>,
    names: HashMap<String, UserId>,
    convs: BTreeMap<ConvId, (ConvKind, String)>,
    /// With the order rows were inserted in, which breaks ties of `joined`.
    members: BTreeMap<(ConvId, UserId), (MemberRow, u64)>,
    inserted: u64,
    messages: BTreeMap<(ConvId, Seq), StoredMessage>,
    /// Keyed lower id first.
    friendships: BTreeMap<(UserId, UserId), i64>,
    requests: BTreeMap<(UserId, UserId), RequestRow>,
    cursors: BTreeMap<(UserId, ConvId), (Seq, Seq)>,
    /// In the order they were given.
    reactions: Vec<(ConvId, Seq, UserId, String)>,
    /// (by, blocked user)
    blocks: BTreeSet<(UserId, UserId)>,
    bans: BTreeSet<(ConvId, UserId)>,
    mutes: BTreeMap<(ConvId, UserId), i64>,
    topics: BTreeMap<ConvId, String>,
    /// Oldest first.
    audit: Vec<AuditRow>,
    /// (app id, pushkey) to (user, gateway URL).
    pushers: BTreeMap<(String, String), (UserId, String)>,
    /// Blob id to (size, mime).
    blobs: HashMap<String, (u64, String)>,
    blob_refs: BTreeMap<(ConvId, Seq), String>,
    /// The change log, by id; its newest id (kept when the entry goes).
    log: BTreeMap<u64, Vec<u8>>,
    log_head: u64,
}

impl MemoryBackend {
    /// `blob_dir`: where attachment bodies are, if the test stores any.
    pub fn new(blob_dir: Option<PathBuf>) -> Self {
        MemoryBackend {
            tables: Tables::default(),
            blob_dir,
        }
    }

    /// Runs `f` on a copy of the tables, which replaces them only on success.
    fn transaction<T>(
        &mut self,
        f: impl FnOnce(&mut Tables, &mut Vec<String>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut work = self.tables.clone();
        let mut orphans = Vec::new();
        let value = f(&mut work, &mut orphans)?;
        self.tables = work;
        if let Some(dir) = &self.blob_dir {
            for blob in orphans {
                remove_blob_file(dir, &blob);
            }
        }
        Ok(value)
    }
}

impl Backend for MemoryBackend {
    fn load(&mut self, recent: usize) -> Result<Snapshot, StoreError> {
        let t = &self.tables;
        let users = t.users.values().cloned().collect();
        let convs = t
            .convs
            .iter()
            .map(|(&id, (kind, name))| {
                let mut recent_msgs = t.before(id, Seq::MAX, recent);
                recent_msgs.reverse();
                ConvRow {
                    id,
                    kind: *kind,
                    name: name.clone(),
                    last_seq: t.conv_messages(id).next_back().map_or(Seq::ZERO, |m| m.seq),
                    recent: recent_msgs,
                }
            })
            .collect();
        let mut members: Vec<&(MemberRow, u64)> = t.members.values().collect();
        members.sort_by_key(|(m, inserted)| (m.joined, *inserted));
        let mut requests: Vec<&RequestRow> = t.requests.values().collect();
        requests.sort_by_key(|r| r.at);
        Ok(Snapshot {
            users,
            convs,
            members: members.into_iter().map(|(m, _)| m.clone()).collect(),
            friendships: t
                .friendships
                .iter()
                .map(|(&(a, b), &since)| (a, b, since))
                .collect(),
            requests: requests.into_iter().cloned().collect(),
            cursors: t
                .cursors
                .iter()
                .map(|(&(user, conv), &(d, r))| (user, conv, d, r))
                .collect(),
            reactions: t.reactions.clone(),
            blocks: t.blocks.iter().copied().collect(),
            bans: t.bans.iter().copied().collect(),
            mutes: t
                .mutes
                .iter()
                .map(|(&(c, u), &until)| (c, u, until))
                .collect(),
            topics: t.topics.iter().map(|(&c, t)| (c, t.clone())).collect(),
            audit: t.audit_kept(),
            log_head: t.log_head,
            pushers: t
                .pushers
                .iter()
                .map(|((app, key), (user, url))| (*user, app.clone(), key.clone(), url.clone()))
                .collect(),
        })
    }

    fn commit(&mut self, writes: &[&Write]) -> Result<Vec<Assigned>, StoreError> {
        self.transaction(|t, _| {
            let mut assigned = Vec::new();
            for w in writes {
                match w {
                    Write::Log(change) => {
                        change_log::append_committed(change, &mut assigned, |p| {
                            Ok::<_, StoreError>(t.append_log(p))
                        })?
                    }
                    _ => assigned.extend(t.apply(w)?),
                }
            }
            Ok(assigned)
        })
    }

    fn query(&mut self, writes: &[&Write], query: &Query) -> Result<Answer, StoreError> {
        self.transaction(|t, orphans| {
            // An edit's log entry holds the message as the query leaves it.
            let (logs, writes) = change_log::split(writes);
            for w in writes {
                t.apply(w)?;
            }
            let mut answer = match *query {
                Query::Before {
                    conv,
                    before,
                    limit,
                } => Ok(Answer::Messages(t.before(conv, before, limit))),
                Query::After { conv, after, limit } => Ok(Answer::Messages(
                    t.conv_messages(conv)
                        .filter(|m| m.seq > after)
                        .take(limit)
                        .cloned()
                        .collect(),
                )),
                Query::Search {
                    conv,
                    ref words,
                    before,
                    limit,
                } => Ok(Answer::Messages(t.search(conv, words, before, limit))),
                Query::Change {
                    conv,
                    seq,
                    ref text,
                } => t.change(conv, seq, text.as_deref(), orphans),
                Query::BlobAccess { ref blob, user } => t.blob_access(blob, user),
                Query::Ends { user, ref convs } => Ok(Answer::Ends(
                    convs
                        .iter()
                        .map(|&conv| {
                            let cursor = t.cursors.get(&(user, conv)).copied();
                            ConvEnd {
                                last: t.conv_messages(conv).last().map_or(Seq(0), |m| m.seq),
                                delivered: cursor.map_or(Seq(0), |c| c.0),
                                read: cursor.map_or(Seq(0), |c| c.1),
                            }
                        })
                        .collect(),
                )),
                Query::Log { after, limit } => Ok(Answer::Log(
                    t.log
                        .range(after.saturating_add(1)..)
                        .take(limit)
                        .map(|(&id, payload)| change_log::decode(id, payload))
                        .collect(),
                )),
            }?;
            change_log::append_answered(&logs, &mut answer, |p| {
                Ok::<_, StoreError>(t.append_log(p))
            })?;
            Ok(answer)
        })
    }
}

impl Tables {
    /// Appends a change log entry; returns its id.
    fn append_log(&mut self, payload: Vec<u8>) -> u64 {
        self.log_head += 1;
        self.log.insert(self.log_head, payload);
        let keep_from = change_log::keep_from(self.log_head);
        while let Some(oldest) = self.log.first_entry()
            && *oldest.key() < keep_from
        {
            oldest.remove();
        }
        self.log_head
    }

    /// The audit log as the hub loads it: the newest entries of each
    /// conversation, oldest first.
    fn audit_kept(&self) -> Vec<AuditRow> {
        let kept = crate::chat::AUDIT_KEPT;
        let mut seen: BTreeMap<ConvId, usize> = BTreeMap::new();
        let mut newest: Vec<AuditRow> = self
            .audit
            .iter()
            .rev()
            .filter(|row| {
                let n = seen.entry(row.conv).or_default();
                *n += 1;
                *n <= kept
            })
            .cloned()
            .collect();
        newest.reverse();
        newest
    }

    /// Applies one write; returns what it assigned, if it [`Write::assigns`].
    fn apply(&mut self, w: &Write) -> Result<Option<Assigned>, StoreError> {
        match w {
            Write::Register { name, phc, created } => {
                // The largest id plus one, as SQLite's rowid.
                let id = UserId(self.users.keys().next_back().map_or(1, |u| u.0 + 1));
                let user = Write::User {
                    id,
                    name: name.clone(),
                    phc: phc.clone(),
                    created: *created,
                };
                self.apply(&user)?;
                return Ok(Some(Assigned::User(id)));
            }
            Write::NewConv(nc) => {
                // The largest id plus one, as SQLite's rowid.
                let id = ConvId(self.convs.keys().next_back().map_or(1, |c| c.0 + 1));
                for w in nc.writes(id) {
                    self.apply(&w)?;
                }
                return Ok(Some(Assigned::Conv(id)));
            }
            Write::Post(p) => {
                let seq = self
                    .conv_messages(p.conv)
                    .next_back()
                    .map_or(Seq::ZERO, |m| m.seq)
                    .next();
                for w in p.writes(seq) {
                    self.apply(&w)?;
                }
                return Ok(Some(Assigned::Seq(seq)));
            }
            Write::User { id, name, phc, .. } => {
                if self.users.contains_key(id) || self.names.contains_key(name) {
                    return Err(StoreError::Conflict(format!("user {name} exists")));
                }
                self.names.insert(name.clone(), *id);
                self.users.insert(
                    *id,
                    UserRow {
                        id: *id,
                        name: name.clone(),
                        phc: phc.clone(),
                        last_seen: None,
                    },
                );
            }
            Write::LastSeen { user, at } => {
                if let Some(u) = self.users.get_mut(user) {
                    u.last_seen = Some(*at);
                }
            }
            Write::Conv { id, kind, name, .. } => {
                if self.convs.contains_key(id) {
                    return Err(StoreError::Conflict(format!(
                        "conversation {} exists",
                        id.0
                    )));
                }
                self.convs.insert(*id, (*kind, name.clone()));
            }
            Write::Member {
                conv,
                user,
                admin,
                joined,
            } => match self.members.get_mut(&(*conv, *user)) {
                Some((m, _)) => m.admin = *admin,
                None => {
                    self.inserted += 1;
                    let row = MemberRow {
                        conv: *conv,
                        user: *user,
                        admin: *admin,
                        joined: *joined,
                    };
                    self.members.insert((*conv, *user), (row, self.inserted));
                }
            },
            Write::RemoveMember { conv, user } => {
                self.members.remove(&(*conv, *user));
            }
            Write::Message(m) => {
                if self.messages.contains_key(&(m.conv, m.seq)) {
                    return Err(StoreError::Conflict(format!(
                        "message {} {} exists",
                        m.conv.0, m.seq
                    )));
                }
                // Stored as sent whatever the write says, as the SQL insert does.
                let stored = StoredMessage {
                    state: MsgState::Sent,
                    ..m.clone()
                };
                self.messages.insert((m.conv, m.seq), stored);
            }
            Write::Reaction {
                conv,
                seq,
                user,
                reaction,
                added,
            } => {
                let row = (*conv, *seq, *user, reaction.clone());
                let had = self.reactions.contains(&row);
                if *added && !had {
                    self.reactions.push(row);
                } else if !*added {
                    self.reactions.retain(|r| *r != row);
                }
            }
            Write::Friendship { a, b, since } => {
                self.friendships
                    .insert(((*a).min(*b), (*a).max(*b)), *since);
            }
            Write::Ban { conv, user, on } => {
                if *on {
                    self.bans.insert((*conv, *user));
                } else {
                    self.bans.remove(&(*conv, *user));
                }
            }
            Write::Mute { conv, user, until } => match until {
                Some(until) => {
                    self.mutes.insert((*conv, *user), *until);
                }
                None => {
                    self.mutes.remove(&(*conv, *user));
                }
            },
            Write::Topic { conv, text } => match text {
                Some(text) => {
                    self.topics.insert(*conv, text.clone());
                }
                None => {
                    self.topics.remove(conv);
                }
            },
            Write::Audit(row) => self.audit.push(row.clone()),
            Write::Pusher {
                user,
                app_id,
                pushkey,
                url,
            } => {
                let key = (app_id.clone(), pushkey.clone());
                match url {
                    Some(url) => {
                        self.pushers.insert(key, (*user, url.clone()));
                    }
                    None => {
                        self.pushers.remove(&key);
                    }
                }
            }
            // The push thread reads the real stores' queue: nothing here
            // sends, so nothing is kept.
            Write::Push(_) => {}
            Write::Log(_) => {
                return Err(StoreError::Internal(
                    "a change log entry outside commit or query".into(),
                ));
            }
            Write::Block { by, user, on } => {
                if *on {
                    self.blocks.insert((*by, *user));
                    if self
                        .requests
                        .get(&(*by, *user))
                        .is_some_and(|r| r.state == RequestState::Pending)
                    {
                        self.requests.remove(&(*by, *user));
                    }
                } else {
                    self.blocks.remove(&(*by, *user));
                }
            }
            Write::Unfriend { a, b } => {
                self.friendships.remove(&((*a).min(*b), (*a).max(*b)));
                for key in [(*a, *b), (*b, *a)] {
                    if self
                        .requests
                        .get(&key)
                        .is_some_and(|r| r.state == RequestState::Accepted)
                    {
                        self.requests.remove(&key);
                    }
                }
            }
            Write::Cursor {
                user,
                conv,
                delivered,
                read,
            } => {
                let c = self.cursors.entry((*user, *conv)).or_default();
                *c = (c.0.max(*delivered), c.1.max(*read));
            }
            Write::JoinCursor { user, conv } => {
                let last = self
                    .conv_messages(*conv)
                    .last()
                    .map_or(Seq::ZERO, |m| m.seq);
                let c = self.cursors.entry((*user, *conv)).or_default();
                *c = (c.0.max(last), c.1.max(last));
            }
            Write::Blob { id, size, mime } => {
                self.blobs
                    .entry(id.clone())
                    .or_insert_with(|| (*size, mime.clone()));
            }
            Write::BlobRef { conv, seq, blob } => {
                self.blob_refs.insert((*conv, *seq), blob.clone());
            }
            Write::Request {
                from,
                to,
                state,
                at,
            } => {
                self.requests.insert(
                    (*from, *to),
                    RequestRow {
                        from: *from,
                        to: *to,
                        state: *state,
                        at: *at,
                    },
                );
            }
        }
        Ok(None)
    }

    /// Oldest first.
    fn conv_messages(&self, conv: ConvId) -> impl DoubleEndedIterator<Item = &StoredMessage> {
        self.messages
            .range((conv, Seq::ZERO)..=(conv, Seq::MAX))
            .map(|(_, m)| m)
    }

    /// Newest first: up to `limit` messages with seq below `before`.
    fn before(&self, conv: ConvId, before: Seq, limit: usize) -> Vec<StoredMessage> {
        self.conv_messages(conv)
            .rev()
            .filter(|m| m.seq < before)
            .take(limit)
            .cloned()
            .collect()
    }

    /// Newest first: messages below `before` holding every word, as words
    /// are matched by the SQLite backend's full-text index (case folded,
    /// split at anything but letters and digits, a word of several parts
    /// matching them in a row). Deleted messages have no text to match.
    fn search(
        &self,
        conv: ConvId,
        words: &[String],
        before: Seq,
        limit: usize,
    ) -> Vec<StoredMessage> {
        let phrases: Vec<Vec<String>> = words.iter().map(|w| tokens(w)).collect();
        if phrases.iter().any(Vec::is_empty) {
            return Vec::new();
        }
        self.conv_messages(conv)
            .rev()
            .filter(|m| m.seq < before && m.state != MsgState::Deleted)
            .filter(|m| {
                let text = tokens(&m.text);
                phrases
                    .iter()
                    .all(|p| text.windows(p.len()).any(|w| w == p.as_slice()))
            })
            .take(limit)
            .cloned()
            .collect()
    }

    fn change(
        &mut self,
        conv: ConvId,
        seq: Seq,
        text: Option<&str>,
        orphans: &mut Vec<String>,
    ) -> Result<Answer, StoreError> {
        let msg = self
            .messages
            .get_mut(&(conv, seq))
            .ok_or(StoreError::NotFound)?;
        msg.change(text)?;
        let changed = msg.clone();
        if text.is_none()
            && let Some(blob) = self.blob_refs.remove(&(conv, seq))
        {
            self.drop_if_unheld(blob, orphans);
        }
        Ok(Answer::Changed {
            msg: changed,
            logged: None,
        })
    }

    /// A blob no message holds any more goes, row now and file on commit.
    fn drop_if_unheld(&mut self, blob: String, orphans: &mut Vec<String>) {
        if !self.blob_refs.values().any(|b| *b == blob) && crate::blob::is_blob_id(&blob) {
            self.blobs.remove(&blob);
            orphans.push(blob);
        }
    }

    /// A blob `user` may fetch: one held by a message of a conversation they
    /// belong to.
    fn blob_access(&self, blob: &str, user: UserId) -> Result<Answer, StoreError> {
        let (size, mime) = self.blobs.get(blob).ok_or(StoreError::NotFound)?;
        let held_for_user = self
            .blob_refs
            .iter()
            .any(|(&(conv, _), b)| b == blob && self.members.contains_key(&(conv, user)));
        if !held_for_user {
            return Err(StoreError::NotFound);
        }
        Ok(Answer::Blob {
            size: *size,
            mime: mime.clone(),
        })
    }
}

/// Lower-cased runs of letters and digits: the words the full-text index sees.
fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}
