//! Unit tests of schemas: parsing, checking values, and compatible changes.

use serde_json::json;

use super::*;

fn tasks() -> StoreSchema {
    StoreSchema::parse(
        "schema",
        &json!({
            "title": { "type": "string", "required": true },
            "completed": { "type": "boolean", "default": false },
            "assignee": { "type": "string" },
            "points": { "type": "number" },
        }),
        64,
    )
    .unwrap()
}

#[test]
fn set_checks_types_fields_and_fills_defaults() {
    let schema = tasks();
    let value = schema
        .check_set(&json!({ "title": "Build", "assignee": "u1" }))
        .unwrap();
    assert_eq!(
        Value::Object(value),
        json!({ "title": "Build", "completed": false, "assignee": "u1" })
    );
    let err = |v: Value| schema.check_set(&v).unwrap_err().field;
    assert_eq!(err(json!({})), "value.title");
    assert_eq!(err(json!({ "title": 5 })), "value.title");
    assert_eq!(
        err(json!({ "title": "x", "completed": "yes" })),
        "value.completed"
    );
    assert_eq!(err(json!({ "title": "x", "owner": "me" })), "value.owner");
    assert_eq!(err(json!(["title"])), "value");
    assert!(schema
        .check_set(&json!({ "title": "x", "points": 2.5 }))
        .is_ok());
}

#[test]
fn update_merges_and_rechecks() {
    let schema = tasks();
    let current = schema
        .check_set(&json!({ "title": "Build", "assignee": "u1" }))
        .unwrap();
    let merged = schema
        .check_update(&current, &json!({ "completed": true, "assignee": null }))
        .unwrap();
    assert_eq!(
        Value::Object(merged),
        json!({ "title": "Build", "completed": true })
    );
    assert_eq!(
        schema
            .check_update(&current, &json!({ "title": null }))
            .unwrap_err()
            .field,
        "value.title"
    );
    assert_eq!(
        schema
            .check_update(&current, &json!({ "nope": 1 }))
            .unwrap_err()
            .field,
        "value.nope"
    );
}

#[test]
fn schemas_are_checked() {
    let bad = |v: Value| StoreSchema::parse("schema", &v, 3).unwrap_err().field;
    assert_eq!(bad(json!({})), "schema");
    assert_eq!(bad(json!({ "a": { "type": "date" } })), "schema.a.type");
    assert_eq!(
        bad(json!({ "a": { "type": "string", "default": 1 } })),
        "schema.a.default"
    );
    assert_eq!(
        bad(json!({ "a": { "type": "string", "required": "yes" } })),
        "schema.a.required"
    );
    assert_eq!(
        bad(json!({ "a": { "type": "string", "max": 3 } })),
        "schema.a.max"
    );
    assert_eq!(bad(json!({ "1a": { "type": "string" } })), "schema.1a");
    assert_eq!(
        bad(
            json!({ "a": { "type": "string" }, "b": { "type": "string" }, "c": { "type": "string" }, "d": { "type": "string" } })
        ),
        "schema"
    );
    assert_eq!(
        tasks().to_json()["completed"],
        json!({ "type": "boolean", "default": false })
    );
    assert!(StoreName::parse("store", "tasks-2").is_ok());
    assert!(StoreName::parse("store", "2tasks").is_err());
    assert!(StoreName::parse("store", "").is_err());
}

#[test]
fn field_order_does_not_make_a_schema_different() {
    let parse = |v: Value| StoreSchema::parse("schema", &v, 64).unwrap();
    let a =
        parse(json!({ "title": { "type": "string" }, "n": { "type": "number", "default": 1 } }));
    let b =
        parse(json!({ "n": { "type": "number", "default": 1.0 }, "title": { "type": "string" } }));
    assert!(a.same_as(&b) && b.same_as(&a));
    let c =
        parse(json!({ "n": { "type": "number", "default": 2 }, "title": { "type": "string" } }));
    assert!(!a.same_as(&c));
    let d = parse(
        json!({ "title": { "type": "string", "required": true }, "n": { "type": "number", "default": 1 } }),
    );
    assert!(!a.same_as(&d));
}

#[test]
fn evolution_keeps_existing_entries_valid() {
    let old = tasks();
    let parse = |v: Value| StoreSchema::parse("schema", &v, 64).unwrap();
    let mut added = old.to_json();
    added["tags"] = json!({ "type": "string" });
    assert!(old.can_become(&parse(added)).is_ok());
    let mut retyped = old.to_json();
    retyped["points"] = json!({ "type": "string" });
    assert_eq!(
        old.can_become(&parse(retyped)).unwrap_err().field,
        "schema.points"
    );
    let mut removed = old.to_json();
    removed.as_object_mut().unwrap().remove("assignee");
    assert_eq!(
        old.can_become(&parse(removed)).unwrap_err().field,
        "schema.assignee"
    );
    let mut required = old.to_json();
    required["assignee"] = json!({ "type": "string", "required": true });
    assert!(old.can_become(&parse(required)).is_err());
    let mut new_required = old.to_json();
    new_required["due"] = json!({ "type": "number", "required": true, "default": 0 });
    assert!(old.can_become(&parse(new_required)).is_ok());
}
