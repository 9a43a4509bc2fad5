//! The data directory and the private files in it: the directory is created 0700 and the files
//! CollabKit creates there 0600 (on Unix), and generated keys are written once and then kept.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Where a secret or key came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Configured,
    Generated(PathBuf),
    Loaded(PathBuf),
}

/// Creates `dir` (and its missing parents) readable by this user only. An existing directory
/// is left as it is: `warn_if_exposed` says when it is open to others.
pub fn create(dir: &Path) -> anyhow::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("creating the directory {}", dir.display()))
}

/// Creates a new file readable and writable by this user only; `AlreadyExists` if there is one.
pub fn create_private(path: &Path) -> std::io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Creates `path` empty and private if it does not exist (so that a program that creates it
/// later, like SQLite, cannot give it its own wider mode); an existing file is left alone.
pub fn ensure_private_file(path: &Path) -> anyhow::Result<()> {
    match create_private(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

/// Logs a warning when `path` exists and its group or others may use it. Only a warning: the
/// operator may share the directory on purpose (a backup group), and a chmod of a directory we
/// did not create (`data_dir = "."`, a mounted volume) could break more than it protects.
pub fn warn_if_exposed(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = fs::metadata(path) {
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    "readable by other users: it holds the database and keys; chmod it to 700 \
                     (a directory) or 600 (a file)"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// The contents of `<data_dir>/<name>` (trimmed), else `generate()` written there, 0600.
/// Two processes racing on one directory both end up with the one that was written first.
pub fn load_or_generate(
    data_dir: &Path,
    name: &str,
    generate: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<(String, SecretSource)> {
    let path = data_dir.join(name);
    if let Some(text) = read(&path)? {
        return Ok((text, SecretSource::Loaded(path)));
    }
    create(data_dir)?;
    let text = generate()?;
    match create_private(&path) {
        Ok(mut file) => {
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok((text, SecretSource::Generated(path)))
        }
        // Another process started on the same directory and won the race: use its key.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = read(&path)?.with_context(|| format!("{} is empty", path.display()))?;
            Ok((text, SecretSource::Loaded(path)))
        }
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

/// The file's contents, trimmed; `None` if there is no such file.
pub fn read(path: &Path) -> anyhow::Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn directories_are_created_private_and_existing_ones_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let nested = root.path().join("a/b");
        create(&nested).unwrap();
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(&root.path().join("a")), 0o700);
        let open = root.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
        create(&open).unwrap();
        assert_eq!(mode(&open), 0o755, "warned about, not changed");
    }

    #[test]
    fn files_are_created_private_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        ensure_private_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        fs::write(&db, b"data").unwrap();
        ensure_private_file(&db).unwrap();
        assert_eq!(fs::read(&db).unwrap(), b"data", "an existing file is kept");
    }

    #[test]
    fn generates_once_then_loads() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        let (first, source) = load_or_generate(&dir, "k", || Ok("one".into())).unwrap();
        assert_eq!(source, SecretSource::Generated(dir.join("k")));
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("k")), 0o600);
        let (second, source) = load_or_generate(&dir, "k", || Ok("two".into())).unwrap();
        assert_eq!((first.as_str(), second.as_str()), ("one", "one"));
        assert_eq!(source, SecretSource::Loaded(dir.join("k")));
    }
}
