//! Socket methods `stores.*`.

use serde_json::Value;

use super::connection::{unknown_method, Caller};
use crate::error::ApiError;

pub async fn call(_caller: &Caller<'_>, method: &str, _params: Value) -> Result<Value, ApiError> {
    Err(unknown_method(method))
}
