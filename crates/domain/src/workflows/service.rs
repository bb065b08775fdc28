//! Workflow services: access rules, versions and publishing, sharing, import and export.
//!
//! Access: administrators may do everything; the owner may do everything on their
//! workflow; a `write` share may edit, version and publish; a `read` share may look.
//! Anyone else is told the workflow does not exist.

use chrono::Utc;
use serde_json::{Value, json};

use super::{
    Access, Graph, Permission, Problem, Severity, Share, Version, Workflow, WorkflowError,
    WorkflowResult,
    diff::{self, GraphDiff},
    import as formats,
    references::{self, Reference},
    validate,
};
use crate::{
    Services,
    store::{DraftEdit, DraftUpdate, NewVersion, NewWorkflow, StoreError, WorkflowPatch},
    users::User,
};

/// The slug of the workflow a fresh install starts with.
pub const DEFAULT_SLUG: &str = "default";
const DEFAULT_SEEDED: &str = "workflows.default_seeded";

/// Checks a slug: lower-case letters, digits, `-`, `_`; starts with a letter or digit.
pub fn check_slug(slug: &str) -> WorkflowResult<()> {
    let valid = !slug.is_empty()
        && slug.len() <= 128
        && slug.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(WorkflowError::InvalidSlug(slug.to_string()))
    }
}

/// A slug made from a display name: `Order Support!` → `order-support`.
pub fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.trim().to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug: String = slug.trim_end_matches('-').chars().take(100).collect();
    if slug.is_empty() {
        "workflow".to_string()
    } else {
        slug
    }
}

/// `base`, or `base-2`, `base-3`… whichever is free.
async fn free_slug(services: &Services, base: &str) -> WorkflowResult<String> {
    // Room for a `-NNN` suffix within the 128-character limit.
    let base: String = base.chars().take(120).collect();
    let base = base.trim_end_matches('-');
    if services.store.workflow_by_slug(base).await?.is_none() {
        return Ok(base.to_string());
    }
    for n in 2..1000 {
        let candidate = format!("{base}-{n}");
        if services.store.workflow_by_slug(&candidate).await?.is_none() {
            return Ok(candidate);
        }
    }
    Err(WorkflowError::SlugTaken(base.to_string()))
}

/// A write that found its workflow deleted meanwhile reports the workflow as not found.
fn gone(err: StoreError, workflow_id: i64) -> WorkflowError {
    match err {
        StoreError::NotFound => WorkflowError::NotFound(workflow_id),
        other => WorkflowError::Store(other),
    }
}

fn slug_conflict(err: StoreError, slug: &str) -> WorkflowError {
    match err {
        StoreError::Conflict { .. } => WorkflowError::SlugTaken(slug.to_string()),
        other => WorkflowError::Store(other),
    }
}

fn check_display_name(name: &str) -> WorkflowResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 128 {
        return Err(WorkflowError::InvalidField(
            "display_name must be 1 to 128 characters".into(),
        ));
    }
    Ok(name.to_string())
}

fn check_version_name(name: Option<String>) -> WorkflowResult<Option<String>> {
    let name = name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    if name.as_ref().is_some_and(|n| n.chars().count() > 128) {
        return Err(WorkflowError::InvalidField(
            "a version name must be at most 128 characters".into(),
        ));
    }
    Ok(name)
}

fn check_description(description: Option<String>) -> WorkflowResult<Option<String>> {
    let description = description
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty());
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 2000)
    {
        return Err(WorkflowError::InvalidField(
            "description must be at most 2000 characters".into(),
        ));
    }
    Ok(description)
}

/// Validates a graph, with its references resolved against the store; errors refuse the
/// write, warnings are returned for display. `own` is the workflow being saved, if any.
pub async fn check_graph(
    services: &Services,
    actor: &User,
    graph: &Graph,
    own: Option<&Workflow>,
) -> WorkflowResult<Vec<Problem>> {
    let problems = validate_only(services, actor, graph, own).await?;
    if problems.iter().any(|p| p.severity == Severity::Error) {
        return Err(WorkflowError::Invalid(problems));
    }
    Ok(problems)
}

