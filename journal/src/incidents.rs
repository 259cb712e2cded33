//! Incidents the tripwire opened (`meta`: `incident/` + id): bytes the capture layer encodes,
//! kept in the journal so that every gateway sharing it, and the CLI, sees the same ones.

use crate::engine::{EngineExt, Table, Write};
use crate::writer::View;
use crate::{Journal, JournalError, layout};

impl Journal {
    /// Stores incident `id` (new, or its update), durably.
    pub async fn incident_put(&self, id: &str, value: Vec<u8>) -> Result<(), JournalError> {
        let key = layout::incident_key(id);
        self.change(Box::new(move |_: &View<'_>| Ok(vec![Write::Put(Table::Meta, key, value)]))).await
    }

    /// Incident `id` as stored.
    pub fn incident(&self, id: &str) -> Result<Option<Vec<u8>>, JournalError> {
        Ok(self.engine.get(Table::Meta, &layout::incident_key(id))?)
    }

    /// Every incident: id and bytes, by id.
    pub fn incidents(&self) -> Result<Vec<(String, Vec<u8>)>, JournalError> {
        let mut out = Vec::new();
        self.engine.scan_prefix(Table::Meta, layout::INCIDENT_PREFIX, &mut |k, v| {
            out.push((String::from_utf8_lossy(&k[layout::INCIDENT_PREFIX.len()..]).into_owned(), v.to_vec()));
            Ok(())
        })?;
        Ok(out)
    }
}
