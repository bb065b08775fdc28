//! Switchyard as an MCP server: administrators mark published workflows as tools, and an
//! MCP client (with an API key) lists the ones its user may run and runs them.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::{
    Services,
    auth::Principal,
    error::{DomainError, ErrorKind},
    runs::{self, RunStatus, StartRun},
    store::StoreError,
    users::User,
    workflows::{self, WorkflowError},
};

/// A workflow offered as a tool.
#[derive(Debug, Clone, PartialEq)]
pub struct ExposedWorkflow {
    pub workflow_id: i64,
    /// The tool's name: `[a-zA-Z0-9_-]`, 1 to 64 characters, unique.
    pub tool_name: String,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExposeError {
    #[error("{0}")]
    Invalid(String),
    #[error("the tool name `{0}` is taken by another workflow")]
    NameTaken(String),
    #[error("workflow {0} is not offered as a tool")]
    NotExposed(i64),
    #[error("only administrators choose the workflows offered as tools")]
    Forbidden,
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DomainError for ExposeError {
    fn kind(&self) -> ErrorKind {
        match self {
            ExposeError::Invalid(_) => ErrorKind::Invalid,
            ExposeError::NameTaken(_) => ErrorKind::Conflict,
            ExposeError::NotExposed(_) => ErrorKind::NotFound,
            ExposeError::Forbidden => ErrorKind::Forbidden,
            ExposeError::Workflow(err) => err.kind(),
            ExposeError::Store(StoreError::Unavailable(_)) => ErrorKind::Unavailable,
            ExposeError::Store(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ExposeError::Invalid(_) => "invalid_field",
            ExposeError::NameTaken(_) => "tool_name_taken",
            ExposeError::NotExposed(_) => "tool_not_found",
            ExposeError::Forbidden => "forbidden",
            ExposeError::Workflow(err) => err.code(),
            ExposeError::Store(StoreError::Unavailable(_)) => "database_unavailable",
            ExposeError::Store(_) => "internal_error",
        }
    }
}

/// A tool name from a workflow's slug or display name: lower case, `_` for the rest.
fn name_from(text: &str) -> String {
    let mut name: String = text
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        name = "workflow".into();
    }
    name
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Offers a workflow as a tool (or changes its name and description).
pub async fn expose(
    services: &Services,
    actor: &Principal,
    workflow_id: i64,
    tool_name: Option<String>,
    description: Option<String>,
) -> Result<ExposedWorkflow, ExposeError> {
    if !actor.is_admin() {
        return Err(ExposeError::Forbidden);
    }
    let (workflow, _) = workflows::access(services, &actor.user, workflow_id).await?;
    let name = match tool_name.map(|n| n.trim().to_string()) {
        Some(name) if valid_name(&name) => name,
        Some(_) => {
            return Err(ExposeError::Invalid(
                "tool_name must be 1 to 64 letters, digits, `_` or `-`".into(),
            ));
        }
        None => name_from(&workflow.slug),
    };
    let description = description
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty());
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 2000)
    {
        return Err(ExposeError::Invalid(
            "description must be at most 2000 characters".into(),
        ));
    }
    match services
        .store
        .expose_workflow(workflow.id, &name, description.as_deref(), Utc::now())
        .await
    {
        Ok(exposed) => Ok(exposed),
        Err(StoreError::Conflict { .. }) => Err(ExposeError::NameTaken(name)),
        Err(err) => Err(err.into()),
    }
}

pub async fn unexpose(
    services: &Services,
    actor: &Principal,
    workflow_id: i64,
) -> Result<(), ExposeError> {
    if !actor.is_admin() {
        return Err(ExposeError::Forbidden);
    }
    if services.store.unexpose_workflow(workflow_id).await? {
        Ok(())
    } else {
        Err(ExposeError::NotExposed(workflow_id))
    }
}

pub async fn list_exposed(
    services: &Services,
    actor: &Principal,
) -> Result<Vec<ExposedWorkflow>, ExposeError> {
    if !actor.is_admin() {
        return Err(ExposeError::Forbidden);
    }
    Ok(services.store.exposed_workflows().await?)
}

/// A tool as an MCP client sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferedTool {
    pub name: String,
    pub title: String,
    pub description: String,
    pub input_schema: Value,
    pub workflow_id: i64,
}

