//! HTTP on the WebSocket listener: the request decides between an upgrade
//! (frames follow, the session goes on) and a one-shot answer (the browser
//! client's files, `/healthz`, `/metrics`, 404, or a refusal), after which
//! the connection closes.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::ws::{HttpError, Request};

use super::Server;
use super::close::CloseReason;
use super::stats::LatencyBuckets;
use super::transport::Socket;

/// The content type of the Prometheus text format.
const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Sent with every answer: the page runs only its own script and style and
/// talks only to this origin (`ws:`/`wss:` for browsers whose `'self'` does
/// not cover WebSocket URLs); nothing may frame it.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self' ws: wss:; img-src 'self' blob:; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

/// One file of the browser client, built into the binary.
struct PageFile {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// The browser client (`web/`): `/` is its page, which loads the other two.
const PAGE_FILES: [PageFile; 3] = [
    PageFile {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../../web/index.html"),
    },
    PageFile {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../web/app.js"),
    },
    PageFile {
        path: "/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../web/app.css"),
    },
];

impl Server {
    /// Reads connection `i`'s request as far as it has come and acts on it.
    pub(super) fn serve_http(&mut self, i: usize) {
        let Some(conn) = self.conns.get_mut(i) else {
            return;
        };
        let sid = conn.session.sid;
        let Socket::Ws(ws) = &mut conn.transport else {
            return;
        };
        let (status, content_type, body, reason) = match ws.read_request() {
            Ok(None) => return,
            // The greeting waiting in the outbox goes out behind the 101.
            Ok(Some(Request::Upgrade)) => {
                log::info!("session {sid}: WebSocket upgrade");
                return;
            }
            Ok(Some(Request::Get(path))) => {
                self.counters.http_requests += 1;
                let (status, content_type, body) = match path.as_str() {
                    "/healthz" => ("200 OK", "text/plain", Cow::Borrowed("ok\n")),
                    "/metrics" => ("200 OK", METRICS_TYPE, Cow::Owned(self.metrics())),
                    _ => match PAGE_FILES.iter().find(|f| f.path == path) {
                        Some(file) => ("200 OK", file.content_type, Cow::Borrowed(file.body)),
                        None => ("404 Not Found", "text/plain", Cow::Borrowed("not found\n")),
                    },
                };
                log::info!("session {sid}: GET {path}: {status}");
                (status, content_type, body, CloseReason::HttpServed)
            }
            Err(e @ (HttpError::Cut | HttpError::Tls)) => {
                let conn = &mut self.conns[i];
                conn.session.closing = true;
                conn.session.close_as(if e == HttpError::Tls {
                    CloseReason::TlsError
                } else {
                    CloseReason::ClientClosed
                });
                self.dead.push(i);
                return;
            }
            Err(e) => {
                self.counters.http_requests += 1;
                log::info!("session {sid}: refused HTTP request: {e}");
                let body = Cow::Owned(format!("{e}\n"));
                (e.status(), "text/plain", body, CloseReason::BadRequest)
            }
        };
        let conn = &mut self.conns[i];
        if let Socket::Ws(ws) = &mut conn.transport {
            let headers = [
                ("Content-Type", content_type),
                ("Content-Security-Policy", PAGE_POLICY),
                ("X-Content-Type-Options", "nosniff"),
                ("Cache-Control", "no-cache"),
            ];
            ws.respond(status, &headers, body.as_bytes());
        }
        // The answer (the script is tens of KiB) may not fit the socket at
        // once: the write path closes the session once the stream has
        // written it all, or the `--ws-handshake-timeout` deadline does.
        // The greeting in the outbox is not for an HTTP client.
        conn.session.outbox.clear();
        conn.session.closing = true;
        conn.session.close_as(reason);
    }

    /// The `/metrics` page in the Prometheus text format 0.0.4.
    fn metrics(&self) -> String {
        let mut page = String::new();
        let rows = self.stat_rows().into_iter().chain(self.http_rows());
        for (name, value) in rows.chain(self.in_doubt_rows()) {
            let _ = writeln!(
                page,
                "# TYPE linechat_{name} gauge\nlinechat_{name} {value}"
            );
        }
        let mut by_front = [("tcp", 0u64), ("tls", 0), ("ws", 0), ("wss", 0)];
        let sessions = self
            .conns
            .iter()
            .filter(|(_, c)| !c.transport.is_http_only());
        for (_, conn) in sessions {
            let k = match &conn.transport {
                Socket::Tcp(_) => 0,
                Socket::Tls(_) => 1,
                Socket::Ws(ws) if matches!(ws.inner(), Socket::Tls(_)) => 3,
                Socket::Ws(_) => 2,
            };
            by_front[k].1 += 1;
        }
        page.push_str("# TYPE linechat_sessions_by_front gauge\n");
        for (front, n) in by_front {
            let _ = writeln!(page, "linechat_sessions_by_front{{front=\"{front}\"}} {n}");
        }
        let _ = writeln!(
            page,
            "# TYPE linechat_deliveries_total counter\nlinechat_deliveries_total {}",
            self.hub.counters.deliveries_out
        );
        page.push_str("# TYPE linechat_closed_total counter\n");
        for reason in CloseReason::ALL {
            let n = self.counters.closed[reason as usize];
            let _ = writeln!(
                page,
                "linechat_closed_total{{reason=\"{}\"}} {n}",
                reason.name()
            );
        }
        histogram(&mut page, "commit", &self.counters.commit_latency);
        histogram(&mut page, "delivery", &self.counters.delivery_latency);
        page
    }
}

/// Appends `h` as the histogram `linechat_<what>_latency_seconds`.
fn histogram(page: &mut String, what: &str, h: &LatencyBuckets) {
    let name = format!("linechat_{what}_latency_seconds");
    let _ = writeln!(page, "# TYPE {name} histogram");
    for (bound, n) in h.at_most() {
        let le = bound as f64 / 1e6;
        let _ = writeln!(page, "{name}_bucket{{le=\"{le}\"}} {n}");
    }
    let _ = writeln!(page, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(page, "{name}_sum {}", h.sum_us as f64 / 1e6);
    let _ = writeln!(page, "{name}_count {}", h.count);
}
