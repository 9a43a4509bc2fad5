//! SQL assembled at run time (optional conditions, `IN` lists, the fields an update names)
//! with its values, run on either backend.
//!
//! Not sqlx's `QueryBuilder`: in code generic over the database it cannot run what it builds.
//! Its query borrows the builder for the lifetime of the bound values, which the builder's
//! own drop then outlives (`Database::Arguments<'q>` is invariant in `'q`; sqlx#4188). Here
//! the values are owned and bound when the query is made.

use sqlx::query::{Query, QueryAs};
use sqlx::{Database, FromRow};

use super::dialect::{Column, Dialect};

/// A value to bind: the column types the store uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Value {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(bool),
}

/// What a placeholder of `Sql` is bound to: a value, or the list of an `IN` test
/// (`Sql::in_list`), one array on PostgreSQL and a value per item on SQLite.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Bound {
    Value(Value),
    List(Vec<String>),
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Self::Text(Some(text))
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Self::Text(Some(text.to_owned()))
    }
}

impl From<Option<String>> for Value {
    fn from(text: Option<String>) -> Self {
        Self::Text(text)
    }
}

impl From<i64> for Value {
    fn from(number: i64) -> Self {
        Self::Int(Some(number))
    }
}

impl From<Option<i64>> for Value {
    fn from(number: Option<i64>) -> Self {
        Self::Int(number)
    }
}

impl From<bool> for Value {
    fn from(flag: bool) -> Self {
        Self::Bool(flag)
    }
}

/// SQL text and the values of its placeholders, in order.
///
/// The text is kept twice: with numbered placeholders (`$1`, `$2`, ...), as PostgreSQL takes
/// them, and with anonymous ones (`?`) for SQLite. SQLite finds a numbered placeholder by name
/// in a list of the statement's placeholders, when it parses the statement and again when it
/// binds each value: quadratic in the values of a multi-row statement (a batch of 200 joins
/// binds about 1,600), where anonymous ones cost nothing.
///
/// An `IN` list (`in_list`) is one array on PostgreSQL, so that a statement's text does not
/// change with the length of its list: PostgreSQL then parses and plans it once per
/// connection, and its driver describes it once, where each new length cost a round trip
/// more and a new plan (and pushed the others out of the driver's cache of 100 statements).
#[derive(Debug, Clone, Default)]
pub(super) struct Sql {
    text: String,
    anonymous: String,
    values: Vec<Bound>,
}

impl Sql {
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        Self {
            anonymous: text.clone(),
            text,
            values: Vec::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self.anonymous.push_str(text);
        self
    }

    /// Appends the next placeholder, bound to `value`.
    pub fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.values.push(Bound::Value(value.into()));
        self.text.push_str(&format!("${}", self.values.len()));
        self.anonymous.push('?');
        self
    }

    /// The text as `DB` takes it best.
    fn text_for<DB: Dialect>(&self) -> &str {
        if DB::ANONYMOUS_PLACEHOLDERS {
            &self.anonymous
        } else {
            &self.text
        }
    }

    /// Appends a test that the expression before is one of `items`: ` = ANY($n)` on
    /// PostgreSQL, bound to them as an array; ` IN (?, ?, ...)` on SQLite. None matches when
    /// `items` is empty.
    pub fn in_list(&mut self, items: impl IntoIterator<Item = String>) -> &mut Self {
        let items: Vec<String> = items.into_iter().collect();
        self.anonymous.push_str(" IN (");
        for i in 0..items.len() {
            self.anonymous.push_str(if i == 0 { "?" } else { ", ?" });
        }
        self.anonymous.push(')');
        self.values.push(Bound::List(items));
        self.text
            .push_str(&format!(" = ANY(${})", self.values.len()));
        self
    }

    /// Appends placeholders separated by commas, bound to `values`.
    fn bind_all<V: Into<Value>>(&mut self, values: impl IntoIterator<Item = V>) -> &mut Self {
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(value);
        }
        self
    }

    /// The query, its values bound.
    pub fn query<DB>(&self) -> Query<'_, DB, DB::Arguments<'_>>
    where
        DB: Dialect,
        Option<String>: Column<DB>,
        Option<i64>: Column<DB>,
        bool: Column<DB>,
    {
        self.values.iter().fold(
            sqlx::query(self.text_for::<DB>()),
            |query, value| match value {
                Bound::Value(Value::Text(text)) => query.bind(text.clone()),
                Bound::Value(Value::Int(number)) => query.bind(*number),
                Bound::Value(Value::Bool(flag)) => query.bind(*flag),
                Bound::List(items) => DB::bind_list(query, items),
            },
        )
    }

    /// The query, its values bound, its rows read as `T`.
    pub fn query_as<DB, T>(&self) -> QueryAs<'_, DB, T, DB::Arguments<'_>>
    where
        DB: Dialect,
        T: for<'r> FromRow<'r, <DB as Database>::Row>,
        Option<String>: Column<DB>,
        Option<i64>: Column<DB>,
        bool: Column<DB>,
    {
        self.values.iter().fold(
            sqlx::query_as(self.text_for::<DB>()),
            |query, value| match value {
                Bound::Value(Value::Text(text)) => query.bind(text.clone()),
                Bound::Value(Value::Int(number)) => query.bind(*number),
                Bound::Value(Value::Bool(flag)) => query.bind(*flag),
                Bound::List(items) => DB::bind_list_as(query, items),
            },
        )
    }
}

