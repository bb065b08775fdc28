//! Blob backends: uploads made through one replica are read through another that has a
//! different data folder, with the bytes in the database or in a real S3-protocol server
//! (moto); S3 settings are checked before they are saved and their secret never shown.

use axum::{
    body::Body,
    http::{Request, StatusCode},
};
use serde_json::{Value, json};
use server::app::App;
use test_support::{TestApp, TestBackend, backend_tests, s3_peer};

use crate::{
    chatkit::{chatkit, learner},
    knowledge::{finished_job, upload},
};

backend_tests!(uploads_are_shared_through_the_database);

/// A server sharing the database (and the secrets key) but not the data folder, as a
/// replica on another machine would.
async fn replica_elsewhere(app: &TestApp, data_dir: &std::path::Path) -> App {
    let mut config = app.config.clone();
    config.data_dir = data_dir.join("data");
    App::build(config).await.expect("the replica builds")
}

async fn shared_key_app(backend: TestBackend) -> TestApp {
    TestApp::with_config(backend, |config| {
        config.secrets.encryption_key = Some(domain::secret::Secret::new("5a".repeat(32)));
    })
    .await
}

/// Uploads a small PNG as `user` through `app`; returns its content path.
async fn attach(app: &TestApp, user: &str, name: &str, tail: &[u8]) -> String {
    let mut bytes = vec![137u8, 80, 78, 71];
    bytes.extend_from_slice(tail);
    let created = chatkit(
        app,
        user,
        json!({"type": "attachments.create", "params": {"name": name, "size": bytes.len(), "mime_type": "image/png"}}),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    let sent = app
        .send(
            Request::post(path_of(&created.body["upload_descriptor"]["url"]))
                .header("content-type", "image/png")
                .body(Body::from(bytes))
                .unwrap(),
        )
        .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
    path_of(&created.body["preview_url"])
}

fn path_of(url: &Value) -> String {
    let url = url.as_str().expect("a URL");
    let rest = url.split_once("://").expect("an absolute URL").1;
    format!("/{}", rest.split_once('/').expect("a path").1)
}

/// The bytes a replica serves at `path`, or its status.
async fn read(replica: &App, path: &str) -> Result<Vec<u8>, StatusCode> {
    let got = test_support::send_to(
        &replica.router(),
        Request::get(path).body(Body::empty()).unwrap(),
    )
    .await;
    if got.status == StatusCode::OK {
        Ok(got.text.into_bytes())
    } else {
        Err(got.status)
    }
}

async fn uploads_are_shared_through_the_database(backend: TestBackend) {
    let app = shared_key_app(backend).await;
    let admin = app.admin_token().await;
    let user = learner(&app).await;
    let elsewhere = tempfile::tempdir().unwrap();
    let replica = replica_elsewhere(&app, elsewhere.path()).await;

    // The default is the local folder, and only administrators see or change it.
    let got = app.get("/api/admin/storage/blobs", Some(&admin)).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text);
    assert_eq!(got.body, json!({"backend": "local", "s3": null}));
    assert_eq!(
        app.get("/api/admin/storage/blobs", Some(&user))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    for (path, body) in [
        (
            "/api/admin/storage/blobs",
            Some(json!({"backend": "database"})),
        ),
        ("/api/admin/storage/blobs/move", None),
    ] {
        let refused = match body {
            Some(body) => app.put(path, Some(&user), body).await,
            None => app.post(path, Some(&user), json!({})).await,
        };
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}");
    }
    let odd = app
        .put(
            "/api/admin/storage/blobs",
            Some(&admin),
            json!({"backend": "floppy"}),
        )
        .await;
    assert_eq!(odd.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", odd.text);
    let no_s3 = app
        .put(
            "/api/admin/storage/blobs",
            Some(&admin),
            json!({"backend": "s3"}),
        )
        .await;
    assert_eq!(
        no_s3.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        no_s3.text
    );
    assert!(no_s3.body["message"].as_str().unwrap().contains("s3"));
    for (field, value) in [
        ("bucket", json!("Not A Bucket")),
        ("prefix", json!("../outside")),
        ("endpoint", json!("ftp://files.example.com")),
    ] {
        let mut s3 =
            json!({"bucket": "uploads", "access_key_id": "AKID", "secret_access_key": "s"});
        s3[field] = value;
        let refused = app
            .put(
                "/api/admin/storage/blobs",
                Some(&admin),
                json!({"backend": "s3", "s3": s3}),
            )
            .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field}: {}",
            refused.text
        );
        assert!(
            refused.body["message"].as_str().unwrap().contains(field),
            "{}",
            refused.text
        );
    }

    // On the local folder, the other machine cannot read what this one received.
    let early = attach(&app, &user, "early.png", b"early").await;
    assert!(read(&app.app, &early).await.unwrap().ends_with(b"early"));
    assert_eq!(read(&replica, &early).await, Err(StatusCode::NOT_FOUND));

    // In the database, it can: new uploads at once, older ones once moved.
    let set = app
        .put(
            "/api/admin/storage/blobs",
            Some(&admin),
            json!({"backend": "database"}),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    assert_eq!(set.body["backend"], "database");
    let replica = replica_elsewhere(&app, elsewhere.path()).await;
    let late = attach(&app, &user, "late.png", b"late").await;
    assert!(read(&replica, &late).await.unwrap().ends_with(b"late"));
    // The first server still finds the older upload in its folder.
    assert!(read(&app.app, &early).await.unwrap().ends_with(b"early"));
    let moved = app
        .post("/api/admin/storage/blobs/move", Some(&admin), json!({}))
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.text);
    assert_eq!(moved.body, json!({"moved": 1, "in_place": 1, "missing": 0}));
    assert!(read(&replica, &early).await.unwrap().ends_with(b"early"));
    let again = app
        .post("/api/admin/storage/blobs/move", Some(&admin), json!({}))
        .await;
    assert_eq!(again.body, json!({"moved": 0, "in_place": 2, "missing": 0}));
    assert!(
        !app.data_dir()
            .join("attachments")
            .join(early_id(&early))
            .exists(),
        "a moved upload leaves the folder"
    );

    // Back to the local folder: uploads in the database are still found.
    let back = app
        .put(
            "/api/admin/storage/blobs",
            Some(&admin),
            json!({"backend": "local"}),
        )
        .await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.text);
    assert!(read(&app.app, &late).await.unwrap().ends_with(b"late"));
}