/// Every problem of a graph, without saving (`POST /api/workflows/validate`).
pub async fn validate_only(
    services: &Services,
    actor: &User,
    graph: &Graph,
    own: Option<&Workflow>,
) -> WorkflowResult<Vec<Problem>> {
    let mut problems = validate::validate(graph);
    let mut models: Option<Vec<String>> = None;
    for (node, field, reference) in references::collect(graph) {
        // A model, widget or knowledge base that is missing now may be added before the
        // run: a warning.
        let missing = match &reference {
            Reference::Model(name) => {
                if models.is_none() {
                    models = Some(
                        services
                            .store
                            .models(None, false)
                            .await?
                            .into_iter()
                            .map(|m| m.name)
                            .collect(),
                    );
                }
                (!models.as_ref().is_some_and(|m| m.contains(name))).then(|| {
                    match services.models.registry {
                        crate::models::RegistryMode::Open => format!(
                            "model `{name}` is not in the model registry: it will run on the \
                             default provider and be listed as seen, without prices (an \
                             administrator may add it with `switchyard models add {name}`)"
                        ),
                        crate::models::RegistryMode::Strict => format!(
                            "model `{name}` is not in the model registry, which is strict: \
                             runs fail until an administrator adds it (`switchyard models \
                             add {name}`) or imports the provider's list (`switchyard models \
                             import`)"
                        ),
                    }
                })
            }
            Reference::Widget(slug) => services
                .store
                .widget(slug)
                .await?
                .is_none()
                .then(|| format!("widget `{slug}` is not in the widget library")),
            Reference::VectorStore(slug) => services
                .store
                .vector_store(slug)
                .await?
                .is_none()
                .then(|| format!("knowledge base `{slug}` does not exist")),
            Reference::Workflow { .. } => None,
        };
        if let Some(message) = missing {
            problems.push(Problem {
                severity: Severity::Warning,
                code: "unknown_reference",
                node: Some(node),
                field: Some(field),
                message,
            });
            continue;
        }
        let Reference::Workflow { id, slug } = reference else {
            continue;
        };
        let found = match (id, &slug) {
            (Some(id), _) => services.store.workflow_by_id(id).await?,
            (None, Some(slug)) => services.store.workflow_by_slug(slug).await?,
            (None, None) => continue,
        };
        // A workflow the author cannot see is reported exactly like a missing one.
        let target = match found {
            Some(found) => match access(services, actor, found.id).await {
                Ok((visible, _)) => Some(visible),
                Err(WorkflowError::NotFound(_)) => None,
                Err(err) => return Err(err),
            },
            None => None,
        };
        let named = id.map(|i| i.to_string()).or(slug).unwrap_or_default();
        let problem = match target {
            None => Some((
                "unknown_reference",
                format!("workflow `{named}` does not exist"),
            )),
            Some(target) if own.is_some_and(|w| w.id == target.id) => Some((
                "self_reference",
                "a workflow cannot run itself as a nested workflow".to_string(),
            )),
            Some(target) if target.production_version_id.is_none() => Some((
                "unpublished_reference",
                format!("workflow `{named}` has no published version to run"),
            )),
            Some(_) => None,
        };
        if let Some((code, message)) = problem {
            let severity = if code == "unpublished_reference" {
                Severity::Warning
            } else {
                Severity::Error
            };
            problems.push(Problem {
                severity,
                code,
                node: Some(node),
                field: Some(field),
                message,
            });
        }
    }
    Ok(problems)
}

/// The caller's access to a workflow; `NotFound` when they have none.
pub async fn access(
    services: &Services,
    actor: &User,
    workflow_id: i64,
) -> WorkflowResult<(Workflow, Access)> {
    let workflow = services
        .store
        .workflow_by_id(workflow_id)
        .await?
        .ok_or(WorkflowError::NotFound(workflow_id))?;
    if actor.is_admin {
        return Ok((workflow, Access::Admin));
    }
    if workflow.owner_id == Some(actor.id) {
        return Ok((workflow, Access::Owner));
    }
    match services.store.share_of(workflow_id, actor.id).await? {
        Some(Permission::Write) => Ok((workflow, Access::Write)),
        Some(Permission::Read) => Ok((workflow, Access::Read)),
        None => Err(WorkflowError::NotFound(workflow_id)),
    }
}

