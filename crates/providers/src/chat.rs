//! OpenAI's Chat Completions wire format: request bodies and streamed chunks.

use std::collections::BTreeMap;

use domain::{
    llm::{ChatRequest, Completion, ContentPart, LlmError, Message, Role, StreamEvent, ToolCall},
    models::{ProviderKind, Usage},
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
        let chunk: Value = serde_json::from_str(data)
            .map_err(|err| LlmError::MalformedStream(format!("a chunk is not JSON ({err})")))?;
        if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
            let message = error["message"]
                .as_str()
                .unwrap_or("the provider reported an error mid-stream");
            return Err(LlmError::Provider {
                status: 200,
                message: message.to_string(),
            });
        }
        let mut events = Vec::new();
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            self.completion.usage = usage(u);
        }
        for choice in chunk["choices"].as_array().into_iter().flatten() {
            let delta = &choice["delta"];
            if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
                self.completion.text.push_str(text);
                events.push(StreamEvent::TextDelta(text.to_string()));
            }
            // vLLM, DeepSeek and others stream reasoning as `reasoning_content`.
            let reasoning = delta["reasoning_content"]
                .as_str()
                .or_else(|| delta["reasoning"].as_str());
            if let Some(text) = reasoning.filter(|t| !t.is_empty()) {
                self.completion.reasoning.push_str(text);
                events.push(StreamEvent::ReasoningDelta(text.to_string()));
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                let index = call["index"].as_u64().unwrap_or(self.calls.len() as u64);
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
                if let Some(id) = call["id"].as_str() {
                    entry.id = id.to_string();
                }
                if let Some(name) = call["function"]["name"].as_str() {
                    entry.name.push_str(name);
                }
                if started && !entry.name.is_empty() {
                    events.push(StreamEvent::ToolCallStarted {
                        index: position,
                        id: entry.id.clone(),
                        name: entry.name.clone(),
                    });
                }
                if let Some(args) = call["function"]["arguments"]
                    .as_str()
                    .filter(|a| !a.is_empty())
                {
                    entry.arguments.push_str(args);
                    events.push(StreamEvent::ToolCallArgumentsDelta {
                        index: position,
                        delta: args.to_string(),
                    });
                }
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                self.completion.finish_reason = Some(reason.to_string());
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
