//! `SettingsStore` on both backends: a key/JSON table.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::store::{SettingsStore, StoreResult};
use sqlx::types::Json;

use crate::{Db, store_error, stored_time, with_pool, with_writer};

#[async_trait]
impl SettingsStore for Db {
    async fn get_setting(&self, key: &str) -> StoreResult<Option<serde_json::Value>> {
        self.caches
            .settings
            .get_or(key.to_string(), async {
                let row: Option<(Json<serde_json::Value>,)> = with_pool!(self, pool => {
                    sqlx::query_as("SELECT value FROM settings WHERE key = $1")
                        .bind(key)
                        .fetch_optional(pool)
                        .await
                })
                .map_err(store_error)?;
                Ok(row.map(|(Json(value),)| value))
            })
            .await
    }

    async fn put_setting(
        &self,
        key: &str,
        value: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let _cleared = self.caches.after(|c| c.settings.clear());
        with_writer!(self, pool => {
            sqlx::query(
                "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )
            .bind(key)
            .bind(Json(value))
            .bind(stored_time(now))
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(store_error)?;
        Ok(())
    }

    async fn insert_setting_if_absent(
        &self,
        key: &str,
        value: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> StoreResult<serde_json::Value> {
        let _cleared = self.caches.after(|c| c.settings.clear());
        with_writer!(self, pool => {
            sqlx::query(
                "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .bind(Json(value))
            .bind(stored_time(now))
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(store_error)?;
        self.get_setting(key)
            .await?
            .ok_or(domain::store::StoreError::NotFound)
    }
}
