//! The store contract: each capability of `Store`, exercised through the trait itself on a
//! fresh SQLite file and on a fresh PostgreSQL schema. Where the black-box suite (`tests/api`)
//! shows what clients see, this shows what the store promises its callers: scoping, conflicts,
//! limits (under concurrent writers too), ordering, byte-bounded pages, catch-up, leases.
//!
//! A test target of its own rather than unit tests in `src/store`: it uses only the public
//! API (as every caller does), needs a running PostgreSQL like `tests/api`, and leaves
//! `cargo test --lib` fast.

#[path = "../common/database.rs"]
mod database;
mod fixture;

mod accounts;
mod analytics;
mod comments;
mod dashboard;
mod entries;
mod events;
mod files;
mod membership;
mod migrations;
mod nodes;
mod rooms;
mod users;
mod webhooks;
mod workflows;
