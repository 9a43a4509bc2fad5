//! The one rule every string bound for the database obeys, whatever its field: no NUL
//! character. PostgreSQL's `text` cannot hold one (SQLite can), so a NUL that got that far
//! would be a 500 on one backend and a success on the other. Transports check it once, at
//! the edge, for every string they accept.

use serde_json::Value;

/// The only character a stored string may not hold.
pub const FORBIDDEN: char = '\0';

/// Whether the text can be stored as it is.
pub fn is_storable(text: &str) -> bool {
    !text.contains(FORBIDDEN)
}

/// The path (`a.b[2].c`) of the first string in a JSON document, key or value, that cannot
/// be stored; `None` when all can. The path of a bad key is the key's parent.
pub fn unstorable_path(value: &Value) -> Option<String> {
    let mut path = String::new();
    find(value, &mut path).then_some(path)
}

fn find(value: &Value, path: &mut String) -> bool {
    match value {
        Value::String(text) => !is_storable(text),
        Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let found = find(item, path);
            if !found {
                path.truncate(len);
            }
            found
        }),
        Value::Object(map) => map.iter().any(|(key, item)| {
            if !is_storable(key) {
                return true;
            }
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
            let found = find(item, path);
            if !found {
                path.truncate(len);
            }
            found
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn finds_nul_anywhere() {
        assert!(is_storable("plain, é, 👍"));
        assert!(!is_storable("a\u{0}b"));
        assert_eq!(
            unstorable_path(&json!({ "a": [1, "x", { "b": "ok" }] })),
            None
        );
        assert_eq!(
            unstorable_path(&json!({ "a": [1, "x", { "b": "n\u{0}" }] })).as_deref(),
            Some("a[2].b")
        );
        assert_eq!(
            unstorable_path(&json!({ "ok": 1, "k\u{0}": 1 })).as_deref(),
            Some("")
        );
        assert_eq!(unstorable_path(&json!("\u{0}")).as_deref(), Some(""));
    }
}
