//! A server-sent events decoder: bytes in, the `data` of each event out.

/// Accumulates bytes and yields complete events' data, joining multi-line `data:` fields.
#[derive(Default)]
pub struct SseDecoder {
    buffer: Vec<u8>,
    data: Vec<String>,
}

/// Events larger than this are refused rather than buffered without bound.
const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

impl SseDecoder {
    /// Feeds bytes; returns the data of every event they complete.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<String>, String> {
        self.buffer.extend_from_slice(chunk);
        if self.buffer.len() > MAX_EVENT_BYTES {
            return Err("an event exceeds 16 MiB".into());
        }
        let mut events = Vec::new();
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    events.push(self.data.join("\n"));
                    self.data.clear();
                }
            } else if let Some(value) = line.strip_prefix("data:") {
                self.data
                    .push(value.strip_prefix(' ').unwrap_or(value).to_string());
            }
            // `event:`, `id:`, `retry:` and `:` comments carry nothing we need.
        }
        Ok(events)
    }

    /// The data of a last event not followed by a blank line, at the end of the stream.
    pub fn finish(&mut self) -> Option<String> {
        let rest = String::from_utf8_lossy(&self.buffer).to_string();
        self.buffer.clear();
        if let Some(value) = rest.trim_end_matches(['\n', '\r']).strip_prefix("data:") {
            self.data.push(value.trim_start().to_string());
        }
        (!self.data.is_empty()).then(|| std::mem::take(&mut self.data).join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_split_and_multiline_events() {
        let mut decoder = SseDecoder::default();
        assert_eq!(
            decoder.push(b"event: x\ndata: {\"a\"").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            decoder
                .push(b": 1}\r\n\r\ndata: one\ndata: two\n\n")
                .unwrap(),
            ["{\"a\": 1}", "one\ntwo"]
        );
        assert_eq!(
            decoder.push(b": keep-alive\n\ndata: [DONE]").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(decoder.finish().as_deref(), Some("[DONE]"));
    }
}
