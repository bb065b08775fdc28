//! The kinds of a run's events and of what a paused run waits for: one enum each, so no
//! consumer (the run API's streams, chat, the command line) matches them by string. On
//! the wire and in the database they are the same strings as always (`run.started`,
//! `user_message`, …).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// Every kind, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The kind's name on the wire and in the database.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            pub fn parse(text: &str) -> Option<$name> {
                match text {
                    $($text => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                $name::parse(&text).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        concat!("unknown ", stringify!($name), " `{}`"),
                        text
                    ))
                })
            }
        }
    };
}

string_enum! {
    /// What happened in a run. Saved events are numbered; the ephemeral ones
    /// ([`EventKind::is_ephemeral`]) are shown live and never saved.
    EventKind {
        RunStarted = "run.started",
        RunResumed = "run.resumed",
        RunWaiting = "run.waiting",
        RunCompleted = "run.completed",
        RunFailed = "run.failed",
        RunCancelled = "run.cancelled",
        /// A waiting conversation moved to the version now in production.
        RunVersionChanged = "run.version_changed",
        NodeStarted = "node.started",
        NodeFinished = "node.finished",
        NodeRetry = "node.retry",
        NodeErrorHandled = "node.error_handled",
        AssistantMessage = "assistant_message",
        UserMessage = "user_message",
        StateUpdated = "state.updated",
        Branch = "branch",
        LoopIteration = "loop.iteration",
        LoopLimitReached = "loop.limit_reached",
        Approval = "approval",
        Widget = "widget",
        WidgetAction = "widget.action",
        StructuredInputAnswered = "structured_input.answered",
        ToolCallStarted = "tool_call.started",
        ToolCallFinished = "tool_call.finished",
        /// A client tool's result, given to a waiting run.
        ToolCallOutput = "tool_call.output",
        /// An agent asked the model again for an answer that fits its schema.
        AgentRepair = "agent.repair",
        KnowledgeSearched = "knowledge.searched",
        KnowledgeIngested = "knowledge.ingested",
        Usage = "usage",
        Warning = "warning",
        AssistantDelta = "assistant.delta",
        ReasoningDelta = "reasoning.delta",
        ToolCallDelta = "tool_call.delta",
        WidgetDelta = "widget.delta",
    }
}

impl EventKind {
    /// Shown to live readers only, never saved (`seq` 0).
    pub fn is_ephemeral(self) -> bool {
        matches!(
            self,
            EventKind::NodeStarted
                | EventKind::AssistantDelta
                | EventKind::ReasoningDelta
                | EventKind::ToolCallDelta
                | EventKind::WidgetDelta
        )
    }

    /// The start, pause and end of a run (`run.*`).
    pub fn is_lifecycle(self) -> bool {
        self.as_str().starts_with("run.")
    }

    /// Ends a run's advance: it finished or paused.
    pub fn stops(self) -> bool {
        matches!(
            self,
            EventKind::RunCompleted
                | EventKind::RunFailed
                | EventKind::RunCancelled
                | EventKind::RunWaiting
        )
    }
}

string_enum! {
    /// What a paused run waits for.
    WaitKind {
        UserMessage = "user_message",
        StructuredInput = "structured_input",
        Approval = "approval",
        WidgetAction = "widget_action",
        ClientToolOutput = "client_tool_output",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_back_as_written() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(*kind));
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, serde_json::json!(kind.as_str()));
            assert_eq!(serde_json::from_value::<EventKind>(json).unwrap(), *kind);
        }
        for kind in WaitKind::ALL {
            assert_eq!(WaitKind::parse(kind.as_str()), Some(*kind));
        }
        assert_eq!(EventKind::parse("run.exploded"), None);
        assert!(serde_json::from_value::<WaitKind>(serde_json::json!("nap")).is_err());
    }
}
