//! A loopback Matrix push gateway for the push tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;

use serde_json::Value;

/// A loopback push gateway: answers each POST with the next scripted
/// `(status, body)` (then `200 {}`), and sends every request's path and
/// JSON body to the test.
pub fn gateway(script: Vec<(u16, &'static str)>) -> (String, mpsc::Receiver<(String, Value)>) {
    gateway_on(TcpListener::bind("127.0.0.1:0").unwrap(), script)
}

pub fn gateway_on(
    listener: TcpListener,
    script: Vec<(u16, &'static str)>,
) -> (String, mpsc::Receiver<(String, Value)>) {
    let url = format!(
        "http://{}/_matrix/push/v1/notify",
        listener.local_addr().unwrap()
    );
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut script = script.into_iter();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut out = stream;
            // Several requests may come on one connection (keep-alive).
            loop {
                let mut request = String::new();
                if reader.read_line(&mut request).unwrap_or(0) == 0 {
                    break;
                }
                let path = request.split(' ').nth(1).unwrap_or("").to_string();
                let mut length = 0;
                loop {
                    let mut header = String::new();
                    reader.read_line(&mut header).unwrap();
                    if header == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = header.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let _ = tx.send((path, serde_json::from_slice(&body).unwrap()));
                let (status, answer) = script.next().unwrap_or((200, "{}"));
                let _ = write!(
                    out,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
                    answer.len()
                );
            }
        }
    });
    (url, rx)
}
