//! ATTACH and FETCH: files and images in any conversation.
//!
//! `ATTACH` is checked when its line arrives (so a refused upload is refused
//! before its body), the driver then reads exactly `size` raw bytes and hands
//! them over; the blob thread stores them content-addressed, and the message
//! that carries the blob goes through the normal publish pipeline. `FETCH`
//! streams a blob from disk in chunks, each read only once the previous one
//! has left the outbox, so a big blob never sits whole in memory.

use super::found::Parked;
use super::say::Speak;
use super::{
    Ack, BlobCtx, Body, ChatError, Hub, Out, Output, Pending, Reply, SessionId, UserId, names,
};
use crate::blob::{self, Outcome, Work};
use crate::protocol::Target;
use crate::store::{Answer, Query, Write};

/// A conversation named by the client, kept until the upload's body is in.
#[derive(Debug, Clone)]
enum Dest {
    Room(String),
    User(String),
}

/// An accepted ATTACH waiting for (or storing) its body.
#[derive(Debug)]
pub struct Upload {
    dest: Dest,
    name: String,
    mime: String,
    size: u64,
}

#[derive(Debug)]
pub struct FetchJob {
    blob: String,
    size: u64,
    offset: u64,
    pub(super) inflight: bool,
}

impl Hub {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn attach(
        &mut self,
        sid: SessionId,
        uid: UserId,
        conv: Target<'_>,
        name: &str,
        mime: &str,
        size: u64,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        if size > self.cfg.max_attachment {
            return Err(ChatError::TooLarge(self.cfg.max_attachment));
        }
        names::filename(name)?;
        let mime = names::mime(mime)?;
        let dest = match conv {
            Target::Room(room) => {
                self.speak_conv(uid, conv, out)?;
                Dest::Room(room.to_string())
            }
            Target::User(friend) => {
                let other = self.find_user(friend)?;
                if other == uid {
                    return Err(ChatError::SelfTarget);
                }
                if !self.friends.are_friends(uid, other) {
                    return Err(ChatError::NotFriends(self.name(other).to_string()));
                }
                Dest::User(friend.to_string())
            }
        };
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.busy = true;
            s.upload = Some(Box::new(Upload {
                dest,
                name: name.to_string(),
                mime,
                size,
            }));
        }
        out.defer(sid);
        Ok(())
    }

    /// Whether the body that follows this session's ATTACH line is wanted
    /// (otherwise the driver reads and discards it).
    pub fn wants_payload(&self, sid: SessionId) -> bool {
        self.sessions.get(&sid).is_some_and(|s| s.upload.is_some())
    }

    /// The whole body of the session's accepted ATTACH.
    pub fn payload(&mut self, sid: SessionId, data: Vec<u8>, out: &mut Out) {
        self.flush_posts(out);
        let Some(upload) = self.sessions.get_mut(&sid).and_then(|s| s.upload.take()) else {
            return;
        };
        out.blobs.push(blob::Job {
            work: Work::Put(data),
            ctx: BlobCtx::Put { sid, upload },
        });
    }

    /// The blob thread finished a job.
    pub fn blob_done(&mut self, done: blob::Done<BlobCtx>, out: &mut Out) {
        self.flush_posts(out);
        match (done.ctx, done.outcome) {
            (BlobCtx::Put { sid, upload }, Outcome::Stored(Ok(id))) => {
                self.unbusy(sid);
                if let Err(e) = self.post_attachment(sid, *upload, id, out) {
                    out.fail(sid, e);
                }
            }
            (BlobCtx::Put { sid, .. }, _) => {
                self.unbusy(sid);
                out.fail(sid, ChatError::Storage);
            }
            (BlobCtx::Read { sid }, Outcome::Read(Ok(bytes))) if !bytes.is_empty() => {
                let Some(job) = self.fetches.get_mut(&sid) else {
                    return;
                };
                job.inflight = false;
                job.offset += bytes.len() as u64;
                out.to(sid, Output::Body(Body::Raw(bytes.into())));
            }
            (BlobCtx::Read { sid }, _) => {
                // The header promised bytes that cannot be read: the stream
                // cannot be finished honestly, so the connection is closed.
                log::error!("session {sid}: blob read failed mid-FETCH; closing");
                self.fetches.remove(&sid);
                self.unbusy(sid);
                out.to(sid, Output::Close);
            }
        }
    }

    pub(super) fn post_attachment(
        &mut self,
        sid: SessionId,
        upload: Upload,
        id: String,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        let uid = self.user_of(sid).ok_or(ChatError::NotLoggedIn)?;
        // Resolved again: membership or friendship may have ended meanwhile.
        let target = match &upload.dest {
            Dest::Room(r) => Target::Room(r),
            Dest::User(u) => Target::User(u),
        };
        let conv = match self.speak_conv(uid, target, out)? {
            Speak::Here(conv) => conv,
            Speak::Founding(key) => {
                let parked = Parked::Attach {
                    upload: Box::new(upload),
                    blob: id,
                };
                self.park(sid, key, parked, false, out);
                return Ok(());
            }
        };
        let writes = vec![Write::Blob {
            id: id.clone(),
            size: upload.size,
            mime: upload.mime.clone(),
        }];
        let kind = if upload.mime.starts_with("image/") {
            "image"
        } else {
            "file"
        };
        let text = format!(
            "[{kind} {id} {} {} {}]",
            upload.mime, upload.size, upload.name
        );
        self.post(sid, uid, conv, text, writes, Ack::Attach(id), true, out);
        Ok(())
    }

    pub(super) fn fetch(
        &mut self,
        sid: SessionId,
        uid: UserId,
        blob: &str,
        out: &mut Out,
    ) -> Result<(), ChatError> {
        if !blob::is_blob_id(blob) {
            return Err(ChatError::NoSuchBlob);
        }
        // Commands after FETCH wait until its bytes have gone out.
        self.hold(sid);
        self.ask(
            sid,
            Query::BlobAccess {
                blob: blob.to_string(),
                user: uid,
            },
            Pending::FetchAccess {
                sid,
                blob: blob.to_string(),
            },
            out,
        );
        Ok(())
    }

    pub(super) fn fetch_answer(
        &mut self,
        sid: SessionId,
        blob: String,
        answer: Answer,
        out: &mut Out,
    ) {
        let Answer::Blob { size, mime } = answer else {
            self.unbusy(sid);
            return out.fail(sid, ChatError::NoSuchBlob);
        };
        let header = Body::Header {
            blob: blob.clone(),
            size,
            mime,
        };
        out.to(sid, Output::Body(header));
        self.fetches.insert(
            sid,
            FetchJob {
                blob,
                size,
                offset: 0,
                inflight: false,
            },
        );
    }

    /// Reads the next chunk of a FETCH, or ends it with a LF and `OK FETCH`.
    pub(super) fn fetch_more(&mut self, sid: SessionId, out: &mut Out) {
        let chunk = self.cfg.sync_chunk_bytes as u64;
        let Some(job) = self.fetches.get_mut(&sid) else {
            return;
        };
        if job.inflight {
            return;
        }
        if job.offset >= job.size {
            let blob = job.blob.clone();
            self.fetches.remove(&sid);
            self.unbusy(sid);
            out.complete(sid, Reply::Fetched(blob));
            return;
        }
        job.inflight = true;
        out.blobs.push(blob::Job {
            work: Work::Read {
                id: job.blob.clone(),
                offset: job.offset,
                len: chunk.min(job.size - job.offset) as usize,
            },
            ctx: BlobCtx::Read { sid },
        });
    }
}
