//! Cutting documents into chunks: JSON documents by entries (the seed's rules, so its
//! stores ingest the same way), text by tokens on heading and sentence boundaries.

use std::sync::OnceLock;

use serde_json::{Map, Value, json};
use tiktoken_rs::CoreBPE;

/// A value longer than this is replaced by a notice (the seed's limit).
const MAX_VALUE_CHARS: usize = 60_000;
/// Past this much text, values are replaced by notices.
const MAX_TOTAL_CHARS: usize = 900_000;
/// Entries per chunk, and how many the next chunk repeats.
const ENTRIES_PER_CHUNK: usize = 40;
const ENTRY_OVERLAP: usize = 8;
/// A line or chunk longer than this is cut into parts.
const MAX_CHUNK_CHARS: usize = 20_000;

/// A JSON document as `path: value` entries.
#[derive(Debug, Default)]
pub struct Flattened {
    pub entries: Vec<(String, String)>,
    /// Paths whose value was replaced by a notice.
    pub redactions: Vec<Value>,
}

/// Flattens JSON into `(path, value)` entries: paths like `a.b[0].c` (`root` for a scalar
/// root); strings as they are, `null` as `null`, other scalars as JSON; long values are
/// replaced by a notice.
pub fn flatten_json(value: &Value) -> Flattened {
    let mut out = Flattened::default();
    let mut total = 0usize;
    walk(value, String::new(), &mut out, &mut total);
    out
}

fn walk(value: &Value, path: String, out: &mut Flattened, total: &mut usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                let path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                walk(child, path, out, total);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (index, child) in items.iter().enumerate() {
                let path = if path.is_empty() {
                    format!("[{index}]")
                } else {
                    format!("{path}[{index}]")
                };
                walk(child, path, out, total);
            }
        }
        scalar => {
            let path = if path.is_empty() {
                "root".to_string()
            } else {
                path
            };
            let mut text = match scalar {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let length = text.chars().count();
            if length > MAX_VALUE_CHARS {
                out.redactions
                    .push(json!({"path": path, "reason": "value_too_long", "length": length}));
                text = format!("<value omitted, original length {length}>");
            } else if *total + length > MAX_TOTAL_CHARS {
                out.redactions
                    .push(json!({"path": path, "reason": "document_too_long", "length": length}));
                text = format!("<value omitted, original length {length}>");
            }
            *total += text.len();
            out.entries.push((path, text));
        }
    }
}

/// Chunks of entries: windows of 40 lines, each repeating the last 8 of the one before;
/// long lines and long chunks are cut into parts. Returns each chunk's text and metadata.
pub fn chunk_entries(entries: &[(String, String)]) -> Vec<(String, Map<String, Value>)> {
    let mut lines: Vec<String> = Vec::new();
    for (path, value) in entries {
        let line = format!("{path}: {value}");
        if line.len() <= MAX_CHUNK_CHARS {
            lines.push(line);
        } else {
            for (part, piece) in split_chars(value, MAX_CHUNK_CHARS.saturating_sub(path.len() + 16))
                .into_iter()
                .enumerate()
            {
                lines.push(format!("{path} (part {}): {piece}", part + 1));
            }
        }
    }
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < lines.len() {
        let end = (start + ENTRIES_PER_CHUNK).min(lines.len());
        let text = lines[start..end].join("\n");
        let count = end - start;
        for piece in split_chars(&text, MAX_CHUNK_CHARS) {
            let mut metadata = Map::new();
            metadata.insert("line_count".into(), json!(count));
            chunks.push((piece, metadata));
        }
        if end == lines.len() {
            break;
        }
        start = end - ENTRY_OVERLAP;
    }
    chunks
}

/// Cuts `text` into pieces of at most `max` bytes, on character boundaries.
fn split_chars(text: &str, max: usize) -> Vec<String> {
    let max = max.max(16);
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push(rest[..cut].to_string());
        rest = &rest[cut..];
    }
    if !rest.is_empty() || out.is_empty() {
        out.push(rest.to_string());
    }
    out
}

