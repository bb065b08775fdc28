//! `wait_for_user_input`: pauses the run until the user's next message, or, with
//! `inputs`, until the user answers those questions (ChatKit's structured input).
//!
//! ```json
//! {"message": "What is your order number?", "masked": false}
//! {"message": "A few details first.", "inputs": [
//!   {"id": "size", "question": "Which size?", "options": ["S", "M", "L"]},
//!   {"id": "note", "question": "Anything else?", "type": "freeform"}]}
//! ```
//! A question with `options` is a multiple choice (`multiple: true` takes several values);
//! one without is freeform (with an optional `description`). Questions are templates.
//! The run goes on with `input = {status, answers: {id: {values, skipped}}, values: {id:
//! first value, or the list when multiple, or null when skipped}}`.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    Kind, NodeKind, Problems, Resumed, StepFuture, check_config, first_text, has_extra, ready,
    refused,
};
use crate::workflows::expr;
use crate::{
    runs::{
        EventKind, Resume, RunError, RunResult, Wait, WaitKind,
        step::{Log, Next, NodeError, Outcome, RunCtx, node_error, parse, text_param},
    },
    workflows::{Graph, Node},
};

pub(crate) const EXAMPLE: &str = r#"{"message": "A few details first.", "masked": false, "inputs": [{"id": "size", "question": "Which size?", "options": ["S", "M", "L"]}, {"id": "note", "question": "Anything else for {{ user.email }}?", "type": "freeform", "description": "Optional"}]}"#;

/// At most this many questions in one wait.
pub const MAX_QUESTIONS: usize = 20;

#[derive(Debug, Clone, Deserialize)]
pub struct WaitForUserInput {
    /// A prompt posted before waiting (a template).
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    /// The answer is secret: not echoed into history or logs.
    #[serde(default)]
    pub masked: bool,
    /// Questions asked as structured input instead of waiting for a message.
    #[serde(default)]
    pub inputs: Option<Vec<Value>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
has_extra!(WaitForUserInput);

/// One question, as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    pub id: String,
    pub question: String,
    /// `multiple_choice` or `freeform`; by default, multiple choice when there are options.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Choices: strings or `{value}`.
    #[serde(default)]
    pub options: Vec<Value>,
    #[serde(default)]
    pub multiple: bool,
    #[serde(default)]
    pub description: Option<String>,
}

impl Question {
    fn is_choice(&self) -> bool {
        match self.kind.as_deref() {
            Some(kind) => kind == "multiple_choice",
            None => !self.options.is_empty(),
        }
    }

    fn option_values(&self) -> Vec<Option<String>> {
        self.options
            .iter()
            .map(|o| match o {
                Value::String(s) => Some(s.clone()),
                Value::Object(m) => m.get("value").and_then(Value::as_str).map(str::to_string),
                _ => None,
            })
            .collect()
    }

    /// The question as ChatKit's `StructuredInput`, its texts passed through `render`.
    pub fn to_wire<E>(&self, render: impl Fn(&str) -> Result<String, E>) -> Result<Value, E> {
        let question = render(&self.question)?;
        Ok(if self.is_choice() {
            let options: Vec<Value> = self
                .option_values()
                .into_iter()
                .flatten()
                .map(|value| json!({"value": value}))
                .collect();
            json!({"type": "multiple_choice", "id": self.id, "question": question,
                   "options": options, "multiple": self.multiple})
        } else {
            let mut wire = json!({"type": "freeform", "id": self.id, "question": question});
            if let Some(description) = &self.description {
                wire["description"] = json!(render(description)?);
            }
            wire
        })
    }
}

impl WaitForUserInput {
    /// The configured questions; `Err` names the first that cannot be read.
    pub fn questions(&self) -> Result<Vec<Question>, String> {
        self.inputs
            .iter()
            .flatten()
            .enumerate()
            .map(|(index, raw)| {
                serde_json::from_value::<Question>(raw.clone())
                    .map_err(|err| format!("inputs[{index}]: {err}"))
            })
            .collect()
    }

