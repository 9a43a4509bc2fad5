//! Store schemas: what a store's entries may hold. The server is the authority: every write
//! is checked here, whatever the client did or skipped.

use serde_json::{Map, Value};

mod registration;

pub use registration::{check_change, Registration, SchemaWrite};

/// Longest store name, field name and entry key.
pub const MAX_NAME_CHARS: usize = 64;
pub const MAX_KEY_CHARS: usize = 256;

/// Why a schema or a value was refused: the field at fault and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    pub field: String,
    pub message: String,
}

impl SchemaError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A store's name: a letter or `_`, then letters, digits, `_` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreName(String);

impl StoreName {
    pub fn parse(field: &str, text: &str) -> Result<Self, SchemaError> {
        if is_identifier(text, true) {
            Ok(Self(text.to_owned()))
        } else {
            Err(SchemaError::new(
                field,
                format!(
                    "{field} must be 1 to {MAX_NAME_CHARS} characters: a letter or _, then \
                     letters, digits, _ or -"
                ),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for StoreName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_identifier(text: &str, allow_dash: bool) -> bool {
    let mut chars = text.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok
        && text.chars().count() <= MAX_NAME_CHARS
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (allow_dash && c == '-'))
}

/// An entry key: 1 to 256 characters, no control characters.
pub fn check_key(field: &str, key: &str) -> Result<(), SchemaError> {
    if key.is_empty() || key.chars().count() > MAX_KEY_CHARS || key.chars().any(char::is_control) {
        return Err(SchemaError::new(
            field,
            format!("{field} must be 1 to {MAX_KEY_CHARS} characters without control characters"),
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    String,
    Number,
    Boolean,
}

impl FieldType {
    fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Number => "number",
            Self::Boolean => "boolean",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "string" => Some(Self::String),
            "number" => Some(Self::Number),
            "boolean" => Some(Self::Boolean),
            _ => None,
        }
    }

    fn accepts(self, value: &Value) -> bool {
        match self {
            Self::String => value.is_string(),
            Self::Number => value.is_number(),
            Self::Boolean => value.is_boolean(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    pub kind: FieldType,
    pub required: bool,
    pub default: Option<Value>,
}

/// A store's fields, in the order they were declared.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreSchema {
    fields: Vec<(String, FieldSpec)>,
}

impl StoreSchema {
    /// Reads the `defineStores` shape: `{ "title": { "type": "string", "required": true },
    /// "done": { "type": "boolean", "default": false } }`. Errors name the path (`field`
    /// prefixes it, e.g. `schema`).
    pub fn parse(field: &str, value: &Value, max_fields: usize) -> Result<Self, SchemaError> {
        let Value::Object(fields) = value else {
            return Err(SchemaError::new(
                field,
                format!("{field} must be an object of fields"),
            ));
        };
        if fields.is_empty() || fields.len() > max_fields {
            return Err(SchemaError::new(
                field,
                format!("{field} must have 1 to {max_fields} fields"),
            ));
        }
        let mut parsed = Vec::with_capacity(fields.len());
        for (name, spec) in fields {
            let path = format!("{field}.{name}");
            if !is_identifier(name, false) {
                return Err(SchemaError::new(
                    &path,
                    format!(
                        "field names must be 1 to {MAX_NAME_CHARS} letters, digits or _, not \
                         starting with a digit"
                    ),
                ));
            }
            parsed.push((name.clone(), parse_field(&path, spec)?));
        }
        Ok(Self { fields: parsed })
    }

    /// The `defineStores` shape again (`required` and `default` only when set).
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        for (name, spec) in &self.fields {
            let mut field = Map::new();
            field.insert("type".into(), spec.kind.name().into());
            if spec.required {
                field.insert("required".into(), true.into());
            }
            if let Some(default) = &spec.default {
                field.insert("default".into(), default.clone());
            }
            out.insert(name.clone(), Value::Object(field));
        }
        Value::Object(out)
    }

    /// Whether two schemas accept the same values: the same fields with the same types,
    /// requirements and defaults, in any order (numbers compared by value).
    pub fn same_as(&self, other: &StoreSchema) -> bool {
        self.fields.len() == other.fields.len()
            && self.fields.iter().all(|(name, spec)| {
                other.spec(name).is_some_and(|theirs| {
                    spec.kind == theirs.kind
                        && spec.required == theirs.required
                        && match (&spec.default, &theirs.default) {
                            (None, None) => true,
                            (Some(Value::Number(a)), Some(Value::Number(b))) => {
                                a.as_f64() == b.as_f64()
                            }
                            (Some(a), Some(b)) => a == b,
                            _ => false,
                        }
                })
            })
    }

    fn spec(&self, name: &str) -> Option<&FieldSpec> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, spec)| spec)
    }

    /// A whole new value (`set`): an object with only known fields of the right types, the
    /// required ones present; defaults fill what is missing. `null` means absent.
    pub fn check_set(&self, value: &Value) -> Result<Map<String, Value>, SchemaError> {
        let given = self.check_fields(value)?;
        let mut out = Map::new();
        for (name, spec) in &self.fields {
            match given.get(name).filter(|v| !v.is_null()) {
                Some(v) => {
                    out.insert(name.clone(), v.clone());
                }
                None => match &spec.default {
                    Some(default) => {
                        out.insert(name.clone(), default.clone());
                    }
                    None if spec.required => {
                        return Err(SchemaError::new(
                            format!("value.{name}"),
                            format!("value.{name} is required"),
                        ))
                    }
                    None => {}
                },
            }
        }
        Ok(out)
    }

    /// A partial change (`update`) merged into `current`: the given fields replace theirs;
    /// `null` removes an optional field. The result must still satisfy the schema.
    pub fn check_update(
        &self,
        current: &Map<String, Value>,
        patch: &Value,
    ) -> Result<Map<String, Value>, SchemaError> {
        let given = self.check_fields(patch)?;
        let mut merged = current.clone();
        for (name, value) in given {
            if value.is_null() {
                merged.remove(name);
            } else {
                merged.insert(name.clone(), value.clone());
            }
        }
        self.check_set(&Value::Object(merged))
    }

    /// Checks that `value` is an object of known fields with the right types.
    fn check_fields<'v>(&self, value: &'v Value) -> Result<&'v Map<String, Value>, SchemaError> {
        let Value::Object(given) = value else {
            return Err(SchemaError::new("value", "value must be an object"));
        };
        for (name, v) in given {
            let path = format!("value.{name}");
            let Some(spec) = self.spec(name) else {
                return Err(SchemaError::new(
                    &path,
                    format!("{path} is not a field of this store"),
                ));
            };
            if !v.is_null() && !spec.kind.accepts(v) {
                return Err(SchemaError::new(
                    &path,
                    format!("{path} must be a {}", spec.kind.name()),
                ));
            }
        }
        Ok(given)
    }

    /// Whether entries written under `self` stay valid under `next`: fields keep their type,
    /// none disappears, and a field becomes required only if it has a default. New fields must
    /// be optional or have a default.
    pub fn can_become(&self, next: &StoreSchema) -> Result<(), SchemaError> {
        for (name, old) in &self.fields {
            let path = format!("schema.{name}");
            let Some(new) = next.spec(name) else {
                return Err(SchemaError::new(
                    path,
                    "a field entries may hold cannot be removed",
                ));
            };
            if new.kind != old.kind {
                return Err(SchemaError::new(path, "a field's type cannot change"));
            }
            if new.required && !old.required && new.default.is_none() {
                return Err(SchemaError::new(
                    path,
                    "a field can become required only with a default",
                ));
            }
        }
        for (name, new) in &next.fields {
            if self.spec(name).is_none() && new.required && new.default.is_none() {
                return Err(SchemaError::new(
                    format!("schema.{name}"),
                    "a new field must be optional or have a default",
                ));
            }
        }
        Ok(())
    }
}

fn parse_field(path: &str, spec: &Value) -> Result<FieldSpec, SchemaError> {
    let Value::Object(spec) = spec else {
        return Err(SchemaError::new(
            path,
            format!("{path} must be an object with a type"),
        ));
    };
    if let Some(unknown) = spec
        .keys()
        .find(|k| !["type", "required", "default"].contains(&k.as_str()))
    {
        return Err(SchemaError::new(
            format!("{path}.{unknown}"),
            format!("{path}.{unknown} is not a schema property (type, required, default)"),
        ));
    }
    let kind = spec
        .get("type")
        .and_then(Value::as_str)
        .and_then(FieldType::parse)
        .ok_or_else(|| {
            SchemaError::new(
                format!("{path}.type"),
                format!("{path}.type must be \"string\", \"number\" or \"boolean\""),
            )
        })?;
    let required = match spec.get("required") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(SchemaError::new(
                format!("{path}.required"),
                format!("{path}.required must be true or false"),
            ))
        }
    };
    let default = match spec.get("default") {
        None | Some(Value::Null) => None,
        Some(v) if kind.accepts(v) => Some(v.clone()),
        Some(_) => {
            return Err(SchemaError::new(
                format!("{path}.default"),
                format!("{path}.default must be a {}", kind.name()),
            ))
        }
    };
    Ok(FieldSpec {
        kind,
        required,
        default,
    })
}

#[cfg(test)]
mod tests;
