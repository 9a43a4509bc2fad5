//! `collabkit db copy`: every table of a SQLite database into an empty PostgreSQL one, the
//! way off the embedded default. One transaction on each side (a snapshot of the source, all
//! or nothing on the target); each table's rows are counted and checksummed on both sides
//! before the target commits.

use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{ColumnIndex, Connection, Database, Postgres, Row, Sqlite};

use super::dialect::Column;
use super::query::{inserts, Value};
use super::sql::SqlStore;
use crate::domain::Timestamp;

/// The tables copied, in an order their foreign keys allow. Not `nodes` (each server
/// registers itself as it starts) nor the migrations ledger (the target has its own).
const TABLES: &[&str] = &[
    "accounts",
    "api_keys",
    "rooms",
    "users",
    "user_sessions",
    "connections",
    "follows",
    "store_schemas",
    "store_entries",
    "comment_threads",
    "comments",
    "comment_reactions",
    "events",
    "webhooks",
    "webhook_deliveries",
    "logins",
    "members",
    "dashboard_sessions",
    "invitations",
    "room_minutes",
    "room_hours",
    "files",
    "workflows",
    "workflow_runs",
    "workflow_executions",
];
/// The migrations ledger: the one table of the target that may hold rows.
const LEDGER: &str = "collabkit_migrations";
/// Rows inserted per statement (and between progress reports, times ten).
const ROWS_PER_INSERT: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("the target database is not empty: table {table} has {rows} rows")]
    TargetNotEmpty { table: String, rows: i64 },
    #[error(
        "a server is running on the source database (node {node}, seen {seen_ms_ago} ms ago): \
         stop it first"
    )]
    SourceInUse { node: String, seen_ms_ago: i64 },
    #[error("the copy does not know table {0}: it would be left out (a newer schema?)")]
    UnknownTable(String),
    #[error("column {table}.{column} has a type the copy does not know: {kind}")]
    UnknownColumn {
        table: String,
        column: String,
        kind: String,
    },
    #[error("table {table} differs after the copy: {source_rows} rows ({source_sum}) in the source, {target_rows} ({target_sum}) in the target")]
    Mismatch {
        table: &'static str,
        source_rows: u64,
        source_sum: String,
        target_rows: u64,
        target_sum: String,
    },
    #[error("migrating a database: {0}")]
    Store(#[from] super::StoreError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// How far the copy is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Rows of a table copied so far.
    Rows { table: &'static str, rows: u64 },
    /// A table copied, and the same on both sides.
    Verified(TableCopy),
}

/// A table as copied: its rows and their checksum (SHA-256 over each row's digest, in the
/// order of the digests: the databases need not agree on an order of rows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCopy {
    pub table: &'static str,
    pub rows: u64,
    pub checksum: String,
}

/// How a column's values are read and written.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    Int,
    Bool,
}

/// Copies the SQLite database at `source_url` into the (empty) PostgreSQL database at
/// `target_url`, both first brought up to this release's schema. Refused if a server seen
/// within `live_within_ms` still runs on the source, or if the target has any row.
pub async fn sqlite_to_postgres(
    source_url: &str,
    target_url: &str,
    live_within_ms: i64,
    mut progress: impl FnMut(Progress),
) -> Result<Vec<TableCopy>, CopyError> {
    let source_options: SqliteConnectOptions = source_url.parse()?;
    let source = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(source_options.create_if_missing(false))
        .await?;
    SqlStore::<Sqlite>::migrate(&source).await?;
    let target = PgPoolOptions::new()
        .max_connections(1)
        .connect(target_url)
        .await?;
    SqlStore::<Postgres>::migrate(&target).await?;

    let mut reader = source.acquire().await?;
    let mut snapshot = reader.begin().await?;
    let now = Timestamp::now().as_millis();
    let nodes: Vec<(String, i64)> = sqlx::query_as("SELECT id, heartbeat_at FROM nodes")
        .fetch_all(&mut *snapshot)
        .await?;
    if let Some((node, seen)) = nodes.into_iter().find(|(_, at)| now - at < live_within_ms) {
        return Err(CopyError::SourceInUse {
            node,
            seen_ms_ago: now - seen,
        });
    }

    let mut writer = target.acquire().await?;
    let mut tx = writer.begin().await?;
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (table,) in &tables {
        if table == LEDGER {
            continue;
        }
        if table != "nodes" && !TABLES.contains(&table.as_str()) {
            return Err(CopyError::UnknownTable(table.clone()));
        }
        let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&mut *tx)
            .await?;
        if rows > 0 {
            return Err(CopyError::TargetNotEmpty {
                table: table.clone(),
                rows,
            });
        }
    }

    let mut copied = Vec::with_capacity(TABLES.len());
    for &table in TABLES {
        let columns = columns(&mut tx, table).await?;
        let list = columns
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let head = format!("INSERT INTO {table} ({list}) VALUES ");
        let select = format!("SELECT {list} FROM {table}");

        let mut source_sum = Checksum::default();
        let mut batch: Vec<Vec<Value>> = Vec::with_capacity(ROWS_PER_INSERT);
        let mut rows = sqlx::query(&select).fetch(&mut *snapshot);
        while let Some(row) = rows.try_next().await? {
            let values = values::<Sqlite>(&row, &columns)?;
            source_sum.add(&values);
            batch.push(values);
            if batch.len() == ROWS_PER_INSERT {
                insert(&mut tx, &head, &batch).await?;
                batch.clear();
                if source_sum.rows % (10 * ROWS_PER_INSERT as u64) == 0 {
                    progress(Progress::Rows {
                        table,
                        rows: source_sum.rows,
                    });
                }
            }
        }
        drop(rows);
        insert(&mut tx, &head, &batch).await?;
        restart_sequences(&mut tx, table).await?;

        let mut target_sum = Checksum::default();
        let mut rows = sqlx::query(&select).fetch(&mut *tx);
        while let Some(row) = rows.try_next().await? {
            target_sum.add(&values::<Postgres>(&row, &columns)?);
        }
        drop(rows);
        let (source_rows, source_sum) = source_sum.finish();
        let (target_rows, target_sum) = target_sum.finish();
        if (source_rows, &source_sum) != (target_rows, &target_sum) {
            return Err(CopyError::Mismatch {
                table,
                source_rows,
                source_sum,
                target_rows,
                target_sum,
            });
        }
        let done = TableCopy {
            table,
            rows: source_rows,
            checksum: source_sum,
        };
        progress(Progress::Verified(done.clone()));
        copied.push(done);
    }
    tx.commit().await?;
    snapshot.rollback().await?;
    Ok(copied)
}

