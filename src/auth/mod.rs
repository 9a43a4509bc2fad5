//! Who is calling: API keys and Bearer tokens for REST, dashboard sessions (cookie, CSRF,
//! passwords, login limits), JWTs for the client SDK, and the per-key rate limit.

pub mod api_keys;
pub mod bearer;
pub mod jwt;
pub mod login_limit;
pub mod passwords;
pub mod rate_limit;
pub mod sessions;
pub mod signing_secret;

pub use api_keys::{GeneratedKey, KeyVerifier};
pub use bearer::{AccountAuth, Caller, Credentials};
pub use jwt::{JwtError, JwtSigner, UserClaims};
pub use rate_limit::RateLimiter;
