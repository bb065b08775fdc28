//! Reading uploaded files: the text of each supported type, ready for chunking.

use serde_json::Value;

use super::chunking;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Text,
    Markdown,
    Html,
    Json,
    Csv,
    Pdf,
    Docx,
}

/// What a file yields: prose (cut by tokens) or entries (cut by lines, as JSON is).
#[derive(Debug, PartialEq)]
pub enum Extracted {
    Text(String),
    Entries(Vec<(String, String)>),
}

impl FileKind {
    pub const SUPPORTED: &'static str = ".txt, .md, .html, .json, .csv, .pdf or .docx";

    /// The kind of a file from its extension, else its declared type.
    pub fn detect(filename: &str, mime_type: Option<&str>) -> Option<FileKind> {
        let extension = filename
            .rsplit_once('.')
            .map(|(_, ext)| ext.to_ascii_lowercase());
        let by_extension = match extension.as_deref() {
            Some("txt" | "text" | "log") => Some(FileKind::Text),
            Some("md" | "markdown") => Some(FileKind::Markdown),
            Some("html" | "htm") => Some(FileKind::Html),
            Some("json") => Some(FileKind::Json),
            Some("csv") => Some(FileKind::Csv),
            Some("pdf") => Some(FileKind::Pdf),
            Some("docx") => Some(FileKind::Docx),
            _ => None,
        };
        by_extension.or_else(|| {
            let mime = mime_type?.split(';').next()?.trim().to_ascii_lowercase();
            match mime.as_str() {
                "text/plain" => Some(FileKind::Text),
                "text/markdown" => Some(FileKind::Markdown),
                "text/html" => Some(FileKind::Html),
                "application/json" => Some(FileKind::Json),
                "text/csv" => Some(FileKind::Csv),
                "application/pdf" => Some(FileKind::Pdf),
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => {
                    Some(FileKind::Docx)
                }
                _ => None,
            }
        })
    }

    pub fn mime_type(self) -> &'static str {
        match self {
            FileKind::Text => "text/plain",
            FileKind::Markdown => "text/markdown",
            FileKind::Html => "text/html",
            FileKind::Json => "application/json",
            FileKind::Csv => "text/csv",
            FileKind::Pdf => "application/pdf",
            FileKind::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
        }
    }

    /// The file's content, or why it cannot be read. PDF parsing is CPU work: call this
    /// off the async threads.
    pub fn extract(self, bytes: &[u8]) -> Result<Extracted, String> {
        match self {
            FileKind::Pdf => return pdf_text(bytes).map(Extracted::Text),
            FileKind::Docx => return docx_text(bytes).map(Extracted::Text),
            _ => {}
        }
        let text = decode(bytes)?;
        Ok(match self {
            FileKind::Text | FileKind::Markdown => Extracted::Text(text),
            FileKind::Html => Extracted::Text(html_to_text(&text)),
            FileKind::Json => {
                let value: Value = serde_json::from_str(&text)
                    .map_err(|err| format!("the file is not valid JSON: {err}"))?;
                Extracted::Entries(chunking::flatten_json(&value).entries)
            }
            FileKind::Csv => Extracted::Entries(csv_entries(&text)?),
            FileKind::Pdf | FileKind::Docx => unreachable!("read above"),
        })
    }
}

/// The text of a PDF's pages. A malformed file is an error, never a crash: the parser's
/// panics are caught.
fn pdf_text(bytes: &[u8]) -> Result<String, String> {
    if !bytes.starts_with(b"%PDF") {
        return Err("the file is not a PDF (it does not start with %PDF)".into());
    }
    let owned = bytes.to_vec();
    let result = std::panic::catch_unwind(move || pdf_extract::extract_text_from_mem(&owned));
    let text = match result {
        Ok(Ok(text)) => text,
        Ok(Err(err)) => return Err(format!("the PDF could not be read: {err}")),
        Err(_) => return Err("the PDF could not be read (it is malformed)".into()),
    };
    let text = text.replace('\0', "");
    if text.trim().is_empty() {
        return Err("the PDF has no text layer (a scan needs OCR first)".into());
    }
    Ok(text)
}

/// The text of a Word document (`word/document.xml`): paragraphs on their own lines,
/// headings (styles `Heading1`…`Heading6`, `Title`) as Markdown headings, tabs and breaks
/// kept.
fn docx_text(bytes: &[u8]) -> Result<String, String> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|err| format!("the file is not a .docx (zip) document: {err}"))?;
    let mut xml = String::new();
    archive
        .by_name("word/document.xml")
        .map_err(|_| "the .docx has no word/document.xml".to_string())?
        .take(64 * 1024 * 1024)
        .read_to_string(&mut xml)
        .map_err(|err| format!("the .docx could not be read: {err}"))?;
    Ok(docx_xml_text(&xml))
}

