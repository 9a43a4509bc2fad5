//! Workflows and the record of their runs: scoping, the per-account limit, paging, and one
//! execution per (workflow, event).

use collabkit::domain::workflow::{Execution, ExecutionStatus, Workflow};
use collabkit::domain::{AccountId, EventKind, NodeId, Timestamp};
use collabkit::store::workflows::{NewWorkflow, WorkflowChanges};
use collabkit::store::{Entity, Page, StoreError};

use crate::fixture::{contract, Backend, Fixture};

contract!(
    workflows_are_scoped_and_limited,
    an_event_runs_a_workflow_once,
    dispatched_events_queue_runs_leased_to_one_node,
);

fn new_workflow(account: AccountId, name: &str) -> NewWorkflow {
    NewWorkflow {
        id: Workflow::new_id(),
        account_id: account,
        name: name.to_owned(),
        code: "export default async function () { return 1; }".to_owned(),
        events: vec![EventKind::ParticipantJoined],
        room_id: None,
        created_at: Timestamp::now(),
    }
}

fn execution(workflow: &Workflow, result: &str) -> Execution {
    Execution {
        id: Execution::new_id(),
        workflow_id: workflow.id.clone(),
        event: "participant.joined".to_owned(),
        status: ExecutionStatus::Success,
        result: result.to_owned(),
        duration_ms: 3,
        logs: String::new(),
        created_at: Timestamp::now(),
    }
}

async fn workflows_are_scoped_and_limited(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (a, b) = (f.account().await, f.account().await);
    let first = f
        .store
        .create_workflow(&new_workflow(a, "Notify Slack"), 2)
        .await
        .unwrap();
    assert!(first.enabled);
    // A millisecond later, so that "newest first" does not fall to the IDs' random order.
    let mut second = new_workflow(a, "Count joins");
    second.created_at = Timestamp::from_millis(first.created_at.as_millis() + 1);
    f.store.create_workflow(&second, 2).await.unwrap();
    let refused = f.store.create_workflow(&new_workflow(a, "third"), 2).await;
    assert!(
        matches!(&refused, Err(StoreError::Invalid { field, .. }) if field == "name"),
        "{refused:?}"
    );
    // Another account sees none of them, and has its own places.
    assert_eq!(f.store.get_workflow(b, &first.id).await.unwrap(), None);
    f.store
        .create_workflow(&new_workflow(b, "theirs"), 2)
        .await
        .unwrap();
    let changes = WorkflowChanges {
        enabled: Some(false),
        ..WorkflowChanges::default()
    };
    assert!(matches!(
        f.store.update_workflow(b, &first.id, &changes).await,
        Err(StoreError::NotFound(Entity::Workflow))
    ));
    assert!(matches!(
        f.store.delete_workflow(b, &first.id).await,
        Err(StoreError::NotFound(Entity::Workflow))
    ));

    let page = Page {
        limit: 1,
        offset: 0,
    };
    let listed = f.store.list_workflows(a, None, page).await.unwrap();
    assert_eq!((listed.total, listed.items.len()), (2, 1));
    assert_eq!(listed.items[0].name, "Count joins", "newest first");
    let found = f
        .store
        .list_workflows(a, Some("slack"), page)
        .await
        .unwrap();
    assert_eq!(found.items[0].id, first.id);

    let updated = f
        .store
        .update_workflow(a, &first.id, &changes)
        .await
        .unwrap();
    assert!(!updated.enabled);
    assert_eq!(updated.code, first.code);
    f.store.delete_workflow(a, &first.id).await.unwrap();
    assert_eq!(f.store.get_workflow(a, &first.id).await.unwrap(), None);
}

async fn an_event_runs_a_workflow_once(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (a, b) = (f.account().await, f.account().await);
    let workflow = f
        .store
        .create_workflow(&new_workflow(a, "once"), 10)
        .await
        .unwrap();
    let first = execution(&workflow, "1");
    assert!(f.store.record_execution("evt_1", &first).await.unwrap());
    assert!(
        !f.store
            .record_execution("evt_1", &execution(&workflow, "again"))
            .await
            .unwrap(),
        "a second run of the same event is not recorded"
    );
    assert!(f
        .store
        .record_execution("evt_2", &execution(&workflow, "2"))
        .await
        .unwrap());
    let page = Page {
        limit: 50,
        offset: 0,
    };
    let listed = f
        .store
        .list_executions(a, &workflow.id, page)
        .await
        .unwrap();
    assert_eq!(listed.total, 2);
    let results: Vec<&str> = listed.items.iter().map(|e| e.result.as_str()).collect();
    assert!(results.contains(&"1") && results.contains(&"2") && !results.contains(&"again"));
    assert!(matches!(
        f.store.list_executions(b, &workflow.id, page).await,
        Err(StoreError::NotFound(Entity::Workflow))
    ));
    // The record goes with its workflow.
    f.store.delete_workflow(a, &workflow.id).await.unwrap();
    assert!(matches!(
        f.store.list_executions(a, &workflow.id, page).await,
        Err(StoreError::NotFound(Entity::Workflow))
    ));
}

