//! Login, tokens (expiry, forgery, revocation), legacy hashes and the login rate limit.

use axum::http::{Method, Request, StatusCode, header};
use chrono::Utc;
use domain::{auth::token::Claims, users::NewUser};
use serde_json::json;
use test_support::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, TestBackend, backend_tests};

backend_tests!(
    login_returns_token_and_user,
    login_failures_look_the_same,
    bad_tokens_are_refused,
    legacy_hashes_log_in_and_are_rehashed,
    login_is_rate_limited_per_account,
    login_is_rate_limited_per_address,
    deleted_user_loses_access,
);

async fn login_returns_token_and_user(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let response = app
        .post(
            "/api/auth/login",
            None,
            json!({"email": "  ADMIN@example.com ", "password": ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    assert_eq!(response.body["token_type"], "bearer");
    assert_eq!(response.body["expires_in"], 24 * 3600);
    assert_eq!(response.body["user"]["email"], ADMIN_EMAIL);
    assert_eq!(response.body["user"]["is_admin"], true);
    assert!(response.body["user"].get("password_hash").is_none());

    let token = response.body["access_token"].as_str().unwrap();
    let me = app.get("/api/users/me", Some(token)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["email"], ADMIN_EMAIL);
    let claims = app.app.services.auth.keys().verify(token).unwrap();
    assert_eq!(claims.email, ADMIN_EMAIL);
    assert!(claims.is_admin);
    assert_eq!(claims.sub, me.body["id"].to_string());
}

async fn login_failures_look_the_same(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let wrong_password = app
        .post(
            "/api/auth/login",
            None,
            json!({"email": ADMIN_EMAIL, "password": "nope-nope"}),
        )
        .await;
    let unknown_email = app
        .post(
            "/api/auth/login",
            None,
            json!({"email": "ghost@example.com", "password": "nope-nope"}),
        )
        .await;
    for response in [&wrong_password, &unknown_email] {
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
        assert_eq!(response.code(), "invalid_credentials");
    }
    assert_eq!(wrong_password.body, unknown_email.body);

    let missing_field = app
        .post("/api/auth/login", None, json!({"email": ADMIN_EMAIL}))
        .await;
    assert_eq!(missing_field.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(missing_field.code(), "invalid_body");
}

async fn bad_tokens_are_refused(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let me = app.get("/api/users/me", None).await;
    assert_eq!(
        (me.status, me.code()),
        (StatusCode::UNAUTHORIZED, "missing_token")
    );

    let garbage = app.get("/api/users/me", Some("garbage")).await;
    assert_eq!(
        (garbage.status, garbage.code()),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );

    let request = Request::builder()
        .uri("/api/users/me")
        .header(header::AUTHORIZATION, "Basic YWRtaW46cGFzcw==")
        .body(axum::body::Body::empty())
        .unwrap();
    let basic = app.send(request).await;
    assert_eq!(
        (basic.status, basic.code()),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );

    let user = app
        .app
        .services
        .store
        .credentials_by_email(ADMIN_EMAIL)
        .await
        .unwrap()
        .unwrap()
        .user;
    let keys = app.app.services.auth.keys();
    let now = Utc::now().timestamp();
    let claims = |iat: i64, exp: i64| Claims {
        sub: user.id.to_string(),
        email: user.email.clone(),
        is_admin: true,
        iat,
        exp,
        ver: 0,
        token_type: "access".into(),
    };
    let expired = keys.sign(&claims(now - 7200, now - 3600));
    let response = app.get("/api/users/me", Some(&expired)).await;
    assert_eq!(
        (response.status, response.code()),
        (StatusCode::UNAUTHORIZED, "token_expired")
    );

    let foreign = domain::auth::token::TokenKeys::new(b"some-other-key-some-other-key-123");
    let forged = foreign.sign(&claims(now, now + 3600));
    let response = app.get("/api/users/me", Some(&forged)).await;
    assert_eq!(
        (response.status, response.code()),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );

    let mut for_nobody = claims(now, now + 3600);
    for_nobody.sub = "999999".into();
    let response = app
        .get("/api/users/me", Some(&keys.sign(&for_nobody)))
        .await;
    assert_eq!(
        (response.status, response.code()),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );

    let mut not_a_number = claims(now, now + 3600);
    not_a_number.sub = "admin".into();
    let response = app
        .get("/api/users/me", Some(&keys.sign(&not_a_number)))
        .await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
}

async fn legacy_hashes_log_in_and_are_rehashed(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let store = &app.app.services.store;
    let legacy = [
        ("bcrypt@example.com", bcrypt_hash("bcrypt-pass")),
        (
            "seed@example.com",
            domain::auth::password::seed_pbkdf2_hash(
                "seed-pass-1",
                "9f86d081884c7d659a2feaa0c55ad015",
            ),
        ),
    ];
    for (email, hash) in &legacy {
        store
            .insert_user(
                &NewUser {
                    email: (*email).into(),
                    display_name: None,
                    password_hash: hash.clone(),
                    is_admin: false,
                    is_lti: false,
                },
                Utc::now(),
            )
            .await
            .unwrap();
    }
    for ((email, old_hash), password) in legacy.iter().zip(["bcrypt-pass", "seed-pass-1"]) {
        let wrong = app
            .post(
                "/api/auth/login",
                None,
                json!({"email": email, "password": "wrong-one"}),
            )
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        let stored = store.credentials_by_email(email).await.unwrap().unwrap();
        assert_eq!(
            &stored.password_hash, old_hash,
            "a failed login changes nothing"
        );

        app.login(email, password).await;
        let stored = store.credentials_by_email(email).await.unwrap().unwrap();
        assert!(
            stored.password_hash.starts_with("$argon2id$"),
            "{email} was rehashed"
        );
        // The new hash still accepts the same password.
        app.login(email, password).await;
    }
}

fn bcrypt_hash(password: &str) -> String {
    // A `$2b$` hash with cost 4, as Python's bcrypt writes them.
    let hash = bcrypt::hash(password, 4).unwrap();
    assert!(hash.starts_with("$2b$"));
    hash
}

/// A login attempt from `ip` (the app trusts `X-Forwarded-For` in these tests).
fn attempt(ip: &str, email: &str, password: &str) -> Request<axum::body::Body> {
    Request::builder()
        .method(Method::POST)
        .uri("/api/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-forwarded-for", format!("{ip}, 10.0.0.1"))
        .body(axum::body::Body::from(
            json!({"email": email, "password": password}).to_string(),
        ))
        .unwrap()
}

async fn login_is_rate_limited_per_account(backend: TestBackend) {
    let app = TestApp::with_config(backend, |config| {
        config.auth.login_free_failures = 2;
        config.auth.login_max_failures_per_account = 5;
        config.http.trust_proxy_headers = true;
    })
    .await;
    let admin = app.admin_token().await;
    let (_, user) = app
        .create_user("other@example.com", "other-password", false)
        .await;
    const GUESSER: &str = "203.0.113.9";
    const OWNER: &str = "198.51.100.7";
    // A few free failures, then each one holds the guesser's address a little longer.
    for _ in 0..3 {
        let response = app.send(attempt(GUESSER, ADMIN_EMAIL, "wrong-pass")).await;
        assert_eq!(
            response.status,
            StatusCode::UNAUTHORIZED,
            "{}",
            response.text
        );
    }
    let held = app
        .send(attempt(GUESSER, ADMIN_EMAIL, ADMIN_PASSWORD))
        .await;
    assert_eq!(held.status, StatusCode::TOO_MANY_REQUESTS, "{}", held.text);
    assert_eq!(held.code(), "too_many_login_attempts");
    let retry_after: u64 = held.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=2).contains(&retry_after),
        "a short first delay: {retry_after}"
    );
    // The owner, from an address that has not failed, is not locked out.
    let owner = app.send(attempt(OWNER, ADMIN_EMAIL, ADMIN_PASSWORD)).await;
    assert_eq!(owner.status, StatusCode::OK, "{}", owner.text);

    // Guesses from more addresses pass the account's limit: the addresses that failed are
    // held, a fresh one still logs in, and another account is not affected.
    for ip in ["192.0.2.1", "192.0.2.2"] {
        let response = app.send(attempt(ip, ADMIN_EMAIL, "wrong-again")).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    }
    let failed_before = app
        .send(attempt("192.0.2.1", ADMIN_EMAIL, ADMIN_PASSWORD))
        .await;
    assert_eq!(
        failed_before.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        failed_before.text
    );
    let retry_after: u64 = failed_before.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (60..=900).contains(&retry_after),
        "held for the window: {retry_after}"
    );
    let fresh = app
        .send(attempt("192.0.2.99", ADMIN_EMAIL, ADMIN_PASSWORD))
        .await;
    assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.text);
    let other = app
        .send(attempt("192.0.2.1", "other@example.com", "other-password"))
        .await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.text);

    // The counts live in the database: a restarted server (or another replica) holds the
    // same addresses.
    let restarted = app.restart().await.router();
    let still = test_support::send_to(
        &restarted,
        attempt("192.0.2.1", ADMIN_EMAIL, ADMIN_PASSWORD),
    )
    .await;
    assert_eq!(
        still.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        still.text
    );

    // Administrators see and clear them; nobody else does.
    let listed = app.get("/api/admin/login-throttles", Some(&admin)).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    let account = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "account" && t["email"] == ADMIN_EMAIL)
        .unwrap_or_else(|| panic!("{}", listed.text));
    assert_eq!(account["failures"], 5, "{}", listed.text);
    assert!(account.get("address").is_none());
    let pair = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "account_address" && t["address"] == GUESSER)
        .unwrap_or_else(|| panic!("{}", listed.text));
    assert!(pair["blocked_until"].is_string(), "{pair}");
    let denied = app.get("/api/admin/login-throttles", Some(&user)).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let denied = app.delete("/api/admin/login-throttles", Some(&user)).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let cleared = app
        .delete(
            &format!("/api/admin/login-throttles?email={ADMIN_EMAIL}"),
            Some(&admin),
        )
        .await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.text);
    assert!(
        cleared.body["cleared"].as_u64().unwrap() >= 4,
        "{}",
        cleared.text
    );
    let again = app
        .send(attempt("192.0.2.1", ADMIN_EMAIL, ADMIN_PASSWORD))
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
}

