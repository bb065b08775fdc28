//! The model registry over HTTP: providers with encrypted keys, models, defaults, and the
//! environment shortcut.

use axum::http::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection;
use test_support::{TestApp, TestBackend, backend_tests, fake_llm::FakeLlm};

backend_tests!(
    providers_keep_keys_secret,
    provider_input_is_checked,
    models_are_registered_priced_and_listed,
    environment_creates_a_default_provider,
    providers_are_tested_and_their_models_imported,
    titles_are_generated_and_usage_priced,
    the_open_registry_runs_names_it_does_not_know,
);

async fn titles_are_generated_and_usage_priced(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let services = &app.app.services;
    let (user_id, user) = app
        .create_user("u@example.com", "user-password", false)
        .await;

    // No model configured: no title, and no error.
    let none = domain::models::titles::generate(services, Some(user_id), "hello")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(none, None);

    let fake = FakeLlm::start().await;
    let provider = app
        .post(
            "/api/admin/model-providers",
            Some(&admin),
            json!({"kind": "openai_compatible", "label": "Fake", "api_base": fake.base_url}),
        )
        .await;
    let provider_id = provider.body["id"].as_i64().unwrap();
    app.post(
        "/api/admin/models",
        Some(&admin),
        json!({"provider_id": provider_id, "name": "fake-gpt", "is_default_title": true,
               "price_input_per_mtok": 2.0, "price_output_per_mtok": 8.0, "price_cached_input_per_mtok": 0.5}),
    )
    .await;

    let settings = app.get("/api/admin/settings", Some(&admin)).await;
    assert_eq!(
        settings.body["thread_title_prompt"],
        domain::models::titles::DEFAULT_PROMPT
    );
    let custom = app
        .patch(
            "/api/admin/settings",
            Some(&admin),
            json!({"thread_title_prompt": "Titre court, en français."}),
        )
        .await;
    assert_eq!(
        custom.body["thread_title_prompt"],
        "Titre court, en français."
    );
    assert_eq!(
        app.get("/api/admin/settings", Some(&user)).await.status,
        StatusCode::FORBIDDEN
    );

    fake.push(test_support::fake_llm::Reply::Text(
        "\"Remboursement de la commande 42.\"".into(),
    ));
    let title = domain::models::titles::generate(
        services,
        Some(user_id),
        "Je veux un remboursement pour la commande 42",
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(title.as_deref(), Some("Remboursement de la commande 42"));
    let sent = &fake.requests()[0].body;
    assert_eq!(sent["messages"][0]["content"], "Titre court, en français.");

    // The call was recorded and priced from the registry.
    let report = app
        .get("/api/admin/usage?group_by=model", Some(&admin))
        .await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.text);
    let line = &report.body["lines"][0];
    assert_eq!(
        (line["key"].as_str(), line["calls"].as_i64()),
        (Some("fake-gpt"), Some(1))
    );
    let usage = domain::models::Usage {
        input_tokens: line["input_tokens"].as_u64().unwrap(),
        output_tokens: line["output_tokens"].as_u64().unwrap(),
        cached_input_tokens: line["cached_input_tokens"].as_u64().unwrap(),
        reasoning_tokens: 0,
    };
    assert!(usage.input_tokens > 0 && usage.output_tokens > 0 && usage.cached_input_tokens > 0);
    let pricing = domain::models::Pricing {
        input_per_mtok: Some(2.0),
        output_per_mtok: Some(8.0),
        cached_input_per_mtok: Some(0.5),
    };
    let expected = pricing.cost(usage).unwrap();
    assert!(
        (line["cost_usd"].as_f64().unwrap() - expected).abs() < 1e-9,
        "{line} vs {expected}"
    );

    let by_user = app
        .get("/api/admin/usage?group_by=user", Some(&admin))
        .await;
    assert_eq!(by_user.body["lines"][0]["label"], "u@example.com");
    let by_day = app.get("/api/admin/usage?group_by=day", Some(&admin)).await;
    assert_eq!(
        by_day.body["lines"][0]["key"].as_str(),
        Some(chrono::Utc::now().format("%Y-%m-%d").to_string().as_str())
    );
    let by_purpose = app
        .get(
            "/api/admin/usage?group_by=purpose&from=2000-01-01",
            Some(&admin),
        )
        .await;
    assert_eq!(by_purpose.body["lines"][0]["key"], "title");
    let empty = app
        .get(
            "/api/admin/usage?from=2000-01-01&to=2000-02-01",
            Some(&admin),
        )
        .await;
    assert_eq!(empty.body["lines"], json!([]));
    for bad in [
        "/api/admin/usage?group_by=colour",
        "/api/admin/usage?from=yesterday",
        "/api/admin/usage?from=2030-01-01&to=2020-01-01",
    ] {
        let response = app.get(bad, Some(&admin)).await;
        assert_eq!(
            (response.status, response.code()),
            (StatusCode::BAD_REQUEST, "invalid_query"),
            "{bad}"
        );
    }
    assert_eq!(
        app.get("/api/admin/usage", Some(&user)).await.status,
        StatusCode::FORBIDDEN
    );

    let reset = app
        .patch(
            "/api/admin/settings",
            Some(&admin),
            json!({"thread_title_prompt": ""}),
        )
        .await;
    assert_eq!(
        reset.body["thread_title_prompt"],
        domain::models::titles::DEFAULT_PROMPT
    );
}

