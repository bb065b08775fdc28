//! Knowledge bases: stores and documents, JSON and file ingestion (background jobs with
//! retries and takeover), and hybrid search, on both databases, through the API.

use std::time::Duration;

use axum::{
    body::Body,
    http::{Method, Request, StatusCode, header},
};
use serde_json::{Value, json};
use test_support::{
    LOCAL_MODEL, TestApp, TestBackend, TestResponse, backend_tests,
    fake_llm::{FakeLlm, Reply},
};

backend_tests!(
    stores_documents_and_full_text_search,
    hybrid_search_with_an_embedding_model,
    files_ingest_in_background_jobs,
    failed_jobs_retry_and_give_up,
    a_job_left_by_a_dead_worker_is_taken_over,
    workflows_search_ingest_and_cite,
    the_local_model_searches_by_meaning_offline,
    writes_that_lose_a_race_are_refused_cleanly,
);

/// A fake OpenAI-compatible server as a provider (no client retries, so scripted failures
/// reach the job) with an embedding model; returns the fake and the model's id.
async fn embedding_model(app: &TestApp, token: &str) -> (FakeLlm, i64) {
    let fake = FakeLlm::start().await;
    let provider = app
        .post(
            "/api/admin/model-providers",
            Some(token),
            json!({"kind": "openai_compatible", "label": format!("Embeddings {}", fake.base_url), "api_base": fake.base_url, "max_retries": 0}),
        )
        .await;
    assert_eq!(provider.status, StatusCode::CREATED, "{}", provider.text);
    let model = app
        .post(
            "/api/admin/models",
            Some(token),
            json!({"provider_id": provider.body["id"], "name": "fake-embed"}),
        )
        .await;
    assert_eq!(model.status, StatusCode::CREATED, "{}", model.text);
    (fake, model.body["id"].as_i64().unwrap())
}

async fn search(app: &TestApp, token: &str, slug: &str, body: Value) -> TestResponse {
    let response = app
        .post(
            &format!("/api/vector-stores/{slug}/search_json"),
            Some(token),
            body,
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    response
}

fn doc_ids(results: &Value) -> Vec<&str> {
    results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["doc_id"].as_str().unwrap())
        .collect()
}

/// Posts a file as `multipart/form-data` with extra text fields.
pub(crate) async fn upload(
    app: &TestApp,
    token: &str,
    slug: &str,
    filename: &str,
    content: &[u8],
    fields: &[(&str, &str)],
) -> TestResponse {
    let boundary = "switchyard-test-boundary";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/vector-stores/{slug}/files"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .unwrap();
    app.send(request).await
}

