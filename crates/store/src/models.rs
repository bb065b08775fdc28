//! `ModelStore` on both backends: providers (secrets already encrypted by the domain) and models.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    models::{
        ApiStyle, Capabilities, Model, ModelOrigin, Pricing, Provider, ProviderKind, Timeouts,
    },
    store::{DefaultModel, ModelRecord, ModelStore, ProviderRecord, StoreError, StoreResult},
};
use sqlx::types::Json;

use crate::{Backend, Db, cache::Caches, store_error, stored_time, with_pool, with_writer};

macro_rules! provider_columns {
    () => {
        "id, kind, label, api_base, api_style, api_key_encrypted, api_key_hint, extra_headers_encrypted,
         extra_header_names, connect_timeout_secs, first_token_timeout_secs, idle_timeout_secs,
         request_timeout_secs, max_retries, is_default, created_at, updated_at"
    };
}

macro_rules! model_columns {
    () => {
        "id, provider_id, name, display_name, description, supports_reasoning, supports_vision, supports_tools,
         supports_structured_output, supports_audio, context_window, max_output_tokens, price_input_per_mtok,
         price_output_per_mtok, price_cached_input_per_mtok, enabled, is_default, is_default_title,
         origin, created_at, updated_at"
    };
}

/// Serialises default changes on PostgreSQL.
const PG_DEFAULTS_LOCK: i64 = 0x5357_5944_4d44_4546;