/// The tokenizer chunks are measured with (`cl100k_base`, that of OpenAI's embedding
/// models); built once.
fn tokenizer() -> &'static CoreBPE {
    static BPE: OnceLock<CoreBPE> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::cl100k_base().expect("the embedded cl100k tokenizer loads"))
}

pub fn count_tokens(text: &str) -> usize {
    tokenizer().encode_ordinary(text).len()
}

/// One piece of a text: a heading, or a sentence (or a line) of a paragraph.
#[derive(Debug)]
struct Unit {
    text: String,
    tokens: usize,
    heading: Option<(usize, String)>,
    /// Starts a paragraph (joined to the previous unit by a blank line).
    paragraph: bool,
}

/// Cuts text (plain or Markdown) into chunks of at most `max_tokens` tokens. Chunks end on
/// sentence boundaries and prefer to start at headings; each repeats up to `overlap`
/// tokens of whole sentences from the end of the one before. A chunk's metadata carries
/// the headings it falls under (`section`).
pub fn chunk_text(
    text: &str,
    max_tokens: usize,
    overlap: usize,
) -> Vec<(String, Map<String, Value>)> {
    let max_tokens = max_tokens.max(16);
    let units = units(text, max_tokens);
    let mut chunks = Vec::new();
    let mut current: Vec<&Unit> = Vec::new();
    let mut tokens = 0usize;
    let mut headings: Vec<(usize, String)> = Vec::new();
    // The headings above the chunk's first sentence.
    let mut section: Option<Vec<String>> = None;
    for unit in &units {
        let has_content = current.iter().any(|u| u.heading.is_none());
        let fits = tokens + unit.tokens <= max_tokens;
        // A heading after some text closes the chunk, so sections start chunks.
        let heading_break = unit.heading.is_some() && has_content;
        if has_content && (!fits || heading_break) {
            chunks.push(joined(&current, section.as_deref().unwrap_or_default()));
            // The overlap: whole sentences from the end, never across a heading.
            let mut kept: Vec<&Unit> = Vec::new();
            let mut kept_tokens = 0;
            if !heading_break {
                for prev in current.iter().rev() {
                    if prev.heading.is_some() || kept_tokens + prev.tokens > overlap {
                        break;
                    }
                    kept_tokens += prev.tokens;
                    kept.insert(0, prev);
                }
                while !kept.is_empty() && kept_tokens + unit.tokens > max_tokens {
                    kept_tokens -= kept[0].tokens;
                    kept.remove(0);
                }
            }
            if kept.is_empty() {
                section = None;
            }
            current = kept;
            tokens = kept_tokens;
        } else if !fits && !current.is_empty() {
            // Only headings so far, and they do not leave room: drop the oldest.
            while !current.is_empty() && tokens + unit.tokens > max_tokens {
                tokens -= current[0].tokens;
                current.remove(0);
            }
        }
        if let Some((level, title)) = &unit.heading {
            headings.retain(|(l, _)| l < level);
            headings.push((*level, title.clone()));
        } else if section.is_none() {
            section = Some(headings.iter().map(|(_, t)| t.clone()).collect());
        }
        current.push(unit);
        tokens += unit.tokens;
    }
    if current.iter().any(|u| u.heading.is_none()) {
        chunks.push(joined(&current, section.as_deref().unwrap_or_default()));
    }
    chunks
}

fn joined(units: &[&Unit], section: &[String]) -> (String, Map<String, Value>) {
    let mut text = String::new();
    for unit in units {
        if !text.is_empty() {
            text.push_str(if unit.paragraph || unit.heading.is_some() {
                "\n\n"
            } else {
                " "
            });
        }
        text.push_str(&unit.text);
    }
    let mut metadata = Map::new();
    if !section.is_empty() {
        metadata.insert("section".into(), json!(section.join(" > ")));
    }
    (text, metadata)
}