/// Who may run a workflow's production version: everyone who can see it (with their
/// access), and everyone it is served to without seeing its graph ([`Access::Served`]):
/// the ChatKit default is served to every signed-in user, and a channel that already
/// checked the caller (`served`: a chat thread they own) vouches for its workflow.
pub async fn runnable(
    services: &Services,
    actor: &User,
    workflow_id: i64,
    served: bool,
) -> WorkflowResult<(Workflow, Access)> {
    match access(services, actor, workflow_id).await {
        Ok(found) => Ok(found),
        Err(WorkflowError::NotFound(id)) => {
            let workflow = services
                .store
                .workflow_by_id(workflow_id)
                .await?
                .filter(|w| served || w.is_chatkit_default)
                .ok_or(WorkflowError::NotFound(id))?;
            Ok((workflow, Access::Served))
        }
        Err(err) => Err(err),
    }
}

/// The ChatKit default as the caller reaches it: with their access, or served to them.
pub async fn chatkit_default_for(
    services: &Services,
    actor: &User,
) -> WorkflowResult<Option<(Workflow, Access)>> {
    match chatkit_default(services).await? {
        Some(workflow) => Ok(Some(runnable(services, actor, workflow.id, false).await?)),
        None => Ok(None),
    }
}

async fn writable(
    services: &Services,
    actor: &User,
    workflow_id: i64,
) -> WorkflowResult<(Workflow, Access)> {
    let (workflow, access) = access(services, actor, workflow_id).await?;
    if actor.is_lti {
        return Err(WorkflowError::Forbidden(
            "learning-platform accounts cannot change workflows",
        ));
    }
    if !access.can_write() {
        return Err(WorkflowError::Forbidden(
            "this workflow is shared with you read-only",
        ));
    }
    Ok((workflow, access))
}

async fn manageable(
    services: &Services,
    actor: &User,
    workflow_id: i64,
) -> WorkflowResult<(Workflow, Access)> {
    let (workflow, access) = access(services, actor, workflow_id).await?;
    if !access.can_manage() {
        return Err(WorkflowError::Forbidden(
            "only the owner or an administrator may do this",
        ));
    }
    Ok((workflow, access))
}

/// The workflows a user can see, with their access.
pub async fn list(services: &Services, actor: &User) -> WorkflowResult<Vec<(Workflow, Access)>> {
    let visible_to = (!actor.is_admin).then_some(actor.id);
    let listed = services.store.list_workflows(visible_to).await?;
    Ok(listed
        .into_iter()
        .map(|(workflow, share)| {
            let access = if actor.is_admin {
                Access::Admin
            } else if workflow.owner_id == Some(actor.id) {
                Access::Owner
            } else if share == Some(Permission::Write) {
                Access::Write
            } else {
                Access::Read
            };
            (workflow, access)
        })
        .collect())
}

/// What a caller gives to create a workflow.
#[derive(Debug, Clone, Default)]
pub struct CreateWorkflow {
    pub slug: Option<String>,
    pub display_name: String,
    pub description: Option<String>,
    /// Defaults to the minimal start → end graph.
    pub graph: Option<Graph>,
    pub version_name: Option<String>,
    /// Put version 1 straight into production.
    pub publish: bool,
}

/// A created or changed version, with the warnings validation found.
#[derive(Debug, Clone)]
pub struct Saved<T> {
    pub value: T,
    pub warnings: Vec<Problem>,
}

pub async fn create(
    services: &Services,
    actor: &User,
    req: CreateWorkflow,
) -> WorkflowResult<Saved<(Workflow, Version)>> {
    if actor.is_lti {
        return Err(WorkflowError::Forbidden(
            "learning-platform accounts cannot create workflows",
        ));
    }
    let display_name = check_display_name(&req.display_name)?;
    let slug = match req.slug {
        Some(slug) => {
            let slug = slug.trim().to_string();
            check_slug(&slug)?;
            slug
        }
        None => free_slug(services, &slugify(&display_name)).await?,
    };
    let graph = req.graph.unwrap_or_else(Graph::minimal);
    let warnings = check_graph(services, actor, &graph, None).await?;
    let new = NewWorkflow {
        slug: slug.clone(),
        display_name,
        description: check_description(req.description)?,
        owner_id: Some(actor.id),
    };
    let version = NewVersion {
        name: check_version_name(req.version_name)?,
        graph,
        created_by: Some(actor.id),
    };
    let value = services
        .store
        .insert_workflow(&new, &version, req.publish, Utc::now())
        .await
        .map_err(|err| slug_conflict(err, &slug))?;
    Ok(Saved { value, warnings })
}

pub async fn get(
    services: &Services,
    actor: &User,
    workflow_id: i64,
) -> WorkflowResult<(Workflow, Access)> {
    access(services, actor, workflow_id).await
}

