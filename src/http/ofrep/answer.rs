//! One flag's answer on the OFREP wire, written by hand: a success
//! `{key, value, variant, metadata, reason}` starts with the snapshot's pre-written piece
//! ([`crate::http::evaluation::answers`]) and a failure is `{key, errorCode, errorDetails,
//! metadata}`. The bulk answer is 50 of these, so this is most of its cost.

use flagstaff_eval::{EvalError, Evaluation, Reason};

use crate::http::evaluation::answers::Answers;
use crate::http::evaluation::json::{write_str, write_u64};

/// The OFREP reason of an engine reason: the list is closed, so `PREREQUISITE_FAILED` is
/// `DISABLED` (with metadata saying why).
fn wire_reason(reason: Reason) -> &'static str {
    match reason {
        Reason::PrerequisiteFailed => "DISABLED",
        other => other.as_str(),
    }
}

/// Writes one flag's answer: `{key, value, variant, metadata, reason}` on success,
/// `{key, errorCode, errorDetails, metadata}` on failure. Metadata holds primitives only (the
/// providers drop anything else): the state's `version`, the `ruleId` that served the value,
/// and for a failed prerequisite `prerequisiteFailed` and — when the caller may know of that
/// flag — its key as `prerequisite`. `index` is the flag's position in the engine. Returns
/// whether it was a success.
///
/// A success starts with the snapshot's pre-written piece of the flag and variation
/// ([`crate::http::evaluation::answers`]): the bulk answer is 50 of these, so this is most of
/// its cost.
pub fn write_item(
    out: &mut Vec<u8>,
    answers: &Answers,
    index: usize,
    evaluation: &Evaluation<'_>,
    may_see: impl Fn(&str) -> bool,
) -> bool {
    let (Some(variation), None) = (evaluation.variation, evaluation.error) else {
        write_error_item(out, evaluation, may_see);
        return false;
    };
    out.extend_from_slice(answers.ofrep_head(index, variation));
    write_metadata_rest(out, evaluation, may_see);
    out.extend_from_slice(b"},\"reason\":\"");
    // One arm per reason, so that each copy is of a known length.
    match wire_reason(evaluation.reason) {
        "STATIC" => out.extend_from_slice(b"STATIC"),
        "DEFAULT" => out.extend_from_slice(b"DEFAULT"),
        "TARGETING_MATCH" => out.extend_from_slice(b"TARGETING_MATCH"),
        "SPLIT" => out.extend_from_slice(b"SPLIT"),
        "DISABLED" => out.extend_from_slice(b"DISABLED"),
        other => out.extend_from_slice(other.as_bytes()),
    }
    out.extend_from_slice(b"\"}");
    true
}

/// `{key, errorCode, errorDetails, metadata}`.
fn write_error_item(out: &mut Vec<u8>, evaluation: &Evaluation<'_>, may_see: impl Fn(&str) -> bool) {
    let error = evaluation.error.unwrap_or(EvalError::FlagNotFound);
    let details = match error {
        EvalError::TargetingKeyMissing => format!(
            "flag {:?} serves a percentage rollout, which needs the context's targetingKey \
             (or the rollout's bucket_by attribute)",
            evaluation.key
        ),
        EvalError::FlagNotFound => format!("flag {:?} was not found", evaluation.key),
    };
    out.extend_from_slice(b"{\"key\":");
    write_str(out, evaluation.key);
    out.extend_from_slice(b",\"errorCode\":\"");
    out.extend_from_slice(error.code().as_bytes());
    out.extend_from_slice(b"\",\"errorDetails\":");
    write_str(out, &details);
    out.extend_from_slice(b",\"metadata\":{\"version\":");
    write_u64(out, evaluation.version);
    write_metadata_rest(out, evaluation, may_see);
    out.extend_from_slice(b"}}");
}

/// The metadata after its version: `ruleId`, and for a failed prerequisite
/// `prerequisiteFailed` and `prerequisite`. The caller closes the object.
fn write_metadata_rest(out: &mut Vec<u8>, evaluation: &Evaluation<'_>, may_see: impl Fn(&str) -> bool) {
    if let Some(rule_id) = evaluation.rule_id {
        out.extend_from_slice(b",\"ruleId\":");
        write_str(out, rule_id);
    }
    if evaluation.reason == Reason::PrerequisiteFailed {
        out.extend_from_slice(b",\"prerequisiteFailed\":true");
        if let Some(prerequisite) = evaluation.prerequisite.filter(|p| may_see(p)) {
            out.extend_from_slice(b",\"prerequisite\":");
            write_str(out, prerequisite);
        }
    }
}
