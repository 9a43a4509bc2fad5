//! Who may register or change a store's schema, and which changes the entries written under
//! it survive. The store applies this inside the transaction that saves the schema.

use super::{SchemaError, StoreName, StoreSchema};

/// How a schema is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaWrite {
    /// A client's declaration: registers an unknown store; a known one must be identical.
    Declare,
    /// The account's backend: registers, or changes a schema compatibly with the entries
    /// written under it (freely when the store holds no entry).
    Register,
}

/// What saving a schema does to the one in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// No schema yet: a new store, which counts against the account's stores.
    Create,
    /// The same schema is in place: nothing changes.
    Unchanged,
    /// The schema changes, if the store's entries allow it (`check_change`).
    Change,
}

impl SchemaWrite {
    /// What a write of `proposed` does, `current` being the schema in place (if any). A
    /// client cannot change a schema: the server enforces the one it has.
    pub fn registration(
        self,
        name: &StoreName,
        current: Option<&StoreSchema>,
        proposed: &StoreSchema,
    ) -> Result<Registration, SchemaError> {
        match current {
            None => Ok(Registration::Create),
            Some(current) if current.same_as(proposed) => Ok(Registration::Unchanged),
            Some(_) if self == Self::Declare => Err(SchemaError::new(
                "schema",
                format!(
                    "the schema of store {name} differs from the one the server enforces; \
                     change it through the REST API"
                ),
            )),
            Some(_) => Ok(Registration::Change),
        }
    }
}

/// Whether `current` may become `proposed`: freely while the store holds no entry, else only
/// so that every entry stays valid (`StoreSchema::can_become`).
pub fn check_change(
    current: &StoreSchema,
    proposed: &StoreSchema,
    entries_exist: bool,
) -> Result<(), SchemaError> {
    if !entries_exist {
        return Ok(());
    }
    current.can_become(proposed).map_err(|e| SchemaError {
        field: e.field,
        message: format!("{} (entries exist)", e.message),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema(fields: serde_json::Value) -> StoreSchema {
        StoreSchema::parse("schema", &fields, 64).unwrap()
    }

    #[test]
    fn clients_register_new_stores_but_change_none() {
        let name = StoreName::parse("store", "tasks").unwrap();
        let title = schema(json!({ "title": { "type": "string" } }));
        let count = schema(json!({ "count": { "type": "number" } }));
        let declare = SchemaWrite::Declare;
        assert_eq!(
            declare.registration(&name, None, &title),
            Ok(Registration::Create)
        );
        assert_eq!(
            declare.registration(&name, Some(&title), &title),
            Ok(Registration::Unchanged)
        );
        let refused = declare
            .registration(&name, Some(&title), &count)
            .unwrap_err();
        assert_eq!(refused.field, "schema");
        assert!(refused.message.contains("store tasks differs"));
        assert_eq!(
            SchemaWrite::Register.registration(&name, Some(&title), &count),
            Ok(Registration::Change)
        );
    }

    #[test]
    fn entries_allow_compatible_changes_only() {
        let title = schema(json!({ "title": { "type": "string" } }));
        let count = schema(json!({ "count": { "type": "number" } }));
        assert_eq!(check_change(&title, &count, false), Ok(()));
        let refused = check_change(&title, &count, true).unwrap_err();
        assert_eq!(refused.field, "schema.title");
        assert!(refused.message.ends_with(" (entries exist)"));
        let wider = schema(json!({
            "title": { "type": "string" },
            "note": { "type": "string" },
        }));
        assert_eq!(check_change(&title, &wider, true), Ok(()));
    }
}
