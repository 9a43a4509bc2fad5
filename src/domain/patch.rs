//! Partial updates: a field left out, set to `null`, or given a value.

use serde::{Deserialize, Deserializer};

/// A field of a partial update: left out, set to `null`, or given a value. Use it with
/// `#[serde(default)]`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum Patch<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

impl<T> Patch<T> {
    pub fn is_absent(&self) -> bool {
        matches!(self, Self::Absent)
    }

    /// For a field that may be cleared: `None` leaves it, `Some(None)` clears it.
    pub fn into_change(self) -> Option<Option<T>> {
        match self {
            Self::Absent => None,
            Self::Null => Some(None),
            Self::Value(value) => Some(Some(value)),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Option::<T>::deserialize(deserializer)?.map_or(Self::Null, Self::Value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_tells_absent_from_null() {
        #[derive(Deserialize)]
        struct Body {
            #[serde(default)]
            a: Patch<String>,
        }
        let absent: Body = serde_json::from_str("{}").unwrap();
        let null: Body = serde_json::from_str(r#"{"a": null}"#).unwrap();
        let value: Body = serde_json::from_str(r#"{"a": "x"}"#).unwrap();
        assert_eq!(absent.a, Patch::Absent);
        assert_eq!(null.a, Patch::Null);
        assert_eq!(value.a.into_change(), Some(Some("x".to_owned())));
    }
}
