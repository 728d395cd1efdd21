//! Why a session ended: one reason per closed session, logged once when it
//! closes and counted per reason in STATS (`STAT closed_<name> <n>`).

use super::Server;
use crate::chat::SessionId;
use crate::ws;

/// The reason a connection was closed. The first cause found wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent QUIT.
    Quit,
    /// The client closed its side (EOF) and everything owed was written.
    ClientClosed,
    /// The connection ended in the middle of an ATTACH body.
    UploadCut,
    /// Reading the socket failed (reset, keepalive timeout, ...).
    ReadError,
    /// Writing the socket failed.
    WriteError,
    /// The outbox would have passed `--max-outbox`.
    SlowConsumer,
    /// The outbox stayed above `--outbox-soft-limit` for longer than
    /// `--outbox-soft-seconds`.
    SlowConsumerSoft,
    /// No login within `--login-timeout`.
    LoginTimeout,
    /// The input can no longer be split into lines: an ATTACH whose size
    /// is unreadable, or whose line is over the limit or not UTF-8.
    ProtocolError,
    /// An ATTACH declared a body far over `--max-attachment`.
    TooLarge,
    /// The chat layer ended the session (a FETCH body that could not be read).
    ChatRequest,
    /// The server is shutting down.
    Shutdown,
    /// Refused at accept: `--max-connections` reached.
    ServerFull,
    /// Refused at accept: too many unauthenticated connections from the address.
    TooManyUnauth,
    /// The peer broke the TLS protocol (a bad handshake, garbage instead of
    /// records, a record that does not decrypt).
    TlsError,
    /// The TLS handshake did not end within `--tls-handshake-timeout`.
    TlsHandshakeTimeout,
    /// An HTTP request on the WebSocket listener was answered (`/healthz`,
    /// `/metrics`, a 404).
    HttpServed,
    /// An HTTP request was refused (malformed, smuggling shapes, over the
    /// head limits): 400, 405 or 431.
    BadRequest,
    /// The peer broke the WebSocket protocol (unmasked or reserved frames).
    WsError,
    /// A WebSocket frame over `--ws-max-frame`.
    WsFrameTooLarge,
    /// No complete HTTP request within `--ws-handshake-timeout`.
    WsHandshakeTimeout,
}

impl CloseReason {
    /// Reasons listed in STATS before `messages_stored`; the ones after
    /// them come at the end of the answer (rows only ever go at the end).
    pub const FIRST_LISTED: usize = 16;

    /// Every reason, in the order of the STATS rows.
    /// New reasons go last, so that existing rows keep their places.
    pub const ALL: [CloseReason; 21] = [
        CloseReason::Quit,
        CloseReason::ClientClosed,
        CloseReason::UploadCut,
        CloseReason::ReadError,
        CloseReason::WriteError,
        CloseReason::SlowConsumer,
        CloseReason::LoginTimeout,
        CloseReason::ProtocolError,
        CloseReason::TooLarge,
        CloseReason::ChatRequest,
        CloseReason::Shutdown,
        CloseReason::ServerFull,
        CloseReason::TooManyUnauth,
        CloseReason::SlowConsumerSoft,
        CloseReason::TlsError,
        CloseReason::TlsHandshakeTimeout,
        CloseReason::HttpServed,
        CloseReason::BadRequest,
        CloseReason::WsError,
        CloseReason::WsFrameTooLarge,
        CloseReason::WsHandshakeTimeout,
    ];

    /// The name in logs and in `STAT closed_<name>`.
    pub fn name(self) -> &'static str {
        match self {
            CloseReason::Quit => "quit",
            CloseReason::ClientClosed => "client_closed",
            CloseReason::UploadCut => "upload_cut",
            CloseReason::ReadError => "read_error",
            CloseReason::WriteError => "write_error",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::SlowConsumerSoft => "slow_consumer_soft",
            CloseReason::LoginTimeout => "login_timeout",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::TooLarge => "too_large",
            CloseReason::ChatRequest => "chat_request",
            CloseReason::Shutdown => "shutdown",
            CloseReason::ServerFull => "server_full",
            CloseReason::TooManyUnauth => "too_many_unauth",
            CloseReason::TlsError => "tls_error",
            CloseReason::TlsHandshakeTimeout => "tls_handshake_timeout",
            CloseReason::HttpServed => "http_served",
            CloseReason::BadRequest => "bad_request",
            CloseReason::WsError => "ws_error",
            CloseReason::WsFrameTooLarge => "ws_frame_too_large",
            CloseReason::WsHandshakeTimeout => "ws_handshake_timeout",
        }
    }

    /// The close code a WebSocket client gets for this reason.
    pub fn ws_close_code(self) -> u16 {
        match self {
            CloseReason::Quit | CloseReason::ClientClosed => ws::CLOSE_NORMAL,
            CloseReason::Shutdown => ws::CLOSE_GOING_AWAY,
            CloseReason::TooLarge | CloseReason::WsFrameTooLarge => ws::CLOSE_TOO_BIG,
            CloseReason::ProtocolError | CloseReason::WsError => ws::CLOSE_PROTOCOL,
            _ => ws::CLOSE_POLICY,
        }
    }

    /// Reasons that are the server's doing against a live client: worth a
    /// warning in the log.
    pub fn is_drop(self) -> bool {
        matches!(
            self,
            CloseReason::SlowConsumer | CloseReason::SlowConsumerSoft
        )
    }
}

impl Server {
    pub(super) fn close_dead(&mut self) {
        while let Some(i) = self.dead.pop() {
            let Some(mut conn) = self.conns.try_remove(i) else {
                continue;
            };
            let reason = conn.session.reason.unwrap_or(CloseReason::ClientClosed);
            conn.transport
                .close_because(reason.ws_close_code(), reason.name());
            let _ = self.poll.registry().deregister(&mut conn.transport);
            self.soft.forget(i, &conn.session.soft_clock);
            if !conn.session.authed {
                self.unauth.remove(conn.session.sid);
            }
            self.record_close(conn.session.sid, reason);
            self.hub.disconnect(conn.session.sid, &mut self.out);
            self.apply_out();
        }
        // Closing may have queued presence events for others.
        if !self.dirty.is_empty() {
            self.flush_dirty();
            if !self.dead.is_empty() {
                self.close_dead();
            }
        }
    }

    /// Counts a closed session under its reason and logs it, once.
    pub(super) fn record_close(&mut self, sid: SessionId, reason: CloseReason) {
        self.counters.closed[reason as usize] += 1;
        let level = if reason.is_drop() {
            log::Level::Warn
        } else {
            log::Level::Info
        };
        log::log!(level, "session {sid} closed: {}", reason.name());
    }
}