/// The schema of a run's input when the workflow declares none: one message.
fn default_schema() -> Value {
    json!({"type": "object", "properties": {"input_as_text": {"type": "string", "description": "The message the workflow starts with"}}, "required": ["input_as_text"]})
}

/// The exposed workflows that `user` may run and that have a production version.
pub async fn offered_tools(
    services: &Services,
    user: &User,
) -> Result<Vec<OfferedTool>, ExposeError> {
    let mut tools = Vec::new();
    for exposed in services.store.exposed_workflows().await? {
        let Ok((workflow, _)) = workflows::access(services, user, exposed.workflow_id).await else {
            continue;
        };
        let Some(version) = services.store.production_version(workflow.id).await? else {
            continue;
        };
        let input_schema = version
            .graph
            .input_schema
            .clone()
            .filter(|s| s.get("type").and_then(Value::as_str) == Some("object"))
            .unwrap_or_else(default_schema);
        tools.push(OfferedTool {
            name: exposed.tool_name,
            title: workflow.display_name.clone(),
            description: exposed
                .description
                .or(workflow.description.clone())
                .unwrap_or_else(|| format!("Runs the workflow “{}”.", workflow.display_name)),
            input_schema,
            workflow_id: workflow.id,
        });
    }
    Ok(tools)
}

/// What a tool call returned: the run's output, or why it did not finish.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolRun {
    pub output: Value,
    pub is_error: bool,
    pub run_id: Option<String>,
}

/// Runs the workflow behind `tool_name` as `user`; `None` when there is no such tool for
/// this user.
pub async fn call(
    services: &Services,
    user: &User,
    tool_name: &str,
    arguments: Value,
) -> Result<Option<ToolRun>, ExposeError> {
    let Some(tool) = offered_tools(services, user)
        .await?
        .into_iter()
        .find(|t| t.name == tool_name)
    else {
        return Ok(None);
    };
    let input = match arguments {
        Value::Object(map) if map.is_empty() => json!({"input_as_text": ""}),
        Value::Object(map) => Value::Object(map),
        Value::Null => json!({"input_as_text": ""}),
        other => {
            json!({"input_as_text": other.as_str().map_or_else(|| other.to_string(), str::to_string)})
        }
    };
    let run = runs::start(
        services,
        user,
        StartRun {
            workflow_id: tool.workflow_id,
            version_id: None,
            input,
            state: None,
            thread_id: None,
            model: None,
            history: Vec::new(),
            history_before: None,
            served: false,
        },
    )
    .await;
    let run = match run {
        Ok(run) => run,
        Err(err) => {
            return Ok(Some(ToolRun {
                output: json!(err.to_string()),
                is_error: true,
                run_id: None,
            }));
        }
    };
    let run_id = Some(run.id.clone());
    Ok(Some(match run.status {
        RunStatus::Completed => ToolRun {
            output: run.output.clone().unwrap_or(Value::Null),
            is_error: false,
            run_id,
        },
        RunStatus::Waiting => ToolRun {
            output: json!(format!(
                "the workflow stopped to wait for {} (run {}); a tool call cannot answer it",
                run.wait
                    .as_ref()
                    .map_or("input".to_string(), |w| w.kind.as_str().replace('_', " ")),
                run.id
            )),
            is_error: true,
            run_id,
        },
        _ => ToolRun {
            output: json!(
                run.error
                    .as_ref()
                    .map_or("the workflow failed", |e| e.message.as_str())
            ),
            is_error: true,
            run_id,
        },
    }))
}
