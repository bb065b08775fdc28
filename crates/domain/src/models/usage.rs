//! Usage and cost: one record per model call, priced from the registry, summed for reports.

use chrono::{DateTime, Utc};

use super::{ModelResult, Usage};
use crate::{Services, auth::Principal, llm::Completion};

/// What a call was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Agent,
    Title,
    Embedding,
    Transcription,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Agent => "agent",
            Purpose::Title => "title",
            Purpose::Embedding => "embedding",
            Purpose::Transcription => "transcription",
        }
    }
}

/// One model call, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRecord {
    pub at: DateTime<Utc>,
    pub user_id: Option<i64>,
    pub workflow_id: Option<i64>,
    pub run_id: Option<String>,
    pub provider_id: Option<i64>,
    pub model: String,
    pub purpose: Purpose,
    pub usage: Usage,
    /// US dollars; `None` when the model has no price.
    pub cost_usd: Option<f64>,
}

/// How a usage report is grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    User,
    Workflow,
    Run,
    Model,
    Provider,
    Purpose,
    Day,
}

impl GroupBy {
    pub fn parse(text: &str) -> Option<GroupBy> {
        Some(match text {
            "user" => GroupBy::User,
            "workflow" => GroupBy::Workflow,
            "run" => GroupBy::Run,
            "model" => GroupBy::Model,
            "provider" => GroupBy::Provider,
            "purpose" => GroupBy::Purpose,
            "day" => GroupBy::Day,
            _ => return None,
        })
    }
}

/// One line of a usage report.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageLine {
    /// The group's key (an id, a model name, a day); `None` for calls without one.
    pub key: Option<String>,
    /// A readable name for ids (an email, a workflow slug, a provider label).
    pub label: Option<String>,
    pub calls: i64,
    pub usage: Usage,
    pub cost_usd: Option<f64>,
    /// Calls whose model had no price (a model the open registry saw, or one an
    /// administrator left unpriced): their tokens count, their cost is not in `cost_usd`.
    pub unpriced_calls: i64,
}

/// Records a finished call. Who and what it was for come from the caller; the price from
/// the model's entry in the registry, when it has one.
pub async fn record(services: &Services, record: UsageRecord) -> ModelResult<()> {
    services.store.insert_usage(&record).await?;
    Ok(())
}

/// Builds the record of a completion, priced from `pricing`.
pub fn priced(
    completion: &Completion,
    model: &str,
    provider_id: Option<i64>,
    pricing: Option<super::Pricing>,
    purpose: Purpose,
) -> UsageRecord {
    UsageRecord {
        at: Utc::now(),
        user_id: None,
        workflow_id: None,
        run_id: None,
        provider_id,
        model: model.to_string(),
        purpose,
        usage: completion.usage,
        cost_usd: pricing.and_then(|p| p.cost(completion.usage)),
    }
}

/// Usage between `from` (inclusive) and `to` (exclusive), grouped.
pub async fn summary(
    services: &Services,
    actor: &Principal,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    group_by: GroupBy,
) -> ModelResult<Vec<UsageLine>> {
    actor.admin()?;
    Ok(services.store.usage_summary(from, to, group_by).await?)
}
