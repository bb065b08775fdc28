//! Reads a JSON text that a model is still writing: the value so far, with open strings,
//! arrays and objects closed where the text stops. A key without its value, a number or
//! literal that may still grow, and a half-written escape are left out.
//!
//! Used to show a structured answer while it streams (an agent's widget filling in).

use serde_json::{Map, Value};

/// The value a JSON prefix describes so far (text before the first `{` or `[` is
/// skipped, as models sometimes open with a code fence); `None` before anything usable.
pub fn parse_prefix(text: &str) -> Option<Value> {
    let start = text.find(['{', '['])?;
    let mut parser = Parser {
        bytes: &text.as_bytes()[start..],
        at: 0,
    };
    parser.value().map(|(value, _)| value)
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn peek(&mut self) -> Option<u8> {
        while let Some(&b) = self.bytes.get(self.at) {
            if b.is_ascii_whitespace() {
                self.at += 1;
            } else {
                return Some(b);
            }
        }
        None
    }

    /// A value and whether it is complete; `None` when nothing of it can be shown yet.
    fn value(&mut self) -> Option<(Value, bool)> {
        match self.peek()? {
            b'{' => Some(self.object()),
            b'[' => Some(self.array()),
            b'"' => {
                let (text, complete) = self.string();
                Some((Value::String(text), complete))
            }
            _ => self.scalar().map(|v| (v, true)),
        }
    }

    fn object(&mut self) -> (Value, bool) {
        self.at += 1;
        let mut map = Map::new();
        loop {
            match self.peek() {
                None => return (Value::Object(map), false),
                Some(b'}') => {
                    self.at += 1;
                    return (Value::Object(map), true);
                }
                Some(b',') => self.at += 1,
                Some(b'"') => {
                    let (key, complete) = self.string();
                    if !complete || self.peek() != Some(b':') {
                        return (Value::Object(map), false);
                    }
                    self.at += 1;
                    match self.value() {
                        Some((value, true)) => {
                            map.insert(key, value);
                        }
                        Some((value, false)) => {
                            map.insert(key, value);
                            return (Value::Object(map), false);
                        }
                        None => return (Value::Object(map), false),
                    }
                }
                // Not JSON: show what was read.
                Some(_) => return (Value::Object(map), false),
            }
        }
    }

    fn array(&mut self) -> (Value, bool) {
        self.at += 1;
        let mut items = Vec::new();
        loop {
            match self.peek() {
                None => return (Value::Array(items), false),
                Some(b']') => {
                    self.at += 1;
                    return (Value::Array(items), true);
                }
                Some(b',') => self.at += 1,
                Some(_) => match self.value() {
                    Some((value, true)) => items.push(value),
                    Some((value, false)) => {
                        items.push(value);
                        return (Value::Array(items), false);
                    }
                    None => return (Value::Array(items), false),
                },
            }
        }
    }

    /// A string from its opening quote: its text so far and whether it closed.
    fn string(&mut self) -> (String, bool) {
        self.at += 1;
        let mut out: Vec<u8> = Vec::new();
        while let Some(&b) = self.bytes.get(self.at) {
            match b {
                b'"' => {
                    self.at += 1;
                    return (String::from_utf8_lossy(&out).into_owned(), true);
                }
                b'\\' => {
                    let Some(&escaped) = self.bytes.get(self.at + 1) else {
                        break;
                    };
                    let simple = match escaped {
                        b'n' => Some(b'\n'),
                        b't' => Some(b'\t'),
                        b'r' => Some(b'\r'),
                        b'b' => Some(0x08),
                        b'f' => Some(0x0c),
                        b'u' => None,
                        other => Some(other),
                    };
                    if let Some(byte) = simple {
                        out.push(byte);
                        self.at += 2;
                        continue;
                    }
                    let Some(hex) = self
                        .bytes
                        .get(self.at + 2..self.at + 6)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                    else {
                        break;
                    };
                    self.at += 6;
                    let c = if (0xD800..0xDC00).contains(&hex) {
                        // A surrogate pair: the low half follows as `\uXXXX`.
                        let low = self
                            .bytes
                            .get(self.at..self.at + 6)
                            .filter(|l| l.starts_with(b"\\u"))
                            .and_then(|l| std::str::from_utf8(&l[2..]).ok())
                            .and_then(|h| u32::from_str_radix(h, 16).ok());
                        let Some(low) = low else {
                            break;
                        };
                        self.at += 6;
                        char::from_u32(
                            0x10000 + ((hex - 0xD800) << 10) + (low.wrapping_sub(0xDC00)),
                        )
                    } else {
                        char::from_u32(hex)
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(
                        c.unwrap_or(char::REPLACEMENT_CHARACTER)
                            .encode_utf8(&mut buf)
                            .as_bytes(),
                    );
                }
                _ => {
                    out.push(b);
                    self.at += 1;
                }
            }
        }
        self.at = self.bytes.len();
        // A text cut inside a multi-byte character loses that character.
        let text = match String::from_utf8(out) {
            Ok(text) => text,
            Err(err) => {
                let valid = err.utf8_error().valid_up_to();
                let mut bytes = err.into_bytes();
                bytes.truncate(valid);
                String::from_utf8(bytes).unwrap_or_default()
            }
        };
        (text, false)
    }

    /// A number or literal, only once something follows it.
    fn scalar(&mut self) -> Option<Value> {
        let start = self.at;
        while let Some(&b) = self.bytes.get(self.at) {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.') {
                self.at += 1;
            } else {
                break;
            }
        }
        if self.at == self.bytes.len() {
            return None;
        }
        serde_json::from_slice(&self.bytes[start..self.at]).ok()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn prefixes_read_as_far_as_they_go() {
        let full = r#"```json
{"title": "Pasta \"al\" forno", "n": 12, "ok": true, "tags": ["a", "b"], "note": "caf\u00e9 \ud83d\ude00"}"#;
        let mut last = Value::Null;
        for end in 0..=full.len() {
            if !full.is_char_boundary(end) {
                continue;
            }
            let Some(value) = parse_prefix(&full[..end]) else {
                assert!(end <= full.find('{').unwrap());
                continue;
            };
            // Strings only grow, keys never disappear.
            if let (Some(before), Some(now)) = (last.as_object(), value.as_object()) {
                for (key, old) in before {
                    let new = &now[key];
                    match (old, new) {
                        (Value::String(a), Value::String(b)) => {
                            assert!(b.starts_with(a.as_str()), "{a} → {b}")
                        }
                        (Value::Array(a), Value::Array(b)) => assert!(b.len() >= a.len()),
                        (a, b) => assert_eq!(a, b),
                    }
                }
            }
            last = value;
        }
        assert_eq!(
            last,
            json!({"title": "Pasta \"al\" forno", "n": 12, "ok": true, "tags": ["a", "b"], "note": "café 😀"})
        );
        assert_eq!(
            parse_prefix(r#"{"title": "Pas"#),
            Some(json!({"title": "Pas"}))
        );
        assert_eq!(
            parse_prefix(r#"{"title": "Pasta", "n": 1"#),
            Some(json!({"title": "Pasta"}))
        );
        assert_eq!(
            parse_prefix(r#"{"title": "Pasta", "ti"#),
            Some(json!({"title": "Pasta"}))
        );
        assert_eq!(parse_prefix(r#"{"a": "x\"#), Some(json!({"a": "x"})));
        assert_eq!(parse_prefix(r#"{"a": "\u00"#), Some(json!({"a": ""})));
        assert_eq!(parse_prefix("no json"), None);
    }
}
