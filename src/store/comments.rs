//! Persistence of comment threads, comments and reactions.

use async_trait::async_trait;

#[async_trait]
pub trait CommentStore: Send + Sync {}

/// Implements `CommentStore` for `$store` (a struct with a `pool: sqlx::Pool<$db>` field).
macro_rules! impl_comment_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::comments::CommentStore for $store {}
    };
}

pub(super) use impl_comment_store;
