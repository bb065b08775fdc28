//! OpenAI's Chat Completions wire format: request bodies and streamed chunks.

use std::{borrow::Cow, collections::BTreeMap};

use domain::{
    llm::{ChatRequest, Completion, ContentPart, LlmError, Message, Role, StreamEvent, ToolCall},
    models::{ProviderKind, Usage},
};
use serde::{
    Deserialize, Deserializer,
    de::{IgnoredAny, MapAccess, SeqAccess, Visitor},
};
use serde_json::{Map, Value, json};

use crate::structured_instruction;

fn content(parts: &[ContentPart]) -> Value {
    if let [ContentPart::Text(text)] = parts {
        return json!(text);
    }
    Value::Array(
        parts
            .iter()
            .map(|part| match part {
                ContentPart::Text(text) => json!({"type": "text", "text": text}),
                ContentPart::Image { url, detail } => {
                    let mut image = json!({"url": url});
                    if let Some(detail) = detail {
                        image["detail"] = json!(detail);
                    }
                    json!({"type": "image_url", "image_url": image})
                }
                ContentPart::File { filename, data_url } => {
                    json!({"type": "file", "file": {"filename": filename, "file_data": data_url}})
                }
            })
            .collect(),
    )
}

fn message(m: &Message) -> Value {
    match m.role {
        Role::System => json!({"role": "system", "content": m.joined_text()}),
        Role::User => json!({"role": "user", "content": content(&m.content)}),
        Role::Assistant => {
            let mut out = json!({"role": "assistant", "content": m.joined_text()});
            if !m.tool_calls.is_empty() {
                out["tool_calls"] = m
                    .tool_calls
                    .iter()
                    .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
                    .collect();
                if m.joined_text().is_empty() {
                    out["content"] = Value::Null;
                }
            }
            out
        }
        Role::Tool => {
            json!({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.joined_text()})
        }
    }
}

/// The streaming request body.
pub fn body(request: &ChatRequest, kind: ProviderKind) -> Value {
    let mut messages = Vec::new();
    let mut instructions = request.instructions.clone().unwrap_or_default();
    if let Some(format) = request
        .response_format
        .as_ref()
        .filter(|_| !request.native_structured_output)
    {
        instructions = structured_instruction(&instructions, format);
    }
    if !instructions.is_empty() {
        messages.push(json!({"role": "system", "content": instructions}));
    }
    messages.extend(request.messages.iter().map(message));
    let mut body = json!({
        "model": request.model,
        "messages": messages,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let object = body.as_object_mut().expect("an object literal");
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| {
                let mut function = json!({"name": t.name, "parameters": t.parameters});
                if let Some(description) = &t.description {
                    function["description"] = json!(description);
                }
                if t.strict {
                    function["strict"] = json!(true);
                }
                json!({"type": "function", "function": function})
            })
            .collect();
        object.insert("tools".into(), json!(tools));
        if let Some(parallel) = request.parallel_tool_calls {
            object.insert("parallel_tool_calls".into(), json!(parallel));
        }
    }
    if let Some(format) = request
        .response_format
        .as_ref()
        .filter(|_| request.native_structured_output)
    {
        object.insert(
            "response_format".into(),
            json!({"type": "json_schema", "json_schema": {"name": format.name, "schema": format.schema, "strict": format.strict}}),
        );
    }
    insert_opt(object, "temperature", request.temperature.map(Value::from));
    insert_opt(object, "top_p", request.top_p.map(Value::from));
    // OpenAI renamed `max_tokens`; most compatible servers still read the old name.
    let max_key = if kind == ProviderKind::OpenAi {
        "max_completion_tokens"
    } else {
        "max_tokens"
    };
    insert_opt(object, max_key, request.max_output_tokens.map(Value::from));
    insert_opt(
        object,
        "reasoning_effort",
        request.reasoning_effort.clone().map(Value::from),
    );
    insert_opt(
        object,
        "verbosity",
        request.verbosity.clone().map(Value::from),
    );
    body
}

fn insert_opt(object: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        object.insert(key.into(), value);
    }
}

fn usage(value: &Value) -> Usage {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    Usage {
        input_tokens: n(&value["prompt_tokens"]),
        output_tokens: n(&value["completion_tokens"]),
        cached_input_tokens: n(&value["prompt_tokens_details"]["cached_tokens"]),
        reasoning_tokens: n(&value["completion_tokens_details"]["reasoning_tokens"]),
    }
}

