//! `parallel_split` and `parallel_join`: run branches concurrently, then merge at the join.
//!
//! ```json
//! {"join_slug": "merge", "branches": [{"slug": "left", "label": "Search"}, {"slug": "right", "label": "Draft"}]}
//! ```
//! The split has one outgoing edge per branch; the join named by `join_slug` collects them.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    Kind, NodeKind, Place, Problems, Role, StepFuture, check_config, config_of, has_extra, ready,
};
use crate::{
    runs::{
        compose,
        step::{Log, RunCtx},
    },
    workflows::Node,
};

pub(crate) const SPLIT_EXAMPLE: &str = r#"{"join_slug": "merge", "branches": [{"slug": "left", "label": "Search"}, {"slug": "right", "label": "Draft"}]}"#;
pub(crate) const JOIN_EXAMPLE: &str = "{}";

#[derive(Debug, Clone, Deserialize)]
pub struct ParallelSplit {
    #[serde(default)]
    pub join_slug: String,
    #[serde(default)]
    pub branches: Vec<SplitBranch>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
has_extra!(ParallelSplit);

/// A branch: `{slug, label?}` or a bare slug.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SplitBranch {
    Slug(String),
    Full {
        slug: String,
        #[serde(default)]
        label: Option<String>,
    },
}

impl SplitBranch {
    pub fn slug(&self) -> &str {
        match self {
            SplitBranch::Slug(slug) | SplitBranch::Full { slug, .. } => slug.trim(),
        }
    }
}

impl ParallelSplit {
    pub(crate) fn check(&self, problems: &mut Problems) {
        if self.join_slug.trim().is_empty() {
            problems.error(
                "invalid_parameter",
                Some("parameters.join_slug"),
                "a split needs the slug of its `parallel_join`",
            );
        }
        if self.branches.len() < 2 {
            problems.error(
                "invalid_parameter",
                Some("parameters.branches"),
                "a split needs at least two branches",
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (index, branch) in self.branches.iter().enumerate() {
            if branch.slug().is_empty() || !seen.insert(branch.slug().to_string()) {
                problems.error(
                    "invalid_parameter",
                    Some(&format!("parameters.branches[{index}].slug")),
                    "branch slugs must be non-empty and unique",
                );
            }
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ParallelJoin {
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
has_extra!(ParallelJoin);

pub const SPLIT: Kind = Kind::of(&SplitKind);
pub const JOIN: Kind = Kind::of(&JoinKind);

struct SplitKind;

impl NodeKind for SplitKind {
    fn name(&self) -> &'static str {
        "parallel_split"
    }

    fn example(&self) -> &'static str {
        SPLIT_EXAMPLE
    }

    fn check(&self, params: &Map<String, Value>, problems: &mut Problems) -> bool {
        check_config::<ParallelSplit>(params, problems, ParallelSplit::check)
    }

    /// One edge per branch, branch slugs that are not node slugs, and a join of its own.
    fn check_edges(&self, place: &mut Place<'_>, problems: &mut Problems) {
        let Some(split) = config_of::<ParallelSplit>(place.params) else {
            return;
        };
        let slug = place.slug;
        if place.out.len() != split.branches.len() {
            problems.error_on(
                slug,
                "split_branch_mismatch",
                Some("parameters.branches"),
                format!(
                    "the split declares {} branches but has {} outgoing edges",
                    split.branches.len(),
                    place.out.len()
                ),
            );
        }
        for branch in &split.branches {
            if place.slugs.contains(branch.slug()) {
                problems.error_on(
                    slug,
                    "branch_slug_collision",
                    Some("parameters.branches"),
                    format!("branch slug `{}` is also a node slug", branch.slug()),
                );
            }
        }
        let join = split.join_slug.trim();
        if (place.role_of)(join) != Some(Role::Join) || join == slug {
            problems.error_on(
                slug,
                "invalid_join",
                Some("parameters.join_slug"),
                format!("`{join}` is not an enabled parallel_join node"),
            );
        } else if let Some(other) = place.joins.insert(join.to_string(), slug.to_string()) {
            problems.error_on(
                slug,
                "join_claimed_twice",
                Some("parameters.join_slug"),
                format!("the join `{join}` already belongs to the split `{other}`"),
            );
        }
    }

    fn effectful(&self) -> bool {
        true
    }

    fn execute<'s, 'c: 's, 'l: 's>(
        &'s self,
        ctx: &'s RunCtx<'c>,
        log: &'s mut Log<'l>,
        node: &'s Node,
    ) -> StepFuture<'s> {
        Box::pin(compose::split(ctx, log, node))
    }
}

struct JoinKind;

impl NodeKind for JoinKind {
    fn name(&self) -> &'static str {
        "parallel_join"
    }

    fn role(&self) -> Role {
        Role::Join
    }

    fn example(&self) -> &'static str {
        JOIN_EXAMPLE
    }

    fn check(&self, params: &Map<String, Value>, problems: &mut Problems) -> bool {
        check_config::<ParallelJoin>(params, problems, |_, _| {})
    }

    fn check_edges(&self, place: &mut Place<'_>, problems: &mut Problems) {
        if place.incoming < 2 {
            problems.error_on(
                place.slug,
                "join_incoming",
                None,
                "a parallel join needs at least two incoming edges",
            );
        }
    }

    fn execute<'s, 'c: 's, 'l: 's>(
        &'s self,
        _ctx: &'s RunCtx<'c>,
        log: &'s mut Log<'l>,
        node: &'s Node,
    ) -> StepFuture<'s> {
        ready(compose::join(log, node))
    }
}
