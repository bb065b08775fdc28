//! What a turn shows as it happens, in no channel's protocol: the conversation core's
//! events, which each channel maps onto what it sends (ChatKit stream events, speech, an
//! LTI page).
//!
//! Invariants:
//! - Every item in an event is already saved as the event says (`ItemStarted` items are
//!   saved by their `ItemDone`); a channel never writes items itself.
//! - An item that grows (`ItemStarted`) gets its growth (`TextDelta`, `WidgetChanged`,
//!   `TaskAdded`, `TaskUpdated`) under its id, then exactly one `ItemDone` with its final
//!   form, unless the client went away first.

use conversation::{Task, ThreadItem};
use serde_json::Value;

use super::ChatThread;

/// One event of a turn.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnEvent {
    /// The thread this turn created (its first event).
    ThreadCreated(ChatThread),
    /// The thread's title or status changed.
    ThreadUpdated(ChatThread),
    /// An item begins and will grow: an assistant message (text follows), a widget
    /// filling in, or the assistant's work (reasoning and tool calls, as tasks).
    ItemStarted(ThreadItem),
    /// Text added to the assistant message `item_id`.
    TextDelta { item_id: String, delta: String },
    /// The widget `item_id`, filling in, as it is now.
    WidgetChanged { item_id: String, widget: Value },
    /// A task added to the work item `item_id`, at `index`.
    TaskAdded {
        item_id: String,
        index: usize,
        task: Task,
    },
    /// The task at `index` of the work item `item_id`, as it is now.
    TaskUpdated {
        item_id: String,
        index: usize,
        task: Task,
    },
    /// An item in its final form: a new one whole, or one that grew, finished.
    ItemDone(ThreadItem),
    /// An item shown earlier, changed by the answer it took (questions answered, a
    /// clicked widget showing the decision).
    ItemChanged(ThreadItem),
    /// The assistant is answering: from here the client may cancel the turn by leaving.
    Answering,
    /// A step with a title began.
    Progress(String),
    /// The turn could not go on; the message is for the user (`None`: an internal
    /// failure whose detail stays in the server's log). The user may try again.
    Failed(Option<String>),
}
