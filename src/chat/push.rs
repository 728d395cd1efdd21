//! PUSHER ADD, REMOVE and LIST, and choosing who gets a push notification.
//!
//! A pusher is a device's registration with a Matrix push gateway (app id,
//! pushkey, gateway URL). When a message is posted, each member with a
//! pusher who has no session online gets a notification queued in the
//! message's own commit (`crate::push` sends it), and so does one who is
//! away, for a direct message or a mention. With no pusher anywhere this
//! costs nothing per recipient.

use super::{
    Change, ChatError, ConvId, ConvKind, Hub, IdMap, Out, Reply, SessionId, UserId, names,
};
use crate::protocol::PusherCmd;
use crate::store::{PushRow, Write};

/// Pushers one user may register.
pub const MAX_PUSHERS: usize = 10;
/// The path every gateway URL ends in (the push gateway API).
pub const NOTIFY_PATH: &str = "/_matrix/push/v1/notify";

/// One registered device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pusher {
    pub app_id: Box<str>,
    pub pushkey: Box<str>,
    pub url: Box<str>,
}

/// Every user's pushers.
#[derive(Debug, Default)]
pub struct Pushers(IdMap<UserId, Vec<Pusher>>);

impl Pushers {
    pub fn load(rows: Vec<(UserId, String, String, String)>) -> Pushers {
        let mut p = Pushers::default();
        for (user, app_id, pushkey, url) in rows {
            p.0.entry(user).or_default().push(Pusher {
                app_id: app_id.into(),
                pushkey: pushkey.into(),
                url: url.into(),
            });
        }
        p
    }

    fn has(&self, user: UserId) -> bool {
        self.0.contains_key(&user)
    }

    /// Registers (with a URL) or removes a pusher; a pushkey is one
    /// device, so registering it again replaces it.
    fn apply(&mut self, change: &PusherChange) {
        let mine = self.0.entry(change.user).or_default();
        mine.retain(|p| !(p.app_id == change.app_id && p.pushkey == change.pushkey));
        if let Some(url) = &change.url {
            mine.push(Pusher {
                app_id: change.app_id.clone(),
                pushkey: change.pushkey.clone(),
                url: url.clone(),
            });
        }
        if mine.is_empty() {
            self.0.remove(&change.user);
        }
    }
}

/// A pusher registered (`url`) or removed, as committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PusherChange {
    pub user: UserId,
    pub app_id: Box<str>,
    pub pushkey: Box<str>,
    pub url: Option<Box<str>>,
}

impl PusherChange {
    fn write(&self) -> Write {
        Write::Pusher {
            user: self.user,
            app_id: self.app_id.to_string(),
            pushkey: self.pushkey.to_string(),
            url: self.url.as_deref().map(str::to_string),
        }
    }
}

/// Checks a pusher's fields; a gateway whose host is a private address is
/// refused here when it is written as one (a host name is checked when it
/// is resolved, at every send).
fn check(app_id: &str, pushkey: &str, url: &str, allow_private: bool) -> Result<(), ChatError> {
    let word = |s: &str, max: usize| {
        (1..=max).contains(&s.len()) && !s.chars().any(|c| c.is_whitespace() || c.is_control())
    };
    let Some((host, _)) = crate::push::gateway::host_port(url) else {
        return Err(ChatError::BadPusher("the URL must be http:// or https://"));
    };
    if !word(app_id, 64) || !word(pushkey, 512) || !word(url, 512) {
        return Err(ChatError::BadPusher(
            "app id, pushkey and URL are single words",
        ));
    }
    if !url.ends_with(NOTIFY_PATH) {
        return Err(ChatError::BadPusher(
            "the URL must end in /_matrix/push/v1/notify",
        ));
    }
    let private = host
        .parse::<std::net::IpAddr>()
        .is_ok_and(crate::push::guard::is_private);
    if private && !allow_private {
        return Err(ChatError::BadPusher("the gateway's address is private"));
    }
    Ok(())
}

