//! The secret user JWTs are signed with: configured, or generated once and kept in the data
//! directory so that tokens survive a restart.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// HS256 wants a key at least as long as its 256-bit output.
pub const MIN_SECRET_BYTES: usize = 32;
const SECRET_FILE: &str = "jwt-secret";

/// Where the signing secret came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Configured,
    Generated(PathBuf),
    Loaded(PathBuf),
}

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
    let path = data_dir.join(SECRET_FILE);
    if let Some(secret) = read_secret(&path)? {
        return Ok((secret, SecretSource::Loaded(path)));
    }
    fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).context("reading the operating system's random source")?;
    let secret = URL_SAFE_NO_PAD.encode(random);
    match create_private(&path) {
        Ok(mut file) => {
            file.write_all(secret.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok((secret.into_bytes(), SecretSource::Generated(path)))
        }
        // Another process started on the same directory and won the race: use its secret.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let secret = read_secret(&path)?.context("the JWT secret file is empty")?;
            Ok((secret, SecretSource::Loaded(path)))
        }
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

fn read_secret(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let secret = text.trim();
            if secret.len() < MIN_SECRET_BYTES {
                bail!(
                    "{} holds fewer than {MIN_SECRET_BYTES} bytes",
                    path.display()
                );
            }
            Ok(Some(secret.as_bytes().to_vec()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn create_private(path: &Path) -> std::io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
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
