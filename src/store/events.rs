//! Events: recorded in the transaction of the change they describe (`record_events`), turned
//! into webhook deliveries by the outbox, forgotten once dispatched and old (`EventStore`).

use async_trait::async_trait;
use sqlx::{ColumnIndex, Executor};

use super::dialect::{Column, Dialect, RowsAffected};
use super::query::{inserts, Value};
use super::sql::SqlStore;
use super::{StoreError, StoreResult};
use crate::domain::{Event, EventKind, Timestamp};

/// Event names as stored (what a webhook or a workflow runs on): a JSON array.
pub(super) fn event_names_text(events: &[EventKind]) -> String {
    let names: Vec<&str> = events.iter().map(|e| e.name()).collect();
    serde_json::to_string(&names).expect("names serialize")
}

/// Event names as `event_names_text` stored them.
pub(super) fn parse_event_names(text: &str) -> StoreResult<Vec<EventKind>> {
    let names: Vec<String> = serde_json::from_str(text)
        .map_err(|_| StoreError::Corrupt(format!("event names {text}")))?;
    names
        .iter()
        .map(|n| EventKind::parse(n).ok_or_else(|| StoreError::Corrupt(format!("event {n}"))))
        .collect()
}

#[async_trait]
pub trait EventStore: Send + Sync {
    /// Forgets dispatched events older than `before`; returns how many.
    async fn purge_events(&self, before: Timestamp) -> StoreResult<u64>;
}

#[async_trait]
impl<DB> EventStore for SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    String: Column<DB>,
    Option<String>: Column<DB>,
    i64: Column<DB>,
    Option<i64>: Column<DB>,
    bool: Column<DB>,
{
    async fn purge_events(&self, before: Timestamp) -> StoreResult<u64> {
        let done =
            sqlx::query("DELETE FROM events WHERE dispatched_at IS NOT NULL AND created_at < $1")
                .bind(before.as_millis())
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }
}

impl<DB> SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    String: Column<DB>,
    Option<String>: Column<DB>,
    i64: Column<DB>,
    Option<i64>: Column<DB>,
    bool: Column<DB>,
{
    /// Records events in the transaction of the change they describe, in one statement: their
    /// `seq`s follow their order.
    pub(super) async fn record_events(
        conn: &mut DB::Connection,
        events: &[Event],
    ) -> StoreResult<()> {
        let rows = events
            .iter()
            .map(|event| {
                let payload = serde_json::to_string(&event.payload())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok(vec![
                    Value::from(event.id.as_str()),
                    Value::from(event.account_id.to_string()),
                    Value::from(event.room.id.to_string()),
                    Value::from(event.kind.name()),
                    Value::from(payload),
                    Value::from(event.timestamp.as_millis()),
                ])
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let head =
            "INSERT INTO events (id, account_id, room_id, kind, payload, created_at) VALUES ";
        for insert in inserts(head, &rows) {
            insert.query::<DB>().execute(&mut *conn).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_round_trip() {
        let events = [EventKind::UserCreated, EventKind::SessionClosed];
        let text = event_names_text(&events);
        assert_eq!(text, r#"["user.created","session.closed"]"#);
        assert_eq!(parse_event_names(&text).unwrap(), events);
        assert!(matches!(
            parse_event_names(r#"["user.exploded"]"#),
            Err(StoreError::Corrupt(_))
        ));
    }
}