impl Hub {
    pub(super) fn pusher(
        &mut self,
        sid: SessionId,
        uid: UserId,
        cmd: PusherCmd<'_>,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        let (app_id, pushkey, url) = match cmd {
            PusherCmd::List => {
                let list = self.pushers.0.get(&uid).cloned().unwrap_or_default();
                out.reply(sid, Reply::Pushers(list));
                return Ok(());
            }
            PusherCmd::Add {
                app_id,
                pushkey,
                url,
            } => {
                check(app_id, pushkey, url, self.cfg.push_allow_private)?;
                (app_id, pushkey, Some(url))
            }
            PusherCmd::Remove { app_id, pushkey } => (app_id, pushkey, None),
        };
        let mine = self.pushers.0.get(&uid).map_or(&[][..], Vec::as_slice);
        let known = mine
            .iter()
            .any(|p| &*p.app_id == app_id && &*p.pushkey == pushkey);
        if url.is_none() && !known {
            return Err(ChatError::NoSuchPusher);
        }
        if url.is_some() && !known && mine.len() >= MAX_PUSHERS {
            return Err(ChatError::TooManyPushers(MAX_PUSHERS));
        }
        let change = PusherChange {
            user: uid,
            app_id: app_id.into(),
            pushkey: pushkey.into(),
            url: url.map(Into::into),
        };
        self.pushers.apply(&change);
        let write = change.write();
        let reply = Reply::PusherSet {
            app_id: app_id.to_string(),
            pushkey: pushkey.to_string(),
            added: url.is_some(),
        };
        let shared = Change::Pusher(change);
        self.commit(sid, vec![write], reply, Vec::new(), shared, out);
        Ok(())
    }

    /// A gateway rejected a pushkey, which the push thread deleted from the
    /// store: the table here forgets it, and so do the other nodes'.
    pub fn pusher_rejected(&mut self, r: crate::push::Rejected, out: &mut Out) {
        let change = PusherChange {
            user: UserId(u32::try_from(r.user).unwrap_or(u32::MAX)),
            app_id: r.app_id.into(),
            pushkey: r.pushkey.into(),
            url: None,
        };
        self.pushers.apply(&change);
        self.log_alone(Change::Pusher(change), out);
    }

    /// A pusher registered or removed on another node.
    pub(super) fn apply_pusher(&mut self, change: PusherChange) {
        self.pushers.apply(&change);
    }

    /// The notifications a message from `sender` in `conv` queues, one per
    /// member with a pusher who is offline (or away, for a direct message
    /// or a mention).
    pub(super) fn notifications(
        &self,
        conv: ConvId,
        sender: UserId,
        msgid: &uuid::Uuid,
        text: &str,
        at: i64,
    ) -> Vec<Write> {
        let Some(c) = self.convs.get(conv).filter(|_| !self.pushers.0.is_empty()) else {
            return Vec::new();
        };
        let direct = c.kind == ConvKind::Direct;
        let sender_name = self.name(sender);
        let mut rows = Vec::new();
        for m in c
            .members
            .iter()
            .filter(|m| m.user != sender && self.pushers.has(m.user))
        {
            let Some(user) = self.users.get(m.user) else {
                continue;
            };
            let mention = !direct && names::mentions(text, &user.name);
            let online = self.online_anywhere(m.user, user);
            let away = user.away.is_some();
            if online && !(away && (direct || mention)) {
                continue;
            }
            let room = if direct {
                format!("@{sender_name}")
            } else {
                c.name.clone()
            };
            let read = self.cursor(m.user, conv).read;
            rows.push(Write::Push(PushRow {
                user: m.user,
                room,
                sender: sender_name.to_string(),
                msgid: msgid.to_string(),
                prio: if direct || mention { "high" } else { "low" },
                unread: c.last_seq.0.saturating_sub(read.0) + 1,
                at,
            }));
        }
        rows
    }
}