fn docx_xml_text(xml: &str) -> String {
    let mut out = String::new();
    let mut paragraph = String::new();
    let mut heading: Option<usize> = None;
    let mut in_text = false;
    let mut rest = xml;
    while let Some(lt) = rest.find('<') {
        if in_text {
            push_text(&mut paragraph, &rest[..lt]);
        }
        let after = &rest[lt + 1..];
        let Some(gt) = after.find('>') else { break };
        let tag = &after[..gt];
        rest = &after[gt + 1..];
        let closing = tag.starts_with('/');
        let name = tag
            .trim_start_matches('/')
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap_or_default();
        match name {
            "w:t" => in_text = !closing && !tag.ends_with('/'),
            "w:tab" if !closing => paragraph.push('\t'),
            "w:br" | "w:cr" if !closing => paragraph.push('\n'),
            "w:pStyle" => {
                let value = tag
                    .split("w:val=\"")
                    .nth(1)
                    .and_then(|v| v.split('"').next())
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                heading = if value == "title" {
                    Some(1)
                } else {
                    value
                        .strip_prefix("heading")
                        .and_then(|n| n.parse::<usize>().ok())
                        .filter(|n| (1..=6).contains(n))
                };
            }
            "w:p" if closing => {
                let text = paragraph.trim();
                if !text.is_empty() {
                    if let Some(level) = heading {
                        out.push_str(&"#".repeat(level));
                        out.push(' ');
                    }
                    out.push_str(text);
                    out.push_str("\n\n");
                }
                paragraph.clear();
                heading = None;
            }
            _ => {}
        }
    }
    out.trim_end().to_string()
}

/// UTF-8 (with or without a byte-order mark), or UTF-16 with one.
fn decode(bytes: &[u8]) -> Result<String, String> {
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return String::from_utf8(rest.to_vec()).map_err(|_| "the file is not valid UTF-8".into());
    }
    for (bom, little) in [([0xFF, 0xFE], true), ([0xFE, 0xFF], false)] {
        if let Some(rest) = bytes.strip_prefix(&bom) {
            let units: Vec<u16> = rest
                .chunks_exact(2)
                .map(|c| {
                    if little {
                        u16::from_le_bytes([c[0], c[1]])
                    } else {
                        u16::from_be_bytes([c[0], c[1]])
                    }
                })
                .collect();
            return String::from_utf16(&units).map_err(|_| "the file is not valid UTF-16".into());
        }
    }
    String::from_utf8(bytes.to_vec())
        .map_err(|_| "the file is not UTF-8 text (convert it to UTF-8 first)".into())
}

/// HTML as text: scripts, styles and comments dropped, headings as Markdown headings,
/// blocks on their own lines, list items as `- `, entities decoded.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    let mut skip_until: Option<&'static str> = None;
    while !rest.is_empty() {
        if let Some(end) = skip_until {
            match find_ci(rest, end) {
                Some(at) => {
                    rest = &rest[at + end.len()..];
                    skip_until = None;
                }
                None => break,
            }
            continue;
        }
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |at| &after[at + 3..]);
            continue;
        }
        let Some(lt) = rest.find('<') else {
            push_text(&mut out, rest);
            break;
        };
        push_text(&mut out, &rest[..lt]);
        let after = &rest[lt + 1..];
        let Some(gt) = after.find('>') else {
            push_text(&mut out, rest);
            break;
        };
        let tag = &after[..gt];
        rest = &after[gt + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        match name.as_str() {
            "script" if !closing => skip_until = Some("</script>"),
            "style" if !closing => skip_until = Some("</style>"),
            "head" if !closing => skip_until = Some("</head>"),
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                out.push_str("\n\n");
                if !closing {
                    let level = usize::from(name.as_bytes()[1] - b'0');
                    out.push_str(&"#".repeat(level));
                    out.push(' ');
                }
            }
            "li" if !closing => out.push_str("\n- "),
            "br" => out.push('\n'),
            "p" | "div" | "section" | "article" | "header" | "footer" | "ul" | "ol" | "table"
            | "blockquote" | "pre" | "main" | "nav" | "aside" | "hr" => out.push_str("\n\n"),
            "tr" => out.push('\n'),
            "td" | "th" if !closing => out.push_str(" | "),
            _ => {}
        }
    }
    // Tidy: trim each line, at most one blank line in a row.
    let mut tidy = String::with_capacity(out.len());
    let mut blank = true;
    for line in out.lines() {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() {
            if !blank {
                tidy.push('\n');
            }
            blank = true;
        } else {
            tidy.push_str(&line);
            tidy.push('\n');
            blank = false;
        }
    }
    tidy.trim().to_string()
}

