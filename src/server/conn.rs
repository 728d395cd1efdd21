//! One client connection: its transport and its session, kept apart so that
//! the session's state and logic never see the socket.

use super::session::Session;
use super::transport::Socket;

#[derive(Debug)]
pub struct Conn {
    pub transport: Socket,
    /// Registered for writable events (only while the transport asks for
    /// them: a blocked outbox, for TCP).
    pub want_write: bool,
    pub session: Session,
}

impl Conn {
    pub fn new(transport: Socket, session: Session) -> Self {
        Conn {
            transport,
            want_write: false,
            session,
        }
    }
}