/// Changes a workflow's slug, name, description or production-following flag.
pub async fn update(
    services: &Services,
    actor: &User,
    workflow_id: i64,
    mut patch: WorkflowPatch,
) -> WorkflowResult<Workflow> {
    writable(services, actor, workflow_id).await?;
    if let Some(slug) = &patch.slug {
        check_slug(slug.trim())?;
        patch.slug = Some(slug.trim().to_string());
    }
    if let Some(name) = &patch.display_name {
        patch.display_name = Some(check_display_name(name)?);
    }
    if let Some(description) = patch.description.take() {
        patch.description = Some(check_description(description)?);
    }
    let slug = patch.slug.clone().unwrap_or_default();
    services
        .store
        .update_workflow(workflow_id, &patch, Utc::now())
        .await
        .map_err(|err| slug_conflict(err, &slug))?
        .ok_or(WorkflowError::NotFound(workflow_id))
}

pub async fn delete(services: &Services, actor: &User, workflow_id: i64) -> WorkflowResult<()> {
    let (workflow, _) = manageable(services, actor, workflow_id).await?;
    if workflow.is_chatkit_default && !actor.is_admin {
        return Err(WorkflowError::Forbidden(
            "the ChatKit default workflow can only be deleted by an administrator",
        ));
    }
    if !services.store.delete_workflow(workflow_id).await? {
        return Err(WorkflowError::NotFound(workflow_id));
    }
    Ok(())
}

/// Copies a workflow (its production graph, else its newest version) into a new workflow
/// owned by the caller, as a draft.
pub async fn duplicate(
    services: &Services,
    actor: &User,
    workflow_id: i64,
    slug: Option<String>,
    display_name: Option<String>,
) -> WorkflowResult<Saved<(Workflow, Version)>> {
    let (source, _) = access(services, actor, workflow_id).await?;
    let graph = match services.store.production_version(workflow_id).await? {
        Some(version) => version.graph,
        None => services
            .store
            .list_versions(workflow_id)
            .await?
            .into_iter()
            .next()
            .map(|v| v.graph)
            .unwrap_or_else(Graph::minimal),
    };
    let display_name = display_name.unwrap_or_else(|| format!("{} (copy)", source.display_name));
    let slug = match slug {
        Some(slug) => Some(slug),
        None => Some(free_slug(services, &format!("{}-copy", source.slug)).await?),
    };
    create(
        services,
        actor,
        CreateWorkflow {
            slug,
            display_name,
            description: source.description,
            graph: Some(graph),
            version_name: Some(
                format!("Copy of {}", source.slug)
                    .chars()
                    .take(128)
                    .collect(),
            ),
            publish: false,
        },
    )
    .await
}

pub async fn list_versions(
    services: &Services,
    actor: &User,
    workflow_id: i64,
) -> WorkflowResult<Vec<Version>> {
    access(services, actor, workflow_id).await?;
    Ok(services.store.list_versions(workflow_id).await?)
}

pub async fn get_version(
    services: &Services,
    actor: &User,
    workflow_id: i64,
    version_id: i64,
) -> WorkflowResult<Version> {
    access(services, actor, workflow_id).await?;
    services
        .store
        .version(workflow_id, version_id)
        .await?
        .ok_or(WorkflowError::VersionNotFound(version_id))
}

/// Inserts a draft with the next version number.
async fn insert_draft(
    services: &Services,
    actor: &User,
    workflow_id: i64,
    name: Option<String>,
    graph: Graph,
) -> WorkflowResult<Version> {
    let draft = NewVersion {
        name,
        graph,
        created_by: Some(actor.id),
    };
    services
        .store
        .insert_version(workflow_id, &draft, Utc::now())
        .await
        .map_err(|err| gone(err, workflow_id))
}

/// A new draft: the given graph, or a copy of `base_version_id`, or of production.
pub async fn create_version(
    services: &Services,
    actor: &User,
    workflow_id: i64,
    graph: Option<Graph>,
    name: Option<String>,
    base_version_id: Option<i64>,
) -> WorkflowResult<Saved<Version>> {
    let (workflow, _) = writable(services, actor, workflow_id).await?;
    let name = check_version_name(name)?;
    let graph = match (graph, base_version_id) {
        (Some(graph), _) => graph,
        (None, Some(base)) => {
            services
                .store
                .version(workflow_id, base)
                .await?
                .ok_or(WorkflowError::VersionNotFound(base))?
                .graph
        }
        (None, None) => services
            .store
            .production_version(workflow_id)
            .await?
            .map(|v| v.graph)
            .unwrap_or_else(Graph::minimal),
    };
    let warnings = check_graph(services, actor, &graph, Some(&workflow)).await?;
    let version = insert_draft(services, actor, workflow_id, name, graph).await?;
    Ok(Saved {
        value: version,
        warnings,
    })
}

