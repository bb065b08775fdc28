//! Every hot statement is served by an index on both backends: each backend is asked for
//! its plan of each statement of `store::plans`, and no plan may read a whole table.

use store::{
    Db, DbSettings,
    plans::{full_scans, hot_statements},
};
use test_support::{TestBackend, TestDb, backend_tests};

/// A fresh, migrated database (the folder and database go when the first two drop).
async fn migrated(backend: &TestBackend) -> (tempfile::TempDir, TestDb, Db) {
    let dir = tempfile::tempdir().unwrap();
    let test_db = TestDb::new(backend, &dir).await;
    let db = Db::connect(&test_db.url, &DbSettings::default())
        .await
        .unwrap();
    db.migrate().await.unwrap();
    (dir, test_db, db)
}

async fn hot_statements_use_indexes(backend: TestBackend) {
    let (_dir, _test_db, db) = migrated(&backend).await;
    let statements = hot_statements(db.backend());
    assert!(statements.len() > 30, "the hot statements are listed");
    let mut problems = Vec::new();
    for statement in &statements {
        let plan = db
            .explain(statement)
            .await
            .unwrap_or_else(|err| panic!("{}: could not explain: {err}", statement.name));
        assert!(!plan.is_empty(), "{}: an empty plan", statement.name);
        let scans = full_scans(db.backend(), statement, &plan);
        if !scans.is_empty() {
            problems.push(format!(
                "{} reads a whole table: {scans:?}\n  {}\n  plan: {plan:#?}",
                statement.name, statement.built.sql
            ));
        }
    }
    db.close().await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The check itself finds a full scan: a statement with no index to use is reported.
async fn a_full_scan_is_reported(backend: TestBackend) {
    let (_dir, _test_db, db) = migrated(&backend).await;
    let mut statement = hot_statements(db.backend()).remove(0);
    statement.built.sql = "SELECT id FROM runs WHERE current_node = $1".into();
    let plan = db.explain(&statement).await.unwrap();
    assert_eq!(
        full_scans(db.backend(), &statement, &plan).len(),
        1,
        "{plan:?}"
    );
    db.close().await;
}

backend_tests!(hot_statements_use_indexes, a_full_scan_is_reported);
