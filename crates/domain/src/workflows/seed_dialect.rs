//! The seed system's expression dialect, translated to CEL on import: its expressions are
//! Python run through `eval` (`False`, `None`, `and`/`or`/`not`, `len(…)`,
//! `state.get('k', 0)`), and its templates carry Jinja filters (`| int`, `| default(x)`,
//! `| length`, `| lower`, `| upper`) that it rendered as raw text.
//!
//! Only the common forms are translated; every change is listed for the author, and what
//! is not translated is left as it was for validation to report (the node then arrives
//! disabled with the reason).

use serde_json::{Map, Value};

/// The longest expression or placeholder translated (longer ones are left for validation
/// to report), and how deep filters nest: imported documents are untrusted, and the
/// translation must stay small and quick on any input.
const MAX_SOURCE: usize = 2_048;
const MAX_DEPTH: usize = 8;

/// Whether a translation has grown past what its source could need.
fn too_big(source: &str, translated: &str) -> bool {
    translated.len() > source.len() * 8 + 512
}

/// Keys whose string values are whole expressions (the rest are templates when they hold
/// `{{ }}`, and text otherwise).
const EXPRESSION_KEYS: &[&str] = &["expression", "condition", "predicate"];

/// Translates every expression and template in a node's parameters; returns what changed
/// (`before → after`).
pub(crate) fn translate_parameters(params: &mut Map<String, Value>) -> Vec<String> {
    let mut changes = Vec::new();
    for (key, value) in params.iter_mut() {
        translate_value(key, value, &mut changes);
    }
    changes
}

fn translate_value(key: &str, value: &mut Value, changes: &mut Vec<String>) {
    match value {
        Value::String(text) => {
            if text.contains("{{") {
                if let Some((translated, changed)) = template(text)
                    && !changed.is_empty()
                {
                    changes.extend(changed);
                    *text = translated;
                }
            } else if EXPRESSION_KEYS.contains(&key)
                && let Some(translated) = expression(text).filter(|t| t != text)
            {
                changes.push(format!("`{}` → `{}`", short(text), short(&translated)));
                *text = translated;
            }
        }
        Value::Array(items) => {
            for item in items {
                translate_value(key, item, changes);
            }
        }
        Value::Object(map) => {
            for (inner, item) in map.iter_mut() {
                translate_value(inner, item, changes);
            }
        }
        _ => {}
    }
}

/// At most 120 characters of `text`, for a warning.
fn short(text: &str) -> String {
    if text.chars().count() > 120 {
        text.chars().take(119).collect::<String>() + "…"
    } else {
        text.to_string()
    }
}

/// A template with each `{{ … }}` that can be translated translated (the others stay for
/// validation to report), and the placeholders that changed.
fn template(text: &str) -> Option<(String, Vec<String>)> {
    let mut out = String::with_capacity(text.len());
    let mut changed = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let close = rest[open..].find("}}")? + open;
        out.push_str(&rest[..open]);
        let inner = rest[open + 2..close].trim();
        match filtered(inner, 0) {
            Some(done) if done != inner => {
                changed.push(format!(
                    "`{{{{ {} }}}}` → `{{{{ {} }}}}`",
                    short(inner),
                    short(&done)
                ));
                out.push_str("{{ ");
                out.push_str(&done);
                out.push_str(" }}");
            }
            _ => out.push_str(&rest[open..close + 2]),
        }
        rest = &rest[close + 2..];
    }
    out.push_str(rest);
    Some((out, changed))
}