async fn providers_are_tested_and_their_models_imported(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let fake = FakeLlm::with_key("sk-proxy-key-5678").await;
    let proxy = app
        .post(
            "/api/admin/model-providers",
            Some(&admin),
            json!({"kind": "litellm", "label": "Proxy", "api_base": fake.base_url, "api_key": "sk-proxy-key-5678"}),
        )
        .await;
    let id = proxy.body["id"].as_i64().unwrap();
    let ok = app
        .post(
            &format!("/api/admin/model-providers/{id}/test"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(
        (ok.body["status"].as_str(), ok.body["model_count"].as_i64()),
        (Some("ok"), Some(2))
    );

    let imported = app
        .post(
            "/api/admin/models/import",
            Some(&admin),
            json!({"provider_id": id}),
        )
        .await;
    assert_eq!(imported.status, StatusCode::OK, "{}", imported.text);
    assert_eq!(
        (
            imported.body["imported"].as_i64(),
            imported.body["skipped"].as_i64()
        ),
        (Some(2), Some(0))
    );
    let again = app
        .post(
            "/api/admin/models/import",
            Some(&admin),
            json!({"provider_id": id}),
        )
        .await;
    assert_eq!(
        (
            again.body["imported"].as_i64(),
            again.body["skipped"].as_i64()
        ),
        (Some(0), Some(2))
    );
    let models = app.get("/api/admin/models", Some(&admin)).await;
    let gpt = models
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "fake-gpt")
        .unwrap()
        .clone();
    assert_eq!(
        (
            gpt["price_input_per_mtok"].as_f64(),
            gpt["context_window"].as_i64()
        ),
        (Some(2.5), Some(128000))
    );

    // A wrong key, and an address nothing answers on.
    app.patch(
        &format!("/api/admin/model-providers/{id}"),
        Some(&admin),
        json!({"api_key": "sk-wrong-key-0000"}),
    )
    .await;
    let refused = app
        .post(
            &format!("/api/admin/model-providers/{id}/test"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(refused.body["status"], "unauthorized");
    assert!(!refused.text.contains("sk-wrong-key"), "{}", refused.text);
    let failed = app
        .post(
            "/api/admin/models/import",
            Some(&admin),
            json!({"provider_id": id}),
        )
        .await;
    assert_eq!(
        (failed.status, failed.code()),
        (StatusCode::BAD_GATEWAY, "provider_unauthorized")
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    app.patch(
        &format!("/api/admin/model-providers/{id}"),
        Some(&admin),
        json!({"api_base": format!("http://127.0.0.1:{port}/v1"), "max_retries": 0}),
    )
    .await;
    let down = app
        .post(
            &format!("/api/admin/model-providers/{id}/test"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(down.body["status"], "unreachable", "{}", down.text);
    assert_eq!(
        app.post(
            "/api/admin/model-providers/999999/test",
            Some(&admin),
            json!({})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
}

/// The provider's stored columns, read straight from the database.
async fn stored_secret_columns(app: &TestApp, id: i64) -> (Option<String>, Option<String>) {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT api_key_encrypted, extra_headers_encrypted FROM model_providers WHERE id = {id}"
    ));
    match &app.backend {
        TestBackend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&app.db.url).await.unwrap();
            sqlx::query_as(sql).fetch_one(&mut conn).await.unwrap()
        }
        TestBackend::Postgres(_) => {
            let mut conn = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
            sqlx::query_as(sql).fetch_one(&mut conn).await.unwrap()
        }
    }
}

async fn providers_keep_keys_secret(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let created = app
        .post(
            "/api/admin/model-providers",
            Some(&admin),
            json!({"kind": "openai", "label": "OpenAI", "api_key": "sk-test-0123456789abcdef", "extra_headers": {"OpenAI-Organization": "org-secret-42"}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let p = &created.body;
    assert_eq!(p["api_base"], "https://api.openai.com/v1");
    assert_eq!(p["api_style"], "responses");
    assert_eq!(p["has_api_key"], true);
    assert_eq!(p["api_key_hint"], "••••cdef");
    assert_eq!(p["extra_header_names"], json!(["OpenAI-Organization"]));
    assert_eq!(p["is_default"], true, "the first provider is the default");
    assert!(!created.text.contains("0123456789") && !created.text.contains("org-secret-42"));
    let id = p["id"].as_i64().unwrap();

    let (key, headers) = stored_secret_columns(&app, id).await;
    let (key, headers) = (key.unwrap(), headers.unwrap());
    assert!(
        key.starts_with("v1:") && !key.contains("sk-test"),
        "encrypted at rest"
    );
    assert!(!headers.contains("org-secret-42"));
    let credentials = domain::models::credentials(&app.app.services, id)
        .await
        .unwrap();
    assert_eq!(
        credentials.api_key.as_deref(),
        Some("sk-test-0123456789abcdef")
    );
    assert_eq!(
        credentials.extra_headers["OpenAI-Organization"],
        "org-secret-42"
    );
    assert!(
        !format!("{credentials:?}").contains("sk-test"),
        "Debug redacts"
    );

    let listed = app.get("/api/admin/model-providers", Some(&admin)).await;
    assert!(!listed.text.contains("sk-test"));
    // Changing the label keeps the key; `null` removes it.
    let renamed = app
        .patch(
            &format!("/api/admin/model-providers/{id}"),
            Some(&admin),
            json!({"label": "OpenAI (prod)"}),
        )
        .await;
    assert_eq!(
        (
            renamed.body["label"].as_str(),
            renamed.body["has_api_key"].as_bool()
        ),
        (Some("OpenAI (prod)"), Some(true))
    );
    let cleared = app
        .patch(
            &format!("/api/admin/model-providers/{id}"),
            Some(&admin),
            json!({"api_key": null}),
        )
        .await;
    assert_eq!(
        (
            cleared.body["has_api_key"].as_bool(),
            cleared.body["api_key_hint"].clone()
        ),
        (Some(false), Value::Null)
    );

    let second = app
        .post(
            "/api/admin/model-providers",
            Some(&admin),
            json!({"kind": "openai_compatible", "label": "Ollama", "api_base": "http://127.0.0.1:11434/v1/", "is_default": true}),
        )
        .await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.text);
    assert_eq!(second.body["api_base"], "http://127.0.0.1:11434/v1");
    assert_eq!(second.body["api_style"], "chat_completions");
    let providers = app.get("/api/admin/model-providers", Some(&admin)).await;
    let defaults: Vec<&str> = providers
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["is_default"] == true)
        .map(|p| p["label"].as_str().unwrap())
        .collect();
    assert_eq!(defaults, ["Ollama"]);

    assert_eq!(
        app.delete(&format!("/api/admin/model-providers/{id}"), Some(&admin))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get(&format!("/api/admin/model-providers/{id}"), Some(&admin))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

async fn provider_input_is_checked(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let (_, user) = app
        .create_user("u@example.com", "user-password", false)
        .await;
    let forbidden = app
        .post(
            "/api/admin/model-providers",
            Some(&user),
            json!({"kind": "openai", "label": "x"}),
        )
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get("/api/admin/model-providers", Some(&user))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let cases = [
        json!({"kind": "anthropics", "label": "x"}),
        json!({"label": "no kind"}),
        json!({"kind": "openai_compatible", "label": "no base"}),
        json!({"kind": "litellm", "label": "bad base", "api_base": "ftp://proxy"}),
        json!({"kind": "openai_compatible", "label": "wrong style", "api_base": "http://h/v1", "api_style": "responses"}),
        json!({"kind": "openai", "label": "slow", "idle_timeout_secs": 0}),
        json!({"kind": "openai", "label": "auth header", "extra_headers": {"Authorization": "Bearer x"}}),
        json!({"kind": "openai", "label": "   "}),
    ];
    for body in cases {
        let response = app
            .post("/api/admin/model-providers", Some(&admin), body.clone())
            .await;
        assert_eq!(
            response.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            response.text
        );
    }
    app.post(
        "/api/admin/model-providers",
        Some(&admin),
        json!({"kind": "openai", "label": "One"}),
    )
    .await;
    let taken = app
        .post(
            "/api/admin/model-providers",
            Some(&admin),
            json!({"kind": "openai", "label": "One"}),
        )
        .await;
    assert_eq!(
        (taken.status, taken.code()),
        (StatusCode::CONFLICT, "conflict")
    );
}

async fn models_are_registered_priced_and_listed(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let (_, user) = app
        .create_user("u@example.com", "user-password", false)
        .await;
    let provider = app
        .post(
            "/api/admin/model-providers",
            Some(&admin),
            json!({"kind": "litellm", "label": "Proxy", "api_base": "http://127.0.0.1:4000"}),
        )
        .await;
    let provider_id = provider.body["id"].as_i64().unwrap();
    let created = app
        .post(
            "/api/admin/models",
            Some(&admin),
            json!({"provider_id": provider_id, "name": "gpt-5-mini", "display_name": "GPT-5 mini", "supports_reasoning": true,
                   "context_window": 400000, "price_input_per_mtok": 0.25, "price_output_per_mtok": 2.0,
                   "price_cached_input_per_mtok": 0.025, "is_default": true}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["is_default"], true);
    assert_eq!(created.body["supports_tools"], true, "tools default on");
    assert_eq!(created.body["price_output_per_mtok"], 2.0);
    let first = created.body["id"].as_i64().unwrap();

    let second = app
        .post("/api/admin/models", Some(&admin), json!({"provider_id": provider_id, "name": "llama3.1", "enabled": false, "is_default": true, "is_default_title": true}))
        .await;
    assert_eq!(second.status, StatusCode::CREATED);
    let all = app.get("/api/admin/models", Some(&admin)).await;
    let defaults: Vec<&str> = all
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["is_default"] == true)
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(defaults, ["llama3.1"], "one default model");

    // Users see enabled models only.
    let visible = app.get("/api/models", Some(&user)).await;
    let names: Vec<&str> = visible
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gpt-5-mini"]);
    assert_eq!(
        app.get("/api/admin/models", Some(&user)).await.status,
        StatusCode::FORBIDDEN
    );

    let updated = app
        .patch(
            &format!("/api/admin/models/{first}"),
            Some(&admin),
            json!({"enabled": false, "price_input_per_mtok": null}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text);
    assert_eq!(
        (
            updated.body["enabled"].as_bool(),
            updated.body["price_input_per_mtok"].clone()
        ),
        (Some(false), Value::Null)
    );
    assert_eq!(
        updated.body["context_window"], 400000,
        "absent fields are kept"
    );
    assert_eq!(app.get("/api/models", Some(&user)).await.body, json!([]));

    let duplicate = app
        .post(
            "/api/admin/models",
            Some(&admin),
            json!({"provider_id": provider_id, "name": "gpt-5-mini"}),
        )
        .await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT);
    let orphan = app
        .post(
            "/api/admin/models",
            Some(&admin),
            json!({"provider_id": 999999, "name": "x"}),
        )
        .await;
    assert_eq!(
        (orphan.status, orphan.code()),
        (StatusCode::NOT_FOUND, "provider_not_found")
    );
    for body in [
        json!({"provider_id": provider_id, "name": "x", "price_input_per_mtok": -1}),
        json!({"provider_id": provider_id, "name": "x", "context_window": 0}),
        json!({"provider_id": provider_id, "name": ""}),
        json!({"name": "x"}),
    ] {
        let response = app
            .post("/api/admin/models", Some(&admin), body.clone())
            .await;
        assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }

    // Deleting the provider deletes its models.
    app.delete(
        &format!("/api/admin/model-providers/{provider_id}"),
        Some(&admin),
    )
    .await;
    assert_eq!(
        app.get("/api/admin/models", Some(&admin)).await.body,
        json!([])
    );
    assert_eq!(
        app.get(&format!("/api/admin/models/{first}"), Some(&admin))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

async fn environment_creates_a_default_provider(backend: TestBackend) {
    let app = TestApp::with_config(backend, |config| {
        config.models.openai_api_key = Some(domain::secret::Secret::new("sk-from-env-abcd1234"));
    })
    .await;
    let admin = app.admin_token().await;
    let providers = app.get("/api/admin/model-providers", Some(&admin)).await;
    let list = providers.body.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0]["kind"].as_str(), list[0]["is_default"].as_bool()),
        (Some("openai"), Some(true))
    );
    assert_eq!(list[0]["api_key_hint"], "••••1234");
    // A restart does not add a second one.
    app.restart().await.bootstrap().await.unwrap();
    assert_eq!(
        app.get("/api/admin/model-providers", Some(&admin))
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Another OpenAI-compatible server: its models fill the registry in the background.
    let fake = FakeLlm::start().await;
    let app = TestApp::with_config(TestBackend::Sqlite, |config| {
        config.models.openai_api_key = Some(domain::secret::Secret::new("sk-from-env-abcd1234"));
        config.models.openai_base_url = Some(fake.base_url.clone());
    })
    .await;
    let admin = app.admin_token().await;
    let mut names = Vec::new();
    for _ in 0..100 {
        let models = app.get("/api/admin/models", Some(&admin)).await.body;
        names = models
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                format!(
                    "{} {}",
                    m["name"].as_str().unwrap(),
                    m["origin"].as_str().unwrap()
                )
            })
            .collect();
        if !names.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(names, ["fake-embed imported", "fake-gpt imported"]);
}

/// An agent naming a model the registry does not know runs on the default provider (the
/// open registry): the model is listed as seen, its usage is counted unpriced, the run
/// says so once; a disabled model stays refused, and a strict registry refuses the name
/// with the remedy.
async fn the_open_registry_runs_names_it_does_not_know(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let fake = FakeLlm::start().await;
    let provider = app
        .post(
            "/api/admin/model-providers",
            Some(&admin),
            json!({"kind": "openai_compatible", "label": "Fake", "api_base": fake.base_url}),
        )
        .await;
    assert_eq!(provider.status, StatusCode::CREATED, "{}", provider.text);
    let graph = |model: &str| {
        json!({
            "nodes": [
                {"slug": "start", "kind": "start"},
                {"slug": "answer", "kind": "agent", "parameters": {"model": model, "instructions": "Be brief."}},
                {"slug": "end", "kind": "end"}
            ],
            "edges": [{"source": "start", "target": "answer"}, {"source": "answer", "target": "end"}]
        })
    };
    // Validation warns, and says what will happen.
    let checked = app
        .post(
            "/api/workflows/validate",
            Some(&admin),
            json!({"graph": graph("gpt-4.1")}),
        )
        .await;
    assert!(
        checked.text.contains("will run on the default provider"),
        "{}",
        checked.text
    );
    let id = crate::runs::publish(&app, &admin, graph("gpt-4.1")).await;
    for round in 0..2 {
        let run = crate::runs::start(&app, &admin, id, json!("hi")).await;
        assert_eq!(run.body["status"], "completed", "{}", run.text);
        let run_id = run.body["id"].as_str().unwrap();
        let events = app
            .get(&format!("/api/runs/{run_id}/events?after=0"), Some(&admin))
            .await;
        let warned = events.text.contains("was not in the registry");
        assert_eq!(warned, round == 0, "round {round}: {}", events.text);
    }
    let models = app.get("/api/admin/models", Some(&admin)).await;
    let seen = &models.body[0];
    assert_eq!(
        (
            seen["name"].as_str(),
            seen["origin"].as_str(),
            seen["provider_id"].as_i64()
        ),
        (Some("gpt-4.1"), Some("seen"), provider.body["id"].as_i64())
    );
    assert_eq!(seen["price_input_per_mtok"], Value::Null);
    let report = app
        .get("/api/admin/usage?group_by=model", Some(&admin))
        .await;
    let line = &report.body["lines"][0];
    assert_eq!(
        (
            line["key"].as_str(),
            line["calls"].as_i64(),
            line["unpriced_calls"].as_i64()
        ),
        (Some("gpt-4.1"), Some(2), Some(2)),
        "{}",
        report.text
    );
    assert_eq!(line["cost_usd"], Value::Null);

    // A name the caller chose (an agent that lets users pick) is never added.
    let picks = crate::runs::publish(
        &app,
        &admin,
        json!({
            "nodes": [
                {"slug": "start", "kind": "start"},
                {"slug": "answer", "kind": "agent", "parameters": {"model": "gpt-4.1", "model_selection_mode": "user"}},
                {"slug": "end", "kind": "end"}
            ],
            "edges": [{"source": "start", "target": "answer"}, {"source": "answer", "target": "end"}]
        }),
    )
    .await;
    let chosen = app
        .post(
            &format!("/api/workflows/{picks}/runs"),
            Some(&admin),
            json!({"input": "hi", "model": "made-up-model"}),
        )
        .await;
    assert_eq!(chosen.body["status"], "failed", "{}", chosen.text);
    assert_eq!(chosen.body["error"]["code"], "model_not_found");
    assert_eq!(
        app.get("/api/admin/models", Some(&admin))
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1,
        "only the author's model is listed"
    );

    // Disabled by an administrator: refused, with how to enable it.
    let seen_id = seen["id"].as_i64().unwrap();
    app.patch(
        &format!("/api/admin/models/{seen_id}"),
        Some(&admin),
        json!({"enabled": false}),
    )
    .await;
    let refused = crate::runs::start(&app, &admin, id, json!("hi")).await;
    assert_eq!(refused.body["status"], "failed", "{}", refused.text);
    assert_eq!(refused.body["error"]["code"], "model_not_found");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("PATCH /api/admin/models/{seen_id}")),
        "{}",
        refused.text
    );
    drop(app);

    // A strict registry refuses names it does not know and says how to add them.
    let strict = TestApp::with_config(TestBackend::Sqlite, |config| {
        config.models.registry = domain::models::RegistryMode::Strict;
    })
    .await;
    let admin = strict.admin_token().await;
    strict
        .post(
            "/api/admin/model-providers",
            Some(&admin),
            json!({"kind": "openai_compatible", "label": "Fake", "api_base": fake.base_url}),
        )
        .await;
    let id = crate::runs::publish(&strict, &admin, graph("gpt-4.1")).await;
    let refused = crate::runs::start(&strict, &admin, id, json!("hi")).await;
    assert_eq!(refused.body["status"], "failed", "{}", refused.text);
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("switchyard models add gpt-4.1")
            && message.contains("registry = \"open\""),
        "{message}"
    );
    assert_eq!(
        strict.get("/api/admin/models", Some(&admin)).await.body,
        json!([])
    );
}
