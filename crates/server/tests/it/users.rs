//! User management: CRUD, admin-only enforcement, email rules, the last-admin rule, passwords.

use axum::http::StatusCode;
use domain::users::{self, UpdateUser, UserError};
use serde_json::json;
use test_support::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, TestBackend, backend_tests};

backend_tests!(
    admin_manages_users,
    non_admins_are_forbidden,
    emails_are_normalised_and_unique,
    bad_user_input_is_refused,
    last_admin_cannot_be_removed,
    concurrent_demotions_keep_one_admin,
    demotion_takes_effect_at_once,
    password_reset_revokes_tokens,
    users_change_their_own_password,
    users_edit_their_own_profile,
);

async fn admin_manages_users(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;

    let created = app
        .post(
            "/api/users",
            Some(&admin),
            json!({"email": "ann@example.com", "password": "ann-password", "display_name": "Ann"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["display_name"], "Ann");
    assert_eq!(created.body["is_admin"], false);
    let id = created.body["id"].as_i64().unwrap();

    let list = app.get("/api/users", Some(&admin)).await;
    assert_eq!(list.status, StatusCode::OK);
    let emails: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, [ADMIN_EMAIL, "ann@example.com"]);

    let one = app.get(&format!("/api/users/{id}"), Some(&admin)).await;
    assert_eq!(
        (one.status, one.body["email"].as_str()),
        (StatusCode::OK, Some("ann@example.com"))
    );

    let patched = app
        .patch(
            &format!("/api/users/{id}"),
            Some(&admin),
            json!({"email": "Anne@Example.com", "is_admin": true}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(patched.body["email"], "anne@example.com");
    assert_eq!(patched.body["is_admin"], true);
    assert_eq!(
        patched.body["display_name"], "Ann",
        "absent fields are left alone"
    );

    let cleared = app
        .patch(
            &format!("/api/users/{id}"),
            Some(&admin),
            json!({"display_name": null}),
        )
        .await;
    assert_eq!(cleared.body["display_name"], serde_json::Value::Null);

    let deleted = app.delete(&format!("/api/users/{id}"), Some(&admin)).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(deleted.text.is_empty());
    for response in [
        app.get(&format!("/api/users/{id}"), Some(&admin)).await,
        app.delete(&format!("/api/users/{id}"), Some(&admin)).await,
        app.patch(
            &format!("/api/users/{id}"),
            Some(&admin),
            json!({"is_admin": false}),
        )
        .await,
    ] {
        assert_eq!(
            (response.status, response.code()),
            (StatusCode::NOT_FOUND, "user_not_found")
        );
    }
    let bad_id = app.get("/api/users/abc", Some(&admin)).await;
    assert_eq!(
        (bad_id.status, bad_id.code()),
        (StatusCode::BAD_REQUEST, "invalid_path")
    );
}

async fn non_admins_are_forbidden(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let (id, token) = app
        .create_user("bob@example.com", "bob-password", false)
        .await;
    let user_path = format!("/api/users/{id}");
    let responses = [
        app.get("/api/users", Some(&token)).await,
        app.post(
            "/api/users",
            Some(&token),
            json!({"email": "x@example.com", "password": "x-password"}),
        )
        .await,
        app.get(&user_path, Some(&token)).await,
        app.patch(&user_path, Some(&token), json!({"is_admin": true}))
            .await,
        app.delete(&user_path, Some(&token)).await,
    ];
    for response in responses {
        assert_eq!(
            (response.status, response.code()),
            (StatusCode::FORBIDDEN, "admin_required")
        );
    }
    let anonymous = [
        app.get("/api/users", None).await,
        app.get(&user_path, None).await,
        app.delete(&user_path, None).await,
    ];
    for response in anonymous {
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    }
    // Bob is still not an administrator.
    let me = app.get("/api/users/me", Some(&token)).await;
    assert_eq!(me.body["is_admin"], false);
}

async fn emails_are_normalised_and_unique(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let created = app
        .post(
            "/api/users",
            Some(&admin),
            json!({"email": "  Carol@Example.COM ", "password": "carol-password"}),
        )
        .await;
    assert_eq!(created.body["email"], "carol@example.com");
    app.login("CAROL@example.com", "carol-password").await;

    let again = app
        .post(
            "/api/users",
            Some(&admin),
            json!({"email": "carol@example.com", "password": "carol-password"}),
        )
        .await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::CONFLICT, "email_taken")
    );

    let other = app
        .post(
            "/api/users",
            Some(&admin),
            json!({"email": "dave@example.com", "password": "dave-password"}),
        )
        .await;
    let id = other.body["id"].as_i64().unwrap();
    let taken = app
        .patch(
            &format!("/api/users/{id}"),
            Some(&admin),
            json!({"email": "CAROL@example.com"}),
        )
        .await;
    assert_eq!(
        (taken.status, taken.code()),
        (StatusCode::CONFLICT, "email_taken")
    );
}

async fn bad_user_input_is_refused(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let cases = [
        (
            json!({"email": "not-an-email", "password": "long-enough"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_email",
        ),
        (
            json!({"email": "e@example.com", "password": "short"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "weak_password",
        ),
        (
            json!({"email": "e@example.com"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            json!({"email": "e@example.com", "password": "long-enough", "role": "god"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            json!({"email": 42, "password": "long-enough"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            json!({"email": "e@example.com", "password": "long-enough", "display_name": "x".repeat(300)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_display_name",
        ),
    ];
    for (body, status, code) in cases {
        let response = app.post("/api/users", Some(&admin), body.clone()).await;
        assert_eq!(
            (response.status, response.code()),
            (status, code),
            "{body}: {}",
            response.text
        );
        assert!(!response.body["message"].as_str().unwrap_or("").is_empty());
    }
    let list = app.get("/api/users", Some(&admin)).await;
    assert_eq!(
        list.body.as_array().unwrap().len(),
        1,
        "nothing was created"
    );
}

async fn last_admin_cannot_be_removed(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let me = app.get("/api/users/me", Some(&admin)).await;
    let admin_id = me.body["id"].as_i64().unwrap();
    let admin_path = format!("/api/users/{admin_id}");

    let demote = app
        .patch(&admin_path, Some(&admin), json!({"is_admin": false}))
        .await;
    assert_eq!(
        (demote.status, demote.code()),
        (StatusCode::CONFLICT, "last_admin")
    );
    let delete = app.delete(&admin_path, Some(&admin)).await;
    assert_eq!(
        (delete.status, delete.code()),
        (StatusCode::CONFLICT, "last_admin")
    );
    // Other fields may still change in the same request shape.
    let renamed = app
        .patch(
            &admin_path,
            Some(&admin),
            json!({"display_name": "Root", "is_admin": true}),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK);

    let (second_id, second) = app
        .create_user("second@example.com", "second-password", true)
        .await;
    let demote = app
        .patch(&admin_path, Some(&second), json!({"is_admin": false}))
        .await;
    assert_eq!(demote.status, StatusCode::OK, "{}", demote.text);
    let delete = app
        .delete(&format!("/api/users/{second_id}"), Some(&second))
        .await;
    assert_eq!(
        (delete.status, delete.code()),
        (StatusCode::CONFLICT, "last_admin")
    );
}

async fn concurrent_demotions_keep_one_admin(backend: TestBackend) {
    // Straight at the service: over HTTP the second request would already fail its admin check.
    let app = TestApp::new(backend).await;
    let services = app.app.services.clone();
    let admin = app.admin_token().await;
    let admin_id = app.get("/api/users/me", Some(&admin)).await.body["id"]
        .as_i64()
        .unwrap();
    let (second_id, _) = app.create_user("b@example.com", "b-password", true).await;
    let demote = || UpdateUser {
        is_admin: Some(false),
        ..UpdateUser::default()
    };
    let promote = || UpdateUser {
        is_admin: Some(true),
        ..UpdateUser::default()
    };
    // Each administrator demotes themself (acting as themself, as the API does).
    let acting = |id: i64| {
        let services = services.clone();
        async move {
            let user = services.store.user_by_id(id).await.unwrap().unwrap();
            domain::Principal::user(user)
        }
    };
    for round in 0..10 {
        let (first, second) = (services.clone(), services.clone());
        let (first_admin, second_admin) = (acting(admin_id).await, acting(second_id).await);
        let (a, b) = tokio::join!(
            tokio::spawn(
                async move { users::update(&first, &first_admin, admin_id, demote()).await }
            ),
            tokio::spawn(async move {
                users::update(&second, &second_admin, second_id, demote()).await
            }),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let refused = [&a, &b]
            .iter()
            .filter(|r| matches!(r, Err(UserError::LastAdmin)))
            .count();
        assert_eq!(refused, 1, "round {round}: {a:?} {b:?}");
        let n_admins = services
            .store
            .list_users()
            .await
            .unwrap()
            .iter()
            .filter(|u| u.is_admin)
            .count();
        assert_eq!(n_admins, 1, "round {round}");
        // The one still an administrator promotes both again.
        let still = services
            .store
            .list_users()
            .await
            .unwrap()
            .into_iter()
            .find(|u| u.is_admin)
            .unwrap();
        let still = domain::Principal::user(still);
        for id in [admin_id, second_id] {
            users::update(&services, &still, id, promote())
                .await
                .unwrap();
        }
    }
}

async fn demotion_takes_effect_at_once(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let (id, token) = app
        .create_user("eve@example.com", "eve-password", true)
        .await;
    assert_eq!(
        app.get("/api/users", Some(&token)).await.status,
        StatusCode::OK
    );
    app.patch(
        &format!("/api/users/{id}"),
        Some(&admin),
        json!({"is_admin": false}),
    )
    .await;
    // The token still claims is_admin = true; the database says otherwise.
    let response = app.get("/api/users", Some(&token)).await;
    assert_eq!(response.status, StatusCode::FORBIDDEN);
}

async fn password_reset_revokes_tokens(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let (id, old_token) = app
        .create_user("fay@example.com", "fay-password", false)
        .await;
    let reset = app
        .patch(
            &format!("/api/users/{id}"),
            Some(&admin),
            json!({"password": "fay-new-password"}),
        )
        .await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.text);

    let response = app.get("/api/users/me", Some(&old_token)).await;
    assert_eq!(
        (response.status, response.code()),
        (StatusCode::UNAUTHORIZED, "token_revoked")
    );
    let old_login = app
        .post(
            "/api/auth/login",
            None,
            json!({"email": "fay@example.com", "password": "fay-password"}),
        )
        .await;
    assert_eq!(old_login.status, StatusCode::UNAUTHORIZED);
    let new_token = app.login("fay@example.com", "fay-new-password").await;
    assert_eq!(
        app.get("/api/users/me", Some(&new_token)).await.status,
        StatusCode::OK
    );

    let weak = app
        .patch(
            &format!("/api/users/{id}"),
            Some(&admin),
            json!({"password": "short"}),
        )
        .await;
    assert_eq!(
        (weak.status, weak.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "weak_password")
    );
}

async fn users_change_their_own_password(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let (_, token) = app
        .create_user("gus@example.com", "gus-password", false)
        .await;
    let wrong = app
        .post(
            "/api/users/me/password",
            Some(&token),
            json!({"current_password": "nope-nope", "new_password": "gus-password-2"}),
        )
        .await;
    assert_eq!(
        (wrong.status, wrong.code()),
        (StatusCode::FORBIDDEN, "wrong_password")
    );

    let changed = app
        .post(
            "/api/users/me/password",
            Some(&token),
            json!({"current_password": "gus-password", "new_password": "gus-password-2"}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    let fresh = changed.body["access_token"].as_str().unwrap();
    assert_eq!(
        app.get("/api/users/me", Some(fresh)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/api/users/me", Some(&token)).await.status,
        StatusCode::UNAUTHORIZED
    );
    app.login("gus@example.com", "gus-password-2").await;

    let anonymous = app
        .post(
            "/api/users/me/password",
            None,
            json!({"current_password": "a", "new_password": "b"}),
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let _ = ADMIN_PASSWORD;
}

async fn users_edit_their_own_profile(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let (_, token) = app
        .create_user("hal@example.com", "hal-password", false)
        .await;
    let named = app
        .patch(
            "/api/users/me",
            Some(&token),
            json!({"display_name": "  Hal  "}),
        )
        .await;
    assert_eq!(
        (named.status, named.body["display_name"].as_str()),
        (StatusCode::OK, Some("Hal"))
    );
    let escalate = app
        .patch("/api/users/me", Some(&token), json!({"is_admin": true}))
        .await;
    assert_eq!(
        (escalate.status, escalate.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
    );
    assert_eq!(
        app.get("/api/users/me", Some(&token)).await.body["is_admin"],
        false
    );
}
