//! `UsageStore` on both backends: usage records and their grouped sums.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    models::{
        Usage,
        usage::{GroupBy, UsageLine, UsageRecord},
    },
    store::{StoreResult, UsageStore},
};

use crate::{Backend, Db, grouped_write, store_error, stored_time, with_pool};

#[derive(sqlx::FromRow)]
struct LineRow {
    key: Option<String>,
    label: Option<String>,
    calls: i64,
    input_tokens: i64,
    output_tokens: i64,
    cached_input_tokens: i64,
    reasoning_tokens: i64,
    cost_usd: Option<f64>,
    unpriced_calls: i64,
}

/// One report query per grouping; `$1`/`$2` bound the period.
macro_rules! summary {
    // Groups without a readable label: PostgreSQL refuses a constant in GROUP BY.
    ($key:expr) => {
        concat!(
            "SELECT ",
            $key,
            " AS key, CAST(NULL AS TEXT) AS label, COUNT(*) AS calls,
               CAST(SUM(r.input_tokens) AS BIGINT) AS input_tokens,
               CAST(SUM(r.output_tokens) AS BIGINT) AS output_tokens,
               CAST(SUM(r.cached_input_tokens) AS BIGINT) AS cached_input_tokens,
               CAST(SUM(r.reasoning_tokens) AS BIGINT) AS reasoning_tokens,
               SUM(r.cost_usd) AS cost_usd,
               CAST(SUM(CASE WHEN r.cost_usd IS NULL THEN 1 ELSE 0 END) AS BIGINT) AS unpriced_calls
             FROM usage_records r WHERE r.at >= $1 AND r.at < $2 GROUP BY ",
            $key,
            " ORDER BY cost_usd DESC NULLS LAST, calls DESC, key"
        )
    };
    ($key:expr, $label:expr, $joins:expr) => {
        concat!(
            "SELECT ",
            $key,
            " AS key, ",
            $label,
            " AS label, COUNT(*) AS calls,
               CAST(SUM(r.input_tokens) AS BIGINT) AS input_tokens,
               CAST(SUM(r.output_tokens) AS BIGINT) AS output_tokens,
               CAST(SUM(r.cached_input_tokens) AS BIGINT) AS cached_input_tokens,
               CAST(SUM(r.reasoning_tokens) AS BIGINT) AS reasoning_tokens,
               SUM(r.cost_usd) AS cost_usd,
               CAST(SUM(CASE WHEN r.cost_usd IS NULL THEN 1 ELSE 0 END) AS BIGINT) AS unpriced_calls
             FROM usage_records r ",
            $joins,
            " WHERE r.at >= $1 AND r.at < $2 GROUP BY ",
            $key,
            ", ",
            $label,
            " ORDER BY cost_usd DESC NULLS LAST, calls DESC, key"
        )
    };
}

pub(crate) fn query(group_by: GroupBy, backend: Backend) -> &'static str {
    match group_by {
        GroupBy::User => summary!(
            "CAST(r.user_id AS TEXT)",
            "u.email",
            "LEFT JOIN users u ON u.id = r.user_id"
        ),
        GroupBy::Workflow => summary!(
            "CAST(r.workflow_id AS TEXT)",
            "w.slug",
            "LEFT JOIN workflows w ON w.id = r.workflow_id"
        ),
        GroupBy::Run => summary!("r.run_id"),
        GroupBy::Model => summary!("r.model"),
        GroupBy::Provider => summary!(
            "CAST(r.provider_id AS TEXT)",
            "p.label",
            "LEFT JOIN model_providers p ON p.id = r.provider_id"
        ),
        GroupBy::Purpose => summary!("r.purpose"),
        // Days in UTC; the dialects spell it differently.
        GroupBy::Day => match backend {
            Backend::Sqlite => summary!("substr(r.at, 1, 10)"),
            Backend::Postgres => summary!("to_char(r.at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"),
        },
    }
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

pub(crate) fn stored(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A usage record's row (written once for both backends; see `runs.rs`).
macro_rules! push_insert_usage {
    ($b:expr, $record:expr) => {{
        let r: &UsageRecord = $record;
        $b.push(
            "INSERT INTO usage_records (at, user_id, workflow_id, run_id, provider_id, model, purpose, input_tokens,
                output_tokens, cached_input_tokens, reasoning_tokens, cost_usd) VALUES (",
        );
        $b.separated(", ")
            .push_bind($crate::stored_time(r.at))
            .push_bind(r.user_id)
            .push_bind(r.workflow_id)
            .push_bind(r.run_id.clone())
            .push_bind(r.provider_id)
            .push_bind(r.model.clone())
            .push_bind(r.purpose.as_str())
            .push_bind($crate::usage::stored(r.usage.input_tokens))
            .push_bind($crate::usage::stored(r.usage.output_tokens))
            .push_bind($crate::usage::stored(r.usage.cached_input_tokens))
            .push_bind($crate::usage::stored(r.usage.reasoning_tokens))
            .push_bind(r.cost_usd);
        $b.push(")");
    }};
}
pub(crate) use push_insert_usage;

#[async_trait]
impl UsageStore for Db {
    async fn insert_usage(&self, r: &UsageRecord) -> StoreResult<()> {
        grouped_write!(self, |b| {
            push_insert_usage!(b, r);
        })
    }

    async fn usage_summary(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        group_by: GroupBy,
    ) -> StoreResult<Vec<UsageLine>> {
        let sql = query(group_by, self.backend());
        let rows: Vec<LineRow> = with_pool!(self, pool => {
            sqlx::query_as(sql).bind(stored_time(from)).bind(stored_time(to)).fetch_all(pool).await
        })
        .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .map(|row| UsageLine {
                key: row.key,
                label: row.label,
                calls: row.calls,
                usage: Usage {
                    input_tokens: count(row.input_tokens),
                    output_tokens: count(row.output_tokens),
                    cached_input_tokens: count(row.cached_input_tokens),
                    reasoning_tokens: count(row.reasoning_tokens),
                },
                cost_usd: row.cost_usd.map(|c| (c * 1e9).round() / 1e9),
                unpriced_calls: row.unpriced_calls,
            })
            .collect())
    }
}
