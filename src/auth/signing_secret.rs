//! The secret user JWTs are signed with: configured, or generated once and kept in the data
//! directory so that tokens survive a restart.

use std::path::Path;

use anyhow::{bail, Context};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::data_dir;
pub use crate::data_dir::SecretSource;

/// HS256 wants a key at least as long as its 256-bit output.
pub const MIN_SECRET_BYTES: usize = 32;
const SECRET_FILE: &str = "jwt-secret";

/// The configured secret, else the one kept in `data_dir`, else a new one written there.
pub fn load_or_generate(
    configured: &str,
    data_dir: &Path,
) -> anyhow::Result<(Vec<u8>, SecretSource)> {
    if !configured.is_empty() {
        if configured.len() < MIN_SECRET_BYTES {
            bail!("jwt_secret must be at least {MIN_SECRET_BYTES} bytes long");
        }
        return Ok((configured.as_bytes().to_vec(), SecretSource::Configured));
    }
    let (secret, source) = data_dir::load_or_generate(data_dir, SECRET_FILE, || {
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).context("reading the operating system's random source")?;
        Ok(URL_SAFE_NO_PAD.encode(random))
    })?;
    if secret.len() < MIN_SECRET_BYTES {
        let path = data_dir.join(SECRET_FILE);
        bail!(
            "{} holds fewer than {MIN_SECRET_BYTES} bytes",
            path.display()
        );
    }
    Ok((secret.into_bytes(), source))
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn generates_once_then_loads_the_same_secret() {
        let dir = tempfile::tempdir().unwrap();
        let (first, source) = load_or_generate("", dir.path()).unwrap();
        assert!(matches!(source, SecretSource::Generated(_)));
        assert!(first.len() >= MIN_SECRET_BYTES);
        let (second, source) = load_or_generate("", dir.path()).unwrap();
        assert!(matches!(source, SecretSource::Loaded(_)));
        assert_eq!(first, second);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_configured_secret_wins_and_must_be_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let long = "x".repeat(MIN_SECRET_BYTES);
        let (secret, source) = load_or_generate(&long, dir.path()).unwrap();
        assert_eq!(secret, long.as_bytes());
        assert_eq!(source, SecretSource::Configured);
        assert!(load_or_generate("short", dir.path()).is_err());
        assert!(!dir.path().join(SECRET_FILE).exists());
    }
}