#[derive(sqlx::FromRow)]
struct ProviderRow {
    id: i64,
    kind: String,
    label: String,
    api_base: String,
    api_style: String,
    api_key_encrypted: Option<String>,
    api_key_hint: Option<String>,
    extra_headers_encrypted: Option<String>,
    extra_header_names: Json<Vec<String>>,
    connect_timeout_secs: i64,
    first_token_timeout_secs: i64,
    idle_timeout_secs: i64,
    request_timeout_secs: i64,
    max_retries: i64,
    is_default: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn secs(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl TryFrom<ProviderRow> for Provider {
    type Error = StoreError;

    fn try_from(row: ProviderRow) -> Result<Provider, StoreError> {
        let kind = ProviderKind::parse(&row.kind)
            .ok_or_else(|| StoreError::Other(format!("unknown provider kind `{}`", row.kind)))?;
        let api_style = ApiStyle::parse(&row.api_style)
            .ok_or_else(|| StoreError::Other(format!("unknown API style `{}`", row.api_style)))?;
        Ok(Provider {
            id: row.id,
            kind,
            label: row.label,
            api_base: row.api_base,
            api_style,
            api_key_encrypted: row.api_key_encrypted,
            api_key_hint: row.api_key_hint,
            extra_headers_encrypted: row.extra_headers_encrypted,
            extra_header_names: row.extra_header_names.0,
            timeouts: Timeouts {
                connect_secs: secs(row.connect_timeout_secs),
                first_token_secs: secs(row.first_token_timeout_secs),
                idle_secs: secs(row.idle_timeout_secs),
                request_secs: secs(row.request_timeout_secs),
            },
            max_retries: u32::try_from(row.max_retries).unwrap_or(0),
            is_default: row.is_default,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ModelRow {
    id: i64,
    provider_id: i64,
    name: String,
    display_name: Option<String>,
    description: Option<String>,
    supports_reasoning: bool,
    supports_vision: bool,
    supports_tools: bool,
    supports_structured_output: bool,
    supports_audio: bool,
    context_window: Option<i64>,
    max_output_tokens: Option<i64>,
    price_input_per_mtok: Option<f64>,
    price_output_per_mtok: Option<f64>,
    price_cached_input_per_mtok: Option<f64>,
    enabled: bool,
    is_default: bool,
    is_default_title: bool,
    origin: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<ModelRow> for Model {
    fn from(row: ModelRow) -> Model {
        Model {
            id: row.id,
            provider_id: row.provider_id,
            name: row.name,
            display_name: row.display_name,
            description: row.description,
            capabilities: Capabilities {
                reasoning: row.supports_reasoning,
                vision: row.supports_vision,
                tools: row.supports_tools,
                structured_output: row.supports_structured_output,
                audio: row.supports_audio,
            },
            context_window: row.context_window,
            max_output_tokens: row.max_output_tokens,
            pricing: Pricing {
                input_per_mtok: row.price_input_per_mtok,
                output_per_mtok: row.price_output_per_mtok,
                cached_input_per_mtok: row.price_cached_input_per_mtok,
            },
            enabled: row.enabled,
            is_default: row.is_default,
            is_default_title: row.is_default_title,
            origin: ModelOrigin::parse(&row.origin).unwrap_or(ModelOrigin::Added),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

fn i64_of(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[async_trait]
impl ModelStore for Db {
    async fn insert_provider(
        &self,
        r: &ProviderRecord,
        now: DateTime<Utc>,
    ) -> StoreResult<Provider> {
        let _cleared = self.caches.after(Caches::models_changed);
        let sql = concat!(
            "INSERT INTO model_providers (kind, label, api_base, api_style, api_key_encrypted, api_key_hint,
                extra_headers_encrypted, extra_header_names, connect_timeout_secs, first_token_timeout_secs,
                idle_timeout_secs, request_timeout_secs, max_retries, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)
             RETURNING ",
            provider_columns!()
        );
        let row: ProviderRow = with_writer!(self, pool => {
            sqlx::query_as(sql)
                .bind(r.kind.as_str())
                .bind(&r.label)
                .bind(&r.api_base)
                .bind(r.api_style.as_str())
                .bind(&r.api_key_encrypted)
                .bind(&r.api_key_hint)
                .bind(&r.extra_headers_encrypted)
                .bind(Json(&r.extra_header_names))
                .bind(i64_of(r.timeouts.connect_secs))
                .bind(i64_of(r.timeouts.first_token_secs))
                .bind(i64_of(r.timeouts.idle_secs))
                .bind(i64_of(r.timeouts.request_secs))
                .bind(i64::from(r.max_retries))
                .bind(stored_time(now))
                .fetch_one(pool)
                .await
        })
        .map_err(store_error)?;
        row.try_into()
    }

    async fn providers(&self) -> StoreResult<Vec<Provider>> {
        let sql = concat!(
            "SELECT ",
            provider_columns!(),
            " FROM model_providers ORDER BY LOWER(label), id"
        );
        let rows: Vec<ProviderRow> =
            with_pool!(self, pool => sqlx::query_as(sql).fetch_all(pool).await)
                .map_err(store_error)?;
        rows.into_iter().map(Provider::try_from).collect()
    }

    async fn provider(&self, id: i64) -> StoreResult<Option<Provider>> {
        self.caches
            .providers
            .get_or(id, async {
                let sql = concat!(
                    "SELECT ",
                    provider_columns!(),
                    " FROM model_providers WHERE id = $1"
                );
                let row: Option<ProviderRow> =
                with_pool!(self, pool => sqlx::query_as(sql).bind(id).fetch_optional(pool).await)
                    .map_err(store_error)?;
                row.map(Provider::try_from).transpose()
            })
            .await
    }

    async fn update_provider(
        &self,
        id: i64,
        r: &ProviderRecord,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Provider>> {
        let _cleared = self.caches.after(Caches::models_changed);
        let sql = concat!(
            "UPDATE model_providers SET label = $2, api_base = $3, api_style = $4, api_key_encrypted = $5,
                api_key_hint = $6, extra_headers_encrypted = $7, extra_header_names = $8, connect_timeout_secs = $9,
                first_token_timeout_secs = $10, idle_timeout_secs = $11, request_timeout_secs = $12,
                max_retries = $13, updated_at = $14
             WHERE id = $1 RETURNING ",
            provider_columns!()
        );
        let row: Option<ProviderRow> = with_writer!(self, pool => {
            sqlx::query_as(sql)
                .bind(id)
                .bind(&r.label)
                .bind(&r.api_base)
                .bind(r.api_style.as_str())
                .bind(&r.api_key_encrypted)
                .bind(&r.api_key_hint)
                .bind(&r.extra_headers_encrypted)
                .bind(Json(&r.extra_header_names))
                .bind(i64_of(r.timeouts.connect_secs))
                .bind(i64_of(r.timeouts.first_token_secs))
                .bind(i64_of(r.timeouts.idle_secs))
                .bind(i64_of(r.timeouts.request_secs))
                .bind(i64::from(r.max_retries))
                .bind(stored_time(now))
                .fetch_optional(pool)
                .await
        })
        .map_err(store_error)?;
        row.map(Provider::try_from).transpose()
    }

    async fn delete_provider(&self, id: i64) -> StoreResult<bool> {
        let _cleared = self.caches.after(Caches::models_changed);
        let n = with_writer!(self, pool => {
            sqlx::query("DELETE FROM model_providers WHERE id = $1").bind(id).execute(pool).await.map(|d| d.rows_affected())
        })
        .map_err(store_error)?;
        Ok(n == 1)
    }

    async fn set_default_provider(&self, id: Option<i64>, now: DateTime<Utc>) -> StoreResult<()> {
        let _cleared = self.caches.after(Caches::models_changed);
        let backend = self.backend();
        with_writer!(self, pool => {
            async {
                let mut tx = pool.begin().await?;
                if backend == Backend::Postgres {
                    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(PG_DEFAULTS_LOCK).execute(&mut *tx).await?;
                }
                sqlx::query("UPDATE model_providers SET is_default = FALSE WHERE is_default")
                    .execute(&mut *tx)
                    .await?;
                if let Some(id) = id {
                    sqlx::query("UPDATE model_providers SET is_default = TRUE, updated_at = $2 WHERE id = $1")
                        .bind(id)
                        .bind(stored_time(now))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await
            }
            .await
        })
        .map_err(store_error)
    }

    async fn insert_model(&self, r: &ModelRecord, now: DateTime<Utc>) -> StoreResult<Model> {
        let _cleared = self.caches.after(Caches::models_changed);
        let sql = concat!(
            "INSERT INTO models (provider_id, name, display_name, description, supports_reasoning, supports_vision,
                supports_tools, supports_structured_output, supports_audio, context_window, max_output_tokens,
                price_input_per_mtok, price_output_per_mtok, price_cached_input_per_mtok, enabled, origin, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17)
             RETURNING ",
            model_columns!()
        );
        let row: ModelRow = with_writer!(self, pool => {
            sqlx::query_as(sql)
                .bind(r.provider_id)
                .bind(&r.name)
                .bind(&r.display_name)
                .bind(&r.description)
                .bind(r.capabilities.reasoning)
                .bind(r.capabilities.vision)
                .bind(r.capabilities.tools)
                .bind(r.capabilities.structured_output)
                .bind(r.capabilities.audio)
                .bind(r.context_window)
                .bind(r.max_output_tokens)
                .bind(r.pricing.input_per_mtok)
                .bind(r.pricing.output_per_mtok)
                .bind(r.pricing.cached_input_per_mtok)
                .bind(r.enabled)
                .bind(r.origin.as_str())
                .bind(stored_time(now))
                .fetch_one(pool)
                .await
        })
        .map_err(store_error)?;
        Ok(row.into())
    }

    async fn models(
        &self,
        provider_id: Option<i64>,
        enabled_only: bool,
    ) -> StoreResult<Vec<Model>> {
        self.caches
            .models
            .get_or((provider_id, enabled_only), async {
                let sql = concat!(
                    "SELECT ",
                    model_columns!(),
                    " FROM models WHERE ($1 IS NULL OR provider_id = $1) AND (enabled OR NOT $2)
                 ORDER BY provider_id, LOWER(name), id"
                );
                let rows: Vec<ModelRow> = with_pool!(self, pool => {
                    sqlx::query_as(sql).bind(provider_id).bind(enabled_only).fetch_all(pool).await
                })
                .map_err(store_error)?;
                Ok(rows.into_iter().map(Model::from).collect())
            })
            .await
    }

    async fn model(&self, id: i64) -> StoreResult<Option<Model>> {
        let sql = concat!("SELECT ", model_columns!(), " FROM models WHERE id = $1");
        let row: Option<ModelRow> =
            with_pool!(self, pool => sqlx::query_as(sql).bind(id).fetch_optional(pool).await)
                .map_err(store_error)?;
        Ok(row.map(Model::from))
    }

    async fn update_model(
        &self,
        id: i64,
        r: &ModelRecord,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Model>> {
        let _cleared = self.caches.after(Caches::models_changed);
        let sql = concat!(
            "UPDATE models SET provider_id = $2, name = $3, display_name = $4, description = $5,
                supports_reasoning = $6, supports_vision = $7, supports_tools = $8, supports_structured_output = $9,
                supports_audio = $10, context_window = $11, max_output_tokens = $12, price_input_per_mtok = $13,
                price_output_per_mtok = $14, price_cached_input_per_mtok = $15, enabled = $16, updated_at = $17
             WHERE id = $1 RETURNING ",
            model_columns!()
        );
        let row: Option<ModelRow> = with_writer!(self, pool => {
            sqlx::query_as(sql)
                .bind(id)
                .bind(r.provider_id)
                .bind(&r.name)
                .bind(&r.display_name)
                .bind(&r.description)
                .bind(r.capabilities.reasoning)
                .bind(r.capabilities.vision)
                .bind(r.capabilities.tools)
                .bind(r.capabilities.structured_output)
                .bind(r.capabilities.audio)
                .bind(r.context_window)
                .bind(r.max_output_tokens)
                .bind(r.pricing.input_per_mtok)
                .bind(r.pricing.output_per_mtok)
                .bind(r.pricing.cached_input_per_mtok)
                .bind(r.enabled)
                .bind(stored_time(now))
                .fetch_optional(pool)
                .await
        })
        .map_err(store_error)?;
        Ok(row.map(Model::from))
    }

    async fn delete_model(&self, id: i64) -> StoreResult<bool> {
        let _cleared = self.caches.after(Caches::models_changed);
        let n = with_writer!(self, pool => {
            sqlx::query("DELETE FROM models WHERE id = $1").bind(id).execute(pool).await.map(|d| d.rows_affected())
        })
        .map_err(store_error)?;
        Ok(n == 1)
    }

    async fn set_default_model(
        &self,
        id: Option<i64>,
        role: DefaultModel,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let _cleared = self.caches.after(Caches::models_changed);
        let backend = self.backend();
        let (clear, set) = match role {
            DefaultModel::Chat => (
                "UPDATE models SET is_default = FALSE WHERE is_default",
                "UPDATE models SET is_default = TRUE, updated_at = $2 WHERE id = $1",
            ),
            DefaultModel::Title => (
                "UPDATE models SET is_default_title = FALSE WHERE is_default_title",
                "UPDATE models SET is_default_title = TRUE, updated_at = $2 WHERE id = $1",
            ),
        };
        with_writer!(self, pool => {
            async {
                let mut tx = pool.begin().await?;
                if backend == Backend::Postgres {
                    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(PG_DEFAULTS_LOCK).execute(&mut *tx).await?;
                }
                sqlx::query(clear).execute(&mut *tx).await?;
                if let Some(id) = id {
                    sqlx::query(set).bind(id).bind(stored_time(now)).execute(&mut *tx).await?;
                }
                tx.commit().await
            }
            .await
        })
        .map_err(store_error)
    }
}
