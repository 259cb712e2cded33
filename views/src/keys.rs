//! Which access keys are views, and their secrets.

use std::sync::Arc;

use rewind_crypto::KeySet;
use rewind_journal::{Journal, ViewEntry, views::VIEW_KEY_PREFIX};

/// Finds the open view of an access key in the journal, and derives its secret. A lookup
/// is one read of the journal's meta table, so a view made or removed a moment ago is
/// seen at once, by every request.
#[derive(Clone)]
pub struct ViewKeys {
    journal: Arc<Journal>,
    keys: Arc<KeySet>,
}

impl ViewKeys {
    /// Views kept in `journal`, whose secrets derive from `keys`.
    pub fn new(journal: Arc<Journal>, keys: Arc<KeySet>) -> Self {
        Self { journal, keys }
    }

    /// The open view `access_key_id` signs for (`None`: not a view, removed or expired).
    pub fn open_view(&self, access_key_id: &str) -> Option<ViewEntry> {
        if !access_key_id.starts_with(VIEW_KEY_PREFIX) {
            return None;
        }
        let view = match self.journal.view(access_key_id) {
            Ok(view) => view?,
            Err(e) => {
                tracing::error!(error = %e, "cannot read a view from the journal");
                return None;
            }
        };
        view.is_open(now_us()).then_some(view)
    }

    /// The secret of the open view `access_key_id`.
    pub fn secret(&self, access_key_id: &str) -> Option<String> {
        self.open_view(access_key_id).map(|_| self.keys.view_secret(access_key_id).to_string())
    }
}

fn now_us() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}
