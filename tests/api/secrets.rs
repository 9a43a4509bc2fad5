//! Secrets at rest: a private data directory and files.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::harness::{both_backends, test_config, Backend, TestApp, TestDatabase};

both_backends!(the_data_directory_and_its_files_are_private);

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

async fn the_data_directory_and_its_files_are_private(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let data = db.dir.path().join("data");
    let mut config = test_config(&db);
    config.data_dir = data.clone();
    config.jwt_secret = String::new();
    if backend == Backend::Sqlite {
        // The default: collabkit.db in the data directory.
        config.database.url = String::new();
    }
    let app = TestApp::start_on(db, config).await;
    // A write, so that SQLite's write-ahead log is in use.
    app.account().await.room("private").await;

    assert_eq!(mode(&data), 0o700, "the data directory");
    let mut files = vec!["jwt-secret"];
    if backend == Backend::Sqlite {
        files.extend(["collabkit.db", "collabkit.db-wal", "collabkit.db-shm"]);
    }
    for name in files {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }
}