/// A placeholder's expression with its Jinja filters applied (`x | int` → `int(x)`), in
/// parenthesised parts too (`(x | int) + 1`).
fn filtered(source: &str, depth: usize) -> Option<String> {
    if depth > MAX_DEPTH || source.len() > MAX_SOURCE {
        return None;
    }
    let mut text = source.to_string();
    let mut search = 0;
    while let Some(found) = [
        find_outside_strings(&text[search..], "("),
        find_outside_strings(&text[search..], "["),
    ]
    .into_iter()
    .flatten()
    .min()
    {
        let open = search + found;
        let close = matching(&text, open)?;
        let inner = &text[open + 1..close];
        if split_filters(inner).len() > 1 {
            let done = filtered(inner, depth + 1)?;
            text.replace_range(open + 1..close, &done);
            search = open + done.len() + 2;
        } else {
            search = open + 1;
        }
    }
    let parts = split_filters(&text);
    if parts.len() > MAX_DEPTH + 1 {
        return None;
    }
    let mut parts = parts.into_iter();
    let mut value = expression(parts.next()?.trim())?;
    for filter in parts {
        let filter = filter.trim();
        let (name, argument) = match filter.split_once('(') {
            Some((name, rest)) => (name.trim(), Some(rest.strip_suffix(')')?.trim())),
            None => (filter, None),
        };
        value = match (name, argument) {
            ("int", None) => format!("int({value})"),
            ("float", None) => format!("double({value})"),
            ("string", None) => format!("string({value})"),
            ("length" | "count", None) => format!("size({value})"),
            ("lower", None) => format!("{}.lowerAscii()", operand(&value)),
            ("upper", None) => format!("{}.upperAscii()", operand(&value)),
            ("default", Some(fallback)) => {
                let fallback = expression(fallback)?;
                // `has()` takes a field selection (`state.name`), not a bare name.
                if is_path(&value) && value.contains('.') {
                    format!("(has({value}) ? {value} : {fallback})")
                } else {
                    format!("({value} == null ? {fallback} : {value})")
                }
            }
            _ => return None,
        };
        if too_big(source, &value) {
            return None;
        }
    }
    Some(value)
}

/// Splits `a | f | g(x)` at the filter bars (not `||`, not inside brackets or strings).
fn split_filters(source: &str) -> Vec<&str> {
    let bytes = source.as_bytes();
    let mut bars = Vec::new();
    scan(source, 0, |i, c, depth| {
        let double = bytes.get(i + 1) == Some(&b'|') || (i > 0 && bytes[i - 1] == b'|');
        if c == b'|' && depth == 0 && !double {
            bars.push(i);
        }
        None::<()>
    });
    let mut parts = Vec::new();
    let mut start = 0;
    for bar in bars {
        parts.push(&source[start..bar]);
        start = bar + 1;
    }
    parts.push(&source[start..]);
    parts
}

/// Whether `text` is a dotted path (`state.name`, `input.a.b`).
fn is_path(text: &str) -> bool {
    let text = text.trim();
    !text.is_empty()
        && text.split('.').all(|part| {
            !part.is_empty()
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !part.starts_with(|c: char| c.is_ascii_digit())
        })
}

/// `value` as the receiver of a method call: parenthesised unless it is a path, a call or
/// already in parentheses.
fn operand(value: &str) -> String {
    let wrapped = value.starts_with('(') && matching(value, 0) == Some(value.len() - 1);
    if is_path(value) || wrapped || value.ends_with(')') && !value.starts_with('(') {
        value.to_string()
    } else {
        format!("({value})")
    }
}

/// A Python expression in CEL; `None` when it uses a form this translation does not know.
pub(crate) fn expression(source: &str) -> Option<String> {
    if source.len() > MAX_SOURCE {
        return None;
    }
    let words = words(source)?;
    let dotted = gets(&words)?;
    let translated = defaults(&dotted)?;
    (!too_big(source, &translated)).then_some(translated)
}

