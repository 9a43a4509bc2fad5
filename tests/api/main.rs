//! Black-box tests: the real server on port 0, real HTTP, on SQLite and on PostgreSQL.

mod harness;
mod hostile;
mod socket;

mod auth;
mod cli;
mod comments;
mod connections;
mod crash;
mod dashboard;
mod dashboard_workflows;
mod db_copy;
mod files;
mod fuzz_rest;
mod fuzz_socket;
mod hardening;
mod join_pages;
mod jwt_attacks;
mod keys;
mod metrics;
mod presence;
mod presence_batches;
mod realtime;
mod receiver;
mod relay;
mod relay_faults;
mod robustness;
mod room_reads;
mod rooms;
mod router;
mod secrets;
mod stores;
mod users;
mod webhooks;
mod workflow_runs;
mod workflows;
