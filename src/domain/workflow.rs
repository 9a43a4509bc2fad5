//! Workflows: customer code run on room events (docs/workflows.md), and the record of each
//! run.

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use super::{AccountId, EventKind, RoomId, Timestamp};

/// A workflow registration: the documented `WorkflowRegistration`, its code included.
#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    /// `wf_` followed by 32 hex digits.
    pub id: String,
    pub account_id: AccountId,
    pub name: String,
    /// As the customer wrote it: JavaScript or TypeScript.
    pub code: String,
    pub events: Vec<EventKind>,
    pub room_id: Option<RoomId>,
    pub enabled: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Workflow {
    pub fn new_id() -> String {
        format!("wf_{}", uuid::Uuid::new_v4().simple())
    }

    /// Whether an event of `kind` in `room` runs this workflow.
    pub fn wants(&self, kind: EventKind, room: RoomId) -> bool {
        self.enabled && self.events.contains(&kind) && self.room_id.is_none_or(|r| r == room)
    }
}

impl Serialize for Workflow {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_struct("WorkflowRegistration", 9)?;
        out.serialize_field("id", &self.id)?;
        out.serialize_field("organization_id", &self.account_id)?;
        out.serialize_field("name", &self.name)?;
        out.serialize_field("code", &self.code)?;
        let events: Vec<&str> = self.events.iter().map(|e| e.name()).collect();
        out.serialize_field("events", &events)?;
        out.serialize_field("room_id", &self.room_id)?;
        out.serialize_field("enabled", &self.enabled)?;
        out.serialize_field("created_at", &self.created_at)?;
        out.serialize_field("updated_at", &self.updated_at)?;
        out.end()
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionStatus {
    Success,
    Failed,
}

impl ExecutionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "success" => Some(Self::Success),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// One run of a workflow: the documented `WorkflowExecution`, with what the code logged (an
/// addition).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Execution {
    /// `exec_` followed by 32 hex digits.
    pub id: String,
    pub workflow_id: String,
    /// The event's name (`participant.joined`, ...).
    pub event: String,
    pub status: ExecutionStatus,
    /// The JSON of the return value, or the error message.
    pub result: String,
    pub duration_ms: i64,
    /// `console.*` output, truncated (`workflows.max_log_bytes`).
    pub logs: String,
    pub created_at: Timestamp,
}

impl Execution {
    pub fn new_id() -> String {
        format!("exec_{}", uuid::Uuid::new_v4().simple())
    }
}
