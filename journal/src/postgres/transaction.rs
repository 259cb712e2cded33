//! A writer batch's transaction, opened with a simple query so that `BEGIN`, the writers'
//! lock and the head read take one round trip.

use tokio_postgres::SimpleQueryMessage;

use super::PostgresEngine;
use crate::engine::Write;

/// A transaction opened by a simple query on a pooled connection. Dropped before it
/// commits or rolls back (an error, or the task cancelled), it takes the connection out of
/// the pool, so no connection goes back with a transaction still open.
pub(super) struct OpenTransaction {
    client: Option<deadpool_postgres::Client>,
    /// The first column of the first row the opening query's last statement returned.
    pub(super) answer: Option<String>,
}

impl OpenTransaction {
    /// `BEGIN`, then `then` (statements, `;`-separated) in the same round trip.
    pub(super) async fn begin(client: deadpool_postgres::Client, then: &str) -> Result<Self, tokio_postgres::Error> {
        let sql = if then.is_empty() { "BEGIN".to_owned() } else { format!("BEGIN; {then}") };
        let mut open = Self { client: Some(client), answer: None };
        let messages = open.client().simple_query(&sql).await?;
        // Rows since the last statement before the last one completed.
        let mut rows =
            messages.iter().rev().skip(1).take_while(|m| !matches!(m, SimpleQueryMessage::CommandComplete(_)));
        open.answer = rows.find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        });
        Ok(open)
    }

    pub(super) fn client(&self) -> &deadpool_postgres::Client {
        self.client.as_ref().expect("invariant: present until the transaction ends")
    }

    /// Applies `writes` and commits, unsynced (`synchronous_commit = off`) unless `sync`:
    /// one round trip. The statement and the `COMMIT` go out back to back and are answered
    /// in order; were the writes refused, the transaction is aborted and its `COMMIT` rolls
    /// back, and the refusal is the answer.
    pub(super) async fn commit(mut self, writes: Vec<Write>, sync: bool) -> Result<(), tokio_postgres::Error> {
        let commit = if sync { "COMMIT" } else { "SET LOCAL synchronous_commit TO off; COMMIT" };
        let Some((sql, params)) = PostgresEngine::statement(writes) else { return self.end(commit).await };
        let (applied, committed) = {
            let client = self.client();
            // Statement texts repeat (a few shapes of batch): prepared once per connection.
            let stmt = client.prepare_cached(&sql).await?;
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params.iter().map(|p| p as _).collect();
            let mut applied = std::pin::pin!(client.execute(&stmt, &refs));
            // Its first poll sends the statement, before the COMMIT is sent.
            let early = futures::poll!(&mut applied);
            let committed = client.simple_query(commit).await;
            let applied = match early {
                std::task::Poll::Ready(outcome) => outcome,
                std::task::Poll::Pending => applied.await,
            };
            (applied, committed)
        };
        applied?;
        committed?;
        self.client = None; // back to the pool: the transaction is over
        Ok(())
    }

    pub(super) async fn rollback(mut self) -> Result<(), tokio_postgres::Error> {
        self.end("ROLLBACK").await
    }

    async fn end(&mut self, sql: &str) -> Result<(), tokio_postgres::Error> {
        self.client().simple_query(sql).await?;
        self.client = None; // back to the pool: the transaction is over
        Ok(())
    }
}

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn unhex(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()).collect()
}
