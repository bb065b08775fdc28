//! OpenAI's Responses API wire format: request bodies and streamed events.

use std::collections::BTreeMap;

use domain::{
    llm::{ChatRequest, Completion, ContentPart, LlmError, Message, Role, StreamEvent, ToolCall},
    models::Usage,
};
use serde_json::{Value, json};

use crate::structured_instruction;

fn input_parts(parts: &[ContentPart], assistant: bool) -> Vec<Value> {
    parts
        .iter()
        .map(|part| match part {
            ContentPart::Text(text) if assistant => json!({"type": "output_text", "text": text}),
            ContentPart::Text(text) => json!({"type": "input_text", "text": text}),
            ContentPart::Image { url, detail } => {
                json!({"type": "input_image", "image_url": url, "detail": detail.as_deref().unwrap_or("auto")})
            }
            ContentPart::File { filename, data_url } => json!({"type": "input_file", "filename": filename, "file_data": data_url}),
        })
        .collect()
}

fn items(messages: &[Message]) -> Vec<Value> {
    let mut out = Vec::new();
    for m in messages {
        match m.role {
            Role::System => out.push(json!({"role": "developer", "content": m.joined_text()})),
            Role::User => out.push(json!({"role": "user", "content": input_parts(&m.content, false)})),
            Role::Assistant => {
                if !m.joined_text().is_empty() {
                    out.push(json!({"role": "assistant", "content": input_parts(&m.content, true)}));
                }
                for call in &m.tool_calls {
                    out.push(json!({"type": "function_call", "call_id": call.id, "name": call.name, "arguments": call.arguments}));
                }
            }
            Role::Tool => out.push(json!({"type": "function_call_output", "call_id": m.tool_call_id, "output": m.joined_text()})),
        }
    }
    out
}