/// The result of editing a version: the draft it changed or created.
#[derive(Debug, Clone)]
pub struct Edited {
    pub version: Version,
    /// The edited version was published, so a new draft was made from the edit.
    pub created_draft: bool,
    pub warnings: Vec<Problem>,
}

/// Edits a draft in place; an edit of a published version becomes a new draft, leaving
/// production untouched. With `expected_revision`, a stale edit is refused.
pub async fn update_version(
    services: &Services,
    actor: &User,
    workflow_id: i64,
    version_id: i64,
    graph: Graph,
    name: Option<String>,
    expected_revision: Option<i64>,
) -> WorkflowResult<Edited> {
    let (workflow, _) = writable(services, actor, workflow_id).await?;
    let name = check_version_name(name)?;
    let warnings = check_graph(services, actor, &graph, Some(&workflow)).await?;
    let outcome = services
        .store
        .update_draft(
            workflow_id,
            version_id,
            &DraftEdit {
                graph: &graph,
                name: name.as_deref(),
                expected_revision,
                updated_by: Some(actor.id),
            },
            Utc::now(),
        )
        .await?;
    match outcome {
        DraftUpdate::Updated(version) => Ok(Edited {
            version: *version,
            created_draft: false,
            warnings,
        }),
        DraftUpdate::NotFound => Err(WorkflowError::VersionNotFound(version_id)),
        DraftUpdate::Stale { current } => Err(WorkflowError::Stale { current }),
        DraftUpdate::Published => {
            let published = services
                .store
                .version(workflow_id, version_id)
                .await?
                .ok_or(WorkflowError::VersionNotFound(version_id))?;
            if let Some(expected) = expected_revision
                && expected != published.revision
            {
                return Err(WorkflowError::Stale {
                    current: published.revision,
                });
            }
            let name = name.or_else(|| Some(format!("Draft from version {}", published.number)));
            let version = insert_draft(services, actor, workflow_id, name, graph).await?;
            Ok(Edited {
                version,
                created_draft: true,
                warnings,
            })
        }
    }
}

/// Puts a version into production: a first publication, or a rollback to an older one.
pub async fn publish(
    services: &Services,
    actor: &User,
    workflow_id: i64,
    version_id: i64,
    expected_revision: Option<i64>,
) -> WorkflowResult<Version> {
    let (workflow, _) = writable(services, actor, workflow_id).await?;
    let version = services
        .store
        .version(workflow_id, version_id)
        .await?
        .ok_or(WorkflowError::VersionNotFound(version_id))?;
    if let Some(expected) = expected_revision
        && expected != version.revision
    {
        return Err(WorkflowError::Stale {
            current: version.revision,
        });
    }
    check_graph(services, actor, &version.graph, Some(&workflow)).await?;
    // Publish exactly the revision that was just validated.
    match services
        .store
        .publish_version(
            workflow_id,
            version_id,
            version.revision,
            Some(actor.id),
            Utc::now(),
        )
        .await?
    {
        Some(published) => Ok(published),
        None => match services.store.version(workflow_id, version_id).await? {
            Some(now) => Err(WorkflowError::Stale {
                current: now.revision,
            }),
            None => Err(WorkflowError::VersionNotFound(version_id)),
        },
    }
}

/// A workflow version as a self-contained document that `import` takes back unchanged.
pub async fn export(
    services: &Services,
    actor: &User,
    workflow_id: i64,
    version_id: i64,
) -> WorkflowResult<Value> {
    let (workflow, _) = access(services, actor, workflow_id).await?;
    let version = get_version(services, actor, workflow_id, version_id).await?;
    Ok(json!({
        "format": formats::NATIVE_FORMAT,
        "format_version": 1,
        "workflow": {
            "slug": workflow.slug,
            "display_name": workflow.display_name,
            "description": workflow.description,
        },
        "version": {"number": version.number, "name": version.name},
        "graph": serde_json::to_value(&version.graph).expect("graphs serialise"),
    }))
}