fn find_ci(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

fn push_text(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let end = after.find(';').filter(|e| *e <= 10);
        let decoded = end.and_then(|e| entity(&after[..e]));
        match (end, decoded) {
            (Some(e), Some(c)) => {
                out.push(c);
                rest = &after[e + 1..];
            }
            _ => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
}

fn entity(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        "eacute" => 'é',
        "egrave" => 'è',
        "agrave" => 'à',
        "ccedil" => 'ç',
        "ndash" => '–',
        "mdash" => '—',
        "hellip" => '…',
        "laquo" => '«',
        "raquo" => '»',
        "rsquo" => '’',
        "lsquo" => '‘',
        "rdquo" => '”',
        "ldquo" => '“',
        _ => {
            let code = name.strip_prefix('#')?;
            let value = match code.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => code.parse().ok()?,
            };
            char::from_u32(value)?
        }
    })
}

/// CSV rows as entries `row N.<column>: value` (RFC 4180: quoted fields, doubled quotes,
/// line breaks inside quotes); the first row names the columns.
fn csv_entries(text: &str) -> Result<Vec<(String, String)>, String> {
    let rows = parse_csv(text)?;
    let mut rows = rows.into_iter();
    let Some(header) = rows.next() else {
        return Ok(Vec::new());
    };
    let mut entries = Vec::new();
    for (n, row) in rows.enumerate() {
        for (i, value) in row.into_iter().enumerate() {
            if value.is_empty() {
                continue;
            }
            let column = header
                .get(i)
                .filter(|h| !h.is_empty())
                .cloned()
                .unwrap_or_else(|| format!("column {}", i + 1));
            entries.push((format!("row {}.{column}", n + 1), value));
        }
    }
    Ok(entries)
}

fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    // The separator: `;` when the first line has more of them than commas.
    let first = text.lines().next().unwrap_or_default();
    let sep = if first.matches(';').count() > first.matches(',').count() {
        ';'
    } else {
        ','
    };
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            c if c == sep => row.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                if row.iter().any(|f| !f.is_empty()) {
                    rows.push(std::mem::take(&mut row));
                } else {
                    row.clear();
                }
            }
            _ => field.push(c),
        }
    }
    if quoted {
        return Err("the CSV file ends inside a quoted field".into());
    }
    row.push(field);
    if row.iter().any(|f| !f.is_empty()) {
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_extensions_then_types() {
        assert_eq!(FileKind::detect("a.MD", None), Some(FileKind::Markdown));
        assert_eq!(
            FileKind::detect("page", Some("text/html; charset=utf-8")),
            Some(FileKind::Html)
        );
        assert_eq!(
            FileKind::detect("x.exe", Some("application/octet-stream")),
            None
        );
    }

    #[test]
    fn html_becomes_text_with_headings() {
        let html = "<html><head><title>T</title><style>p{}</style></head><body><h1>Guide</h1>\
            <script>alert(1)</script><p>Fish &amp; chips &#233;t&eacute;.</p><!-- note --><ul><li>One</li><li>Two</li></ul>\
            <table><tr><th>A</th><td>1</td></tr></table></body></html>";
        assert_eq!(
            html_to_text(html),
            "# Guide\n\nFish & chips été.\n\n- One\n- Two\n\n| A | 1"
        );
    }

    #[test]
    fn csv_rows_become_entries() {
        let csv = "name,notes\nAda,\"likes \"\"maths\"\"\nand engines\"\n\nBob,\n";
        let Ok(Extracted::Entries(entries)) = FileKind::Csv.extract(csv.as_bytes()) else {
            panic!("csv")
        };
        assert_eq!(
            entries,
            [
                ("row 1.name".to_string(), "Ada".to_string()),
                (
                    "row 1.notes".to_string(),
                    "likes \"maths\"\nand engines".to_string()
                ),
                ("row 2.name".to_string(), "Bob".to_string()),
            ]
        );
        assert!(FileKind::Csv.extract(b"a\n\"open").is_err());
    }

    #[test]
    fn word_paragraphs_and_headings_are_read() {
        let xml = r#"<w:document><w:body><w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>Leave</w:t></w:r></w:p>
            <w:p><w:r><w:t xml:space="preserve">Ask your </w:t></w:r><w:r><w:t>manager &amp; HR.</w:t><w:tab/><w:t>Done</w:t></w:r></w:p><w:p/></w:body></w:document>"#;
        assert_eq!(
            docx_xml_text(xml),
            "# Leave\n\nAsk your manager & HR.\tDone"
        );
        assert!(FileKind::Docx.extract(b"not a zip").is_err());
    }

    #[test]
    fn broken_pdfs_are_errors_not_crashes() {
        assert!(FileKind::Pdf.extract(b"hello").is_err());
        assert!(
            FileKind::Pdf
                .extract(b"%PDF-1.4\n garbage garbage")
                .is_err()
        );
    }

    #[test]
    fn text_decodes_boms_and_refuses_binary() {
        assert_eq!(
            FileKind::Text.extract(b"\xEF\xBB\xBFhi").unwrap(),
            Extracted::Text("hi".into())
        );
        assert_eq!(
            FileKind::Text.extract(b"\xFF\xFEh\0i\0").unwrap(),
            Extracted::Text("hi".into())
        );
        assert!(FileKind::Text.extract(&[0xC3, 0x28]).is_err());
    }
}