/// Headings, then the sentences of each paragraph; a sentence longer than `max_tokens`
/// is cut by words.
fn units(text: &str, max_tokens: usize) -> Vec<Unit> {
    let mut units = Vec::new();
    let normalized = text.replace("\r\n", "\n");
    for block in normalized.split("\n\n") {
        let mut paragraph = true;
        for line in block.lines() {
            let trimmed = line.trim();
            if trimmed.is_empty() {
                paragraph = true;
                continue;
            }
            if let Some(heading) = markdown_heading(trimmed) {
                units.push(Unit {
                    tokens: count_tokens(trimmed),
                    text: trimmed.to_string(),
                    heading: Some(heading),
                    paragraph: true,
                });
                paragraph = true;
                continue;
            }
            // A list item or table row stands on its own line.
            let own_line = trimmed.starts_with(['-', '*', '|', '>']) || starts_numbered(trimmed);
            for sentence in sentences(trimmed) {
                let tokens = count_tokens(&sentence);
                if tokens <= max_tokens {
                    units.push(Unit {
                        text: sentence,
                        tokens,
                        heading: None,
                        paragraph: paragraph || own_line,
                    });
                } else {
                    for (i, piece) in split_words(&sentence, max_tokens).into_iter().enumerate() {
                        units.push(Unit {
                            tokens: count_tokens(&piece),
                            text: piece,
                            heading: None,
                            paragraph: (paragraph || own_line) && i == 0,
                        });
                    }
                }
                paragraph = false;
            }
        }
    }
    units
}

fn markdown_heading(line: &str) -> Option<(usize, String)> {
    let level = line.bytes().take_while(|b| *b == b'#').count();
    if (1..=6).contains(&level) && line[level..].starts_with(' ') {
        Some((level, line[level..].trim().to_string()))
    } else {
        None
    }
}

fn starts_numbered(line: &str) -> bool {
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && line[digits..].starts_with(['.', ')'])
}

