//! A server-sent events decoder: bytes in, the `data` of each event out.

/// Accumulates bytes and yields complete events' data, joining multi-line `data:` fields.
#[derive(Default)]
pub struct SseDecoder {
    buffer: Vec<u8>,
    /// The data of the event being read, once it has a `data:` line.
    data: Option<String>,
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
        let mut start = 0;
        while let Some(length) = self.buffer[start..].iter().position(|b| *b == b'\n') {
            let line = &self.buffer[start..start + length];
            start += length + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                events.extend(self.data.take());
            } else if let Some(value) = line.strip_prefix(b"data:") {
                data_line(&mut self.data, value.strip_prefix(b" ").unwrap_or(value));
            }
            // `event:`, `id:`, `retry:` and `:` comments carry nothing we need.
        }
        self.buffer.drain(..start);
        Ok(events)
    }

    /// The data of a last event not followed by a blank line, at the end of the stream.
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.buffer);
        let rest = rest.strip_suffix(b"\r").unwrap_or(&rest);
        if let Some(value) = rest.strip_prefix(b"data:") {
            data_line(&mut self.data, value.trim_ascii_start());
        }
        self.data.take()
    }
}

/// Adds a `data:` line's value to the event's data.
fn data_line(data: &mut Option<String>, value: &[u8]) {
    let value = String::from_utf8_lossy(value);
    match data {
        Some(data) => {
            data.push('\n');
            data.push_str(&value);
        }
        None => *data = Some(value.into_owned()),
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