pub async fn diff_versions(
    services: &Services,
    actor: &User,
    workflow_id: i64,
    a: i64,
    b: i64,
) -> WorkflowResult<GraphDiff> {
    let before = get_version(services, actor, workflow_id, a).await?;
    let after = get_version(services, actor, workflow_id, b).await?;
    Ok(diff::diff(&before.graph, &after.graph))
}

pub async fn list_shares(
    services: &Services,
    actor: &User,
    workflow_id: i64,
) -> WorkflowResult<Vec<Share>> {
    manageable(services, actor, workflow_id).await?;
    Ok(services.store.list_shares(workflow_id).await?)
}

/// Whom to share with.
#[derive(Debug, Clone)]
pub enum ShareWith {
    Email(String),
    Id(i64),
}

pub async fn share(
    services: &Services,
    actor: &User,
    workflow_id: i64,
    with: ShareWith,
    permission: Permission,
) -> WorkflowResult<Vec<Share>> {
    let (workflow, _) = manageable(services, actor, workflow_id).await?;
    // Only administrators (who may list users anyway) address users by id; others give
    // the email of the colleague, so ids cannot be walked to harvest addresses.
    let user = match with {
        ShareWith::Email(email) => {
            let email = crate::users::normalize_email(&email)
                .map_err(|_| WorkflowError::ShareTargetNotFound)?;
            services
                .store
                .credentials_by_email(&email)
                .await?
                .map(|c| c.user)
        }
        ShareWith::Id(id) if actor.is_admin => services.store.user_by_id(id).await?,
        ShareWith::Id(_) => {
            return Err(WorkflowError::InvalidField(
                "share by `email`; only administrators may give a `user_id`".into(),
            ));
        }
    };
    let user_id = user.ok_or(WorkflowError::ShareTargetNotFound)?.id;
    if workflow.owner_id == Some(user_id) {
        return Err(WorkflowError::InvalidField(
            "the owner already has every right".into(),
        ));
    }
    match services
        .store
        .put_share(workflow_id, user_id, permission, Utc::now())
        .await
    {
        Ok(()) => {}
        // The user or the workflow was deleted meanwhile.
        Err(StoreError::Conflict { .. }) => return Err(WorkflowError::ShareTargetNotFound),
        Err(err) => return Err(err.into()),
    }
    Ok(services.store.list_shares(workflow_id).await?)
}

pub async fn unshare(
    services: &Services,
    actor: &User,
    workflow_id: i64,
    user_id: i64,
) -> WorkflowResult<()> {
    manageable(services, actor, workflow_id).await?;
    if !services.store.delete_share(workflow_id, user_id).await? {
        return Err(WorkflowError::UserNotFound(user_id));
    }
    Ok(())
}

/// Makes a workflow the one plain ChatKit users talk to. Administrators only; the workflow
/// must have a version in production.
pub async fn set_chatkit_default(
    services: &Services,
    actor: &User,
    workflow_id: i64,
) -> WorkflowResult<Workflow> {
    if !actor.is_admin {
        return Err(WorkflowError::Forbidden(
            "only an administrator may choose the ChatKit workflow",
        ));
    }
    let workflow = services
        .store
        .workflow_by_id(workflow_id)
        .await?
        .ok_or(WorkflowError::NotFound(workflow_id))?;
    if workflow.production_version_id.is_none() {
        return Err(WorkflowError::NotPublished(workflow_id));
    }
    services
        .store
        .set_chatkit_default(workflow_id, Utc::now())
        .await?;
    services
        .store
        .workflow_by_id(workflow_id)
        .await?
        .ok_or(WorkflowError::NotFound(workflow_id))
}

pub async fn chatkit_default(services: &Services) -> WorkflowResult<Option<Workflow>> {
    Ok(services.store.chatkit_default().await?)
}

/// The graph a fresh install serves: greet, then end the turn.
pub fn default_graph() -> Graph {
    Graph::from_json(json!({
        "nodes": [
            {"slug": "start", "kind": "start", "display_name": "Start"},
            {"slug": "greeting", "kind": "assistant_message", "display_name": "Greeting",
             "parameters": {"message": "Hello! This is Switchyard's default workflow. An administrator can publish another one and make it the ChatKit default."}},
            {"slug": "end", "kind": "end", "display_name": "End", "parameters": {"status": {"type": "active"}}}
        ],
        "edges": [
            {"source": "start", "target": "greeting"},
            {"source": "greeting", "target": "end"}
        ]
    }))
    .expect("the default graph is well formed")
}