async fn login_is_rate_limited_per_address(backend: TestBackend) {
    let app = TestApp::with_config(backend, |config| {
        config.auth.login_max_failures_per_ip = 4;
        config.http.trust_proxy_headers = true;
    })
    .await;
    for i in 0..4 {
        let response = app
            .send(attempt(
                "203.0.113.9",
                &format!("user{i}@example.com"),
                "guess-guess",
            ))
            .await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    }
    let response = app
        .send(attempt("203.0.113.9", ADMIN_EMAIL, ADMIN_PASSWORD))
        .await;
    assert_eq!(response.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers.contains_key(header::RETRY_AFTER));
    let response = app
        .send(attempt("198.51.100.7", ADMIN_EMAIL, ADMIN_PASSWORD))
        .await;
    assert_eq!(
        response.status,
        StatusCode::OK,
        "another address may still log in"
    );
}

async fn deleted_user_loses_access(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let (id, token) = app
        .create_user("temp@example.com", "temp-password", false)
        .await;
    assert_eq!(
        app.get("/api/users/me", Some(&token)).await.status,
        StatusCode::OK
    );
    let admin = app.admin_token().await;
    assert_eq!(
        app.delete(&format!("/api/users/{id}"), Some(&admin))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let response = app.get("/api/users/me", Some(&token)).await;
    assert_eq!(
        (response.status, response.code()),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );
}
