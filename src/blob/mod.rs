//! Attachment bodies on disk, content-addressed, handled by their own thread.
//!
//! Hashing and writing megabytes must not stall the event loop, nor the
//! storage thread whose commits every `OK SAY` waits for; so blobs get a
//! worker of their own. A blob lives at `<data-dir>/blobs/<aa>/<sha256>`,
//! written to a temporary name, synced, then renamed: a crash never leaves a
//! half-written blob under its final name. Its metadata and references live
//! in SQLite, written by the storage thread with the message that uses it.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};

use sha2::{Digest, Sha256};

use crate::worker::{self, Workers};

/// A blob id: the lowercase hex SHA-256 of its bytes.
pub fn is_blob_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Where blob `id` lives under `dir`.
pub fn path(dir: &Path, id: &str) -> PathBuf {
    dir.join(&id[..2]).join(id)
}

pub enum Work {
    /// Store these bytes; answers the id.
    Put(Vec<u8>),
    /// Read up to `len` bytes at `offset`.
    Read { id: String, offset: u64, len: usize },
}

pub enum Outcome {
    Stored(io::Result<String>),
    Read(io::Result<Vec<u8>>),
}

pub type Job<C> = worker::Job<Work, C>;
pub type Done<C> = worker::Done<Outcome, C>;
/// Handle to the blob thread; dropping it lets the thread exit.
pub type Blobs<C> = Workers<Work, C>;

fn put(dir: &Path, data: &[u8]) -> io::Result<String> {
    let id: String = Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let path = path(dir, &id);
    if path.exists() {
        return Ok(id);
    }
    let parent = path.parent().expect("blob paths have a parent");
    fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(".{id}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, &path)?;
    File::open(parent)?.sync_all()?;
    Ok(id)
}

fn read(dir: &Path, id: &str, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut f = File::open(path(dir, id))?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(len);
    f.take(len as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Starts the blob thread. One thread, so that the chunk reads of a FETCH
/// come back in the order they were asked for.
pub fn start<C: Send + 'static>(
    dir: PathBuf,
    done: mpsc::Sender<Done<C>>,
    wake: Arc<dyn Fn() + Send + Sync>,
) -> Blobs<C> {
    let run = move |work| match work {
        Work::Put(data) => Outcome::Stored(put(&dir, &data)),
        Work::Read { id, offset, len } => Outcome::Read(read(&dir, &id, offset, len)),
    };
    Workers::start("blobs", 1, run, done, wake)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_is_content_addressed_and_read_back_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"\x00\xff\n\r binary".to_vec();
        let id = put(dir.path(), &data).unwrap();
        assert!(is_blob_id(&id));
        assert_eq!(put(dir.path(), &data).unwrap(), id, "same bytes, same blob");
        assert_eq!(read(dir.path(), &id, 0, 4).unwrap(), &data[..4]);
        assert_eq!(read(dir.path(), &id, 4, 100).unwrap(), &data[4..]);
        assert!(read(dir.path(), &id, 100, 4).unwrap().is_empty());
    }
}