/// A table's columns in the target, in their order, with how each is read.
async fn columns(
    tx: &mut sqlx::PgConnection,
    table: &str,
) -> Result<Vec<(String, Kind)>, CopyError> {
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(&mut *tx)
    .await?;
    columns
        .into_iter()
        .map(|(column, kind)| match kind.as_str() {
            "text" => Ok((column, Kind::Text)),
            "bigint" => Ok((column, Kind::Int)),
            "boolean" => Ok((column, Kind::Bool)),
            _ => Err(CopyError::UnknownColumn {
                table: table.to_owned(),
                column,
                kind,
            }),
        })
        .collect()
}

/// A row's values, read as the target's columns say (the same on either database).
fn values<DB>(row: &DB::Row, columns: &[(String, Kind)]) -> Result<Vec<Value>, CopyError>
where
    DB: Database,
    usize: ColumnIndex<DB::Row>,
    Option<String>: Column<DB>,
    Option<i64>: Column<DB>,
    bool: Column<DB>,
{
    let mut values = Vec::with_capacity(columns.len());
    for (i, (_, kind)) in columns.iter().enumerate() {
        values.push(match kind {
            Kind::Text => Value::Text(row.try_get(i)?),
            Kind::Int => Value::Int(row.try_get(i)?),
            Kind::Bool => Value::Bool(row.try_get(i)?),
        });
    }
    Ok(values)
}

async fn insert(
    tx: &mut sqlx::PgConnection,
    head: &str,
    rows: &[Vec<Value>],
) -> Result<(), CopyError> {
    for statement in inserts(head, rows) {
        statement.query::<Postgres>().execute(&mut *tx).await?;
    }
    Ok(())
}

/// Sets the sequences behind a table's serial columns past the rows copied in, so that the
/// next row gets the next number (`events.seq`, whose order the webhook outbox follows).
async fn restart_sequences(tx: &mut sqlx::PgConnection, table: &str) -> Result<(), CopyError> {
    let serials: Vec<(String,)> = sqlx::query_as(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 \
           AND column_default LIKE 'nextval(%'",
    )
    .bind(table)
    .fetch_all(&mut *tx)
    .await?;
    for (column,) in serials {
        sqlx::query(&format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
               COALESCE(MAX({column}), 1), MAX({column}) IS NOT NULL) FROM {table}"
        ))
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// A table's checksum, whatever order its rows come in.
#[derive(Default)]
struct Checksum {
    rows: u64,
    digests: Vec<[u8; 32]>,
}

impl Checksum {
    fn add(&mut self, values: &[Value]) {
        let mut row = Sha256::new();
        for value in values {
            match value {
                Value::Text(None) | Value::Int(None) => row.update([0]),
                Value::Text(Some(text)) => {
                    row.update([1]);
                    row.update((text.len() as u64).to_le_bytes());
                    row.update(text.as_bytes());
                }
                Value::Int(Some(number)) => {
                    row.update([2]);
                    row.update(number.to_le_bytes());
                }
                Value::Bool(flag) => row.update([3, u8::from(*flag)]),
            }
        }
        self.digests.push(row.finalize().into());
        self.rows += 1;
    }

    /// The rows, and the checksum as 16 hex digits.
    fn finish(mut self) -> (u64, String) {
        self.digests.sort_unstable();
        let mut table = Sha256::new();
        for digest in &self.digests {
            table.update(digest);
        }
        let sum = table.finalize();
        let hex = sum[..8].iter().map(|b| format!("{b:02x}")).collect();
        (self.rows, hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_ignore_row_order_and_see_every_value() {
        let row = |id: &str, n: Option<i64>| vec![Value::from(id), Value::Int(n)];
        let sum = |rows: &[Vec<Value>]| {
            let mut sum = Checksum::default();
            rows.iter().for_each(|values| sum.add(values));
            sum.finish()
        };
        let (rows, a) = sum(&[row("a", Some(1)), row("b", None)]);
        assert_eq!(rows, 2);
        assert_eq!(a.len(), 16);
        assert_eq!(sum(&[row("b", None), row("a", Some(1))]).1, a);
        assert_ne!(sum(&[row("a", Some(1)), row("b", Some(0))]).1, a);
        assert_ne!(sum(&[row("a", Some(1)), row("c", None)]).1, a);
        // A text and a number of the same bytes, a null and an empty text, differ.
        assert_ne!(
            sum(&[vec![Value::from("")]]).1,
            sum(&[vec![Value::Text(None)]]).1
        );
    }
}
