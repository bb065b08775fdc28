//! Statements built from the filters a caller actually gave: SQL with numbered
//! placeholders and the values to bind, so list queries need no catch-all
//! `($n IS NULL OR column = $n)` filter, which no index can serve.

use chrono::{DateTime, Utc};

use crate::stored_time;

/// A value bound to a built statement. Each variant binds the same Rust type on both
/// backends.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Int(i64),
    Text(String),
    Time(DateTime<Utc>),
}

/// A statement and its values, in placeholder order.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    pub sql: String,
    pub args: Vec<Arg>,
}

impl Built {
    pub fn new(sql: impl Into<String>) -> Built {
        Built {
            sql: sql.into(),
            args: Vec::new(),
        }
    }

    /// Appends `sql`, where each `?` stands for the next of `args` (written as `$n`).
    pub fn push(&mut self, sql: &str, args: impl IntoIterator<Item = Arg>) -> &mut Built {
        let mut args = args.into_iter();
        for (i, part) in sql.split('?').enumerate() {
            if i > 0 {
                let arg = args
                    .next()
                    .expect("a built statement has a value for each placeholder");
                self.args.push(arg);
                self.sql.push('$');
                self.sql.push_str(&self.args.len().to_string());
            }
            self.sql.push_str(part);
        }
        debug_assert!(args.next().is_none(), "more values than placeholders");
        self
    }

    /// Appends `sql` with no values.
    pub fn text(&mut self, sql: &str) -> &mut Built {
        self.sql.push_str(sql);
        self
    }
}

impl Arg {
    pub fn time(at: DateTime<Utc>) -> Arg {
        Arg::Time(stored_time(at))
    }
}

/// Binds a [`Built`]'s values to a sqlx query (or `query_as`) in order; compiled once
/// per backend inside [`crate::with_pool!`].
macro_rules! bind_args {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match arg {
                $crate::args::Arg::Int(value) => query.bind(*value),
                $crate::args::Arg::Text(value) => query.bind(value.as_str()),
                $crate::args::Arg::Time(value) => query.bind(*value),
            };
        }
        query
    }};
}
pub(crate) use bind_args;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order() {
        let mut built = Built::new("SELECT 1 FROM runs WHERE TRUE");
        built
            .push(" AND workflow_id = ?", [Arg::Int(3)])
            .text(" ORDER BY id")
            .push(" LIMIT ? OFFSET ?", [Arg::Int(10), Arg::Int(20)]);
        assert_eq!(
            built.sql,
            "SELECT 1 FROM runs WHERE TRUE AND workflow_id = $1 ORDER BY id LIMIT $2 OFFSET $3"
        );
        assert_eq!(built.args, vec![Arg::Int(3), Arg::Int(10), Arg::Int(20)]);
    }
}
