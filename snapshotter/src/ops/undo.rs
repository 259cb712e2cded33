//! `POST /undo`: plan and apply the undo of one client key's changes (see `crate::undo`).

use std::sync::Arc;

use rewind_capture::tripwire::{self, Incident};
use rewind_model::Seq;
use tokio::sync::mpsc;

use super::{OpError, Operations, blocking, known_bucket};
use crate::api::{RestoreEvent, UndoRequest};
use crate::undo::UndoScope;
use crate::{At, History, HistoryError};

impl Operations {
    /// Plans the undo `ask` describes; unless it is a dry run, applies it in a task. The
    /// events are a restore's: the plan (with the conflicts left alone), progress, done.
    pub async fn undo(&self, mut ask: UndoRequest) -> Result<mpsc::Receiver<RestoreEvent>, OpError> {
        let writer = self.writer()?;
        if let Some(id) = ask.incident.take() {
            let incident = self.incident(&id).await?;
            ask.actor = incident.actor;
            ask.bucket = incident.bucket;
            ask.since = format!("seq:{}", incident.first_seq.saturating_sub(1));
        }
        if !writer.capture.protects(&ask.bucket) {
            return Err(OpError::Invalid(format!(
                "bucket {:?} is not protected by this gateway: nothing of it was journaled to undo",
                ask.bucket
            )));
        }
        if ask.actor.is_empty() {
            return Err(OpError::Invalid("name the client access key id whose changes to undo (--actor)".into()));
        }
        let now = rewind_capture::now_us();
        let since = At::parse(&ask.since, now).map_err(|e| OpError::Invalid(format!("--since: {e}")))?;
        let until = match &ask.until {
            Some(t) => Some(At::parse(t, now).map_err(|e| OpError::Invalid(format!("--until: {e}")))?),
            None => None,
        };
        let journal = self.journal();
        known_bucket(&journal, &ask.bucket)?;
        let listed = Arc::new(crate::restore::list_destination(&writer.capture, &ask.bucket, &ask.prefix).await?);
        let plan = {
            let (ask, listed) = (ask.clone(), listed.clone());
            blocking(move || {
                let history = History::new(&journal);
                let before = journal.head().map_err(HistoryError::from)?.seq;
                // A window that starts before the history does covers all of it.
                let after = match history.resolve(&since) {
                    Err(HistoryError::BeforeHistory { .. }) => Seq(0),
                    other => other?,
                };
                let until = match until {
                    Some(at) => history.resolve(&at)?,
                    None => before,
                };
                let scope = UndoScope {
                    actor: &ask.actor,
                    bucket: &ask.bucket,
                    prefix: &ask.prefix,
                    after,
                    until,
                    force: ask.force,
                };
                let mut plan = history.undo_plan(&scope, &listed)?;
                plan.summary.before_seq = before.0;
                Ok(plan)
            })
            .await?
        };
        tracing::info!(
            actor = %ask.actor,
            bucket = %ask.bucket,
            writes = plan.summary.writes,
            deletes = plan.summary.deletes,
            conflicts = plan.summary.conflicts.len(),
            dry_run = ask.dry_run,
            "undo planned"
        );
        Ok(self.apply_plan(&writer.capture, plan, listed, ask.parallel, ask.dry_run))
    }

    /// Every tripwire incident, newest first.
    pub async fn incidents(&self) -> Result<Vec<Incident>, OpError> {
        let journal = self.journal();
        blocking(move || Ok(tripwire::incidents(&journal).map_err(HistoryError::from)?)).await
    }

    /// Tripwire incident `id`.
    pub async fn incident(&self, id: &str) -> Result<Incident, OpError> {
        let (journal, id) = (self.journal(), id.to_owned());
        blocking(move || {
            tripwire::incident(&journal, &id).map_err(HistoryError::from)?.ok_or_else(|| {
                OpError::NoSuchVersion(format!("there is no incident {id}: `rewind incidents ls` lists them"))
            })
        })
        .await
    }

    /// Acknowledges tripwire incident `id`: its client key may write to its bucket again.
    pub async fn acknowledge_incident(&self, id: &str) -> Result<Incident, OpError> {
        let acked = match &self.writer {
            Some(w) => w.capture.tripwire().acknowledge(id).await,
            None => tripwire::acknowledge(&self.journal(), id).await,
        };
        acked.map_err(HistoryError::from)?.ok_or_else(|| {
            OpError::NoSuchVersion(format!("there is no incident {id}: `rewind incidents ls` lists them"))
        })
    }
}
