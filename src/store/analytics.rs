//! Per-room per-minute activity counters: `AnalyticsStore`, written in batches by
//! `analytics::run` and read by the dashboard's charts.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Executor};

use super::dialect::{Column, Dialect};
use super::sql::{parse, SqlStore};
use super::{StoreError, StoreResult};
use crate::domain::{AccountId, RoomId, Timestamp};

/// One room's activity in one minute (or, read back for several rooms, their sums).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomMinute {
    pub account_id: AccountId,
    pub room_id: RoomId,
    /// The minute's start.
    pub minute: Timestamp,
    pub joins: i64,
    /// Most users online at once during the minute (on one node).
    pub peak_users: i64,
    pub presence_updates: i64,
    pub broadcasts: i64,
    pub store_writes: i64,
    pub comments: i64,
}

impl Default for RoomMinute {
    fn default() -> Self {
        Self {
            account_id: AccountId::default(),
            room_id: RoomId::default(),
            minute: Timestamp::from_millis(0),
            joins: 0,
            peak_users: 0,
            presence_updates: 0,
            broadcasts: 0,
            store_writes: 0,
            comments: 0,
        }
    }
}

impl RoomMinute {
    /// Adds another count of the same room and minute into this one.
    pub fn absorb(&mut self, other: &RoomMinute) {
        self.joins += other.joins;
        self.peak_users = self.peak_users.max(other.peak_users);
        self.presence_updates += other.presence_updates;
        self.broadcasts += other.broadcasts;
        self.store_writes += other.store_writes;
        self.comments += other.comments;
    }

    /// Messages of every kind.
    pub fn messages(&self) -> i64 {
        self.presence_updates + self.broadcasts + self.store_writes + self.comments
    }
}

/// Which minutes to read.
#[derive(Debug, Clone, Copy)]
pub struct MinuteRange {
    pub account_id: AccountId,
    /// One room, or (`None`) every room of the account, added up per minute.
    pub room_id: Option<RoomId>,
    pub from: Timestamp,
    pub to: Timestamp,
    /// Milliseconds per returned row (a multiple of a minute): each row adds up its minutes
    /// (peaks: the largest of its minutes).
    pub step_ms: i64,
}

#[async_trait]
pub trait AnalyticsStore: Send + Sync {
    /// Adds the counts to what is stored for each room and minute (peaks: the larger).
    async fn add_room_minutes(&self, minutes: &[RoomMinute]) -> StoreResult<()>;
    /// The steps with activity in the range, oldest first, each row's `minute` its start.
    async fn room_minutes(&self, range: MinuteRange) -> StoreResult<Vec<RoomMinute>>;
    /// The rooms with the most messages and joins in the range, busiest first (`step_ms`
    /// says the grain, as for `room_minutes`).
    async fn busiest_rooms(
        &self,
        range: MinuteRange,
        limit: i64,
    ) -> StoreResult<Vec<(RoomId, i64)>>;
    async fn delete_room_minutes_before(&self, before: Timestamp) -> StoreResult<u64>;
    /// User sessions that started in the range, per step: how many, and how long they lasted
    /// on average (one still open: until `now`).
    async fn session_steps(
        &self,
        range: MinuteRange,
        now: Timestamp,
    ) -> StoreResult<Vec<SessionStep>>;
}

/// The user sessions that started in one step of a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionStep {
    /// The step's start, in milliseconds since the epoch.
    pub step: i64,
    pub sessions: i64,
    pub average_ms: i64,
}

const HOUR_MS: i64 = 3_600_000;

/// Which table a range is read from: hours when its start and step are whole hours (its
/// organization-wide peaks then add up each room's peak of the hour, an upper bound), else
/// minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grain {
    Minute,
    Hour,
}

impl Grain {
    fn for_range(range: &MinuteRange) -> Self {
        let whole_hours = range.from.as_millis() % HOUR_MS == 0
            && range.to.as_millis() % HOUR_MS == 0
            && range.step_ms % HOUR_MS == 0;
        if whole_hours {
            Self::Hour
        } else {
            Self::Minute
        }
    }

    fn table(self) -> &'static str {
        match self {
            Self::Minute => "room_minutes",
            Self::Hour => "room_hours",
        }
    }
}

#[derive(sqlx::FromRow)]
struct MinuteRow {
    account_id: String,
    room_id: String,
    minute: i64,
    joins: i64,
    peak_users: i64,
    presence_updates: i64,
    broadcasts: i64,
    store_writes: i64,
    comments: i64,
}

impl TryFrom<MinuteRow> for RoomMinute {
    type Error = StoreError;

    fn try_from(row: MinuteRow) -> StoreResult<Self> {
        Ok(RoomMinute {
            account_id: parse(&row.account_id, "account id")?,
            room_id: parse(&row.room_id, "room id")?,
            minute: Timestamp::from_millis(row.minute),
            joins: row.joins,
            peak_users: row.peak_users,
            presence_updates: row.presence_updates,
            broadcasts: row.broadcasts,
            store_writes: row.store_writes,
            comments: row.comments,
        })
    }
}