/// On a fresh install, creates the published default workflow and makes it the ChatKit
/// default, so chat works before anyone designs anything. Runs once per database: an
/// administrator who deletes it does not see it come back.
pub async fn ensure_default_workflow(services: &Services) -> WorkflowResult<Option<Workflow>> {
    if services.store.get_setting(DEFAULT_SEEDED).await?.is_some() {
        return Ok(None);
    }
    let mut created = None;
    if services.store.count_workflows().await? == 0 {
        let new = NewWorkflow {
            slug: DEFAULT_SLUG.into(),
            display_name: "Default workflow".into(),
            description: Some("Greets the user. Replace it with your own workflow.".into()),
            owner_id: None,
        };
        let version = NewVersion {
            name: Some("Initial version".into()),
            graph: default_graph(),
            created_by: None,
        };
        match services
            .store
            .insert_workflow(&new, &version, true, Utc::now())
            .await
        {
            Ok((workflow, _)) => {
                services
                    .store
                    .set_chatkit_default(workflow.id, Utc::now())
                    .await?;
                created = services.store.workflow_by_id(workflow.id).await?;
            }
            // Another replica seeded it at the same moment.
            Err(StoreError::Conflict { .. }) => {}
            Err(err) => return Err(err.into()),
        }
    } else if services.store.chatkit_default().await?.is_none() {
        // A start that stopped between creating the default workflow and choosing it.
        if let Some(seeded) = services.store.workflow_by_slug(DEFAULT_SLUG).await?
            && seeded.owner_id.is_none()
            && seeded.production_version_id.is_some()
        {
            services
                .store
                .set_chatkit_default(seeded.id, Utc::now())
                .await?;
            created = services.store.workflow_by_id(seeded.id).await?;
        }
    }
    services
        .store
        .put_setting(DEFAULT_SEEDED, &json!(true), Utc::now())
        .await?;
    Ok(created)
}

/// What `import` creates: a new workflow, or a new version of an existing one.
#[derive(Debug, Clone, Default)]
pub struct ImportRequest {
    pub document: Value,
    /// Add a version to this workflow instead of creating one.
    pub workflow_id: Option<i64>,
    pub slug: Option<String>,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub version_name: Option<String>,
    pub publish: bool,
    /// Keys the document as written gave twice in one object, with their line
    /// (`import::repeated_keys`): each becomes a warning.
    pub repeated_keys: Vec<(String, usize)>,
}

/// Imports a native export, a seed-system graph or export, or an Agent Builder workflow.
/// Nodes of kinds that cannot run yet arrive disabled, with a warning each.
pub async fn import_workflow(
    services: &Services,
    actor: &User,
    req: ImportRequest,
) -> WorkflowResult<Saved<(Workflow, Version)>> {
    let imported = formats::read(&req.document).map_err(WorkflowError::InvalidImport)?;
    let mut warnings = formats::repeated_key_warnings(&req.repeated_keys);
    warnings.extend(imported.warnings);
    let saved = match req.workflow_id {
        Some(workflow_id) => {
            let (workflow, _) = writable(services, actor, workflow_id).await?;
            let name = req.version_name.or(Some("Imported version".into()));
            let saved = create_version(
                services,
                actor,
                workflow_id,
                Some(imported.graph),
                name,
                None,
            )
            .await?;
            let version = if req.publish {
                publish(services, actor, workflow_id, saved.value.id, None).await?
            } else {
                saved.value
            };
            let workflow = services
                .store
                .workflow_by_id(workflow.id)
                .await?
                .unwrap_or(workflow);
            Saved {
                value: (workflow, version),
                warnings: saved.warnings,
            }
        }
        None => {
            let display_name = req
                .display_name
                .or(imported.display_name)
                .unwrap_or_else(|| "Imported workflow".to_string());
            let slug = match req.slug.or(imported.slug) {
                Some(slug) if check_slug(&slug).is_ok() => Some(free_slug(services, &slug).await?),
                _ => None,
            };
            create(
                services,
                actor,
                CreateWorkflow {
                    slug,
                    display_name,
                    description: req.description.or(imported.description),
                    graph: Some(imported.graph),
                    version_name: req.version_name.or(Some("Imported version".into())),
                    publish: req.publish,
                },
            )
            .await?
        }
    };
    warnings.extend(saved.warnings);
    Ok(Saved {
        value: saved.value,
        warnings,
    })
}
