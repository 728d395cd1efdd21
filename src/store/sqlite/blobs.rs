//! Blob reference counting: a blob lives as long as a message holds it.

use std::path::Path;

use rusqlite::params;

use crate::store::backend::remove_blob_file;
use crate::store::{ConvId, Seq};

/// Drops message (conv, seq)'s hold on its blob; a blob nothing holds any
/// more is deleted, row and file.
pub(super) fn unref_blob(
    tx: &rusqlite::Transaction<'_>,
    conv: ConvId,
    seq: Seq,
    blob_dir: &Path,
) -> Result<(), rusqlite::Error> {
    let blob: Option<String> = tx
        .prepare_cached("DELETE FROM blob_refs WHERE conv = ?1 AND seq = ?2 RETURNING blob")?
        .query_map(params![conv, seq], |r| r.get(0))?
        .next()
        .transpose()?;
    let Some(blob) = blob else {
        return Ok(());
    };
    let still: i64 = tx
        .prepare_cached("SELECT COUNT(*) FROM blob_refs WHERE blob = ?1")?
        .query_row([&blob], |r| r.get(0))?;
    if still == 0 && crate::blob::is_blob_id(&blob) {
        tx.prepare_cached("DELETE FROM blobs WHERE id = ?1")?
            .execute([&blob])?;
        remove_blob_file(blob_dir, &blob);
    }
    Ok(())
}
