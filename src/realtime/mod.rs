//! The WebSocket side: the wire protocol, one task per connection, one actor per active room,
//! the registry of rooms, and this node's record in the database.

pub mod comments;
pub mod connection;
pub mod hub;
pub mod nodes;
pub mod presence;
pub mod protocol;
pub mod room;
pub mod stores;
pub mod upgrade;

pub use hub::Hub;
