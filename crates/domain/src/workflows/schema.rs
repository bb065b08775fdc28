//! JSON Schema checks for the schemas a workflow carries (state, input, structured output).

use serde_json::Value;

use super::problems::Problems;

/// Reports `schema` if it is not a valid JSON Schema (draft detected from `$schema`,
/// 2020-12 by default). Remote `$ref`s are not fetched, so they are reported too.
pub fn check_schema(schema: &Value, field: &str, problems: &mut Problems) {
    if !schema.is_object() && !schema.is_boolean() {
        problems.error(
            "invalid_json_schema",
            Some(field),
            "a JSON Schema is an object",
        );
        return;
    }
    if let Err(err) = jsonschema::validator_for(schema) {
        problems.error(
            "invalid_json_schema",
            Some(field),
            format!("not a valid JSON Schema: {err}"),
        );
    }
}

/// The state schema must also describe an object, whose properties are the variables.
pub fn check_state_schema(schema: &Value, problems: &mut Problems) {
    let field = "state_schema";
    check_schema(schema, field, problems);
    if let Some(kind) = schema.get("type")
        && kind != "object"
    {
        problems.error(
            "invalid_json_schema",
            Some(field),
            "the state schema must have `type: \"object\"`",
        );
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            let (Some(default), Ok(validator)) =
                (property.get("default"), jsonschema::validator_for(property))
            else {
                continue;
            };
            if !validator.is_valid(default) {
                problems.error(
                    "invalid_default",
                    Some(&format!("state_schema.properties.{name}.default")),
                    format!("the default of `{name}` does not match its own schema"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn schemas_are_checked() {
        let mut problems = Problems::new();
        check_schema(
            &json!({"type": "object", "properties": {"a": {"type": "string"}}}),
            "f",
            &mut problems,
        );
        assert!(problems.as_slice().is_empty());
        check_schema(&json!({"type": "strang"}), "f", &mut problems);
        check_schema(&json!([1]), "f", &mut problems);
        check_state_schema(
            &json!({"type": "object", "properties": {"n": {"type": "integer", "default": "x"}}}),
            &mut problems,
        );
        let codes: Vec<_> = problems.into_vec().into_iter().map(|p| p.code).collect();
        assert_eq!(
            codes,
            [
                "invalid_json_schema",
                "invalid_json_schema",
                "invalid_default"
            ]
        );
    }
}