    pub(crate) fn check(&self, problems: &mut Problems) {
        if let Some((name, text)) = first_text(&[("message", &self.message), ("text", &self.text)])
        {
            expr::check_template(text, &format!("parameters.{name}"), problems);
        }
        let Some(inputs) = &self.inputs else {
            return;
        };
        if inputs.is_empty() {
            problems.error(
                "invalid_parameter",
                Some("parameters.inputs"),
                "`inputs` lists no question (leave it out to wait for a message)",
            );
        }
        if inputs.len() > MAX_QUESTIONS {
            problems.error(
                "invalid_parameter",
                Some("parameters.inputs"),
                format!("at most {MAX_QUESTIONS} questions can be asked at once"),
            );
        }
        if self.masked {
            problems.warning(
                "ignored_parameter",
                Some("parameters.masked"),
                "answers to questions are shown in the conversation; `masked` has no effect",
            );
        }
        let mut seen: Vec<String> = Vec::new();
        for (index, raw) in inputs.iter().enumerate() {
            let field = format!("parameters.inputs[{index}]");
            let question = match serde_json::from_value::<Question>(raw.clone()) {
                Ok(question) => question,
                Err(err) => {
                    problems.error(
                        "invalid_parameter",
                        Some(&field),
                        format!(
                            "a question is `{{id, question, type?, options?, multiple?, description?}}`: {err}"
                        ),
                    );
                    continue;
                }
            };
            if question.id.trim().is_empty() {
                problems.error(
                    "invalid_parameter",
                    Some(&format!("{field}.id")),
                    "a question needs an `id`",
                );
            } else if seen.contains(&question.id) {
                problems.error(
                    "duplicate_id",
                    Some(&format!("{field}.id")),
                    format!("two questions have the id `{}`", question.id),
                );
            } else {
                seen.push(question.id.clone());
            }
            if question.question.trim().is_empty() {
                problems.error(
                    "invalid_parameter",
                    Some(&format!("{field}.question")),
                    "the question has no text",
                );
            }
            expr::check_template(&question.question, &format!("{field}.question"), problems);
            match question.kind.as_deref() {
                None | Some("freeform" | "multiple_choice") => {}
                Some(other) => problems.error(
                    "invalid_parameter",
                    Some(&format!("{field}.type")),
                    format!("`{other}` is not a question type (`multiple_choice` or `freeform`)"),
                ),
            }
            if question.is_choice() {
                if question.options.is_empty() {
                    problems.error(
                        "invalid_parameter",
                        Some(&format!("{field}.options")),
                        "a multiple choice needs `options`",
                    );
                }
                for (at, value) in question.option_values().iter().enumerate() {
                    if value.as_deref().is_none_or(|v| v.trim().is_empty()) {
                        problems.error(
                            "invalid_parameter",
                            Some(&format!("{field}.options[{at}]")),
                            "an option is a text or `{\"value\": text}`",
                        );
                    }
                }
            } else if !question.options.is_empty() {
                problems.warning(
                    "ignored_parameter",
                    Some(&format!("{field}.options")),
                    "a freeform question shows no options",
                );
            }
        }
    }
}