/// One streamed chunk, read straight into the fields used (a chunk arrives per token, so
/// no `Value` tree is built for it). Text fields that are null or of another type read as
/// absent, as providers differ there; other fields are ignored.
#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default, borrow)]
    choices: Option<Vec<Choice<'a>>>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
    #[serde(default, borrow)]
    finish_reason: Text<'a>,
}

#[derive(Default, Deserialize)]
struct Delta<'a> {
    #[serde(default, borrow)]
    content: Text<'a>,
    #[serde(default, borrow)]
    reasoning_content: Text<'a>,
    #[serde(default, borrow)]
    reasoning: Text<'a>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<CallDelta<'a>>>,
}

#[derive(Deserialize)]
struct CallDelta<'a> {
    #[serde(default)]
    index: Index,
    #[serde(default, borrow)]
    id: Text<'a>,
    #[serde(default, borrow)]
    function: Option<FunctionDelta<'a>>,
}

#[derive(Default, Deserialize)]
struct FunctionDelta<'a> {
    #[serde(default, borrow)]
    name: Text<'a>,
    #[serde(default, borrow)]
    arguments: Text<'a>,
}

/// A string field, borrowed from the chunk unless it has escapes; `None` for any other
/// JSON value.
#[derive(Default)]
struct Text<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Option<Cow<'de, str>>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Some(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Some(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Some(Cow::Owned(v)))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(None)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(None)
            }
        }
        deserializer.deserialize_any(Visit).map(Text)
    }
}

/// A tool call's index: a non-negative integer, else absent.
#[derive(Default)]
struct Index(Option<u64>);

impl<'de> Deserialize<'de> for Index {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Index(Value::deserialize(deserializer)?.as_u64()))
    }
}

/// Turns streamed chunks into events, accumulating the completion.
#[derive(Default)]
pub struct Decoder {
    completion: Completion,
    /// Tool calls by the provider's index.
    calls: BTreeMap<u64, ToolCall>,
    finished: bool,
}

impl Decoder {
    /// One `data:` payload; returns its events, and whether the stream is complete.
    pub fn event(&mut self, data: &str) -> Result<(Vec<StreamEvent>, bool), LlmError> {
        if data.trim() == "[DONE]" {
            // `[DONE]` without a finish reason means the answer was cut short.
            if !self.finished {
                return Err(LlmError::MalformedStream(
                    "the stream ended without a finish reason".into(),
                ));
            }
            return Ok((Vec::new(), true));
        }
        let chunk: Chunk = serde_json::from_str(data)
            .map_err(|err| LlmError::MalformedStream(format!("a chunk is not JSON ({err})")))?;
        if let Some(error) = chunk.error.filter(|e| !e.is_null()) {
            let message = error["message"]
                .as_str()
                .unwrap_or("the provider reported an error mid-stream");
            return Err(LlmError::Provider {
                status: 200,
                message: message.to_string(),
            });
        }
        let mut events = Vec::new();
        if let Some(u) = chunk.usage.filter(Value::is_object) {
            self.completion.usage = usage(&u);
        }
        for choice in chunk.choices.into_iter().flatten() {
            let delta = choice.delta.unwrap_or_default();
            if let Some(text) = delta.content.0.filter(|t| !t.is_empty()) {
                self.completion.text.push_str(&text);
                events.push(StreamEvent::TextDelta(text.into_owned()));
            }
            // vLLM, DeepSeek and others stream reasoning as `reasoning_content`.
            let reasoning = delta.reasoning_content.0.or(delta.reasoning.0);
            if let Some(text) = reasoning.filter(|t| !t.is_empty()) {
                self.completion.reasoning.push_str(&text);
                events.push(StreamEvent::ReasoningDelta(text.into_owned()));
            }
            for call in delta.tool_calls.into_iter().flatten() {
                let index = call.index.0.unwrap_or(self.calls.len() as u64);
                let position = self
                    .calls
                    .keys()
                    .position(|k| *k == index)
                    .unwrap_or(self.calls.len());
                let entry = self.calls.entry(index).or_insert_with(|| ToolCall {
                    id: String::new(),
                    name: String::new(),
                    arguments: String::new(),
                });
                let started = entry.name.is_empty();
                if let Some(id) = call.id.0 {
                    entry.id = id.into_owned();
                }
                let function = call.function.unwrap_or_default();
                if let Some(name) = function.name.0 {
                    entry.name.push_str(&name);
                }
                if started && !entry.name.is_empty() {
                    events.push(StreamEvent::ToolCallStarted {
                        index: position,
                        id: entry.id.clone(),
                        name: entry.name.clone(),
                    });
                }
                if let Some(args) = function.arguments.0.filter(|a| !a.is_empty()) {
                    entry.arguments.push_str(&args);
                    events.push(StreamEvent::ToolCallArgumentsDelta {
                        index: position,
                        delta: args.into_owned(),
                    });
                }
            }
            if let Some(reason) = choice.finish_reason.0 {
                self.completion.finish_reason = Some(reason.into_owned());
                self.finished = true;
            }
        }
        Ok((events, false))
    }

