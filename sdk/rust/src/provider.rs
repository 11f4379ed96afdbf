//! An OpenFeature provider over a [`Client`]: `OpenFeature::singleton_mut().await
//! .set_provider(FlagstaffProvider::new(client)).await`.

use flagstaff_eval::{Context, EvalError, Reason, Value};
use open_feature::provider::{FeatureProvider, ProviderMetadata, ProviderStatus, ResolutionDetails};
use open_feature::{
    EvaluationContext, EvaluationContextFieldValue, EvaluationError, EvaluationErrorCode, EvaluationReason,
    EvaluationResult, FlagMetadata, StructValue, async_trait,
};
use serde_json::Number;
use time::format_description::well_known::Rfc3339;

use crate::Client;

/// Flagstaff as an OpenFeature provider. Evaluation is local, like the client's own reads.
///
/// The OpenFeature context's targeting key becomes `targetingKey`; its custom fields become
/// attributes (date-times as RFC 3339 strings; struct fields holding a `serde_json::Value`, a
/// `serde_json::Map`, an OpenFeature `StructValue` or `Value` are converted, other types are
/// skipped). Flag metadata carries `version`, and `ruleId` / `prerequisite` when they apply; a
/// failed prerequisite has the reason `PREREQUISITE_FAILED`.
#[derive(Debug, Clone)]
pub struct FlagstaffProvider {
    client: Client,
    metadata: ProviderMetadata,
}

impl FlagstaffProvider {
    /// A provider reading from `client` (a ready client: the provider is ready at once).
    pub fn new(client: Client) -> FlagstaffProvider {
        FlagstaffProvider {
            client,
            metadata: ProviderMetadata::new("flagstaff"),
        }
    }

    /// The client under this provider.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn resolve<T>(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
        expected: &'static str,
        convert: impl FnOnce(&Value) -> Option<T>,
    ) -> EvaluationResult<ResolutionDetails<T>> {
        let context = to_context(context);
        let resolved = self.client.resolve(flag_key, &context, |e| {
            if let Some(error) = e.error {
                return Err(ResolveError::Engine(error));
            }
            let value = e.value.ok_or(ResolveError::Engine(EvalError::FlagNotFound))?;
            let value = convert(value).ok_or(ResolveError::TypeMismatch(expected))?;
            let mut metadata = FlagMetadata::default().with_value("version", version(e.version));
            if let Some(rule) = e.rule_id {
                metadata.add_value("ruleId", rule);
            }
            if let Some(prerequisite) = e.prerequisite {
                metadata.add_value("prerequisite", prerequisite);
            }
            Ok(ResolutionDetails {
                value,
                variant: e.variant.map(str::to_owned),
                reason: Some(reason(e.reason)),
                flag_metadata: Some(metadata),
            })
        });
        resolved.map_err(|e| match e {
            ResolveError::Engine(error) => EvaluationError {
                code: match error {
                    EvalError::FlagNotFound => EvaluationErrorCode::FlagNotFound,
                    EvalError::TargetingKeyMissing => EvaluationErrorCode::TargetingKeyMissing,
                },
                message: Some(format!("{flag_key}: {error}")),
            },
            ResolveError::TypeMismatch(expected) => EvaluationError {
                code: EvaluationErrorCode::TypeMismatch,
                message: Some(format!("{flag_key}: the value is not {expected}")),
            },
        })
    }
}

/// Why a value could not be resolved for OpenFeature.
#[derive(Debug)]
pub(crate) enum ResolveError {
    Engine(EvalError),
    TypeMismatch(&'static str),
}

fn version(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn reason(reason: Reason) -> EvaluationReason {
    match reason {
        Reason::Static => EvaluationReason::Static,
        Reason::Default => EvaluationReason::Default,
        Reason::TargetingMatch => EvaluationReason::TargetingMatch,
        Reason::Split => EvaluationReason::Split,
        Reason::Disabled => EvaluationReason::Disabled,
        Reason::Error => EvaluationReason::Error,
        other @ Reason::PrerequisiteFailed => EvaluationReason::Other(other.as_str().to_owned()),
    }
}

/// The OpenFeature context as a Flagstaff context.
fn to_context(context: &EvaluationContext) -> Context {
    let mut out = Context::new();
    for (name, field) in &context.custom_fields {
        if let Some(value) = field_to_json(field) {
            out.insert(name.clone(), value);
        }
    }
    if let Some(key) = &context.targeting_key {
        out.insert("targetingKey".to_owned(), Value::String(key.clone()));
    }
    out
}

fn field_to_json(field: &EvaluationContextFieldValue) -> Option<Value> {
    Some(match field {
        EvaluationContextFieldValue::Bool(b) => Value::Bool(*b),
        EvaluationContextFieldValue::Int(i) => Value::from(*i),
        EvaluationContextFieldValue::Float(f) => Value::Number(Number::from_f64(*f)?),
        EvaluationContextFieldValue::String(s) => Value::String(s.clone()),
        EvaluationContextFieldValue::DateTime(t) => Value::String(t.format(&Rfc3339).ok()?),
        EvaluationContextFieldValue::Struct(any) => {
            if let Some(v) = any.downcast_ref::<Value>() {
                v.clone()
            } else if let Some(map) = any.downcast_ref::<serde_json::Map<String, Value>>() {
                Value::Object(map.clone())
            } else if let Some(s) = any.downcast_ref::<StructValue>() {
                struct_to_json(s)
            } else if let Some(v) = any.downcast_ref::<open_feature::Value>() {
                of_to_json(v)?
            } else {
                return None;
            }
        }
    })
}

fn struct_to_json(s: &StructValue) -> Value {
    Value::Object(
        s.fields
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), of_to_json(v)?)))
            .collect(),
    )
}