/// Applies a ChatKit `StructuredInputSubmission` (`{status, answers: {id: {values,
/// skipped}}}`) to the questions shown (`StructuredInput` values), as the reference server
/// does: unknown ids are ignored; a missing, empty or skipped answer, or a skipped
/// submission, is `{skipped: true}`; a single choice keeps its first value.
/// Returns the status and the questions with their `answer`s.
pub fn apply_submission(
    questions: &[Value],
    submission: &Value,
) -> Result<(String, Vec<Value>), String> {
    let submission = submission
        .as_object()
        .ok_or("the submission is `{status, answers}`")?;
    let status = match submission.get("status") {
        None | Some(Value::Null) => "answered",
        Some(Value::String(s)) if s == "answered" || s == "skipped" => s.as_str(),
        Some(other) => return Err(format!("`{other}` is not a status (answered or skipped)")),
    };
    let empty = Map::new();
    let answers = match submission.get("answers") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(answers)) => answers,
        Some(_) => return Err("`answers` maps question ids to `{values, skipped}`".into()),
    };
    for (id, answer) in answers {
        let ok = answer.as_object().is_some_and(|a| {
            a.get("values")
                .is_none_or(|v| v.as_array().is_some_and(|l| l.iter().all(Value::is_string)))
                && a.get("skipped").is_none_or(Value::is_boolean)
        });
        if !ok {
            return Err(format!(
                "the answer to `{id}` is `{{values: [text], skipped: bool}}`"
            ));
        }
    }
    let answered = questions
        .iter()
        .map(|question| {
            let mut question = question.clone();
            let id = question["id"].as_str().unwrap_or_default();
            let answer = answers.get(id);
            let values: Vec<Value> = answer
                .and_then(|a| a.get("values"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let skipped = status == "skipped"
                || answer.and_then(|a| a.get("skipped")) == Some(&Value::Bool(true))
                || values.is_empty();
            question["answer"] = if skipped {
                json!({"values": [], "skipped": true})
            } else {
                let single = question["type"] == "multiple_choice" && question["multiple"] != true;
                let values = if single { values[..1].to_vec() } else { values };
                json!({"values": values, "skipped": false})
            };
            question
        })
        .collect();
    Ok((status.to_string(), answered))
}

/// What the run goes on with after questions were answered (see the module docs).
pub fn answers_output(status: &str, answered: &[Value]) -> Value {
    let mut answers = Map::new();
    let mut values = Map::new();
    for question in answered {
        let id = question["id"].as_str().unwrap_or_default().to_string();
        let answer = &question["answer"];
        let given = answer["values"].as_array().cloned().unwrap_or_default();
        let value = if answer["skipped"] == true {
            Value::Null
        } else if question["multiple"] == true {
            Value::Array(given)
        } else {
            given.first().cloned().unwrap_or(Value::Null)
        };
        answers.insert(id.clone(), answer.clone());
        values.insert(id, value);
    }
    json!({"status": status, "answers": answers, "values": values})
}

/// The answers as text for the conversation: `question: answer` lines.
pub fn answers_text(answered: &[Value]) -> String {
    answered
        .iter()
        .map(|question| {
            let answer = &question["answer"];
            let text = if answer["skipped"] == true {
                "(skipped)".to_string()
            } else {
                answer["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!(
                "{}: {text}",
                question["question"].as_str().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub const KIND: Kind = Kind::of(&WaitKindImpl);

struct WaitKindImpl;

impl NodeKind for WaitKindImpl {
    fn name(&self) -> &'static str {
        "wait_for_user_input"
    }

    fn example(&self) -> &'static str {
        EXAMPLE
    }

    fn check(&self, params: &Map<String, Value>, problems: &mut Problems) -> bool {
        check_config::<WaitForUserInput>(params, problems, WaitForUserInput::check)
    }

    fn execute<'s, 'c: 's, 'l: 's>(
        &'s self,
        ctx: &'s RunCtx<'c>,
        log: &'s mut Log<'l>,
        node: &'s Node,
    ) -> StepFuture<'s> {
        ready(ask(ctx, log, node))
    }

    fn resume(
        &self,
        log: &mut Log<'_>,
        node: &Node,
        wait: &Wait,
        answer: Resume,
        _graph: &Graph,
    ) -> RunResult<Resumed> {
        match (wait.kind, answer) {
            (WaitKind::UserMessage, Resume::UserMessage(text)) => {
                reply(log, node, text, Vec::new());
            }
            (WaitKind::UserMessage, Resume::UserMessageWithFiles(text, files)) => {
                reply(log, node, text, files);
            }
            (WaitKind::StructuredInput, Resume::StructuredInput(submission)) => {
                let shown = wait
                    .data
                    .as_ref()
                    .and_then(|d| d.get("inputs"))
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let (status, answered) =
                    apply_submission(&shown, &submission).map_err(RunError::Invalid)?;
                log.say("user", &node.slug, answers_text(&answered));
                // The answers are shown as the questions' item; no message to show twice.
                if let Some(said) = log.events.last_mut() {
                    said.data["reply"] = json!(true);
                }
                log.event(
                    EventKind::StructuredInputAnswered,
                    Some(&node.slug),
                    json!({"status": status, "inputs": answered}),
                );
                log.run.last_output = answers_output(&status, &answered);
            }
            _ => return Err(refused(wait)),
        }
        Ok(Resumed::Follow(None))
    }
}

/// Says the prompt, then waits for the user's message or for answers to the questions.
fn ask(ctx: &RunCtx<'_>, log: &mut Log<'_>, node: &Node) -> Result<Outcome, NodeError> {
    let config: WaitForUserInput = parse(node)?;
    let scope = ctx.scope(log.run);
    let questions = config
        .questions()
        .map_err(|err| node_error("invalid_parameters", err))?
        .iter()
        .map(|q| q.to_wire(|t| scope.render_text(t)))
        .collect::<Result<Vec<Value>, _>>()?;
    let prompt = text_param(node)
        .map(|t| scope.render_text(&t))
        .transpose()?;
    if let Some(prompt) = prompt.clone().filter(|p| !p.is_empty()) {
        log.say("assistant", &node.slug, prompt);
    }
    let wait = if questions.is_empty() {
        Wait {
            kind: WaitKind::UserMessage,
            node: node.slug.clone(),
            prompt,
            data: None,
        }
    } else {
        Wait {
            kind: WaitKind::StructuredInput,
            node: node.slug.clone(),
            prompt,
            data: Some(json!({"inputs": questions})),
        }
    };
    Ok(Outcome {
        output: log.run.last_output.clone(),
        next: Next::Wait(wait),
    })
}

/// The user's message answers the wait: it joins the conversation (with its files), and
/// the next node reads it as `input.input_as_text`, like after a start, and as
/// `input.user_message`.
fn reply(log: &mut Log<'_>, node: &Node, text: String, files: Vec<crate::runs::AttachmentRef>) {
    log.say("user", &node.slug, text.clone());
    // The user's own answer: a chat client shows it already.
    if let Some(said) = log.events.last_mut() {
        said.data["reply"] = json!(true);
    }
    if let Some(entry) = log.run.history.last_mut() {
        entry.attachments = files;
    }
    log.run.last_output = json!({"input_as_text": text, "user_message": text});
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown() -> Vec<Value> {
        let node: WaitForUserInput = serde_json::from_str(EXAMPLE).unwrap();
        node.questions()
            .unwrap()
            .iter()
            .map(|q| {
                q.to_wire(|t| Ok::<_, ()>(t.replace("{{ user.email }}", "a@b.c")))
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn questions_become_chatkit_inputs() {
        let shown = shown();
        assert_eq!(
            shown[0],
            json!({"type": "multiple_choice", "id": "size", "question": "Which size?",
                   "options": [{"value": "S"}, {"value": "M"}, {"value": "L"}], "multiple": false})
        );
        assert_eq!(
            shown[1],
            json!({"type": "freeform", "id": "note", "question": "Anything else for a@b.c?",
                   "description": "Optional"})
        );
    }

    #[test]
    fn submissions_follow_the_reference_rules() {
        let (status, answered) = apply_submission(
            &shown(),
            &json!({"answers": {"size": {"values": ["M", "L"]}, "ghost": {"values": ["x"]},
                                "note": {"values": [], "skipped": false}}}),
        )
        .unwrap();
        assert_eq!(status, "answered");
        // A single choice keeps its first value; an empty answer is skipped.
        assert_eq!(
            answered[0]["answer"],
            json!({"values": ["M"], "skipped": false})
        );
        assert_eq!(
            answered[1]["answer"],
            json!({"values": [], "skipped": true})
        );
        let output = answers_output(&status, &answered);
        assert_eq!(output["values"], json!({"size": "M", "note": null}));
        assert_eq!(
            answers_text(&answered),
            "Which size?: M\nAnything else for a@b.c?: (skipped)"
        );
        // A skipped submission skips every question, whatever it carries.
        let (status, answered) = apply_submission(
            &shown(),
            &json!({"status": "skipped", "answers": {"size": {"values": ["S"]}}}),
        )
        .unwrap();
        assert_eq!(status, "skipped");
        assert!(answered.iter().all(|q| q["answer"]["skipped"] == true));
        for bad in [
            json!([]),
            json!({"status": "maybe"}),
            json!({"answers": []}),
            json!({"answers": {"size": {"values": [1]}}}),
            json!({"answers": {"size": "S"}}),
        ] {
            assert!(apply_submission(&shown(), &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_questions_are_reported_precisely() {
        let node: WaitForUserInput = serde_json::from_value(json!({"inputs": [
            {"id": "a", "question": "Pick", "type": "multiple_choice"},
            {"id": "a", "question": "Again"},
            {"id": "c", "question": "Odd", "type": "slider"},
            {"id": "d", "question": "Opts", "options": [{"label": "x"}]},
            {"question": "no id"}
        ]}))
        .unwrap();
        let mut problems = Problems::new();
        node.check(&mut problems);
        let text = format!("{problems:?}");
        for needle in [
            "inputs[0].options",
            "inputs[1].id",
            "inputs[2].type",
            "inputs[3].options[0]",
            "inputs[4]",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
    }
}