/// Most values one statement binds: under SQLite's limit (32,766) and PostgreSQL's (65,535).
const MAX_BOUND_VALUES: usize = 30_000;

/// `INSERT`s of `rows` (each a row's values, all of one width) after `head`
/// (`INSERT INTO t (a, b) VALUES `): one statement, or as few as the limit on bound values
/// allows. None for no rows.
pub(super) fn inserts(head: &str, rows: &[Vec<Value>]) -> Vec<Sql> {
    let width = rows.first().map_or(1, Vec::len).max(1);
    rows.chunks((MAX_BOUND_VALUES / width).max(1))
        .map(|chunk| {
            let mut sql = Sql::new(head);
            for (i, row) in chunk.iter().enumerate() {
                sql.push(if i == 0 { "(" } else { ", (" })
                    .bind_all(row.iter().cloned())
                    .push(")");
            }
            sql
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order() {
        let mut sql = Sql::new("SELECT * FROM t WHERE a = ");
        sql.bind("x")
            .push(" AND b")
            .in_list(["1".to_owned(), "2".to_owned()]);
        sql.push(" OR c = ").bind(None::<i64>);
        assert_eq!(
            sql.text_for::<sqlx::Postgres>(),
            "SELECT * FROM t WHERE a = $1 AND b = ANY($2) OR c = $3"
        );
        assert_eq!(
            sql.text_for::<sqlx::Sqlite>(),
            "SELECT * FROM t WHERE a = ? AND b IN (?, ?) OR c = ?"
        );
        assert_eq!(
            sql.values,
            [
                Bound::Value(Value::Text(Some("x".into()))),
                Bound::List(vec!["1".into(), "2".into()]),
                Bound::Value(Value::Int(None))
            ]
        );
    }

    #[test]
    fn an_empty_list_is_a_list_of_nothing() {
        let mut sql = Sql::new("SELECT * FROM t WHERE a");
        sql.in_list([]);
        assert_eq!(
            sql.text_for::<sqlx::Postgres>(),
            "SELECT * FROM t WHERE a = ANY($1)"
        );
        assert_eq!(
            sql.text_for::<sqlx::Sqlite>(),
            "SELECT * FROM t WHERE a IN ()"
        );
        assert_eq!(sql.values, [Bound::List(Vec::new())]);
    }

    #[test]
    fn inserts_split_where_the_bound_values_would_pass_the_limit() {
        let bound =
            |values: Vec<Value>| -> Vec<Bound> { values.into_iter().map(Bound::Value).collect() };
        let row = |i: i64| vec![Value::from(i), Value::from(format!("r{i}"))];
        let one = inserts("INSERT INTO t (a, b) VALUES ", &[row(1), row(2)]);
        assert_eq!(one.len(), 1);
        assert_eq!(
            one[0].text,
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)"
        );
        assert_eq!(
            one[0].anonymous,
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)"
        );
        assert_eq!(one[0].values, bound([row(1), row(2)].concat()));

        let rows: Vec<Vec<Value>> = (0..MAX_BOUND_VALUES as i64 / 2 + 1).map(row).collect();
        let split = inserts("INSERT INTO t (a, b) VALUES ", &rows);
        assert_eq!(split.len(), 2);
        assert_eq!(split[0].values.len(), MAX_BOUND_VALUES);
        assert_eq!(split[1].text, "INSERT INTO t (a, b) VALUES ($1, $2)");
        assert_eq!(split[1].values, bound(row(MAX_BOUND_VALUES as i64 / 2)));
        assert!(inserts("INSERT INTO t (a) VALUES ", &[]).is_empty());
    }
}
