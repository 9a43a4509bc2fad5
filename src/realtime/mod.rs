//! The socket transport: the wire protocol, the upgrade, and one task per connection that
//! turns frames into calls to the engine (`rooms`).

pub mod connection;
pub mod protocol;
pub mod upgrade;
