//! Time-travel views' operations: make one at an instant, list the open ones, remove one.

use std::time::Duration;

use rewind_journal::ViewEntry;
use rewind_model::Seq;

use super::{OpError, Operations, blocking, known_bucket};
use crate::api::{ViewInfo, time_text};
use crate::{At, History, HistoryError};

/// The longest a view may stay open: it pins history against retention meanwhile.
pub const MAX_VIEW_TTL: Duration = Duration::from_secs(366 * 86_400);

/// What a listing says of a view (the secret only when `secret` is given).
fn info(journal: &rewind_journal::Journal, view: &ViewEntry, secret: Option<String>) -> Result<ViewInfo, HistoryError> {
    let last_change = journal.record(view.seq)?.map_or(0, |r| r.timestamp_us);
    Ok(ViewInfo {
        access_key_id: view.access_key_id.clone(),
        secret_access_key: secret,
        endpoint: None,
        bucket: view.bucket.clone(),
        seq: view.seq.0,
        at: time_text(view.at_us),
        last_change: time_text(last_change),
        created: time_text(view.created_us),
        expires: time_text(view.expires_us),
    })
}

/// The first position of `bucket` a view can show exactly: `forget` removed entries that
/// shaped earlier states. Without a record of it (a journal rebuilt from the vault), the
/// position after the horizon.
fn earliest_whole(journal: &rewind_journal::Journal, bucket: &str) -> Result<Option<Seq>, HistoryError> {
    if let Some(seq) = journal.exact_from(bucket)? {
        return Ok(Some(seq));
    }
    Ok(journal.horizon()?.map(|h| Seq(h.seq.0 + 1)))
}

impl Operations {
    /// Makes a view of `bucket` as of `at`, open for `ttl`. A relative or named instant is
    /// fixed to a journal position now. Refused: a bucket without history, an instant
    /// before history began or before what retention still holds (the message names the
    /// earliest instant available), a TTL of zero or over a year.
    pub async fn view_create(&self, bucket: String, at: At, ttl: Duration) -> Result<ViewInfo, OpError> {
        if ttl.is_zero() || ttl > MAX_VIEW_TTL {
            return Err(OpError::Invalid(format!(
                "a view's TTL must be more than zero and at most {} days",
                MAX_VIEW_TTL.as_secs() / 86_400
            )));
        }
        let (journal, keys) = (self.journal(), self.stores.keys.clone());
        let view = blocking(move || {
            known_bucket(&journal, &bucket)?;
            let history = History::new(&journal);
            let seq = history.resolve(&at)?;
            if let Some(earliest) = earliest_whole(&journal, &bucket)?
                && seq < earliest
                && !matches!(at, At::Name(_))
            {
                let first = journal.records(earliest, 1).map_err(HistoryError::from)?;
                let when = first.first().map_or_else(|| "now".to_owned(), |r| time_text(r.timestamp_us));
                return Err(OpError::Invalid(format!(
                    "{at} is outside the history retention still holds for {bucket}: the earliest instant available is {when} (seq:{}), or a named snapshot",
                    earliest.0
                )));
            }
            let now = rewind_capture::now_us();
            let at_us = match at {
                At::TimeUs(us) => us,
                _ => journal.record(seq).map_err(HistoryError::from)?.map_or(now, |r| r.timestamp_us),
            };
            let ttl_us = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX);
            let access_key_id = rewind_journal::views::new_access_key_id()
                .map_err(|e| OpError::Invalid(format!("cannot draw a random key: {e}")))?;
            Ok(ViewEntry { access_key_id, bucket, seq, at_us, created_us: now, expires_us: now.saturating_add(ttl_us) })
        })
        .await?;
        // Expired views answer nothing and pin nothing; making a view clears them away.
        let journal = &self.stores.journal;
        for old in journal.views().map_err(HistoryError::from)? {
            if !old.is_open(view.created_us) {
                journal.view_delete(&old.access_key_id).await.map_err(HistoryError::from)?;
            }
        }
        if !journal.view_put(&view).await.map_err(HistoryError::from)? {
            return Err(OpError::Invalid("a view with that access key id exists; try again".into()));
        }
        let secret = keys.view_secret(&view.access_key_id).to_string();
        let journal = self.journal();
        blocking(move || Ok(info(&journal, &view, Some(secret))?)).await
    }

    /// The open views, by access key id; with their secrets when `secrets`.
    pub async fn views(&self, secrets: bool) -> Result<Vec<ViewInfo>, OpError> {
        let (journal, keys) = (self.journal(), self.stores.keys.clone());
        blocking(move || {
            let now = rewind_capture::now_us();
            let open: Vec<ViewEntry> =
                journal.views().map_err(HistoryError::from)?.into_iter().filter(|v| v.is_open(now)).collect();
            let secret = |v: &ViewEntry| secrets.then(|| keys.view_secret(&v.access_key_id).to_string());
            Ok(open.iter().map(|v| info(&journal, v, secret(v))).collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Removes a view: its key stops working at once.
    pub async fn view_rm(&self, access_key_id: &str) -> Result<(), OpError> {
        if self.stores.journal.view_delete(access_key_id).await.map_err(HistoryError::from)? {
            Ok(())
        } else {
            Err(OpError::NoSuchVersion(format!(
                "there is no view with access key id {access_key_id}: `rewind view ls` lists them"
            )))
        }
    }
}
