//! `WidgetStore` on both backends: the widget library.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    store::{StoreResult, WidgetStore},
    widgets::{NewWidget, Widget, WidgetPatch},
};
use serde_json::Value;
use sqlx::types::Json;

use crate::{Db, store_error, stored_time, with_pool, with_writer};

macro_rules! columns {
    () => {
        "id, slug, title, description, definition, data_schema, created_at, updated_at"
    };
}

#[derive(sqlx::FromRow)]
struct WidgetRow {
    id: i64,
    slug: String,
    title: Option<String>,
    description: Option<String>,
    definition: Json<Value>,
    data_schema: Option<Json<Value>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<WidgetRow> for Widget {
    fn from(row: WidgetRow) -> Widget {
        Widget {
            id: row.id,
            slug: row.slug,
            title: row.title,
            description: row.description,
            definition: row.definition.0,
            data_schema: row.data_schema.map(|s| s.0),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[async_trait]
impl WidgetStore for Db {
    async fn list_widgets(&self) -> StoreResult<Vec<Widget>> {
        let sql = concat!("SELECT ", columns!(), " FROM widgets ORDER BY slug");
        let rows: Vec<WidgetRow> =
            with_pool!(self, pool => sqlx::query_as(sql).fetch_all(pool).await)
                .map_err(store_error)?;
        Ok(rows.into_iter().map(Widget::from).collect())
    }

    async fn widget(&self, slug: &str) -> StoreResult<Option<Widget>> {
        let sql = concat!("SELECT ", columns!(), " FROM widgets WHERE slug = $1");
        let row: Option<WidgetRow> =
            with_pool!(self, pool => sqlx::query_as(sql).bind(slug).fetch_optional(pool).await)
                .map_err(store_error)?;
        Ok(row.map(Widget::from))
    }

    async fn insert_widget(&self, widget: &NewWidget, now: DateTime<Utc>) -> StoreResult<Widget> {
        let sql = concat!(
            "INSERT INTO widgets (slug, title, description, definition, data_schema, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING ",
            columns!()
        );
        let row: WidgetRow = with_writer!(self, pool => {
            sqlx::query_as(sql)
                .bind(&widget.slug)
                .bind(&widget.title)
                .bind(&widget.description)
                .bind(Json(&widget.definition))
                .bind(widget.data_schema.as_ref().map(Json))
                .bind(stored_time(now))
                .fetch_one(pool)
                .await
        })
        .map_err(store_error)?;
        Ok(row.into())
    }

    async fn update_widget(
        &self,
        slug: &str,
        patch: &WidgetPatch,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Widget>> {
        // The library is edited by administrators one at a time: read, apply, write.
        let Some(mut widget) = self.widget(slug).await? else {
            return Ok(None);
        };
        if let Some(title) = &patch.title {
            widget.title = title.clone();
        }
        if let Some(description) = &patch.description {
            widget.description = description.clone();
        }
        if let Some(definition) = &patch.definition {
            widget.definition = definition.clone();
        }
        if let Some(schema) = &patch.data_schema {
            widget.data_schema = schema.clone();
        }
        let sql = concat!(
            "UPDATE widgets SET title = $2, description = $3, definition = $4, data_schema = $5, updated_at = $6
             WHERE slug = $1 RETURNING ",
            columns!()
        );
        let row: Option<WidgetRow> = with_writer!(self, pool => {
            sqlx::query_as(sql)
                .bind(slug)
                .bind(&widget.title)
                .bind(&widget.description)
                .bind(Json(&widget.definition))
                .bind(widget.data_schema.as_ref().map(Json))
                .bind(stored_time(now))
                .fetch_optional(pool)
                .await
        })
        .map_err(store_error)?;
        Ok(row.map(Widget::from))
    }

    async fn delete_widget(&self, slug: &str) -> StoreResult<bool> {
        let done = with_writer!(self, pool => {
            sqlx::query("DELETE FROM widgets WHERE slug = $1").bind(slug).execute(pool).await.map(|r| r.rows_affected())
        })
        .map_err(store_error)?;
        Ok(done > 0)
    }
}
