//! Multipart uploads in progress: their template (headers, metadata, tags) and captured
//! parts are kept in the journal's work in progress until the upload completes (its commit
//! removes them in the same batch, see [`crate::Pending::ending_upload`]) or is aborted.

use rewind_journal::{JournalError, Progress, layout};
use rewind_model::{ObjectVersion, Seq};
use rewind_vault::Manifest;

use crate::{Capture, CaptureError, ObjectMeta, version_of};

impl Capture {
    /// Records a multipart upload's headers, metadata and tags until it completes.
    pub async fn start_upload(&self, upload: &[u8], meta: ObjectMeta) -> Result<(), CaptureError> {
        let template = version_of(Manifest { chunks: Vec::new(), size: 0, blake3: [0; 32] }, "", None, meta);
        Ok(self.journal.progress(vec![Progress::Put(layout::upload_template(upload), template.encode())]).await?)
    }

    /// The upload's template, if the gateway saw it start.
    pub fn upload_template(&self, upload: &[u8]) -> Result<Option<ObjectVersion>, CaptureError> {
        self.journal.progress_get(&layout::upload_template(upload))?.map(|bytes| decode_progress(&bytes)).transpose()
    }

    /// Records one captured part.
    pub async fn put_part(&self, upload: &[u8], number: i32, part: &ObjectVersion) -> Result<(), CaptureError> {
        Ok(self.journal.progress(vec![Progress::Put(layout::upload_part(upload, number), part.encode())]).await?)
    }

    /// Every captured part by number.
    pub fn parts(&self, upload: &[u8]) -> Result<std::collections::HashMap<i32, ObjectVersion>, CaptureError> {
        let parts = layout::upload_parts(upload);
        let mut out = std::collections::HashMap::new();
        for (k, v) in self.journal.progress_scan(&parts)? {
            let number = layout::part_number(&parts, &k).ok_or_else(|| {
                CaptureError::Journal(JournalError::Corrupt { seq: Seq(0), detail: "malformed part key".into() })
            })?;
            out.insert(number, decode_progress(&v)?);
        }
        Ok(out)
    }

    /// Forgets an aborted upload's state.
    pub async fn end_upload(&self, upload: &[u8]) -> Result<(), CaptureError> {
        Ok(self.journal.progress(vec![Progress::RemovePrefix(upload.to_vec())]).await?)
    }
}

fn decode_progress(bytes: &[u8]) -> Result<ObjectVersion, CaptureError> {
    ObjectVersion::decode(bytes)
        .map_err(|e| CaptureError::Journal(JournalError::Corrupt { seq: Seq(0), detail: e.to_string() }))
}
