//! Tripwire incidents as the journal keeps them (`meta`: `incident/` + id, JSON) and as
//! `rewind incidents` shows them: read, listed, acknowledged. Opening them is the
//! tripwire's (`tripwire.rs`).

use rewind_config::TripwireAction;
use rewind_journal::{Journal, JournalError};
use serde::{Deserialize, Serialize};

use crate::tripwire::Counts;

/// An incident's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentState {
    /// Open: in protect mode, the client key's writes to the bucket are refused.
    Open,
    /// Acknowledged by an operator: nothing is refused any more.
    Acknowledged,
}

/// An incident, as kept in the journal and shown by `rewind incidents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Its id (`inc-`, the position that opened it, and a random part).
    pub id: String,
    /// The client access key id that acted.
    pub actor: String,
    /// The bucket.
    pub bucket: String,
    /// When it opened, µs since the epoch.
    pub opened_us: i64,
    /// When it opened (RFC 3339).
    pub opened_at: String,
    /// The first journal position of the burst (the actor's first destructive change in
    /// the window that fired): `rewind undo --incident` reverts from here.
    pub first_seq: u64,
    /// The last position of the actor's changes counted in it.
    pub last_seq: u64,
    /// The signals that fired.
    pub signals: Vec<String>,
    /// What the actor did in the window that fired and since.
    pub counts: Counts,
    /// What the bucket's policy did about it.
    pub action: TripwireAction,
    /// Open or acknowledged.
    pub state: IncidentState,
    /// When an operator acknowledged it (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<String>,
}

impl Incident {
    /// Whether it refuses the actor's writes now.
    pub fn refuses(&self) -> bool {
        self.state == IncidentState::Open && self.action == TripwireAction::Protect
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

/// Every incident in `journal`, newest first.
pub fn incidents(journal: &Journal) -> Result<Vec<Incident>, JournalError> {
    let mut out: Vec<Incident> =
        journal.incidents()?.into_iter().filter_map(|(_, bytes)| Incident::decode(&bytes)).collect();
    out.sort_by_key(|i| std::cmp::Reverse(i.opened_us));
    Ok(out)
}

/// Incident `id` in `journal`.
pub fn incident(journal: &Journal, id: &str) -> Result<Option<Incident>, JournalError> {
    Ok(journal.incident(id)?.as_deref().and_then(Incident::decode))
}

/// Acknowledges incident `id`: its client key may write again (every gateway sees it
/// within its next refresh). `None` when there is no such incident.
pub async fn acknowledge(journal: &Journal, id: &str) -> Result<Option<Incident>, JournalError> {
    let Some(mut incident) = incident(journal, id)? else { return Ok(None) };
    if incident.state == IncidentState::Open {
        incident.state = IncidentState::Acknowledged;
        incident.acknowledged_at = Some(crate::rfc3339(crate::now_us()));
        journal.incident_put(id, encode(&incident)).await?;
        tracing::info!(incident = id, actor = %incident.actor, bucket = %incident.bucket, "tripwire: incident acknowledged");
    }
    Ok(Some(incident))
}

pub(crate) fn encode(incident: &Incident) -> Vec<u8> {
    serde_json::to_vec(incident).expect("invariant: an incident serializes")
}
