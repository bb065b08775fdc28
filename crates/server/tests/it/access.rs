//! Access rules live in the services: every administrators' service refuses a regular
//! user and an embedded session's end user (even one acting through an administrator's
//! session) when called directly, without the router's extractors, as a new channel
//! (LTI, telephony, a worker) would call it.

use chrono::Utc;
use domain::{
    Principal,
    auth::{api_keys, throttle},
    chat::{self, appearance, sessions},
    error::{DomainError, ErrorKind},
    mcp::{self, server as mcp_server},
    models::{self, titles, usage},
    users::{self, CreateUser, UpdateUser},
    widgets::{self, NewWidget},
};
use serde_json::json;
use test_support::{TestApp, TestBackend};

/// Fails unless the call was refused as forbidden.
macro_rules! refused {
    ($who:expr, $call:expr) => {
        match $call.await {
            Ok(_) => panic!("{} was let through: {}", $who, stringify!($call)),
            Err(err) => assert_eq!(
                err.kind(),
                ErrorKind::Forbidden,
                "{}: {} answered {err}",
                $who,
                stringify!($call)
            ),
        }
    };
}

#[tokio::test]
async fn administrators_services_check_who_acts() {
    let app = TestApp::new(TestBackend::Sqlite).await;
    let services = &app.app.services;
    let store = &services.store;
    let admin = store.user_by_id(1).await.unwrap().unwrap();
    assert!(admin.is_admin);
    let (user_id, _) = app
        .create_user("user@example.com", "user-password-1", false)
        .await;
    let user = store.user_by_id(user_id).await.unwrap().unwrap();
    let session = sessions::ChatSession {
        id: "cksess_1".into(),
        created_by: admin.id,
        workflow_id: 1,
        version_id: None,
        end_user: "visitor".into(),
        state_variables: None,
        max_requests_per_minute: None,
        expires_at: Utc::now() + chrono::Duration::minutes(5),
        cancelled_at: None,
        created_at: Utc::now(),
    };
    let administrator = Principal::user(admin.clone());
    let others = [
        ("a regular user", Principal::user(user.clone())),
        (
            "an end user through an administrator's session",
            Principal {
                user: admin.clone(),
                session: Some(session),
            },
        ),
    ];
    let widget = || NewWidget {
        slug: "card".into(),
        title: None,
        description: None,
        definition: json!({"type": "Card", "children": []}),
        data_schema: None,
    };
    for (who, actor) in &others {
        refused!(who, models::list_providers(services, actor));
        refused!(
            who,
            models::create_provider(services, actor, Default::default())
        );
        refused!(who, models::list_models(services, actor));
        refused!(who, models::get_model(services, actor, 1));
        refused!(who, models::test_provider(services, actor, 1));
        refused!(who, models::import_from_provider(services, actor, 1));
        refused!(who, titles::settings(services, actor));
        refused!(who, titles::set_prompt(services, actor, "Name it"));
        refused!(who, titles::set_enabled(services, actor, false));
        refused!(
            who,
            usage::summary(
                services,
                actor,
                Utc::now() - chrono::Duration::days(1),
                Utc::now(),
                usage::GroupBy::Model
            )
        );
        refused!(who, mcp::list_servers(services, actor));
        refused!(
            who,
            mcp::create_server(services, actor, Default::default(), false)
        );
        refused!(who, mcp::get_server(services, actor, 1));
        refused!(who, mcp::delete_server(services, actor, 1));
        refused!(
            who,
            mcp::probe_config(services, actor, None, Default::default())
        );
        refused!(
            who,
            mcp::oauth::start(services, actor, 1, "http://127.0.0.1/cb", None)
        );
        refused!(who, mcp_server::list_exposed(services, actor));
        refused!(who, mcp_server::expose(services, actor, 1, None, None));
        refused!(who, api_keys::list(services, actor));
        refused!(who, api_keys::create(services, actor, "mine"));
        refused!(who, api_keys::revoke(services, actor, 1));
        refused!(who, throttle::list(services, actor));
        refused!(who, throttle::clear(services, actor, None, None));
        refused!(who, users::list(services, actor));
        refused!(
            who,
            users::create(
                services,
                actor,
                CreateUser {
                    email: "new@example.com".into(),
                    password: "a-long-password".into(),
                    display_name: None,
                    is_admin: true,
                }
            )
        );
        refused!(who, users::get(services, actor, admin.id));
        refused!(who, users::delete(services, actor, admin.id));
        refused!(
            who,
            users::update(
                services,
                actor,
                user.id,
                UpdateUser {
                    is_admin: Some(true),
                    ..UpdateUser::default()
                }
            )
        );
        refused!(who, widgets::list(services, actor));
        refused!(who, widgets::get(services, actor, "card"));
        refused!(who, widgets::create(services, actor, widget()));
        refused!(who, widgets::delete(services, actor, "card"));
        refused!(who, chat::list_feedback(services, actor, None, 10));
        refused!(who, appearance::global(services, actor));
        refused!(
            who,
            appearance::set_global(services, actor, appearance::Change::Replace(Box::default()))
        );
        // Sessions are created by administrators only (a 422 that says how).
        let created = sessions::create(
            services,
            actor,
            sessions::NewSession {
                workflow_id: 1,
                version: None,
                end_user: "visitor".into(),
                state_variables: None,
                expires_after: None,
                max_requests_per_minute: None,
            },
        )
        .await;
        assert!(created.is_err(), "{who} created a session");
    }

    // A user may read and rename themself, nothing more.
    let me = &others[0].1;
    assert_eq!(
        users::get(services, me, user.id).await.unwrap().email,
        "user@example.com"
    );
    let renamed = users::update(
        services,
        me,
        user.id,
        UpdateUser {
            display_name: Some(Some("Me".into())),
            ..UpdateUser::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(renamed.display_name.as_deref(), Some("Me"));

    // The administrator is let through by the same services.
    assert!(users::list(services, &administrator).await.unwrap().len() >= 2);
    let (key, _) = api_keys::create(services, &administrator, "ci")
        .await
        .unwrap();
    api_keys::revoke(services, &administrator, key.id)
        .await
        .unwrap();
    widgets::create(services, &administrator, widget())
        .await
        .unwrap();
    assert_eq!(
        widgets::list(services, &administrator).await.unwrap().len(),
        widgets::summaries(services).await.unwrap().len()
    );
    titles::set_enabled(services, &administrator, false)
        .await
        .unwrap();
    assert!(!titles::settings(services, &administrator).await.unwrap().1);
}