/// Polls a job until it is done or failed.
pub(crate) async fn finished_job(app: &TestApp, token: &str, slug: &str, id: i64) -> Value {
    for _ in 0..200 {
        let job = app
            .get(&format!("/api/vector-stores/{slug}/jobs/{id}"), Some(token))
            .await;
        assert_eq!(job.status, StatusCode::OK, "{}", job.text);
        if matches!(job.body["status"].as_str(), Some("done" | "failed")) {
            return job.body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {id} did not finish");
}

async fn stores_documents_and_full_text_search(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let (_, user) = app
        .create_user("reader@example.com", "reader-password", false)
        .await;

    // Stores: validation, conflicts, and administrators only.
    let created = app
        .post(
            "/api/vector-stores",
            Some(&admin),
            json!({"slug": "handbook", "title": "Handbook", "metadata": {"team": "ops"}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["documents_count"], 0);
    assert_eq!(created.body["embedding_model_id"], Value::Null);
    assert_eq!(created.body["chunk_tokens"], 400);
    let again = app
        .post(
            "/api/vector-stores",
            Some(&admin),
            json!({"slug": "handbook"}),
        )
        .await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::CONFLICT, "vector_store_exists")
    );
    for bad in [
        json!({"slug": "Bad Slug"}),
        json!({"slug": "x", "chunk_tokens": 10}),
        json!({"slug": "x", "chunk_tokens": 100, "chunk_overlap": 80}),
        // Found by the fuzzer: an overlap this large overflowed its check.
        json!({"slug": "x", "chunk_tokens": 100, "chunk_overlap": i32::MAX}),
        json!({"slug": "x", "metadata": [1]}),
        json!({"slug": "x", "embedding_model_id": 999}),
    ] {
        let refused = app
            .post("/api/vector-stores", Some(&admin), bad.clone())
            .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            refused.text
        );
        assert!(!refused.code().is_empty());
    }
    let forbidden = app
        .post("/api/vector-stores", Some(&user), json!({"slug": "mine"}))
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get("/api/vector-stores", Some(&user)).await.status,
        StatusCode::FORBIDDEN
    );

    // JSON ingestion, as the seed does it: flattened lines, chunked by entries.
    let ingest = |doc_id: &str, document: Value, metadata: Value| {
        let body = json!({"doc_id": doc_id, "document": document, "metadata": metadata});
        let app = &app;
        let admin = admin.clone();
        async move {
            app.post("/api/vector-stores/handbook/documents", Some(&admin), body)
                .await
        }
    };
    let vpn = ingest(
        "vpn",
        json!({"title": "VPN access", "steps": ["Install the client", "Sign in with your badge"], "owner": "it"}),
        json!({"lang": "en", "year": 2023}),
    )
    .await;
    assert_eq!(vpn.status, StatusCode::CREATED, "{}", vpn.text);
    assert_eq!(vpn.body["doc_id"], "vpn");
    assert_eq!(vpn.body["chunk_count"], 1);
    assert_eq!(vpn.body["metadata"]["line_count"], 4);
    let many: Value = (0..100)
        .map(|i| {
            (
                format!("rule{i:03}"),
                json!(format!("Expense rule {i} about travel")),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into();
    let expenses = ingest("expenses", many, json!({"lang": "en", "year": 2025})).await;
    assert_eq!(
        expenses.body["chunk_count"], 3,
        "windows of 40 entries with 8 repeated"
    );
    let holidays = ingest(
        "holidays",
        json!({"title": "Jours fériés", "text": "Le bureau ferme pendant les congés d'été."}),
        json!({"lang": "fr", "year": 2024}),
    )
    .await;
    assert_eq!(holidays.status, StatusCode::CREATED);
    let bad = app
        .post(
            "/api/vector-stores/handbook/documents",
            Some(&admin),
            json!({"doc_id": "", "document": {}}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Users search the stores their workflows search: none yet, so the store is not theirs.
    let hidden = app
        .post(
            "/api/vector-stores/handbook/search_json",
            Some(&user),
            json!({"query": "badge"}),
        )
        .await;
    assert_eq!(
        (hidden.status, hidden.code()),
        (StatusCode::NOT_FOUND, "vector_store_not_found")
    );
    let detail = app
        .get("/api/vector-stores/handbook/documents/vpn", Some(&user))
        .await;
    assert_eq!(detail.status, StatusCode::NOT_FOUND);
    // Naming the store in a workflow of one's own opens nothing, and such a run is refused.
    let own = json!({"nodes": [{"slug": "start", "kind": "start"},
                               {"slug": "s", "kind": "file_search", "parameters": {"vector_store_slug": "handbook", "query": "badge"}},
                               {"slug": "end", "kind": "end", "parameters": {"output": "input"}}],
                     "edges": [{"source": "start", "target": "s"}, {"source": "s", "target": "end"}]});
    let mine = crate::runs::publish(&app, &user, own).await;
    let still = app
        .post(
            "/api/vector-stores/handbook/search_json",
            Some(&user),
            json!({"query": "badge"}),
        )
        .await;
    assert_eq!(still.status, StatusCode::NOT_FOUND);
    let run = crate::runs::start(&app, &user, mine, json!({"input_as_text": "x"})).await;
    assert_eq!(run.body["status"], "failed", "{}", run.text);
    assert_eq!(run.body["error"]["code"], "forbidden");

    // The ChatKit default workflow searches it: now every user may.
    crate::chatkit::serve(
        &app,
        &admin,
        json!({"nodes": [{"slug": "start", "kind": "start"},
                          {"slug": "agent", "kind": "agent", "parameters": {"tools": [{"type": "file_search", "file_search": {"vector_store_slug": "handbook"}}]}}],
               "edges": [{"source": "start", "target": "agent"}]}),
    )
    .await;

    // Full-text search without a model says so, and ranks by the query's words.
    let found = search(
        &app,
        &user,
        "handbook",
        json!({"query": "badge client install"}),
    )
    .await;
    assert_eq!(found.headers["x-search-mode"], "full_text");
    assert!(
        found.headers["x-search-notice"]
            .to_str()
            .unwrap()
            .contains("no embedding model")
    );
    assert_eq!(doc_ids(&found.body), ["vpn"]);
    let hit = &found.body[0];
    assert_eq!(hit["dense_score"], Value::Null);
    assert!(hit["bm25_score"].as_f64().unwrap() > 0.0);
    assert_eq!(hit["title"], "VPN access");
    assert_eq!(hit["document_metadata"]["lang"], "en");
    assert_eq!(hit["metadata"]["chunk_index"], 0);
    assert!(
        hit["text"]
            .as_str()
            .unwrap()
            .contains("steps[1]: Sign in with your badge")
    );
    // Accents fold, words are matched whole.
    let accents = search(&app, &user, "handbook", json!({"query": "ete conges"})).await;
    assert_eq!(doc_ids(&accents.body), ["holidays"], "{}", accents.text);

    // Filters on document metadata: equality, lists, ranges; and top_k.
    let filtered = search(&app, &user, "handbook", json!({"query": "travel badge bureau", "top_k": 10, "metadata_filters": {"year": {"gte": 2024}}})).await;
    let ids = doc_ids(&filtered.body);
    assert!(
        ids.contains(&"expenses") && ids.contains(&"holidays") && !ids.contains(&"vpn"),
        "{ids:?}"
    );
    let french = search(
        &app,
        &user,
        "handbook",
        json!({"query": "travel badge bureau", "metadata_filters": {"lang": {"in": ["fr"]}}}),
    )
    .await;
    assert_eq!(doc_ids(&french.body), ["holidays"]);
    let none = search(
        &app,
        &user,
        "handbook",
        json!({"query": "travel", "metadata_filters": {"lang": "de"}}),
    )
    .await;
    assert_eq!(none.body, json!([]));
    let two = search(
        &app,
        &user,
        "handbook",
        json!({"query": "expense travel rule", "top_k": 2}),
    )
    .await;
    assert_eq!(doc_ids(&two.body), ["expenses", "expenses"]);

    // Documents, grouped with their best chunks; and search inside one document.
    let docs = app
        .post(
            "/api/vector-stores/handbook/search_documents",
            Some(&user),
            json!({"query": "expense rule travel badge", "chunks_per_document": 2}),
        )
        .await;
    assert_eq!(docs.status, StatusCode::OK, "{}", docs.text);
    assert_eq!(docs.body[0]["doc_id"], "expenses");
    assert_eq!(docs.body[0]["matches"].as_array().unwrap().len(), 2);
    let score: f64 = docs.body[0]["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["score"].as_f64().unwrap())
        .sum();
    assert!(docs.body[0]["score"].as_f64().unwrap() >= score - 1e-9);
    let inside = app
        .post(
            "/api/vector-stores/handbook/documents/expenses/search",
            Some(&user),
            json!({"query": "rule 99"}),
        )
        .await;
    assert_eq!(inside.status, StatusCode::OK, "{}", inside.text);
    assert!(doc_ids(&inside.body).iter().all(|d| *d == "expenses"));
    assert_eq!(
        inside.body[0]["chunk_index"], 2,
        "rule 99 is in the last window"
    );
    let missing = app
        .post(
            "/api/vector-stores/handbook/documents/nope/search",
            Some(&user),
            json!({"query": "x"}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // Bad searches are refused clearly.
    for body in [
        json!({"query": " "}),
        json!({"query": "x", "top_k": 0}),
        json!({"query": "x", "top_k": 51}),
        json!({"query": "x", "ranking": "magic"}),
        json!({"query": "x", "metadata_filters": {"year": {"in": 3}}}),
    ] {
        let refused = app
            .post(
                "/api/vector-stores/handbook/search_json",
                Some(&user),
                body.clone(),
            )
            .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            refused.text
        );
    }
    let unknown = app
        .post(
            "/api/vector-stores/nope/search_json",
            Some(&user),
            json!({"query": "x"}),
        )
        .await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::NOT_FOUND, "vector_store_not_found")
    );

    // Re-ingesting a doc_id replaces it: the old words are gone from the index.
    let replaced = ingest(
        "vpn",
        json!({"title": "VPN access", "steps": ["Use the new portal"]}),
        json!({"lang": "en"}),
    )
    .await;
    assert_eq!(replaced.status, StatusCode::CREATED);
    let old = search(&app, &user, "handbook", json!({"query": "badge"})).await;
    assert_eq!(old.body, json!([]), "{}", old.text);
    let new = search(&app, &user, "handbook", json!({"query": "portal"})).await;
    assert_eq!(doc_ids(&new.body), ["vpn"]);

    // A document with its content and chunks (users may read it), listing, deletion.
    let detail = app
        .get(
            "/api/vector-stores/handbook/documents/expenses",
            Some(&user),
        )
        .await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.text);
    assert_eq!(
        detail.body["document"]["rule000"],
        "Expense rule 0 about travel"
    );
    assert_eq!(detail.body["chunks"].as_array().unwrap().len(), 3);
    assert_eq!(detail.body["chunks"][1]["embedded"], false);
    assert_eq!(detail.body["status"], "ready");
    let listed = app
        .get("/api/vector-stores/handbook/documents", Some(&admin))
        .await;
    assert_eq!(listed.body.as_array().unwrap().len(), 3);
    let store = app.get("/api/vector-stores/handbook", Some(&admin)).await;
    assert_eq!(store.body["documents_count"], 3);
    assert_eq!(
        app.delete(
            "/api/vector-stores/handbook/documents/expenses",
            Some(&user)
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.delete(
            "/api/vector-stores/handbook/documents/expenses",
            Some(&admin)
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete(
            "/api/vector-stores/handbook/documents/expenses",
            Some(&admin)
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let gone = search(&app, &user, "handbook", json!({"query": "expense travel"})).await;
    assert_eq!(gone.body, json!([]));

    // Ingestion creates a missing store; a protected store cannot be deleted.
    let auto = app
        .post(
            "/api/vector-stores/faq/documents",
            Some(&admin),
            json!({"doc_id": "q1", "document": {"q": "Where?"}, "store_title": "FAQ"}),
        )
        .await;
    assert_eq!(auto.status, StatusCode::CREATED, "{}", auto.text);
    assert_eq!(
        app.get("/api/vector-stores/faq", Some(&admin)).await.body["title"],
        "FAQ"
    );
    let protect = app
        .patch(
            "/api/vector-stores/faq",
            Some(&admin),
            json!({"protected": true, "description": "Questions"}),
        )
        .await;
    assert_eq!(protect.status, StatusCode::OK, "{}", protect.text);
    assert_eq!(protect.body["description"], "Questions");
    let refused = app.delete("/api/vector-stores/faq", Some(&admin)).await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "vector_store_protected")
    );
    assert_eq!(
        app.delete("/api/vector-stores/handbook", Some(&admin))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get("/api/vector-stores/handbook", Some(&admin))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let stores = app.get("/api/vector-stores", Some(&admin)).await;
    assert_eq!(stores.body.as_array().unwrap().len(), 1);
}

async fn hybrid_search_with_an_embedding_model(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let (fake, model) = embedding_model(&app, &admin).await;
    let created = app
        .post(
            "/api/vector-stores",
            Some(&admin),
            json!({"slug": "kb", "embedding_model_id": model}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let docs = [
        (
            "solar",
            "Solar panels turn sunlight into electric energy for the house roof",
        ),
        (
            "cake",
            "Chocolate cake recipe with butter sugar eggs and flour baked slowly",
        ),
        (
            "garden",
            "Planting tomatoes in the garden needs sunlight water and patience",
        ),
        (
            "bikes",
            "Repairing bicycle brakes and chains with simple workshop tools",
        ),
    ];
    for (id, text) in docs {
        let done = app
            .post(
                "/api/vector-stores/kb/documents",
                Some(&admin),
                json!({"doc_id": id, "document": {"text": text}}),
            )
            .await;
        assert_eq!(done.status, StatusCode::CREATED, "{}", done.text);
    }
    let store = app.get("/api/vector-stores/kb", Some(&admin)).await;
    assert_eq!(store.body["dimensions"], 64);
    let embedded = app
        .get("/api/vector-stores/kb/documents/cake", Some(&admin))
        .await;
    assert_eq!(embedded.body["chunks"][0]["embedded"], true);

    // Hybrid: both scores on every result; the closest meaning ranks first even with no
    // shared rare word, and the nearest vectors come from the index.
    let found = search(
        &app,
        &admin,
        "kb",
        json!({"query": "electric energy from sunlight", "top_k": 4}),
    )
    .await;
    assert_eq!(found.headers["x-search-mode"], "hybrid");
    assert!(found.headers.get("x-search-notice").is_none());
    let ids = doc_ids(&found.body);
    assert_eq!(ids[0], "solar", "{}", found.text);
    assert_eq!(ids.len(), 4, "every document is a vector candidate");
    for hit in found.body.as_array().unwrap() {
        let dense = hit["dense_score"]
            .as_f64()
            .expect("every result has its similarity");
        assert!((-1.0..=1.0001).contains(&dense));
    }
    let scores: Vec<f64> = found
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    // Dense alone (no shared word at all with "garden"): the vector still finds it.
    let semantic = search(&app, &admin, "kb", json!({"query": "tomatoes patience", "top_k": 1, "ranking": "weighted", "dense_weight": 1.0, "sparse_weight": 0.0})).await;
    assert_eq!(doc_ids(&semantic.body), ["garden"]);
    // The seed's weighted scores: (w_d·(dense+1)/2 + w_s·bm25/max) / (w_d + w_s).
    let weighted = search(
        &app,
        &admin,
        "kb",
        json!({"query": "chocolate cake", "dense_weight": 0.5, "sparse_weight": 0.5}),
    )
    .await;
    let top = &weighted.body[0];
    assert_eq!(top["doc_id"], "cake");
    let expected = (0.5 * (top["dense_score"].as_f64().unwrap() + 1.0) / 2.0 + 0.5 * 1.0) / 1.0;
    assert!(
        (top["score"].as_f64().unwrap() - expected).abs() < 1e-9,
        "{top}"
    );
    // Queries are embedded with the store's model.
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.path == "/v1/embeddings" && r.body["input"] == json!(["chocolate cake"]))
    );

    // The embedding service down: search falls back to full text and says so.
    fake.fail_embeddings(1);
    let degraded = search(&app, &admin, "kb", json!({"query": "bicycle brakes"})).await;
    assert_eq!(degraded.headers["x-search-mode"], "full_text");
    assert!(
        degraded.headers["x-search-notice"]
            .to_str()
            .unwrap()
            .contains("semantic search is unavailable")
    );
    assert_eq!(doc_ids(&degraded.body)[0], "bikes");

    // Another model: the vectors are dropped at once and rebuilt by a job.
    let (_other, second) = embedding_model(&app, &admin).await;
    let changed = app
        .patch(
            "/api/vector-stores/kb",
            Some(&admin),
            json!({"embedding_model_id": second}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    let jobs = app.get("/api/vector-stores/kb/jobs", Some(&admin)).await;
    let job = jobs.body[0].clone();
    assert_eq!(job["kind"], "reembed");
    let job = finished_job(&app, &admin, "kb", job["id"].as_i64().unwrap()).await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(
        (job["done"].clone(), job["total"].clone()),
        (json!(4), json!(4))
    );
    let after = search(
        &app,
        &admin,
        "kb",
        json!({"query": "electric energy from sunlight"}),
    )
    .await;
    assert_eq!(after.headers["x-search-mode"], "hybrid");
    assert_eq!(doc_ids(&after.body)[0], "solar");
    let store = app.get("/api/vector-stores/kb", Some(&admin)).await;
    assert_eq!(
        (
            store.body["embedding_model_id"].as_i64(),
            store.body["dimensions"].as_i64()
        ),
        (Some(second), Some(64))
    );
    // No model: full-text only again.
    let off = app
        .patch(
            "/api/vector-stores/kb",
            Some(&admin),
            json!({"embedding_model_id": null}),
        )
        .await;
    assert_eq!(off.body["dimensions"], Value::Null);
    let plain = search(&app, &admin, "kb", json!({"query": "chocolate"})).await;
    assert_eq!(plain.headers["x-search-mode"], "full_text");
    assert_eq!(doc_ids(&plain.body), ["cake"]);
}

async fn files_ingest_in_background_jobs(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let (_fake, model) = embedding_model(&app, &admin).await;
    app.post("/api/vector-stores", Some(&admin), json!({"slug": "docs", "embedding_model_id": model, "chunk_tokens": 60, "chunk_overlap": 10}))
        .await;

    let mut markdown = String::from("# Installation\n\n");
    for i in 0..20 {
        markdown.push_str(&format!(
            "Step {i} copies the program files into the target folder. "
        ));
    }
    markdown.push_str(
        "\n\n## Network\n\nOpen port 8443 on the firewall. Then restart the gateway service.\n",
    );
    let accepted = upload(
        &app,
        &admin,
        "docs",
        "guide.md",
        markdown.as_bytes(),
        &[
            ("title", "Install guide"),
            ("metadata", r#"{"product": "gateway"}"#),
        ],
    )
    .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.text);
    assert_eq!(accepted.body["document"]["status"], "pending");
    assert_eq!(accepted.body["document"]["doc_id"], "guide.md");
    assert_eq!(accepted.body["job"]["kind"], "ingest");
    let job = finished_job(
        &app,
        &admin,
        "docs",
        accepted.body["job"]["id"].as_i64().unwrap(),
    )
    .await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["doc_id"], "guide.md");
    assert!(job["total"].as_i64().unwrap() > 3);
    assert_eq!(job["done"], job["total"]);
    let doc = app
        .get("/api/vector-stores/docs/documents/guide.md", Some(&admin))
        .await;
    assert_eq!(doc.body["status"], "ready", "{}", doc.text);
    assert_eq!(doc.body["title"], "Install guide");
    assert_eq!(doc.body["mime_type"], "text/markdown");
    let chunks = doc.body["chunks"].as_array().unwrap();
    assert!(chunks.len() > 3);
    assert!(chunks.iter().all(|c| c["embedded"] == true));
    let network = chunks
        .iter()
        .find(|c| c["text"].as_str().unwrap().contains("8443"))
        .unwrap();
    assert!(network["text"].as_str().unwrap().starts_with("## Network"));
    assert_eq!(network["metadata"]["section"], "Installation > Network");
    let found = search(
        &app,
        &admin,
        "docs",
        json!({"query": "firewall port", "metadata_filters": {"product": "gateway"}}),
    )
    .await;
    assert_eq!(
        found.body[0]["chunk_index"], network["chunk_index"],
        "{}",
        found.text
    );
    assert_eq!(found.body[0]["filename"], "guide.md");

    // Uploading the same doc_id again replaces the document and its kept bytes.
    let blobs = || {
        std::fs::read_dir(app.data_dir().join("attachments"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with("knowledge-"))
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(blobs(), 1);
    let again = upload(
        &app,
        &admin,
        "docs",
        "guide.md",
        b"# Installation\n\nRun the installer.",
        &[],
    )
    .await;
    let job = finished_job(
        &app,
        &admin,
        "docs",
        again.body["job"]["id"].as_i64().unwrap(),
    )
    .await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(blobs(), 1, "the replaced file's bytes are gone");
    let doc = app
        .get("/api/vector-stores/docs/documents/guide.md", Some(&admin))
        .await;
    assert_eq!(doc.body["chunks"].as_array().unwrap().len(), 1);
    let docs = app
        .get("/api/vector-stores/docs/documents", Some(&admin))
        .await;
    assert_eq!(docs.body.as_array().unwrap().len(), 1);

    // HTML and CSV, with an explicit doc_id.
    let html = b"<html><head><style>x{}</style></head><body><h1>Prices</h1><p>The premium plan costs &euro;20 &amp; includes support.</p></body></html>";
    let page = upload(
        &app,
        &admin,
        "docs",
        "prices.html",
        html,
        &[("doc_id", "prices")],
    )
    .await;
    assert_eq!(page.status, StatusCode::ACCEPTED, "{}", page.text);
    let csv = b"city,country\nLyon,France\nOsaka,Japan\n";
    let table = upload(&app, &admin, "docs", "cities.csv", csv, &[]).await;
    for response in [&page, &table] {
        let job = finished_job(
            &app,
            &admin,
            "docs",
            response.body["job"]["id"].as_i64().unwrap(),
        )
        .await;
        assert_eq!(job["status"], "done", "{job}");
    }
    let prices = search(
        &app,
        &admin,
        "docs",
        json!({"query": "premium plan support"}),
    )
    .await;
    assert_eq!(prices.body[0]["doc_id"], "prices");
    assert!(
        prices.body[0]["text"]
            .as_str()
            .unwrap()
            .contains("# Prices")
    );
    let cities = search(&app, &admin, "docs", json!({"query": "Osaka"})).await;
    assert_eq!(cities.body[0]["doc_id"], "cities.csv");
    assert!(
        cities.body[0]["text"]
            .as_str()
            .unwrap()
            .contains("row 2.city: Osaka")
    );

    // PDF and Word documents.
    let pdf = upload(
        &app,
        &admin,
        "docs",
        "manual.pdf",
        &minimal_pdf("Warranty covers two years of repairs"),
        &[],
    )
    .await;
    let word = upload(
        &app,
        &admin,
        "docs",
        "policy.docx",
        &minimal_docx(&[
            ("Heading1", "Remote work"),
            ("", "Employees may work from home on Fridays."),
        ]),
        &[],
    )
    .await;
    for response in [&pdf, &word] {
        assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.text);
        let job = finished_job(
            &app,
            &admin,
            "docs",
            response.body["job"]["id"].as_i64().unwrap(),
        )
        .await;
        assert_eq!(job["status"], "done", "{job}");
    }
    let warranty = search(&app, &admin, "docs", json!({"query": "warranty repairs"})).await;
    assert_eq!(
        warranty.body[0]["doc_id"], "manual.pdf",
        "{}",
        warranty.text
    );
    assert!(
        warranty.body[0]["text"]
            .as_str()
            .unwrap()
            .contains("Warranty covers two years")
    );
    let remote = search(&app, &admin, "docs", json!({"query": "home Fridays"})).await;
    assert_eq!(remote.body[0]["doc_id"], "policy.docx");
    assert_eq!(
        remote.body[0]["text"],
        "# Remote work\n\nEmployees may work from home on Fridays."
    );
    assert_eq!(remote.body[0]["metadata"]["section"], "Remote work");

    // Refusals: an unknown type, a broken file (the job fails without retrying), no file.
    let exe = upload(&app, &admin, "docs", "tool.exe", b"MZ", &[]).await;
    assert_eq!(
        (exe.status, exe.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "unsupported_file")
    );
    let broken = upload(&app, &admin, "docs", "broken.json", b"{not json", &[]).await;
    assert_eq!(broken.status, StatusCode::ACCEPTED);
    let job = finished_job(
        &app,
        &admin,
        "docs",
        broken.body["job"]["id"].as_i64().unwrap(),
    )
    .await;
    assert_eq!(
        (job["status"].as_str(), job["attempts"].as_i64()),
        (Some("failed"), Some(1))
    );
    assert!(job["error"].as_str().unwrap().contains("not valid JSON"));
    let doc = app
        .get(
            "/api/vector-stores/docs/documents/broken.json",
            Some(&admin),
        )
        .await;
    assert_eq!(doc.body["status"], "failed");
    let bad_meta = upload(&app, &admin, "docs", "a.txt", b"hi", &[("metadata", "[1]")]).await;
    assert_eq!(
        bad_meta.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        bad_meta.text
    );
    let no_file = app
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/api/vector-stores/docs/files")
                .header(header::AUTHORIZATION, format!("Bearer {admin}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(no_file.status, StatusCode::BAD_REQUEST, "{}", no_file.text);
    let (_, user) = app
        .create_user("u@example.com", "user-password", false)
        .await;
    assert_eq!(
        upload(&app, &user, "docs", "a.txt", b"hi", &[])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
}

async fn failed_jobs_retry_and_give_up(backend: TestBackend) {
    let app = TestApp::with_config(backend, |config| config.knowledge.retry_base_secs = 0).await;
    let admin = app.admin_token().await;
    let (fake, model) = embedding_model(&app, &admin).await;
    app.post(
        "/api/vector-stores",
        Some(&admin),
        json!({"slug": "kb", "embedding_model_id": model}),
    )
    .await;

    // Two failed attempts, then it works: the document is ready after the third.
    fake.fail_embeddings(2);
    let accepted = upload(
        &app,
        &admin,
        "kb",
        "notes.txt",
        b"The quarterly report is due on Friday.",
        &[],
    )
    .await;
    let job = finished_job(
        &app,
        &admin,
        "kb",
        accepted.body["job"]["id"].as_i64().unwrap(),
    )
    .await;
    assert_eq!(
        (job["status"].as_str(), job["attempts"].as_i64()),
        (Some("done"), Some(3)),
        "{job}"
    );
    assert_eq!(job["error"], Value::Null);
    let doc = app
        .get("/api/vector-stores/kb/documents/notes.txt", Some(&admin))
        .await;
    assert_eq!(doc.body["status"], "ready");

    // Always failing: it gives up after four attempts, with the error, and other
    // documents go on.
    fake.fail_embeddings(1000);
    let doomed = upload(
        &app,
        &admin,
        "kb",
        "doomed.txt",
        b"Nothing will embed this.",
        &[],
    )
    .await;
    let job = finished_job(
        &app,
        &admin,
        "kb",
        doomed.body["job"]["id"].as_i64().unwrap(),
    )
    .await;
    assert_eq!(
        (job["status"].as_str(), job["attempts"].as_i64()),
        (Some("failed"), Some(4)),
        "{job}"
    );
    assert!(
        job["error"].as_str().unwrap().contains("embedding"),
        "{job}"
    );
    let doc = app
        .get("/api/vector-stores/kb/documents/doomed.txt", Some(&admin))
        .await;
    assert_eq!(doc.body["status"], "failed");
    assert!(doc.body["error"].as_str().is_some());
    fake.fail_embeddings(0);
    let fine = upload(&app, &admin, "kb", "fine.txt", b"This one embeds.", &[]).await;
    let job = finished_job(&app, &admin, "kb", fine.body["job"]["id"].as_i64().unwrap()).await;
    assert_eq!(job["status"], "done");
    let found = search(&app, &admin, "kb", json!({"query": "quarterly report"})).await;
    assert_eq!(doc_ids(&found.body)[0], "notes.txt");
}

async fn a_job_left_by_a_dead_worker_is_taken_over(backend: TestBackend) {
    // No workers at first: the job stays queued.
    let mut app = TestApp::with_config(backend, |config| config.knowledge.workers = 0).await;
    let admin = app.admin_token().await;
    app.post("/api/vector-stores", Some(&admin), json!({"slug": "kb"}))
        .await;
    let accepted = upload(
        &app,
        &admin,
        "kb",
        "a.md",
        b"# Title\n\nSome words to find.",
        &[],
    )
    .await;
    let id = accepted.body["job"]["id"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let queued = app
        .get(&format!("/api/vector-stores/kb/jobs/{id}"), Some(&admin))
        .await;
    assert_eq!(queued.body["status"], "queued");

    // A worker claims it and dies; its lease ends at once.
    let store = &app.app.services.store;
    let now = chrono::Utc::now();
    let claimed = store
        .claim_knowledge_job("dead-worker", now, Duration::ZERO)
        .await
        .unwrap()
        .expect("the queued job is claimed");
    assert_eq!((claimed.id, claimed.attempts), (id, 1));
    // While the lease lasts, nobody else takes it.
    assert!(
        store
            .claim_knowledge_job("other", now, Duration::from_secs(60))
            .await
            .unwrap()
            .is_none()
    );

    // A restarted replica's workers take the job over and finish it.
    app.workers = Some(
        app.app
            .start_workers_with(domain::knowledge::jobs::KnowledgeSettings {
                workers: 1,
                retry_base_secs: 0,
            }),
    );
    let job = finished_job(&app, &admin, "kb", id).await;
    assert_eq!(
        (job["status"].as_str(), job["attempts"].as_i64()),
        (Some("done"), Some(2)),
        "{job}"
    );
    // The dead worker's late report is ignored.
    let mut late = claimed.clone();
    late.status = domain::knowledge::JobStatus::Failed;
    assert!(!store.update_knowledge_job(&late).await.unwrap());
    let found = search(&app, &admin, "kb", json!({"query": "words"})).await;
    assert_eq!(doc_ids(&found.body), ["a.md"]);

    // A job held for its upload's bytes is not claimed, unless the upload stopped over a
    // minute ago.
    let later = chrono::Utc::now();
    let store_id = app
        .app
        .services
        .store
        .vector_store("kb")
        .await
        .unwrap()
        .unwrap()
        .id;
    let held = domain::knowledge::NewDocument {
        doc_id: "held.txt".into(),
        title: None,
        source: "file",
        filename: Some("held.txt".into()),
        mime_type: Some("text/plain".into()),
        size: Some(1),
        raw_json: None,
        metadata: json!({}),
    };
    let (_, held_job) = store
        .put_document(
            store_id,
            &held,
            domain::knowledge::DocumentStatus::Pending,
            &[],
            None,
            Some(&domain::knowledge::NewJob::ingest(store_id)),
            later,
        )
        .await
        .unwrap();
    assert!(
        store
            .claim_knowledge_job(
                "w",
                later + chrono::Duration::seconds(30),
                Duration::from_secs(60)
            )
            .await
            .unwrap()
            .is_none()
    );
    let stale = store
        .claim_knowledge_job(
            "w",
            later + chrono::Duration::seconds(61),
            Duration::from_secs(60),
        )
        .await
        .unwrap()
        .expect("a job held too long runs");
    assert_eq!(Some(stale.id), held_job);
    assert!(
        store
            .delete_document(stale.document_id.unwrap())
            .await
            .unwrap()
    );
}

async fn workflows_search_ingest_and_cite(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let chat = crate::runs::fake_default_model(&app, &admin, json!({})).await;
    let (_embeddings, model) = embedding_model(&app, &admin).await;
    app.post(
        "/api/vector-stores",
        Some(&admin),
        json!({"slug": "kb", "embedding_model_id": model}),
    )
    .await;
    for (id, title, text) in [
        (
            "solar",
            "Solar guide",
            "Solar panels turn sunlight into electric energy",
        ),
        ("cake", "Baking", "Chocolate cake needs butter and eggs"),
    ] {
        let done = app
            .post(
                "/api/vector-stores/kb/documents",
                Some(&admin),
                json!({"doc_id": id, "document": {"title": title, "text": text}}),
            )
            .await;
        assert_eq!(done.status, StatusCode::CREATED, "{}", done.text);
    }
    let (_, user) = app
        .create_user("member@example.com", "member-password", false)
        .await;
    // Published by the administrator, shared with the member, who runs it.
    let publish = |graph: Value| {
        let (app, admin) = (&app, admin.clone());
        async move {
            let id = crate::runs::publish(app, &admin, graph).await;
            let shared = app
                .post(
                    &format!("/api/workflows/{id}/shares"),
                    Some(&admin),
                    json!({"email": "member@example.com", "permission": "read"}),
                )
                .await;
            assert_eq!(shared.status, StatusCode::OK, "{}", shared.text);
            id
        }
    };

    // A file_search step: its results are the next step's input.
    let search_graph = json!({
        "nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "search", "kind": "file_search", "parameters": {"vector_store_slug": "kb", "top_k": 1}},
            {"slug": "end", "kind": "end", "parameters": {"output": "input"}}
        ],
        "edges": [{"source": "start", "target": "search"}, {"source": "search", "target": "end"}]
    });
    let id = publish(search_graph).await;
    let run = crate::runs::start(
        &app,
        &user,
        id,
        json!({"input_as_text": "electric energy from the sun"}),
    )
    .await;
    assert_eq!(run.body["status"], "completed", "{}", run.text);
    let output = &run.body["output"];
    assert_eq!(output["query"], "electric energy from the sun");
    assert_eq!(output["semantic"], true);
    assert_eq!(output["results"][0]["doc_id"], "solar", "{output}");
    assert_eq!(output["results"][0]["source"], 1);
    assert_eq!(output["sources"][0]["title"], "Solar guide");
    assert!(
        output["text"]
            .as_str()
            .unwrap()
            .starts_with("[1] Solar guide\n")
    );
    // A store that does not exist is the step's error.
    let broken = json!({
        "nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "search", "kind": "file_search", "parameters": {"vector_store_slug": "nope", "query": "x"}},
            {"slug": "end", "kind": "end"}
        ],
        "edges": [{"source": "start", "target": "search"}, {"source": "search", "target": "end"}]
    });
    let id = publish(broken).await;
    let failed = crate::runs::start(&app, &user, id, json!({"input_as_text": "x"})).await;
    assert_eq!(failed.body["status"], "failed");
    assert_eq!(
        failed.body["error"]["code"], "vector_store_not_found",
        "{}",
        failed.text
    );
    // A search step without a store does not validate.
    let invalid = app
        .post("/api/workflows", Some(&admin), json!({"display_name": "Bad", "publish": true, "graph": {
            "nodes": [{"slug": "start", "kind": "start"}, {"slug": "s", "kind": "file_search", "parameters": {"top_k": 0}}],
            "edges": [{"source": "start", "target": "s"}]}}))
        .await;
    assert_eq!(
        invalid.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        invalid.text
    );

    // A json_vector_store step ingests what the workflow computed, as the run's user.
    let ingest_graph = json!({
        "nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "keep", "kind": "json_vector_store", "display_name": "Keep the ticket", "parameters": {
                "vector_store_slug": "kb", "doc_id_expression": "'ticket-7'",
                "document_expression": "{'subject': 'Printer jammed', 'body': input.input_as_text}",
                "metadata_expression": "{'channel': 'chat'}"}},
            {"slug": "end", "kind": "end", "parameters": {"output": "input.ingested"}}
        ],
        "edges": [{"source": "start", "target": "keep"}, {"source": "keep", "target": "end"}]
    });
    let id = publish(ingest_graph).await;
    let run = crate::runs::start(
        &app,
        &user,
        id,
        json!({"input_as_text": "paper stuck in tray two"}),
    )
    .await;
    assert_eq!(run.body["status"], "completed", "{}", run.text);
    assert_eq!(
        run.body["output"],
        json!({"store": "kb", "doc_id": "ticket-7", "chunk_count": 1})
    );
    let stored = app
        .get("/api/vector-stores/kb/documents/ticket-7", Some(&admin))
        .await;
    assert_eq!(stored.body["document"]["body"], "paper stuck in tray two");
    assert_eq!(stored.body["metadata"]["channel"], "chat");
    assert_eq!(stored.body["metadata"]["workflow_step"], "keep");
    assert_eq!(
        stored.body["metadata"]["workflow_step_title"],
        "Keep the ticket"
    );

    // An agent with the knowledge tool, in ChatKit: it searches, answers, and the answer
    // cites the document it used.
    let agent_graph = json!({
        "nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "agent", "kind": "agent", "parameters": {"instructions": "Answer from the knowledge base.",
                "tools": [{"type": "file_search", "file_search": {"vector_store_slug": "kb", "max_num_results": 2}}]}}
        ],
        "edges": [{"source": "start", "target": "agent"}]
    });
    let id = publish(agent_graph).await;
    let chosen = app
        .post(
            "/api/workflows/chatkit",
            Some(&admin),
            json!({"workflow_id": id}),
        )
        .await;
    assert!(chosen.status.is_success(), "{}", chosen.text);
    chat.push(Reply::ToolCalls(vec![(
        "file_search".into(),
        r#"{"query": "solar electric energy"}"#.into(),
    )]));
    chat.push(Reply::Text(
        "Panels turn sunlight into electricity [1].".into(),
    ));
    let created = crate::chatkit::chatkit(
        &app,
        &user,
        json!({"type": "threads.create", "params": {"input": crate::chatkit::message("How do solar panels help?")}}),
    )
    .await;
    let events = crate::chatkit::frames(&created.text);
    let added: Vec<&Value> = events
        .iter()
        .filter(|e| e["update"]["type"] == "assistant_message.content_part.annotation_added")
        .collect();
    assert!(!added.is_empty(), "{}", created.text);
    assert_eq!(added[0]["update"]["annotation"]["source"]["type"], "file");
    assert_eq!(
        added[0]["update"]["annotation"]["source"]["title"],
        "Solar guide"
    );
    let answer = events
        .iter()
        .find(|e| e["type"] == "thread.item.done" && e["item"]["type"] == "assistant_message")
        .expect("an answer");
    let annotations = answer["item"]["content"][0]["annotations"]
        .as_array()
        .unwrap();
    assert_eq!(annotations[0]["source"]["filename"], "solar");
    assert_eq!(annotations[0]["source"]["group"], "kb");
    // The model saw the passages, numbered.
    let second = chat
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/responses") || r.path.ends_with("/chat/completions"))
        .nth(1)
        .expect("a second model call");
    let sent = second.body.to_string();
    assert!(
        sent.contains("Solar panels turn sunlight") && sent.contains("\\\"source\\\":1"),
        "{sent}"
    );
    // Stored, the answer keeps its citations.
    let thread_id = events[0]["thread"]["id"].as_str().unwrap();
    let items = crate::chatkit::chatkit(
        &app,
        &user,
        json!({"type": "items.list", "params": {"thread_id": thread_id, "order": "asc"}}),
    )
    .await;
    let stored_answer = items.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "assistant_message")
        .unwrap()
        .clone();
    assert_eq!(
        stored_answer["content"][0]["annotations"][0]["source"]["title"],
        "Solar guide"
    );
}

/// A one-page PDF showing `text` in Helvetica, with a correct cross-reference table.
fn minimal_pdf(text: &str) -> Vec<u8> {
    let stream = format!("BT /F1 12 Tf 72 720 Td ({text}) Tj ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_string(),
        format!("<< /Length {} >>\nstream\n{stream}\nendstream", stream.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_string(),
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", i + 1).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        pdf.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

/// A .docx with one paragraph per `(style, text)`.
fn minimal_docx(paragraphs: &[(&str, &str)]) -> Vec<u8> {
    use std::io::Write;
    let mut body = String::new();
    for (style, text) in paragraphs {
        let props = if style.is_empty() {
            String::new()
        } else {
            format!("<w:pPr><w:pStyle w:val=\"{style}\"/></w:pPr>")
        };
        body.push_str(&format!("<w:p>{props}<w:r><w:t>{text}</w:t></w:r></w:p>"));
    }
    let document = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?><w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><w:body>{body}</w:body></w:document>"
    );
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let options = zip::write::SimpleFileOptions::default();
    zip.start_file("[Content_Types].xml", options).unwrap();
    zip.write_all(br#"<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>"#).unwrap();
    zip.start_file("word/document.xml", options).unwrap();
    zip.write_all(document.as_bytes()).unwrap();
    zip.finish().unwrap();
    out.into_inner()
}

/// The real all-MiniLM-L6-v2 in the server's models folder: registered at start under a
/// `local` provider, it embeds a store's documents with no API key, and a question finds
/// the document that answers it although they share no word.
async fn the_local_model_searches_by_meaning_offline(backend: TestBackend) {
    let Some(models) = test_support::local_models_dir() else {
        return;
    };
    let app = TestApp::with_config(backend, |config| config.models.local_dir = Some(models)).await;
    let admin = app.admin_token().await;
    let providers = app.get("/api/admin/model-providers", Some(&admin)).await;
    let local: Vec<&Value> = providers
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "local")
        .collect();
    assert_eq!(local.len(), 1, "{}", providers.text);
    assert_eq!(local[0]["api_base"], "local");
    let listed = app.get("/api/admin/models", Some(&admin)).await;
    let model = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == LOCAL_MODEL)
        .unwrap_or_else(|| panic!("the local model was imported: {}", listed.text))
        .clone();
    let probe = app
        .post(
            &format!("/api/admin/model-providers/{}/test", local[0]["id"]),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(probe.body["status"], "ok", "{}", probe.text);
    // A local provider takes no address or key: its models are the server's folder.
    let refused = app
        .post(
            "/api/admin/model-providers",
            Some(&admin),
            json!({"kind": "local", "label": "Elsewhere", "api_base": "http://127.0.0.1:1"}),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text
    );

    let created = app
        .post(
            "/api/vector-stores",
            Some(&admin),
            json!({"slug": "help", "title": "Help centre", "embedding_model_id": model["id"]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let docs = [
        (
            "account",
            "To change the secret you sign in with, open Settings, choose Security and follow the e-mailed link.",
        ),
        (
            "shipping",
            "Parcels leave our warehouse within two working days and arrive by courier.",
        ),
        (
            "leave",
            "Staff receive twenty-five days of paid holiday each year, plus public holidays.",
        ),
        (
            "kitchen",
            "Whisk two eggs with sugar, fold in the flour and bake for forty minutes.",
        ),
    ];
    for (id, text) in docs {
        let done = app
            .post(
                "/api/vector-stores/help/documents",
                Some(&admin),
                json!({"doc_id": id, "document": {"text": text}}),
            )
            .await;
        assert_eq!(done.status, StatusCode::CREATED, "{}", done.text);
    }
    let store = app.get("/api/vector-stores/help", Some(&admin)).await;
    assert_eq!(store.body["dimensions"], 384, "{}", store.text);
    // Chunks fit what the model reads (256 word pieces).
    assert_eq!(store.body["chunk_tokens"], 200);

    for (question, expected) in [
        ("I forgot my password and cannot log in", "account"),
        ("when will my order be delivered?", "shipping"),
        ("how many vacation days do employees get", "leave"),
        ("cake recipe", "kitchen"),
    ] {
        let found = search(&app, &admin, "help", json!({"query": question, "top_k": 4})).await;
        assert_eq!(found.headers["x-search-mode"], "hybrid");
        assert_eq!(
            doc_ids(&found.body)[0],
            expected,
            "{question}: {}",
            found.text
        );
        let hits = found.body.as_array().unwrap();
        let best = hits[0]["dense_score"].as_f64().unwrap();
        let rest = hits[1..]
            .iter()
            .map(|h| h["dense_score"].as_f64().unwrap())
            .fold(f64::MIN, f64::max);
        assert!(best > rest + 0.1, "{question}: {best} vs {rest}");
    }
    // Usage is recorded against the local model, at no cost.
    let usage = app
        .get("/api/admin/usage?group_by=model", Some(&admin))
        .await;
    assert!(usage.text.contains(LOCAL_MODEL), "{}", usage.text);
}

/// Vectors made by a store's previous model are refused, a superseded job stops writing,
/// and concurrent writes of one document end in 201 or 409, never a 500.
async fn writes_that_lose_a_race_are_refused_cleanly(backend: TestBackend) {
    let app = TestApp::with_config(backend, |config| config.knowledge.workers = 0).await;
    let admin = app.admin_token().await;
    let (_first_fake, first) = embedding_model(&app, &admin).await;
    let (_second_fake, second) = embedding_model(&app, &admin).await;
    let created = app
        .post(
            "/api/vector-stores",
            Some(&admin),
            json!({"slug": "kb", "embedding_model_id": first}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let store = &app.app.services.store;
    let store_id = store.vector_store("kb").await.unwrap().unwrap().id;
    let doc = |id: &str| domain::knowledge::NewDocument {
        doc_id: id.into(),
        title: None,
        source: "json",
        filename: None,
        mime_type: None,
        size: None,
        raw_json: None,
        metadata: json!({}),
    };
    let chunks = vec![domain::knowledge::NewChunk {
        index: 0,
        text: "embedded by the first model".into(),
        metadata: json!({}),
        embedding: Some(vec![0.125; 64]),
    }];
    let now = chrono::Utc::now();
    store
        .put_document(
            store_id,
            &doc("a"),
            domain::knowledge::DocumentStatus::Ready,
            &chunks,
            Some(first),
            None,
            now,
        )
        .await
        .expect("vectors of the store's model are taken");

    // The model changes while another write's vectors (of the first model) are on the way.
    let changed = app
        .patch(
            "/api/vector-stores/kb",
            Some(&admin),
            json!({"embedding_model_id": second}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    let late = store
        .put_document(
            store_id,
            &doc("b"),
            domain::knowledge::DocumentStatus::Ready,
            &chunks,
            Some(first),
            None,
            now,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&late, domain::store::StoreError::Conflict { constraint } if constraint == "vector_model"),
        "{late:?}"
    );
    let pending = store.chunks_without_vectors(store_id, 0, 10).await.unwrap();
    assert_eq!(pending.len(), 1, "the first model's vectors were dropped");
    let stale = store
        .set_chunk_vectors(store_id, &[(pending[0].0, vec![0.5; 64])], first)
        .await
        .unwrap_err();
    assert!(
        matches!(&stale, domain::store::StoreError::Conflict { constraint } if constraint == "vector_model"),
        "{stale:?}"
    );
    let documents = app
        .get("/api/vector-stores/kb/documents", Some(&admin))
        .await;
    assert_eq!(
        documents.body.as_array().unwrap().len(),
        1,
        "{}",
        documents.text
    );

    // A re-embedding job superseded by another model change stops writing.
    let claimed = store
        .claim_knowledge_job("w1", chrono::Utc::now(), Duration::from_secs(60))
        .await
        .unwrap()
        .expect("the re-embedding job is claimed");
    assert_eq!(claimed.kind, domain::knowledge::JobKind::Reembed);
    let changed = app
        .patch(
            "/api/vector-stores/kb",
            Some(&admin),
            json!({"embedding_model_id": first}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert!(
        !store.update_knowledge_job(&claimed).await.unwrap(),
        "a superseded job's progress is refused"
    );
    let jobs = app.get("/api/vector-stores/kb/jobs", Some(&admin)).await;
    let superseded = jobs
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"].as_i64() == Some(claimed.id))
        .unwrap()
        .clone();
    assert_eq!(superseded["status"], "failed", "{superseded}");

    // Lists of ids longer than either database's parameter limit are one parameter.
    let document_id = store.document(store_id, "a").await.unwrap().unwrap().id;
    let mut many: Vec<i64> = (1_000_000..1_070_000).collect();
    many.push(document_id);
    let text = store
        .text_search(store_id, &["model".to_string()], 10, Some(&many))
        .await
        .unwrap();
    assert_eq!(text.len(), 1);
    let chunk_id = text[0].0;
    let dense = store
        .dense_search(store_id, 64, &[0.125; 64], 10, Some(&many))
        .await
        .unwrap();
    assert!(dense.len() <= 1, "{dense:?}");
    let mut chunk_ids: Vec<i64> = (1_000_000..1_070_000).collect();
    chunk_ids.push(chunk_id);
    assert_eq!(store.chunk_hits(&chunk_ids).await.unwrap().len(), 1);
    assert!(
        store
            .dense_scores(64, &[0.125; 64], &chunk_ids)
            .await
            .unwrap()
            .len()
            <= 1
    );

    // Writers of one document at the same moment: each is stored or told to send again.
    let app = std::sync::Arc::new(app);
    let writers: Vec<_> = (0..6)
        .map(|n| {
            let (app, admin) = (app.clone(), admin.clone());
            tokio::spawn(async move {
                app.post(
                    "/api/vector-stores/kb/documents",
                    Some(&admin),
                    json!({"doc_id": "same", "document": {"text": format!("version {n}")}}),
                )
                .await
            })
        })
        .collect();
    let mut stored = 0;
    for writer in writers {
        let response = writer.await.unwrap();
        match response.status {
            StatusCode::CREATED => stored += 1,
            StatusCode::CONFLICT => {
                assert_eq!(response.code(), "write_conflict", "{}", response.text)
            }
            other => panic!("{other}: {}", response.text),
        }
    }
    assert!(stored >= 1);
    let one = app
        .get("/api/vector-stores/kb/documents/same", Some(&admin))
        .await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.text);
}

/// The services themselves keep knowledge bases to administrators (and reading a
/// document to those who may search its store), whatever channel calls them.
#[tokio::test]
async fn the_knowledge_services_check_who_asks() {
    use domain::knowledge::{self, KnowledgeError, search};
    let h = test_support::steps::StepHarness::new().await;
    let (services, user, admin) = (&h.services, &h.user, &h.admin);
    assert!(matches!(
        knowledge::list_stores(services, user).await,
        Err(KnowledgeError::Forbidden)
    ));
    assert!(knowledge::list_stores(services, admin).await.is_ok());
    for result in [
        knowledge::get_store(services, user, "handbook")
            .await
            .map(|_| ()),
        knowledge::list_documents(services, user, "handbook")
            .await
            .map(|_| ()),
        knowledge::list_jobs(services, user, "handbook")
            .await
            .map(|_| ()),
    ] {
        assert!(
            matches!(result, Err(KnowledgeError::Forbidden)),
            "{result:?}"
        );
    }
    // A store the user may not search is, for them, not there.
    let req = search::SearchRequest::new("refunds", 5);
    let searched = search::search_chunks(services, user, "handbook", &req, None).await;
    assert!(
        matches!(searched, Err(KnowledgeError::StoreNotFound(_))),
        "{:?}",
        searched.map(|o| o.results.len())
    );
    let read = knowledge::get_document(services, user, "handbook", "doc").await;
    assert!(matches!(read, Err(KnowledgeError::StoreNotFound(_))));
}