fn of_to_json(value: &open_feature::Value) -> Option<Value> {
    use open_feature::Value as V;
    Some(match value {
        V::Bool(b) => Value::Bool(*b),
        V::Int(i) => Value::from(*i),
        V::Float(f) => Value::Number(Number::from_f64(*f)?),
        V::String(s) => Value::String(s.clone()),
        V::Array(items) => Value::Array(items.iter().filter_map(of_to_json).collect()),
        V::Struct(s) => struct_to_json(s),
    })
}

/// A JSON value as an OpenFeature value; `null` has no counterpart and is left out of arrays
/// and objects.
fn json_to_of(value: &Value) -> Option<open_feature::Value> {
    use open_feature::Value as V;
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => V::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => V::Int(i),
            None => V::Float(n.as_f64()?),
        },
        Value::String(s) => V::String(s.clone()),
        Value::Array(items) => V::Array(items.iter().filter_map(json_to_of).collect()),
        Value::Object(map) => V::Struct(json_to_struct(map)),
    })
}

fn json_to_struct(map: &serde_json::Map<String, Value>) -> StructValue {
    StructValue {
        fields: map
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), json_to_of(v)?)))
            .collect(),
    }
}

/// A number that is a whole number within `i64`.
fn as_integer(value: &Value) -> Option<i64> {
    let n = value.as_number()?;
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    // i64::MAX as f64 rounds up to 2^63, which is out of range: compare strictly.
    (f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64).then_some(f as i64)
}

#[async_trait]
impl FeatureProvider for FlagstaffProvider {
    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    fn status(&self) -> ProviderStatus {
        ProviderStatus::Ready
    }

    async fn resolve_bool_value(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        self.resolve(flag_key, context, "a boolean", Value::as_bool)
    }

    async fn resolve_int_value(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        self.resolve(flag_key, context, "an integer", as_integer)
    }

    async fn resolve_float_value(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        self.resolve(flag_key, context, "a number", Value::as_f64)
    }

    async fn resolve_string_value(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        self.resolve(flag_key, context, "a string", |v| v.as_str().map(str::to_owned))
    }

    async fn resolve_struct_value(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        self.resolve(flag_key, context, "an object", |v| {
            v.as_object().map(json_to_struct)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn the_openfeature_context_becomes_a_flagstaff_context() {
        let when = time::OffsetDateTime::from_unix_timestamp(1_772_366_400).expect("valid time");
        let ctx = EvaluationContext::default()
            .with_targeting_key("u-1")
            .with_custom_field("plan", "pro")
            .with_custom_field("seats", 12)
            .with_custom_field("ratio", 0.5)
            .with_custom_field("beta", true)
            .with_custom_field("signed_up", EvaluationContextFieldValue::DateTime(when))
            .with_custom_field(
                "team",
                EvaluationContextFieldValue::Struct(Arc::new(json!({"id": "t-9"}))),
            )
            .with_custom_field(
                "org",
                EvaluationContextFieldValue::new_struct(StructValue::default().with_field("tier", "gold")),
            )
            .with_custom_field(
                "opaque",
                EvaluationContextFieldValue::new_struct(std::time::Duration::ZERO),
            );
        assert_eq!(
            Value::Object(to_context(&ctx)),
            json!({
                "targetingKey": "u-1", "plan": "pro", "seats": 12, "ratio": 0.5, "beta": true,
                "signed_up": "2026-03-01T12:00:00Z", "team": {"id": "t-9"}, "org": {"tier": "gold"}
            })
        );
    }

    #[test]
    fn json_values_convert_to_openfeature_values() {
        let s = json_to_struct(
            json!({"a": 1, "b": 2.5, "c": "x", "d": [true, null], "e": {"f": null}})
                .as_object()
                .expect("object"),
        );
        let back = struct_to_json(&s);
        assert_eq!(back, json!({"a": 1, "b": 2.5, "c": "x", "d": [true], "e": {}}));
    }

    #[test]
    fn integers_are_whole_numbers_in_range() {
        assert_eq!(as_integer(&json!(3)), Some(3));
        assert_eq!(as_integer(&json!(3.0)), Some(3));
        assert_eq!(as_integer(&json!(3.5)), None);
        assert_eq!(as_integer(&json!(1e300)), None);
        assert_eq!(as_integer(&json!(u64::MAX)), None);
        assert_eq!(as_integer(&json!("3")), None);
    }
}
