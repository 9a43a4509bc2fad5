//! The socket transport: the wire protocol, the upgrade, and one task per connection that
//! turns frames into calls to the engine (`rooms`).

pub mod connection;
pub mod protocol;
/// The SDK's mirror of the protocol (`sdk/.../protocol.ts`) held to the server's lists.
#[cfg(test)]
mod sdk_mirror;
pub mod upgrade;
mod ws;
