//! Lists and pages: which slice of a list to return, filters, and pages bounded in bytes as
//! well as in items (`page_bytes`), with the generic code that reads them.

use sqlx::{ColumnIndex, Executor, FromRow, Row};

use super::dialect::{Column, Dialect};
use super::query::Sql;
use super::StoreResult;
use crate::domain::Timestamp;

/// Which slice of a list to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl Page {
    /// Items in a page when the client does not say.
    pub const DEFAULT_LIMIT: i64 = 50;
    /// The most items a client may ask for in one page.
    pub const MAX_LIMIT: i64 = 100;

    /// Where the next page starts after this one returned `returned` items: `None` when
    /// nothing follows. A page may end before `limit` (see `page_bytes`), so the next offset
    /// counts what came, not what was asked.
    pub fn next_offset(&self, returned: usize, has_more: bool) -> Option<i64> {
        has_more.then(|| self.offset.saturating_add(returned as i64))
    }
}

/// How much one page may hold: `items` at most, of at most `bytes` (see `page_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize {
    pub items: i64,
    pub bytes: i64,
}

/// Bounds pages in bytes as well as in rows, so that no answer grows with what clients
/// stored. The SQL computes, in the page's order, the running total of each row's size
/// (`page_bytes`) and keeps the rows that fit the budget, and the one row after them, which
/// `keep_within` then drops: it only tells that more follow. The first row always stays:
/// every item has a size limit of its own, and a page must make progress.
pub mod page_bytes {
    /// The start of a byte-bounded query. The caller adds the ordinary page query (`SELECT
    /// ... ORDER BY <order> LIMIT ...`, whose columns `size` uses), then `END`, then binds the
    /// budget, then adds `end_order(order)`. Sizes are summed over the page's own rows only,
    /// so that an `OFFSET` counts nothing it skipped.
    pub fn start(size: &str, order: &str) -> String {
        format!(
            "SELECT * FROM (SELECT *, \
               CAST(SUM({size}) OVER (ORDER BY {order} ROWS UNBOUNDED PRECEDING) AS BIGINT) \
                 AS page_bytes, \
               CAST({size} AS BIGINT) AS row_bytes, \
               ROW_NUMBER() OVER (ORDER BY {order}) AS page_row FROM ("
        )
    }

    /// Keeps the rows up to the first that ends past the budget (bound right after this): a
    /// row stays when the rows before it fit. The first two always stay, so that a first row
    /// larger than the budget still comes, and still tells whether more follow.
    pub const END: &str = ") page_rows) page WHERE page_row <= 2 OR page_bytes - row_bytes <= ";

    /// The page's order again, for the outer query.
    pub fn end_order(order: &str) -> String {
        format!(" ORDER BY {order}")
    }

    /// How many of the rows, whose running totals are `totals` in order, fit `max_bytes`:
    /// all whose total stays within it, and at least one.
    pub fn keep_within(totals: impl IntoIterator<Item = i64>, max_bytes: i64) -> usize {
        totals
            .into_iter()
            .enumerate()
            .take_while(|(i, total)| *i == 0 || *total <= max_bytes)
            .count()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn keeps_what_fits_and_always_the_first() {
            assert_eq!(keep_within([10, 20, 30], 25), 2);
            assert_eq!(keep_within([10, 20, 30], 30), 3);
            assert_eq!(keep_within([100, 120], 25), 1);
            assert_eq!(keep_within([], 25), 0);
        }
    }
}

/// Filters shared by the lists: a case-insensitive partial match and a creation-time window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub search: Option<String>,
    pub created_from: Option<Timestamp>,
    pub created_before: Option<Timestamp>,
}

/// A page of results and the number of results across all pages.
#[derive(Debug, Clone)]
pub struct Listed<T> {
    pub items: Vec<T>,
    pub total: i64,
}

/// `%`, `_` and `\` escaped for a `LIKE ... ESCAPE '\'` pattern matching anywhere, lowercased
/// as the database's `LOWER()` does.
pub(super) fn like_pattern<DB: Dialect>(search: &str) -> String {
    format!("%{}%", escape_like(&DB::lower(search)))
}

/// `text` with `LIKE`'s wildcards escaped (`ESCAPE '\'`), to match itself.
pub(super) fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Appends the conditions of a list filter to a `WHERE` clause already begun; `search`
/// matches any of `search_columns`.
pub(super) fn push_filter<DB: Dialect>(
    sql: &mut Sql,
    filter: &ListFilter,
    search_columns: &[&str],
) {
    if let Some(search) = filter.search.as_deref().filter(|s| !s.is_empty()) {
        let pattern = like_pattern::<DB>(search);
        sql.push(" AND (");
        for (i, column) in search_columns.iter().enumerate() {
            if i > 0 {
                sql.push(" OR ");
            }
            sql.push(&format!("LOWER({column}) LIKE "))
                .bind(pattern.clone())
                .push(" ESCAPE '\\'");
        }
        sql.push(")");
    }
    if let Some(from) = filter.created_from {
        sql.push(" AND created_at >= ").bind(from.as_millis());
    }
    if let Some(before) = filter.created_before {
        sql.push(" AND created_at < ").bind(before.as_millis());
    }
}

/// The rows of a byte-bounded page (see `page_bytes`).
pub(super) struct Fitted<T> {
    /// Those that fit, at most `PageSize::items` of them, and always the first.
    pub rows: Vec<T>,
    /// More rows follow these (the query asked for one more than `items`).
    pub more: bool,
    /// What the rows kept weigh together.
    pub bytes: i64,
}

/// Runs a byte-bounded page query (see `page_bytes`) and keeps the rows that fit `size`.
pub(super) async fn fetch_fitted<DB, T>(
    conn: &mut DB::Connection,
    sql: &Sql,
    size: PageSize,
) -> StoreResult<Fitted<T>>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
    Option<String>: Column<DB>,
    i64: Column<DB>,
    Option<i64>: Column<DB>,
    bool: Column<DB>,
    T: for<'r> FromRow<'r, DB::Row>,
{
    let rows = sql.query::<DB>().fetch_all(&mut *conn).await?;
    let totals = rows
        .iter()
        .map(|row| row.try_get::<i64, _>("page_bytes"))
        .collect::<Result<Vec<_>, _>>()?;
    let fit =
        page_bytes::keep_within(totals.iter().copied(), size.bytes).min(size.items.max(1) as usize);
    Ok(Fitted {
        bytes: fit.checked_sub(1).map_or(0, |last| totals[last]),
        more: rows.len() > fit,
        rows: rows[..fit]
            .iter()
            .map(T::from_row)
            .collect::<Result<_, _>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern::<sqlx::Postgres>("Room"), "%room%");
        assert_eq!(
            like_pattern::<sqlx::Postgres>("50%_off\\"),
            "%50\\%\\_off\\\\%"
        );
        assert_eq!(like_pattern::<sqlx::Postgres>("École"), "%école%");
        assert_eq!(like_pattern::<sqlx::Sqlite>("École"), "%École%");
    }
}