/// Recorded events become runs of the workflows that want them (room scope, enabled), each
/// leased to one node at a time; finishing records the execution once and removes the run.
async fn dispatched_events_queue_runs_leased_to_one_node(backend: Backend) {
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let (scope, elsewhere) = (f.room(account).await, f.room(account).await);
    let mut everywhere = new_workflow(account, "everywhere");
    everywhere.events = vec![EventKind::UserCreated];
    let everywhere = f.store.create_workflow(&everywhere, 10).await.unwrap();
    let mut scoped = new_workflow(account, "scoped");
    scoped.events = vec![EventKind::UserCreated];
    scoped.room_id = Some(elsewhere.room_id);
    f.store.create_workflow(&scoped, 10).await.unwrap();
    let mut disabled = new_workflow(account, "disabled");
    disabled.events = vec![EventKind::UserCreated];
    let disabled = f.store.create_workflow(&disabled, 10).await.unwrap();
    let off = WorkflowChanges {
        enabled: Some(false),
        ..WorkflowChanges::default()
    };
    f.store
        .update_workflow(account, &disabled.id, &off)
        .await
        .unwrap();
    let mut other_event = new_workflow(account, "deletions");
    other_event.events = vec![EventKind::UserDeleted];
    f.store.create_workflow(&other_event, 10).await.unwrap();

    let now = Timestamp::now();
    assert!(!f.store.runs_due(now).await.unwrap(), "nothing queued yet");
    f.user(scope, "Ada").await;
    assert_eq!(f.store.dispatch_events(100).await.unwrap(), 1);

    let (a, b) = (NodeId::new("node-a"), NodeId::new("node-b"));
    let now = Timestamp::now();
    assert!(f.store.runs_due(now).await.unwrap());
    let until = Timestamp::from_millis(now.as_millis() + 30_000);
    let runs = f.store.claim_runs(&a, now, until, 10).await.unwrap();
    assert_eq!(
        runs.len(),
        1,
        "only the workflow of every room that wants user.created"
    );
    let run = &runs[0];
    assert_eq!(run.workflow.id, everywhere.id);
    assert_eq!(run.event, "user.created");
    assert_eq!(run.attempts, 1);
    let body: serde_json::Value = serde_json::from_str(&run.payload).unwrap();
    assert_eq!(body["event"], "user.created");
    assert_eq!(body["id"], run.event_id.as_str());
    assert_eq!(body["data"]["roomId"], scope.room_id.to_string());
    assert!(
        f.store
            .claim_runs(&b, now, until, 10)
            .await
            .unwrap()
            .is_empty(),
        "held"
    );
    assert!(
        !f.store.runs_due(now).await.unwrap(),
        "a leased run is not due"
    );

    // The lease runs out: another node takes the run over.
    let after = Timestamp::from_millis(until.as_millis() + 1);
    let later = Timestamp::from_millis(after.as_millis() + 30_000);
    assert!(f.store.runs_due(after).await.unwrap(), "its lease ran out");
    let taken = f.store.claim_runs(&b, after, later, 10).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].attempts, 2);
    assert!(f
        .store
        .finish_run(&taken[0], &execution(&everywhere, "b"))
        .await
        .unwrap());
    // The first node finishing late records nothing more: one execution per event.
    assert!(!f
        .store
        .finish_run(run, &execution(&everywhere, "a"))
        .await
        .unwrap());
    let page = Page {
        limit: 50,
        offset: 0,
    };
    let listed = f
        .store
        .list_executions(account, &everywhere.id, page)
        .await
        .unwrap();
    assert_eq!(listed.total, 1);
    assert_eq!(listed.items[0].result, "b");
    assert!(f
        .store
        .claim_runs(&a, later, later, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(!f.store.runs_due(later).await.unwrap(), "done");
    // Dispatching again queues nothing: the event's run is done.
    assert_eq!(f.store.dispatch_events(100).await.unwrap(), 0);
}
