//! `parallel_split` and `parallel_join`: run branches concurrently, then merge at the join.
//!
//! ```json
//! {"join_slug": "merge", "branches": [{"slug": "left", "label": "Search"}, {"slug": "right", "label": "Draft"}]}
//! ```
//! The split has one outgoing edge per branch; the join named by `join_slug` collects them.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Problems, has_extra};

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