/// Python's words and literals in CEL: `True`/`False`/`None`, `and`/`or`/`not`, `len(`.
/// String literals are copied as they are.
fn words(source: &str) -> Option<String> {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' || c == '"' {
            let end = (i + 1..chars.len()).find(|&j| chars[j] == c && chars[j - 1] != '\\')?;
            out.extend(&chars[i..=end]);
            i = end + 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let after_dot = start > 0 && chars[start - 1] == '.';
            let calls = chars.get(i) == Some(&'(');
            match word.as_str() {
                _ if after_dot => out.push_str(&word),
                "True" => out.push_str("true"),
                "False" => out.push_str("false"),
                "None" => out.push_str("null"),
                "and" => out.push_str("&&"),
                "or" => out.push_str("||"),
                "not" => {
                    out.push('!');
                    while chars.get(i) == Some(&' ') {
                        i += 1;
                    }
                }
                "len" if calls => out.push_str("size"),
                // Python's `x is None` / `x is not None`.
                "is" => {
                    let rest: String = chars[i..].iter().collect();
                    if let Some(after) = rest.strip_prefix(" not ") {
                        out.push_str("!=");
                        i += rest.len() - after.len() - 1;
                    } else {
                        out.push_str("==");
                    }
                }
                "str" if calls => out.push_str("string"),
                "float" if calls => out.push_str("double"),
                _ => out.push_str(&word),
            }
            continue;
        }
        out.push(c);
        i += 1;
    }
    Some(out)
}

/// `R.get('k', d)` → `('k' in R ? R['k'] : d)` (and `R.get('k')` with `null`), for any
/// receiver: a path, an index, a call's result.
fn gets(source: &str) -> Option<String> {
    let mut text = source.to_string();
    // Each pass replaces the first `.get(` left (receivers come before their calls, so a
    // chain is rewritten from its start); the receiver is copied, so the text may grow.
    for _ in 0..64 {
        if too_big(source, &text) {
            return None;
        }
        let Some(at) = find_outside_strings(&text, ".get(") else {
            return Some(text);
        };
        let receiver_start = receiver_start(&text, at)?;
        let receiver = text[receiver_start..at].to_string();
        let args_start = at + ".get(".len();
        let args_end = matching(&text, args_start - 1)?;
        let args = &text[args_start..args_end];
        let (key, fallback) = match split_top_level_comma(args) {
            (key, Some(fallback)) => (key.trim(), fallback.trim()),
            (key, None) => (key.trim(), "null"),
        };
        let replaced = format!("({key} in {receiver} ? {receiver}[{key}] : {fallback})");
        text.replace_range(receiver_start..=args_end, &replaced);
    }
    None
}

/// Python's `x or <literal>` (a default for a missing or empty value) as CEL's `== null`.
fn defaults(source: &str) -> Option<String> {
    let mut text = source.to_string();
    for _ in 0..16 {
        if too_big(source, &text) {
            return None;
        }
        let Some(at) = find_outside_strings(&text, " || ") else {
            break;
        };
        let right_start = at + 4;
        let right_end = literal_end(&text, right_start);
        let Some(right_end) = right_end else { break };
        let left_start = operand_start(&text, at);
        let left = text[left_start..at].trim().to_string();
        let right = text[right_start..right_end].to_string();
        let replaced = format!("({left} == null ? {right} : {left})");
        text.replace_range(left_start..right_end, &replaced);
    }
    Some(text)
}

/// Where a literal default (a number, a string, `[]`, `{}`) starting at
/// `start` ends, when it is followed by the end, `)`, `]` or `,`.
fn literal_end(text: &str, start: usize) -> Option<usize> {
    let rest = &text[start..];
    let len = if rest.starts_with("[]") || rest.starts_with("{}") {
        2
    } else if let Some(q) = rest.chars().next().filter(|c| *c == '\'' || *c == '"') {
        rest[1..].find(q)? + 2
    } else {
        let word = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
            .unwrap_or(rest.len());
        let candidate = &rest[..word];
        let numeric = !candidate.is_empty() && candidate.parse::<f64>().is_ok();
        // `x or None` is `x`; booleans keep `||`.
        if !numeric {
            return None;
        }
        word
    };
    let end = start + len;
    matches!(
        text[end..].trim_start().chars().next(),
        None | Some(')' | ']' | ',')
    )
    .then_some(end)
}