#[async_trait]
impl<DB> AnalyticsStore for SqlStore<DB>
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
    async fn add_room_minutes(&self, minutes: &[RoomMinute]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for m in minutes {
            let minute = m.minute.as_millis();
            for (table, start) in [
                (Grain::Minute.table(), minute),
                (Grain::Hour.table(), minute - minute.rem_euclid(HOUR_MS)),
            ] {
                // An account deleted meanwhile: its counts are dropped (its foreign key).
                let sql = format!(
                    "INSERT INTO {table} (account_id, room_id, minute, joins, peak_users, \
                     presence_updates, broadcasts, store_writes, comments) \
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 WHERE EXISTS \
                     (SELECT 1 FROM accounts WHERE id = $1) \
                     ON CONFLICT (room_id, minute) DO UPDATE SET \
                     joins = {table}.joins + excluded.joins, \
                     peak_users = CASE WHEN excluded.peak_users > {table}.peak_users \
                     THEN excluded.peak_users ELSE {table}.peak_users END, \
                     presence_updates = {table}.presence_updates + excluded.presence_updates, \
                     broadcasts = {table}.broadcasts + excluded.broadcasts, \
                     store_writes = {table}.store_writes + excluded.store_writes, \
                     comments = {table}.comments + excluded.comments"
                );
                sqlx::query(&sql)
                    .bind(m.account_id.to_string())
                    .bind(m.room_id.to_string())
                    .bind(start)
                    .bind(m.joins)
                    .bind(m.peak_users)
                    .bind(m.presence_updates)
                    .bind(m.broadcasts)
                    .bind(m.store_writes)
                    .bind(m.comments)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn room_minutes(&self, range: MinuteRange) -> StoreResult<Vec<RoomMinute>> {
        let room = range.room_id.map(|id| id.to_string());
        let table = Grain::for_range(&range).table();
        // Per minute, the rooms added up (their peaks too: users of different rooms are
        // different users); then per step, the minutes added up and the largest peak. The
        // database does it: 30 days of minutes never cross the wire.
        let sql = format!(
            "SELECT $1 AS account_id, MIN(room_id) AS room_id, step AS minute, \
             CAST(SUM(joins) AS BIGINT) AS joins, CAST(MAX(peak_users) AS BIGINT) AS peak_users, \
             CAST(SUM(presence_updates) AS BIGINT) AS presence_updates, \
             CAST(SUM(broadcasts) AS BIGINT) AS broadcasts, \
             CAST(SUM(store_writes) AS BIGINT) AS store_writes, \
             CAST(SUM(comments) AS BIGINT) AS comments FROM ( \
             SELECT minute - ((minute - $3) % $5) AS step, MIN(room_id) AS room_id, \
             SUM(joins) AS joins, SUM(peak_users) AS peak_users, \
             SUM(presence_updates) AS presence_updates, SUM(broadcasts) AS broadcasts, \
             SUM(store_writes) AS store_writes, SUM(comments) AS comments \
             FROM {table} WHERE account_id = $1 AND ($2 IS NULL OR room_id = $2) \
             AND minute >= $3 AND minute < $4 GROUP BY minute) per_minute \
             GROUP BY step ORDER BY step"
        );
        let rows: Vec<MinuteRow> = sqlx::query_as(&sql)
            .bind(range.account_id.to_string())
            .bind(room)
            .bind(range.from.as_millis())
            .bind(range.to.as_millis())
            .bind(range.step_ms.max(60_000))
            .fetch_all(&self.reads)
            .await?;
        rows.into_iter().map(RoomMinute::try_from).collect()
    }

    async fn busiest_rooms(
        &self,
        range: MinuteRange,
        limit: i64,
    ) -> StoreResult<Vec<(RoomId, i64)>> {
        let table = Grain::for_range(&range).table();
        let sql = format!(
            "SELECT room_id, CAST(SUM(joins + presence_updates + broadcasts + store_writes \
             + comments) AS BIGINT) AS total FROM {table} \
             WHERE account_id = $1 AND minute >= $2 AND minute < $3 \
             GROUP BY room_id ORDER BY 2 DESC, room_id LIMIT $4"
        );
        let rows: Vec<(String, i64)> = sqlx::query_as(&sql)
            .bind(range.account_id.to_string())
            .bind(range.from.as_millis())
            .bind(range.to.as_millis())
            .bind(limit)
            .fetch_all(&self.reads)
            .await?;
        rows.into_iter()
            .map(|(room, total)| Ok((parse(&room, "room id")?, total)))
            .collect()
    }

    async fn session_steps(
        &self,
        range: MinuteRange,
        now: Timestamp,
    ) -> StoreResult<Vec<SessionStep>> {
        let steps: Vec<SessionStep> = sqlx::query_as(
            "SELECT s.joined_at - ((s.joined_at - $3) % $5) AS step, \
             CAST(COUNT(*) AS BIGINT) AS sessions, \
             CAST(AVG(COALESCE(s.left_at, $6) - s.joined_at) AS BIGINT) AS average_ms \
             FROM user_sessions s JOIN rooms r ON r.id = s.room_id \
             WHERE r.account_id = $1 AND ($2 IS NULL OR s.room_id = $2) \
             AND s.joined_at >= $3 AND s.joined_at < $4 \
             GROUP BY 1 ORDER BY 1",
        )
        .bind(range.account_id.to_string())
        .bind(range.room_id.map(|id| id.to_string()))
        .bind(range.from.as_millis())
        .bind(range.to.as_millis())
        .bind(range.step_ms.max(60_000))
        .bind(now.as_millis())
        .fetch_all(&self.reads)
        .await?;
        Ok(steps)
    }

    async fn delete_room_minutes_before(&self, before: Timestamp) -> StoreResult<u64> {
        let mut deleted = 0;
        for grain in [Grain::Minute, Grain::Hour] {
            let sql = format!("DELETE FROM {} WHERE minute < $1", grain.table());
            let done = sqlx::query(&sql)
                .bind(before.as_millis())
                .execute(&self.pool)
                .await?;
            deleted += super::dialect::RowsAffected::rows_affected(&done);
        }
        Ok(deleted)
    }
}
