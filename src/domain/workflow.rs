//! Workflows: customer code run on room events (docs/workflows.md), and the record of each
//! run.

use serde::{Serialize, Serializer};
use utoipa::ToSchema;

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

// How a workflow goes on the wire: `Workflow` serializes through it, and the OpenAPI
// document takes its schema from it.
/// A workflow: code run on a room's events.
#[derive(Serialize, ToSchema)]
#[schema(as = WorkflowRegistration)]
struct WorkflowWire<'a> {
    #[schema(pattern = "^wf_[0-9a-f]{32}$")]
    id: &'a str,
    organization_id: AccountId,
    name: &'a str,
    /// JavaScript or TypeScript, as it was sent.
    code: &'a str,
    events: &'a [EventKind],
    /// `null`: every room of the account.
    #[schema(required = true)]
    room_id: Option<RoomId>,
    enabled: bool,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl Serialize for Workflow {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WorkflowWire {
            id: &self.id,
            organization_id: self.account_id,
            name: &self.name,
            code: &self.code,
            events: &self.events,
            room_id: self.room_id,
            enabled: self.enabled,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
        .serialize(serializer)
    }
}

super::schema_of_wire!(Workflow, WorkflowWire);

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
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

/// One run of a workflow, with what its code logged.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = WorkflowExecution)]
pub struct Execution {
    /// `exec_` followed by 32 hex digits.
    #[schema(pattern = "^exec_[0-9a-f]{32}$")]
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
