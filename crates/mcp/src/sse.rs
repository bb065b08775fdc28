//! Server-sent events read from a byte stream: the event name and its data lines.

use bytes::{Buf, BytesMut};

/// One event; `event` is `message` when the stream names none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event: String,
    pub data: String,
}

/// Accumulates bytes and yields complete events.
#[derive(Default)]
pub struct Decoder {
    buffer: BytesMut,
    event: Option<String>,
    data: Vec<String>,
    /// Bytes of `data` so far.
    size: usize,
}

/// The longest line, and event, accepted; a server that never ends one is cut off.
const MAX_LINE: usize = 16 * 1024 * 1024;

impl Decoder {
    /// Adds bytes; returns the events they complete, or an error for an endless line.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Event>, String> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
            let line = self.buffer.split_to(end + 1);
            let mut line = &line[..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let line = String::from_utf8_lossy(line);
            if line.is_empty() {
                self.size = 0;
                if !self.data.is_empty() {
                    events.push(Event {
                        event: self.event.take().unwrap_or_else(|| "message".into()),
                        data: std::mem::take(&mut self.data).join("\n"),
                    });
                }
                self.event = None;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line.as_ref(), ""),
            };
            match field {
                "event" => self.event = Some(value.to_string()),
                "data" => {
                    self.size += value.len();
                    if self.size > MAX_LINE {
                        self.data.clear();
                        self.size = 0;
                        return Err("an event is longer than 16 MiB".into());
                    }
                    self.data.push(value.to_string());
                }
                _ => {}
            }
        }
        if self.buffer.len() > MAX_LINE {
            self.buffer.advance(self.buffer.len());
            return Err("an event line is longer than 16 MiB".into());
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_lines() {
        let mut decoder = Decoder::default();
        assert!(
            decoder
                .push(b"event: endpoint\r\ndata: /messages/?s")
                .unwrap()
                .is_empty()
        );
        let events = decoder
            .push(b"=1\r\n\r\n: ping\n\ndata: {\"a\":\ndata: 1}\n\n")
            .unwrap();
        assert_eq!(
            events,
            vec![
                Event {
                    event: "endpoint".into(),
                    data: "/messages/?s=1".into()
                },
                Event {
                    event: "message".into(),
                    data: "{\"a\":\n1}".into()
                },
            ]
        );
    }
}