/// Where the left operand of an operator at `at` starts: after the nearest unmatched `(`,
/// `[` or `,` before it, or at the start.
fn operand_start(text: &str, at: usize) -> usize {
    let bytes = text.as_bytes();
    let mut depth = 0;
    let mut i = at;
    while i > 0 {
        i -= 1;
        match bytes[i] {
            b')' | b']' => depth += 1,
            b'(' | b'[' if depth == 0 => return i + 1,
            b'(' | b'[' => depth -= 1,
            b',' if depth == 0 => return i + 1,
            _ => {}
        }
    }
    0
}

/// Where the receiver of a method call at `dot` starts: a postfix chain of names, dots,
/// and balanced `(…)` / `[…]`.
fn receiver_start(text: &str, dot: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = dot;
    loop {
        if i == 0 {
            return Some(0);
        }
        match bytes[i - 1] {
            b')' | b']' => {
                let open = opening(text, i - 1)?;
                i = open;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' => i -= 1,
            _ => return (i < dot).then_some(i),
        }
    }
}

/// Calls `visit` with each byte outside string literals from `start` on and the bracket
/// depth before it; stops at the first `Some`.
fn scan<R>(
    text: &str,
    start: usize,
    mut visit: impl FnMut(usize, u8, i32) -> Option<R>,
) -> Option<R> {
    let (mut depth, mut quote) = (0i32, None::<u8>);
    for (i, &c) in text.as_bytes().iter().enumerate().skip(start) {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            continue;
        }
        if c == b'\'' || c == b'"' {
            quote = Some(c);
            continue;
        }
        if let Some(found) = visit(i, c, depth) {
            return Some(found);
        }
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The index of the bracket closing the one at `open`.
fn matching(text: &str, open: usize) -> Option<usize> {
    scan(text, open, |i, c, depth| {
        (depth == 1 && matches!(c, b')' | b']' | b'}')).then_some(i)
    })
}

/// The index of the bracket opening the one at `close`.
fn opening(text: &str, close: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0i32;
    for i in (0..=close).rev() {
        match bytes[i] {
            b')' | b']' | b'}' => depth += 1,
            b'(' | b'[' | b'{' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// `key, fallback` split at the first comma outside brackets and strings.
fn split_top_level_comma(args: &str) -> (&str, Option<&str>) {
    match scan(args, 0, |i, c, depth| {
        (c == b',' && depth == 0).then_some(i)
    }) {
        Some(i) => (&args[..i], Some(&args[i + 1..])),
        None => (args, None),
    }
}

/// The first `needle` outside string literals.
fn find_outside_strings(text: &str, needle: &str) -> Option<usize> {
    scan(text, 0, |i, _, _| {
        (text.is_char_boundary(i) && text[i..].starts_with(needle)).then_some(i)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::workflows::eval::Scope;

    fn eval(source: &str, state: Value) -> Value {
        let scope = Scope {
            state,
            ..Scope::default()
        };
        scope
            .eval(source)
            .unwrap_or_else(|err| panic!("{source}: {err:?}"))
    }

    #[test]
    fn python_words_and_literals_become_cel() {
        assert_eq!(expression("False").unwrap(), "false");
        assert_eq!(
            expression("not state.done and len(state.items) > 0 or state.force").unwrap(),
            "!state.done && size(state.items) > 0 || state.force"
        );
        assert_eq!(expression("state.x == None").unwrap(), "state.x == null");
        assert_eq!(
            expression("state.x is not None").unwrap(),
            "state.x != null"
        );
        // Words inside strings and after a dot stay.
        assert_eq!(
            expression("state.and == 'True or False'").unwrap(),
            "state.and == 'True or False'"
        );
    }

    #[test]
    fn gets_and_defaults_evaluate_as_python_would() {
        let state = json!({"task_index": 1, "tasks": [{"description": "a"}, {"description": "b"}], "tasks_completed": ["a"]});
        for (python, expected) in [
            ("(state.get('task_index', 0) or 0) + 1", json!(2)),
            ("state.get('missing', 5)", json!(5)),
            ("state.get('missing')", Value::Null),
            (
                "state.get('tasks_completed', []) + [state.get('tasks', [])[state.get('task_index', 0)].get('description', '')]",
                json!(["a", "b"]),
            ),
        ] {
            let cel = expression(python).unwrap();
            assert_eq!(eval(&cel, state.clone()), expected, "{python} → {cel}");
        }
        assert_eq!(
            eval(
                &expression("(state.get('count') or 0) + 1").unwrap(),
                json!({})
            ),
            json!(1)
        );
    }

    #[test]
    fn inputs_that_would_blow_up_are_left_alone() {
        let chain = "x".to_string() + &".get('a')".repeat(40);
        assert!(expression(&chain).is_none());
        let filters = "{{ x".to_string() + &" | default(1)".repeat(40) + " }}";
        assert_eq!(template(&filters).unwrap().0, filters);
        let nested = "(a | int".repeat(200) + &")".repeat(200);
        assert!(filtered(&nested, 0).is_none());
        assert!(expression(&"a or 0 ".repeat(2_000)).is_none());
        assert_eq!(
            template("{{ name | default('x') }}").unwrap().0,
            "{{ (name == null ? 'x' : name) }}"
        );
    }

    #[test]
    fn broken_input_is_left_alone_without_a_panic() {
        for text in [
            "(((",
            ")))",
            "state.get(",
            ".get('k'",
            "x.get()",
            "'unterminated",
            "a or",
            "or 0",
            "x or 'é",
            "len(",
            "not",
            "is",
            "{{ x | }}",
            "{{ (x | int }}",
            "{{ [x | int }}",
            "{{ x.get('a', }}",
            "é.get('é', 'à') or 'ü'",
            "{{",
            "}}{{",
            "[]. get('k')",
        ] {
            let _ = expression(text);
            let _ = template(text);
            let mut params = json!({"expression": text, "message": format!("{{{{ {text} }}}}")})
                .as_object()
                .unwrap()
                .clone();
            translate_parameters(&mut params);
        }
    }

    #[test]
    fn jinja_filters_in_templates_become_cel() {
        assert_eq!(
            template("Task {{ (state.task_index | int) + 1 }}/{{ state.tasks[state.i | int] }}")
                .unwrap()
                .0,
            "Task {{ (int(state.task_index)) + 1 }}/{{ state.tasks[int(state.i)] }}"
        );
        assert_eq!(
            template("{{ state.name | default('you') }} {{ state.items | length }}")
                .unwrap()
                .0,
            "{{ (has(state.name) ? state.name : 'you') }} {{ size(state.items) }}"
        );
        assert_eq!(
            eval(
                "(has(state.name) ? state.name : 'you').upperAscii() + string(size(state.items)) + string(int('4') + 1) + 'ÉTÉ'.lowerAscii()",
                json!({"items": [1, 2]})
            ),
            json!("YOU25ÉtÉ")
        );
        assert_eq!(
            template("{{ state.name | default('you') | upper }}")
                .unwrap()
                .0,
            "{{ (has(state.name) ? state.name : 'you').upperAscii() }}"
        );
        assert_eq!(template("{{ a || b }}").unwrap().0, "{{ a || b }}");
        assert_eq!(
            template("Tâche {{ (state.n | int) + 1 }} — {{ state.é | length }} été")
                .unwrap()
                .0,
            "Tâche {{ (int(state.n)) + 1 }} — {{ size(state.é) }} été"
        );
        // What cannot be translated stays, for validation to report.
        let (kept, changed) = template("{{ x | wordwrap }} {{ y | int }}").unwrap();
        assert_eq!(kept, "{{ x | wordwrap }} {{ int(y) }}");
        assert_eq!(changed.len(), 1);
        let mut params = json!({"message": "{{ state.n | int }}", "state": [{"target": "state.x", "expression": "True"}], "label": "Keep True"})
            .as_object()
            .unwrap()
            .clone();
        let changes = translate_parameters(&mut params);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!(params["state"][0]["expression"], "true");
        assert_eq!(params["label"], "Keep True");
    }
}