    /// Whether the provider said the answer was complete (a finish reason).
    pub fn finished(&self) -> bool {
        self.finished
    }

    pub fn into_completion(mut self) -> Completion {
        self.completion.tool_calls = self.calls.into_values().collect();
        self.completion
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunks: &[&str]) -> (Vec<StreamEvent>, Result<Completion, LlmError>) {
        let mut decoder = Decoder::default();
        let mut events = Vec::new();
        for chunk in chunks {
            match decoder.event(chunk) {
                Ok((more, _)) => events.extend(more),
                Err(err) => return (events, Err(err)),
            }
        }
        (events, Ok(decoder.into_completion()))
    }

    #[test]
    fn text_reasoning_and_escapes_stream_in_order() {
        let (events, completion) = decode(&[
            r#"{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#,
            r#"{"choices":[{"delta":{"reasoning_content":"think"}}]}"#,
            r#"{"choices":[{"delta":{"content":"say \"hi\"\n","reasoning":null}}]}"#,
            r#"{"choices":[{"delta":{"content":null},"finish_reason":"stop"}],"usage":null}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":2}}}"#,
            "[DONE]",
        ]);
        assert_eq!(
            events,
            [
                StreamEvent::ReasoningDelta("think".into()),
                StreamEvent::TextDelta("say \"hi\"\n".into()),
            ]
        );
        let completion = completion.unwrap();
        assert_eq!(completion.text, "say \"hi\"\n");
        assert_eq!(completion.finish_reason.as_deref(), Some("stop"));
        assert_eq!(completion.usage.input_tokens, 7);
        assert_eq!(completion.usage.output_tokens, 3);
        assert_eq!(completion.usage.cached_input_tokens, 2);
    }

    #[test]
    fn tool_calls_gather_by_index() {
        let (events, completion) = decode(&[
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"look","arguments":""}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"q\":"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":1,"id":"call_2","function":{"name":"other","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]}}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#,
        ]);
        assert_eq!(
            events[0],
            StreamEvent::ToolCallStarted {
                index: 0,
                id: "call_1".into(),
                name: "look".into()
            }
        );
        assert_eq!(
            events[2],
            StreamEvent::ToolCallStarted {
                index: 1,
                id: "call_2".into(),
                name: "other".into()
            }
        );
        let calls = completion.unwrap().tool_calls;
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (calls[0].name.as_str(), calls[0].arguments.as_str()),
            ("look", "{\"q\":1}")
        );
        assert_eq!(calls[1].arguments, "{}");
    }

    #[test]
    fn odd_values_read_as_absent_and_errors_surface() {
        // A provider's odd types (a number for text, a string index) are skipped, not fatal.
        let (events, completion) = decode(&[
            r#"{"choices":[{"delta":{"content":5,"tool_calls":[{"index":"x","id":"a","function":{"name":"f"}}]},"finish_reason":{"odd":[1]}}]}"#,
        ]);
        assert_eq!(events.len(), 1);
        let completion = completion.unwrap();
        assert_eq!(completion.text, "");
        assert_eq!(completion.finish_reason, None);
        let (_, failed) = decode(&[r#"{"error":{"message":"overloaded"}}"#]);
        assert!(
            matches!(failed, Err(LlmError::Provider { message, .. }) if message == "overloaded")
        );
        let (_, broken) = decode(&["{not json"]);
        assert!(matches!(broken, Err(LlmError::MalformedStream(_))));
        let (_, cut) = decode(&[r#"{"choices":[{"delta":{"content":"a"}}]}"#, "[DONE]"]);
        assert!(matches!(cut, Err(LlmError::MalformedStream(_))));
    }
}