/// The streaming request body. With `previous_response_id`, only the messages after the
/// last assistant turn are sent: the provider holds the rest.
pub fn body(request: &ChatRequest) -> Value {
    let messages: &[Message] = match &request.previous_response_id {
        Some(_) => {
            let last_assistant = request
                .messages
                .iter()
                .rposition(|m| m.role == Role::Assistant);
            last_assistant.map_or(&request.messages[..], |i| &request.messages[i + 1..])
        }
        None => &request.messages,
    };
    let mut instructions = request.instructions.clone().unwrap_or_default();
    if let Some(format) = request
        .response_format
        .as_ref()
        .filter(|_| !request.native_structured_output)
    {
        instructions = structured_instruction(&instructions, format);
    }
    let mut body = json!({"model": request.model, "input": items(messages), "stream": true});
    let object = body.as_object_mut().expect("an object literal");
    if !instructions.is_empty() {
        object.insert("instructions".into(), json!(instructions));
    }
    if let Some(previous) = &request.previous_response_id {
        object.insert("previous_response_id".into(), json!(previous));
    }
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| json!({"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters, "strict": t.strict}))
            .collect();
        object.insert("tools".into(), json!(tools));
        if let Some(parallel) = request.parallel_tool_calls {
            object.insert("parallel_tool_calls".into(), json!(parallel));
        }
    }
    let mut text = serde_json::Map::new();
    if let Some(format) = request
        .response_format
        .as_ref()
        .filter(|_| request.native_structured_output)
    {
        text.insert("format".into(), json!({"type": "json_schema", "name": format.name, "schema": format.schema, "strict": format.strict}));
    }
    if let Some(verbosity) = &request.verbosity {
        text.insert("verbosity".into(), json!(verbosity));
    }
    if !text.is_empty() {
        object.insert("text".into(), Value::Object(text));
    }
    if let Some(effort) = &request.reasoning_effort {
        object.insert(
            "reasoning".into(),
            json!({"effort": effort, "summary": "auto"}),
        );
    }
    if let Some(t) = request.temperature {
        object.insert("temperature".into(), json!(t));
    }
    if let Some(p) = request.top_p {
        object.insert("top_p".into(), json!(p));
    }
    if let Some(max) = request.max_output_tokens {
        object.insert("max_output_tokens".into(), json!(max));
    }
    body
}

fn usage(value: &Value) -> Usage {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    Usage {
        input_tokens: n(&value["input_tokens"]),
        output_tokens: n(&value["output_tokens"]),
        cached_input_tokens: n(&value["input_tokens_details"]["cached_tokens"]),
        reasoning_tokens: n(&value["output_tokens_details"]["reasoning_tokens"]),
    }
}

/// Turns streamed events into ours, accumulating the completion.
#[derive(Default)]
pub struct Decoder {
    completion: Completion,
    /// Tool calls by output index.
    calls: BTreeMap<u64, ToolCall>,
    finished: bool,
}

impl Decoder {
    pub fn event(&mut self, data: &str) -> Result<(Vec<StreamEvent>, bool), LlmError> {
        let event: Value = serde_json::from_str(data)
            .map_err(|err| LlmError::MalformedStream(format!("an event is not JSON ({err})")))?;
        let mut out = Vec::new();
        match event["type"].as_str().unwrap_or_default() {
            "response.created" => {
                self.completion.response_id = event["response"]["id"].as_str().map(str::to_string);
            }
            "response.output_text.delta" => {
                let delta = event["delta"].as_str().unwrap_or_default();
                self.completion.text.push_str(delta);
                out.push(StreamEvent::TextDelta(delta.to_string()));
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                let delta = event["delta"].as_str().unwrap_or_default();
                self.completion.reasoning.push_str(delta);
                out.push(StreamEvent::ReasoningDelta(delta.to_string()));
            }
            "response.output_item.added" if event["item"]["type"] == "function_call" => {
                let output_index = event["output_index"]
                    .as_u64()
                    .unwrap_or(self.calls.len() as u64);
                let item = &event["item"];
                let call = ToolCall {
                    id: item["call_id"].as_str().unwrap_or_default().to_string(),
                    name: item["name"].as_str().unwrap_or_default().to_string(),
                    arguments: String::new(),
                };
                let index = self.calls.len();
                out.push(StreamEvent::ToolCallStarted {
                    index,
                    id: call.id.clone(),
                    name: call.name.clone(),
                });
                self.calls.insert(output_index, call);
            }
            "response.function_call_arguments.delta" => {
                let output_index = event["output_index"].as_u64().unwrap_or(0);
                let delta = event["delta"].as_str().unwrap_or_default();
                if let Some(index) = self.calls.keys().position(|k| *k == output_index) {
                    self.calls
                        .get_mut(&output_index)
                        .expect("present")
                        .arguments
                        .push_str(delta);
                    out.push(StreamEvent::ToolCallArgumentsDelta {
                        index,
                        delta: delta.to_string(),
                    });
                }
            }
            "response.completed" | "response.incomplete" => {
                let response = &event["response"];
                self.completion.usage = usage(&response["usage"]);
                if let Some(id) = response["id"].as_str() {
                    self.completion.response_id = Some(id.to_string());
                }
                let reason = response["incomplete_details"]["reason"].as_str().unwrap_or(
                    if event["type"] == "response.completed" {
                        "stop"
                    } else {
                        "incomplete"
                    },
                );
                self.completion.finish_reason = Some(reason.to_string());
                self.finished = true;
                return Ok((out, true));
            }
            "response.failed" => {
                let message = event["response"]["error"]["message"]
                    .as_str()
                    .unwrap_or("the response failed");
                return Err(LlmError::Provider {
                    status: 200,
                    message: message.to_string(),
                });
            }
            "error" => {
                let message = event["message"]
                    .as_str()
                    .or_else(|| event["error"]["message"].as_str())
                    .unwrap_or("the provider reported an error");
                return Err(LlmError::Provider {
                    status: 200,
                    message: message.to_string(),
                });
            }
            _ => {}
        }
        Ok((out, false))
    }

    pub fn finished(&self) -> bool {
        self.finished
    }

    pub fn into_completion(mut self) -> Completion {
        self.completion.tool_calls = self.calls.into_values().collect();
        self.completion
    }
}
