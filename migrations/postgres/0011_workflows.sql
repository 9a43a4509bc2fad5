-- Workflows: customer code run on room events, and the record of each run.

CREATE TABLE workflows (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    code TEXT NOT NULL,
    -- JSON array of event names.
    events TEXT NOT NULL,
    room_id TEXT,
    enabled BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX workflows_by_account ON workflows (account_id, created_at);

CREATE TABLE workflow_executions (
    id TEXT PRIMARY KEY,
    workflow_id TEXT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    -- The recorded event that ran it: one execution per (workflow, event).
    event_id TEXT NOT NULL,
    event TEXT NOT NULL,
    status TEXT NOT NULL,
    result TEXT NOT NULL,
    duration_ms BIGINT NOT NULL,
    logs TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (workflow_id, event_id)
);
CREATE INDEX workflow_executions_by_workflow ON workflow_executions (workflow_id, created_at);

-- Runs waiting to happen: one per (workflow, recorded event), made by the event dispatcher,
-- leased to one node at a time, removed when their execution is recorded.
CREATE TABLE workflow_runs (
    workflow_id TEXT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    event_id TEXT NOT NULL,
    event TEXT NOT NULL,
    -- The event's body, as a webhook delivery carries it.
    payload TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    -- A node running it holds it until this time.
    locked_until BIGINT,
    locked_by TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, event_id)
);
CREATE INDEX workflow_runs_by_time ON workflow_runs (created_at);
