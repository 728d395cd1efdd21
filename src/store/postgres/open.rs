//! Loading the snapshot the hub starts from.

use super::tx::Tx;

use super::read::messages_before;
use super::{conv_id, seq, user_id};
use crate::store::{
    AuditAction, AuditRow, ConvKind, ConvRow, MemberRow, RequestRow, RequestState, Seq, Snapshot,
    StoreError, UserRow,
};

pub(super) fn load(db: &mut Tx<'_>, recent: usize) -> Result<Snapshot, StoreError> {
    let users = db
        .query(
            "SELECT id, name, phc, last_seen FROM users ORDER BY id",
            &[],
        )?
        .iter()
        .map(|r| UserRow {
            id: user_id(r.get(0)),
            name: r.get(1),
            phc: r.get(2),
            last_seen: r.get(3),
        })
        .collect();
    let mut convs = Vec::new();
    let conv_rows = db.query(
        "SELECT id, kind, name, last_seq FROM convs ORDER BY id",
        &[],
    )?;
    for r in &conv_rows {
        let id = conv_id(r.get(0));
        let kind: i16 = r.get(1);
        let mut recent_msgs = messages_before(db, id, Seq::MAX, recent)?;
        recent_msgs.reverse();
        convs.push(ConvRow {
            id,
            kind: ConvKind::from_code(i64::from(kind)),
            name: r.get(2),
            last_seq: seq(r.get(3)),
            recent: recent_msgs,
        });
    }
    let members = db
        .query(
            "SELECT conv, user_id, admin, joined FROM members ORDER BY joined, added",
            &[],
        )?
        .iter()
        .map(|r| MemberRow {
            conv: conv_id(r.get(0)),
            user: user_id(r.get(1)),
            admin: r.get(2),
            joined: r.get(3),
        })
        .collect();
    let friendships = db
        .query("SELECT a, b, since FROM friendships", &[])?
        .iter()
        .map(|r| (user_id(r.get(0)), user_id(r.get(1)), r.get(2)))
        .collect();
    let requests = db
        .query(
            "SELECT sender, recipient, state, at FROM requests ORDER BY at",
            &[],
        )?
        .iter()
        .map(|r| {
            let state: i16 = r.get(2);
            RequestRow {
                from: user_id(r.get(0)),
                to: user_id(r.get(1)),
                state: RequestState::from_code(i64::from(state)),
                at: r.get(3),
            }
        })
        .collect();
    let cursors = db
        .query("SELECT user_id, conv, delivered, read FROM cursors", &[])?
        .iter()
        .map(|r| {
            (
                user_id(r.get(0)),
                conv_id(r.get(1)),
                seq(r.get(2)),
                seq(r.get(3)),
            )
        })
        .collect();
    let reactions = db
        .query(
            "SELECT conv, seq, user_id, reaction FROM reactions ORDER BY id",
            &[],
        )?
        .iter()
        .map(|r| {
            (
                conv_id(r.get(0)),
                seq(r.get(1)),
                user_id(r.get(2)),
                r.get(3),
            )
        })
        .collect();
    let blocks = db
        .query("SELECT blocker, blocked FROM blocks", &[])?
        .iter()
        .map(|r| (user_id(r.get(0)), user_id(r.get(1))))
        .collect();
    let bans = db
        .query("SELECT conv, user_id FROM bans", &[])?
        .iter()
        .map(|r| (conv_id(r.get(0)), user_id(r.get(1))))
        .collect();
    let mutes = db
        .query("SELECT conv, user_id, until FROM mutes", &[])?
        .iter()
        .map(|r| (conv_id(r.get(0)), user_id(r.get(1)), r.get(2)))
        .collect();
    let topics = db
        .query("SELECT id, topic FROM convs WHERE topic IS NOT NULL", &[])?
        .iter()
        .map(|r| (conv_id(r.get(0)), r.get(1)))
        .collect();
    // The newest entries of each conversation's log, oldest first.
    let kept = crate::chat::AUDIT_KEPT as i64;
    let audit = db
        .query(
            "SELECT conv, at, by_user, action, target, detail FROM (
                 SELECT *, row_number() OVER (PARTITION BY conv ORDER BY id DESC) AS r FROM audit
             ) newest WHERE r <= $1 ORDER BY id",
            &[&kept],
        )?
        .iter()
        .map(|r| {
            let action: i16 = r.get(3);
            AuditRow {
                conv: conv_id(r.get(0)),
                at: r.get(1),
                by: user_id(r.get(2)),
                action: AuditAction::from_code(i64::from(action)),
                target: r.get::<_, Option<i64>>(4).map(user_id),
                detail: r.get(5),
            }
        })
        .collect();
    let pushers = db
        .query("SELECT user_id, app_id, pushkey, url FROM pushers", &[])?
        .iter()
        .map(|r| (user_id(r.get(0)), r.get(1), r.get(2), r.get(3)))
        .collect();
    let log_head: i64 = db
        .query_one("SELECT last FROM change_log_head", &[])?
        .get(0);
    Ok(Snapshot {
        log_head: u64::try_from(log_head).unwrap_or(0),
        users,
        convs,
        members,
        friendships,
        requests,
        cursors,
        reactions,
        blocks,
        bans,
        mutes,
        topics,
        audit,
        pushers,
    })
}