/// Splits a line after `.`, `!`, `?` (or `。`) followed by a space and an upper-case
/// letter, a digit or a quote, so abbreviations such as "e.g. this" stay together.
fn sentences(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    for i in 0..chars.len() {
        let (at, c) = chars[i];
        let end_mark = matches!(c, '.' | '!' | '?' | '。' | '！' | '？');
        if !end_mark {
            continue;
        }
        let next = chars.get(i + 1).map(|(_, c)| *c);
        let after = chars.get(i + 2).map(|(_, c)| *c);
        let boundary = matches!(c, '。' | '！' | '？')
            || (next == Some(' ')
                && after.is_some_and(|a| a.is_uppercase() || a.is_ascii_digit() || a == '"'));
        if boundary {
            let end = at + c.len_utf8();
            let sentence = line[start..end].trim();
            if !sentence.is_empty() {
                out.push(sentence.to_string());
            }
            start = end;
        }
    }
    let rest = line[start..].trim();
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

/// Cuts an over-long sentence into pieces of at most `max_tokens` tokens, by words.
fn split_words(sentence: &str, max_tokens: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut tokens = 0;
    for word in sentence.split_whitespace() {
        let word_tokens = count_tokens(word) + 1;
        if tokens + word_tokens > max_tokens && !current.is_empty() {
            out.push(std::mem::take(&mut current));
            tokens = 0;
        }
        if word_tokens > max_tokens {
            // A "word" with no spaces (a long URL, base64): cut by characters.
            for piece in split_chars(word, max_tokens * 2) {
                out.push(piece);
            }
            continue;
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
        tokens += word_tokens;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_flattened_like_the_seed() {
        let doc = json!({"title": "Guide", "steps": [{"n": 1, "text": "Open"}, "Close"], "empty": {}, "none": null});
        let flat = flatten_json(&doc);
        let lines: Vec<String> = flat
            .entries
            .iter()
            .map(|(p, v)| format!("{p}: {v}"))
            .collect();
        assert_eq!(
            lines,
            // Keys in sorted order (objects are read into sorted maps).
            [
                "empty: {}",
                "none: null",
                "steps[0].n: 1",
                "steps[0].text: Open",
                "steps[1]: Close",
                "title: Guide"
            ]
        );
        assert_eq!(
            flatten_json(&json!("x")).entries,
            [("root".to_string(), "x".to_string())]
        );
        let long = flatten_json(&json!({"big": "x".repeat(MAX_VALUE_CHARS + 1)}));
        assert!(long.entries[0].1.starts_with("<value omitted"));
        assert_eq!(long.redactions[0]["path"], "big");
    }

    #[test]
    fn entries_are_windowed_with_overlap() {
        let entries: Vec<(String, String)> = (0..100)
            .map(|i| (format!("k{i}"), format!("v{i}")))
            .collect();
        let chunks = chunk_entries(&entries);
        // 0..40, 32..72, 64..100
        assert_eq!(chunks.len(), 3);
        assert!(chunks[0].0.starts_with("k0: v0\n") && chunks[0].0.ends_with("k39: v39"));
        assert!(chunks[1].0.starts_with("k32: v32\n") && chunks[1].0.ends_with("k71: v71"));
        assert!(chunks[2].0.starts_with("k64: v64\n") && chunks[2].0.ends_with("k99: v99"));
        assert_eq!(chunks[2].1["line_count"], 36);
        let long = chunk_entries(&[("p".into(), "y".repeat(MAX_CHUNK_CHARS * 2))]);
        assert!(long.len() >= 2);
        assert!(long[0].0.starts_with("p (part 1): "));
        assert!(long.iter().all(|(t, _)| t.len() <= MAX_CHUNK_CHARS));
        // A path longer than a chunk does not break the cut.
        let deep = chunk_entries(&[("p".repeat(MAX_CHUNK_CHARS + 10), "value".into())]);
        assert!(!deep.is_empty());
    }

    #[test]
    fn sentences_split_on_real_ends_only() {
        assert_eq!(
            sentences("It works, e.g. here. Then 2 more! Really? yes. Done"),
            [
                "It works, e.g. here.",
                "Then 2 more!",
                "Really? yes.",
                "Done"
            ]
        );
    }

    #[test]
    fn text_chunks_respect_tokens_sentences_and_headings() {
        let mut text = String::from("# Install\n\n");
        for i in 0..30 {
            text.push_str(&format!("Step {i} copies the files to the target folder. "));
        }
        text.push_str(
            "\n\n## Configure\n\nSet the port. Restart the server.\n\n# Use\n\nOpen the page.",
        );
        let chunks = chunk_text(&text, 60, 15);
        assert!(chunks.len() > 3);
        for (chunk, _) in &chunks {
            assert!(count_tokens(chunk) <= 60 + 8, "{chunk}");
            // Every chunk ends at the end of a sentence.
            assert!(chunk.ends_with('.'), "{chunk:?}");
        }
        // Consecutive chunks of one section share a sentence (the overlap).
        let first_last = chunks[0]
            .0
            .rsplit(". ")
            .next()
            .unwrap()
            .trim_end_matches('.');
        assert!(chunks[1].0.contains(first_last));
        // Sections are named in the metadata, and a heading starts a chunk.
        assert_eq!(chunks[0].1["section"], "Install");
        let configure = chunks
            .iter()
            .find(|(t, _)| t.contains("Set the port"))
            .unwrap();
        assert!(configure.0.starts_with("## Configure"));
        assert_eq!(configure.1["section"], "Install > Configure");
        let usage = chunks.last().unwrap();
        assert_eq!(usage.1["section"], "Use");
        assert!(usage.0.contains("Open the page."));
    }

    #[test]
    fn a_sentence_longer_than_a_chunk_is_cut_by_words() {
        let long = "word ".repeat(500);
        let chunks = chunk_text(&long, 50, 0);
        assert!(chunks.len() >= 9);
        assert!(chunks.iter().all(|(t, _)| count_tokens(t) <= 60));
    }
}
