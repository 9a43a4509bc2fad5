//! The rows of store schemas and entries, and the domain types built from them.

use serde_json::{Map, Value};

use super::{Entry, EntryAction, EntryChange, SchemaRecord};
use crate::domain::schema::{StoreName, StoreSchema};
use crate::domain::{Timestamp, UserId};
use crate::store::{StoreError, StoreResult};

#[derive(sqlx::FromRow)]
pub(super) struct SchemaRow {
    name: String,
    fields: String,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<SchemaRow> for SchemaRecord {
    type Error = StoreError;

    fn try_from(row: SchemaRow) -> StoreResult<Self> {
        let corrupt =
            |what: &str| StoreError::Corrupt(format!("store schema {}: {what}", row.name));
        let name = StoreName::parse("name", &row.name).map_err(|_| corrupt("name"))?;
        let fields: Value = serde_json::from_str(&row.fields).map_err(|_| corrupt("fields"))?;
        let schema =
            StoreSchema::parse("schema", &fields, usize::MAX).map_err(|_| corrupt("fields"))?;
        Ok(SchemaRecord {
            name,
            schema,
            created_at: Timestamp::from_millis(row.created_at),
            updated_at: Timestamp::from_millis(row.updated_at),
        })
    }
}

/// A live entry.
#[derive(sqlx::FromRow)]
pub(super) struct EntryRow {
    entry_key: String,
    entry_value: String,
    version: i64,
    updated_at: i64,
    updated_by: Option<String>,
}

impl TryFrom<EntryRow> for Entry {
    type Error = StoreError;

    fn try_from(row: EntryRow) -> StoreResult<Self> {
        let updated_by = row
            .updated_by
            .map(|by| {
                by.parse::<UserId>()
                    .map_err(|_| StoreError::Corrupt(format!("entry author {by}")))
            })
            .transpose()?;
        Ok(Entry {
            value: parse_value(&row.entry_key, &row.entry_value)?,
            key: row.entry_key,
            version: row.version,
            updated_at: Timestamp::from_millis(row.updated_at),
            updated_by,
        })
    }
}

/// An entry's last change: a tombstone (no value) if it was deleted.
#[derive(sqlx::FromRow)]
pub(super) struct ChangeRow {
    store_name: String,
    entry_key: String,
    entry_value: Option<String>,
    version: i64,
}

impl TryFrom<ChangeRow> for EntryChange {
    type Error = StoreError;

    fn try_from(row: ChangeRow) -> StoreResult<Self> {
        let value = row
            .entry_value
            .map(|text| parse_value(&row.entry_key, &text))
            .transpose()?;
        Ok(EntryChange {
            store: StoreName::parse("store", &row.store_name)
                .map_err(|_| StoreError::Corrupt(format!("store name {}", row.store_name)))?,
            action: if value.is_some() {
                EntryAction::Set
            } else {
                EntryAction::Delete
            },
            key: row.entry_key,
            value,
            version: row.version,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct StoreCount {
    name: String,
    n: i64,
}

impl TryFrom<StoreCount> for (StoreName, i64) {
    type Error = StoreError;

    fn try_from(row: StoreCount) -> StoreResult<Self> {
        let name = StoreName::parse("name", &row.name)
            .map_err(|_| StoreError::Corrupt(format!("store name {}", row.name)))?;
        Ok((name, row.n))
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct RoomVersions {
    pub store_version: i64,
    pub store_purged_version: i64,
}

pub(super) fn parse_value(key: &str, text: &str) -> StoreResult<Map<String, Value>> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(StoreError::Corrupt(format!("entry {key}: value"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(value: Option<&str>) -> ChangeRow {
        ChangeRow {
            store_name: "tasks".to_owned(),
            entry_key: "a".to_owned(),
            entry_value: value.map(str::to_owned),
            version: 7,
        }
    }

    #[test]
    fn a_change_without_a_value_is_a_deletion() {
        let set = EntryChange::try_from(change(Some(r#"{"title":"A"}"#))).unwrap();
        assert_eq!(set.action, EntryAction::Set);
        assert_eq!(set.value.unwrap()["title"], "A");
        let deleted = EntryChange::try_from(change(None)).unwrap();
        assert_eq!((deleted.action, deleted.version), (EntryAction::Delete, 7));
        assert!(deleted.value.is_none());
    }

    #[test]
    fn rows_the_domain_cannot_hold_are_corrupt() {
        let not_an_object = EntryChange::try_from(change(Some("[1]")));
        assert!(matches!(not_an_object, Err(StoreError::Corrupt(_))));
        let mut bad_name = change(None);
        bad_name.store_name = "no spaces".to_owned();
        assert!(matches!(
            EntryChange::try_from(bad_name),
            Err(StoreError::Corrupt(_))
        ));
        let schema = SchemaRow {
            name: "tasks".to_owned(),
            fields: "{".to_owned(),
            created_at: 1,
            updated_at: 2,
        };
        assert!(matches!(
            SchemaRecord::try_from(schema),
            Err(StoreError::Corrupt(_))
        ));
    }
}