/// The attachment id in a content path (`/api/chatkit/attachments/{id}/content?...`).
fn early_id(path: &str) -> String {
    path.split('/').nth(4).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_shared_through_s3() {
    let Some(moto) = s3_peer::moto_server() else {
        return;
    };
    let s3 = s3_peer::S3Peer::start(&moto).await;
    s3.create_bucket("switchyard-blobs").await;
    let backend = TestBackend::postgres().unwrap_or(TestBackend::Sqlite);
    let app = shared_key_app(backend).await;
    let admin = app.admin_token().await;
    let user = learner(&app).await;
    let settings = |bucket: &str, secret: Option<&str>| {
        let mut s3_settings = json!({
            "bucket": bucket,
            "endpoint": s3.endpoint,
            "prefix": "uploads",
            "access_key_id": "AKIDSWITCHYARD",
        });
        if let Some(secret) = secret {
            s3_settings["secret_access_key"] = json!(secret);
        }
        json!({"backend": "s3", "s3": s3_settings})
    };

    // A bucket that does not exist is refused before anything is saved.
    let missing = app
        .put(
            "/api/admin/storage/blobs",
            Some(&admin),
            settings("no-such-bucket", Some("s3-secret-4242")),
        )
        .await;
    assert_eq!(
        missing.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        missing.text
    );
    assert_eq!(missing.code(), "blob_store_unreachable");
    assert!(!missing.text.contains("s3-secret-4242"));
    let unchanged = app.get("/api/admin/storage/blobs", Some(&admin)).await;
    assert_eq!(unchanged.body["backend"], "local");
    // The first time, a secret key is required.
    let keyless = app
        .put(
            "/api/admin/storage/blobs",
            Some(&admin),
            settings("switchyard-blobs", None),
        )
        .await;
    assert_eq!(
        keyless.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        keyless.text
    );

    let set = app
        .put(
            "/api/admin/storage/blobs",
            Some(&admin),
            settings("switchyard-blobs", Some("s3-secret-4242")),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    assert_eq!(
        set.body["s3"],
        json!({
            "bucket": "switchyard-blobs",
            "region": "us-east-1",
            "endpoint": s3.endpoint,
            "prefix": "uploads",
            "access_key_id": "AKIDSWITCHYARD",
            "secret_access_key_set": true,
            "path_style": true,
        })
    );
    assert!(!set.text.contains("s3-secret-4242"));
    // The secret is sealed at rest.
    let stored = app
        .app
        .services
        .store
        .get_setting(domain::blobs::BLOBS_SETTING)
        .await
        .unwrap()
        .unwrap();
    assert!(!stored.to_string().contains("s3-secret-4242"), "{stored}");

    // Uploaded through one replica, read through another with its own data folder.
    let elsewhere = tempfile::tempdir().unwrap();
    let replica = replica_elsewhere(&app, elsewhere.path()).await;
    let photo = attach(&app, &user, "photo.png", b"through s3").await;
    assert!(
        read(&replica, &photo)
            .await
            .unwrap()
            .ends_with(b"through s3")
    );
    let id = early_id(&photo);
    assert!(
        s3.keys("switchyard-blobs")
            .await
            .contains(&format!("uploads/{id}"))
    );
    assert!(!app.data_dir().join("attachments").join(&id).exists());

    // A knowledge file goes there too, and is ingested from there.
    let created = app
        .post(
            "/api/vector-stores",
            Some(&admin),
            json!({"slug": "handbook"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let accepted = upload(
        &app,
        &admin,
        "handbook",
        "guide.md",
        b"# Guide\n\nOpen port 8443 on the firewall.\n",
        &[],
    )
    .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.text);
    let job = finished_job(
        &app,
        &admin,
        "handbook",
        accepted.body["job"]["id"].as_i64().unwrap(),
    )
    .await;
    assert_eq!(job["status"], "done", "{job}");
    assert!(
        s3.keys("switchyard-blobs")
            .await
            .contains("uploads/knowledge-")
    );

    // Changing other fields keeps the stored secret; deleting an upload removes the object.
    let kept = app
        .put(
            "/api/admin/storage/blobs",
            Some(&admin),
            settings("switchyard-blobs", None),
        )
        .await;
    assert_eq!(kept.status, StatusCode::OK, "{}", kept.text);
    let deleted = chatkit(
        &app,
        &user,
        json!({"type": "attachments.delete", "params": {"attachment_id": id}}),
    )
    .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.text);
    assert!(
        !s3.keys("switchyard-blobs")
            .await
            .contains(&format!("uploads/{id}"))
    );
}
