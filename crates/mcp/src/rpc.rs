//! JSON-RPC over a message stream (stdio, the legacy SSE transport): requests waiting for
//! their responses, and the answers we owe the server for its own requests.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::McpError;

/// Requests in flight on one connection.
#[derive(Default)]
pub(crate) struct Pending {
    waiting: Mutex<HashMap<u64, oneshot::Sender<Result<Value, McpError>>>>,
    closed: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl Pending {
    /// Registers request `id`; the receiver gets its response, or the reason the
    /// connection closed.
    pub(crate) fn register(
        &self,
        id: u64,
    ) -> Result<oneshot::Receiver<Result<Value, McpError>>, McpError> {
        let (tx, rx) = oneshot::channel();
        let mut waiting = self.waiting.lock().expect("never poisoned");
        if self.closed.load(Ordering::Acquire) {
            return Err(self.closed_error());
        }
        waiting.insert(id, tx);
        Ok(rx)
    }

    pub(crate) fn forget(&self, id: u64) {
        self.waiting.lock().expect("never poisoned").remove(&id);
    }

    /// Routes one incoming message; returns the reply owed when it is a request.
    pub(crate) fn deliver(&self, message: Value) -> Option<Value> {
        if let Value::Array(batch) = message {
            // A batch of responses (older servers); replies to requests in it are dropped.
            for item in batch {
                self.deliver(item);
            }
            return None;
        }
        if message.get("method").is_some() {
            return reply_to_server(&message);
        }
        let id = message.get("id").and_then(Value::as_u64)?;
        if let Some(tx) = self.waiting.lock().expect("never poisoned").remove(&id) {
            let _ = tx.send(Ok(message));
        }
        None
    }

    /// Fails every waiting request, and every later one, with `reason`.
    pub(crate) fn close(&self, reason: &str) {
        let mut waiting = self.waiting.lock().expect("never poisoned");
        if !self.closed.swap(true, Ordering::AcqRel) {
            *self.reason.lock().expect("never poisoned") = Some(reason.to_string());
        }
        for (_, tx) in waiting.drain() {
            let _ = tx.send(Err(McpError::Closed(reason.to_string())));
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn closed_error(&self) -> McpError {
        McpError::Closed(
            self.reason
                .lock()
                .expect("never poisoned")
                .clone()
                .unwrap_or_else(|| "the connection is closed".into()),
        )
    }
}

/// The answer to a request the server sends us: `ping` is answered, anything else (we
/// offer no sampling, roots or elicitation) is refused. Notifications get nothing.
pub(crate) fn reply_to_server(message: &Value) -> Option<Value> {
    let id = message.get("id")?.clone();
    let method = message.get("method").and_then(Value::as_str).unwrap_or("");
    Some(if method == "ping" {
        json!({"jsonrpc": "2.0", "id": id, "result": {}})
    } else {
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": format!("the client does not offer `{method}`")}})
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn responses_reach_their_requests_and_closing_fails_the_rest() {
        let pending = Pending::default();
        let first = pending.register(1).unwrap();
        let second = pending.register(2).unwrap();
        assert!(
            pending
                .deliver(json!({"jsonrpc": "2.0", "id": 1, "result": {"ok": true}}))
                .is_none()
        );
        assert_eq!(first.await.unwrap().unwrap()["result"]["ok"], true);
        let reply = pending
            .deliver(json!({"jsonrpc": "2.0", "id": "s1", "method": "ping"}))
            .unwrap();
        assert_eq!(reply, json!({"jsonrpc": "2.0", "id": "s1", "result": {}}));
        pending.close("the server process ended");
        assert!(matches!(second.await.unwrap(), Err(McpError::Closed(_))));
        assert!(matches!(pending.register(3), Err(McpError::Closed(m)) if m.contains("ended")));
    }
}
