//! The flag editor: the definition (name, tags, type, variations with typed values, client-side
//! and temporary switches) shared by every environment, and the state of one environment at a
//! time (on/off, off variation, prerequisites, targets, rules built from clauses, the
//! fallthrough, rollouts whose weights must add up to 100%).
//!
//! Forms carry indexed names that mirror the model's paths (`rules[0].clauses[1].op`), so an
//! error of the engine's validation lands beside the field that caused it. A form is first read
//! into rows of raw text (so a failed save shows exactly what was typed), then parsed into the
//! model; saving goes through `store::flags::{update, patch_state}` like the API.

use actix_web::http::StatusCode;
use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use flagstaff_eval::model::{
    Clause, Flag, FlagEnvState, FlagKind, FlagType, Op, Prerequisite, Rollout, Rule, Serve, Target,
    Variation, WeightedVariation,
};
use serde_json::Value;

use super::flags::{needs_confirmation, summary};
use super::form::{Form, is_plain_line, keys, list, list_text};
use super::projects::frame;
use super::session::{self, AdminSession, Posted};
use super::view::{FieldErrors, Layout, display_name};
use super::{PageError, ok, render, see_other};
use crate::store::environments::{self, Environment};
use crate::store::flags::{self, FlagFilter, StatePatch};
use crate::store::users::Role;
use crate::store::{StoreError, projects, segments};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.route("/{project}/flags/{flag}", web::get().to(page))
        .route("/{project}/flags/{flag}", web::post().to(save_definition))
        .route(
            "/{project}/flags/{flag}/environments/{env}",
            web::post().to(save_state),
        );
    super::changes::configure(cfg);
}

/// Every operator (its name in documents, its label), as the clause builder offers them.
pub const OPS: [(&str, &str); Op::ALL.len()] = {
    let mut ops = [("", ""); Op::ALL.len()];
    let mut i = 0;
    while i < ops.len() {
        ops[i] = (Op::ALL[i].as_str(), op_label(Op::ALL[i]));
        i += 1;
    }
    ops
};

/// How the clause builder says an operator.
const fn op_label(op: Op) -> &'static str {
    match op {
        Op::In => "is one of",
        Op::Contains => "contains",
        Op::StartsWith => "starts with",
        Op::EndsWith => "ends with",
        Op::Matches => "matches regex",
        Op::Lt => "< (number)",
        Op::Lte => "≤ (number)",
        Op::Gt => "> (number)",
        Op::Gte => "≥ (number)",
        Op::SemverEq => "= (semver)",
        Op::SemverLt => "< (semver)",
        Op::SemverLte => "≤ (semver)",
        Op::SemverGt => "> (semver)",
        Op::SemverGte => "≥ (semver)",
        Op::Before => "before (date)",
        Op::After => "after (date)",
        Op::Exists => "exists",
        Op::InSegment => "is in segment",
    }
}

// ---------------------------------------------------------------------------------------------
// Clauses (shared with the segment editor)

/// A clause as typed: attribute, operator, values (one per line, or a JSON array), negate.
#[derive(Debug, Clone, Default)]
pub struct ClauseRow {
    pub attribute: String,
    pub op: String,
    pub values: String,
    pub negate: bool,
}

impl ClauseRow {
    pub fn from_clause(c: &Clause) -> ClauseRow {
        ClauseRow {
            attribute: c.attribute.clone().unwrap_or_default(),
            op: c.op.as_str().to_owned(),
            values: values_text(c.op, &c.values),
            negate: c.negate,
        }
    }

    fn from_form(form: &Form, prefix: &str) -> ClauseRow {
        ClauseRow {
            attribute: form.line(&format!("{prefix}.attribute")).to_owned(),
            op: form.text(&format!("{prefix}.op")).to_owned(),
            values: form.multiline(&format!("{prefix}.values")),
            negate: form.checked(&format!("{prefix}.negate")),
        }
    }

    fn is_blank(&self) -> bool {
        self.attribute.is_empty() && self.values.trim().is_empty()
    }

    /// The clause, or errors at `path` (`…clauses[1]`) for what cannot be read.
    fn parse(&self, path: &str, errors: &mut FieldErrors) -> Option<Clause> {
        let Some(op) = Op::parse(&self.op) else {
            errors.add(format!("{path}.op"), "Choose an operator.");
            return None;
        };
        let values = match parse_values(op, &self.values) {
            Ok(values) => values,
            Err(message) => {
                errors.add(format!("{path}.values"), message);
                return None;
            }
        };
        let attribute = match op {
            Op::InSegment => None,
            _ if self.attribute.is_empty() => {
                errors.add(
                    format!("{path}.attribute"),
                    "Name the context attribute, e.g. email or plan.",
                );
                return None;
            }
            _ => Some(self.attribute.clone()),
        };
        Some(Clause {
            attribute,
            op,
            values,
            negate: self.negate,
        })
    }
}

/// Clause values as text: one per line when they are all strings that read back unchanged
/// ([`is_plain_line`]), else a JSON array.
fn values_text(op: Op, values: &[Value]) -> String {
    let simple: Option<Vec<&str>> = values
        .iter()
        .map(|v| v.as_str().filter(|s| is_plain_line(s)))
        .collect();
    match simple {
        // One per line reads back as strings, except what these operators read as numbers.
        Some(lines)
            if !matches!(op, Op::Lt | Op::Lte | Op::Gt | Op::Gte | Op::Before | Op::After)
                || lines
                    .iter()
                    .all(|l| l.parse::<i64>().is_err() && l.parse::<f64>().is_err()) =>
        {
            lines.join("\n")
        }
        _ => Value::Array(values.to_vec()).to_string(),
    }
}

/// Reads clause values: a JSON array as is; otherwise one value per line, typed by the
/// operator (numbers for `lt`…`gte`, numbers or dates for `before`/`after`, text otherwise).
fn parse_values(op: Op, text: &str) -> Result<Vec<Value>, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('[') {
        return match serde_json::from_str::<Value>(trimmed) {
            Ok(Value::Array(values)) => Ok(values),
            Ok(_) | Err(_) => {
                Err("Starts with [ but is not a JSON array; write one value per line instead.".into())
            }
        };
    }
    let lines = super::form::lines(text);
    match op {
        Op::Exists => Ok(Vec::new()),
        Op::Lt | Op::Lte | Op::Gt | Op::Gte => lines
            .iter()
            .map(|l| match serde_json::from_str::<serde_json::Number>(l) {
                Ok(n) => Ok(Value::Number(n)),
                Err(_) => Err(format!("{l:?} is not a number; this operator compares numbers.")),
            })
            .collect(),
        Op::Before | Op::After => Ok(lines
            .into_iter()
            .map(|l| match l.parse::<i64>() {
                Ok(n) => Value::from(n),
                Err(_) => Value::String(l),
            })
            .collect()),
        _ => Ok(lines.into_iter().map(Value::String).collect()),
    }
}

/// The clause rows of `{prefix}.clauses[j]`, blank ones dropped.
pub fn clause_rows(form: &Form, prefix: &str) -> Vec<ClauseRow> {
    form.indices(&format!("{prefix}.clauses"))
        .into_iter()
        .map(|j| ClauseRow::from_form(form, &format!("{prefix}.clauses[{j}]")))
        .filter(|c| !c.is_blank() || c.op == "in_segment" || c.op == "exists")
        .collect()
}

/// Parses clause rows whose paths are `{prefix}.clauses[j]`.
pub fn parse_clauses(rows: &[ClauseRow], prefix: &str, errors: &mut FieldErrors) -> Vec<Clause> {
    rows.iter()
        .enumerate()
        .filter_map(|(j, c)| c.parse(&format!("{prefix}.clauses[{j}]"), errors))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Serving: a variation or a rollout

/// The serve choice that means "a percentage rollout": not a possible variation key (those
/// start with a letter or a digit), so a variation may be called `rollout`.
pub const ROLLOUT_CHOICE: &str = "*rollout";

/// What a rule or the fallthrough serves, as typed.
#[derive(Debug, Clone, Default)]
pub struct ServeForm {
    /// A variation key, or [`ROLLOUT_CHOICE`].
    pub choice: String,
    pub bucket_by: String,
    pub salt: String,
    /// (variation key, percent as typed), in the rollout's order: the variations it lists
    /// first, then the others with an empty percent (not listed; `0` lists one at 0%).
    pub weights: Vec<(String, String)>,
}

fn percent_text(weight: i64) -> String {
    let whole = weight / 1000;
    let frac = weight % 1000;
    if frac == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{frac:03}").trim_end_matches('0').to_owned()
    }
}

impl ServeForm {
    fn from_serve(serve: Option<&Serve>, variations: &[Variation], default_choice: &str) -> ServeForm {
        // The order of a rollout's variations decides who gets which: it is kept as stored.
        let weights_of = |rollout: Option<&Rollout>| {
            let listed = rollout.map(|r| r.variations.as_slice()).unwrap_or_default();
            let mut weights: Vec<(String, String)> = listed
                .iter()
                .map(|w| (w.variation.clone(), percent_text(w.weight)))
                .collect();
            for v in variations {
                if !listed.iter().any(|w| w.variation == v.key) {
                    weights.push((v.key.clone(), String::new()));
                }
            }
            weights
        };
        match serve {
            Some(Serve::Rollout(r)) => ServeForm {
                choice: ROLLOUT_CHOICE.into(),
                bucket_by: r.bucket_by.clone().unwrap_or_default(),
                salt: r.salt.clone().unwrap_or_default(),
                weights: weights_of(Some(r)),
            },
            Some(Serve::Variation(v)) => ServeForm {
                choice: v.clone(),
                weights: weights_of(None),
                ..ServeForm::default()
            },
            None => ServeForm {
                choice: default_choice.to_owned(),
                weights: weights_of(None),
                ..ServeForm::default()
            },
        }
    }

    fn from_form(form: &Form, prefix: &str) -> ServeForm {
        ServeForm {
            choice: form.text(&format!("{prefix}.serve")).to_owned(),
            bucket_by: form.line(&format!("{prefix}.rollout.bucket_by")).to_owned(),
            salt: form.line(&format!("{prefix}.rollout.salt")).to_owned(),
            // In the order sent: the order of a rollout's variations matters.
            weights: form
                .with_prefix(&format!("{prefix}.rollout.weight."))
                .into_iter()
                .map(|(key, percent)| (key.to_owned(), percent.trim().to_owned()))
                .collect(),
        }
    }

    /// The serve, or errors at `path` (`rules[0].serve`, `fallthrough`).
    fn parse(&self, path: &str, errors: &mut FieldErrors) -> Option<Serve> {
        if self.choice != ROLLOUT_CHOICE {
            if self.choice.is_empty() {
                errors.add(format!("{path}.variation"), "Choose what to serve.");
                return None;
            }
            return Some(Serve::Variation(self.choice.clone()));
        }
        let mut variations = Vec::new();
        let mut total = 0i64;
        let mut ok = true;
        for (key, text) in &self.weights {
            let text = text.trim().trim_end_matches('%');
            if text.is_empty() {
                // Not part of the rollout (an explicit 0 is).
                continue;
            }
            match text.parse::<f64>().ok() {
                Some(p) if (0.0..=100.0).contains(&p) => {
                    let weight = (p * 1000.0).round() as i64;
                    total += weight;
                    variations.push(WeightedVariation {
                        variation: key.clone(),
                        weight,
                    });
                }
                _ => {
                    errors.add(
                        format!("{path}.rollout.weight.{key}"),
                        format!("{text:?} is not a percentage from 0 to 100."),
                    );
                    ok = false;
                }
            }
        }
        if ok && total != 100_000 {
            errors.add(
                format!("{path}.rollout"),
                format!(
                    "The weights add up to {}%; they must add up to 100%.",
                    percent_text(total)
                ),
            );
            ok = false;
        }
        ok.then(|| {
            Serve::Rollout(Rollout {
                bucket_by: Some(self.bucket_by.clone()).filter(|b| !b.is_empty()),
                salt: Some(self.salt.clone()).filter(|s| !s.is_empty()),
                variations,
            })
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The state of one environment

#[derive(Debug, Clone, Default)]
pub struct PrerequisiteRow {
    pub flag: String,
    pub variations: String,
}

#[derive(Debug, Clone, Default)]
pub struct TargetRow {
    pub variation: String,
    pub values: String,
}

#[derive(Debug, Clone, Default)]
pub struct RuleRow {
    pub id: String,
    pub description: String,
    pub clauses: Vec<ClauseRow>,
    pub serve: ServeForm,
}

/// One environment's state as typed.
#[derive(Debug, Clone, Default)]
pub struct StateForm {
    pub enabled: bool,
    pub off_variation: String,
    pub prerequisites: Vec<PrerequisiteRow>,
    pub targets: Vec<TargetRow>,
    pub rules: Vec<RuleRow>,
    pub fallthrough: ServeForm,
    pub version: String,
}

impl StateForm {
    fn from_state(state: &FlagEnvState, flag: &Flag) -> StateForm {
        let first = flag.variations.first().map_or("", |v| v.key.as_str());
        StateForm {
            enabled: state.enabled,
            off_variation: state.off_variation.clone().unwrap_or_default(),
            prerequisites: state
                .prerequisites
                .iter()
                .map(|p| PrerequisiteRow {
                    flag: p.flag.clone(),
                    variations: p.variations.join(", "),
                })
                .collect(),
            targets: state
                .targets
                .iter()
                .map(|t| TargetRow {
                    variation: t.variation.clone(),
                    // An empty list shows as `[]`: a blank row is one a person left empty.
                    values: if t.values.is_empty() {
                        "[]".to_owned()
                    } else {
                        list_text(&t.values)
                    },
                })
                .collect(),
            rules: state
                .rules
                .iter()
                .map(|r| RuleRow {
                    id: r.id.clone().unwrap_or_default(),
                    description: r.description.clone().unwrap_or_default(),
                    clauses: r.clauses.iter().map(ClauseRow::from_clause).collect(),
                    serve: ServeForm::from_serve(Some(&r.serve), &flag.variations, first),
                })
                .collect(),
            fallthrough: ServeForm::from_serve(state.fallthrough.as_ref(), &flag.variations, ""),
            version: state.version.unwrap_or(0).to_string(),
        }
    }

    fn from_form(form: &Form) -> StateForm {
        StateForm {
            enabled: form.checked("enabled"),
            off_variation: form.text("off_variation").to_owned(),
            prerequisites: form
                .indices("prerequisites")
                .into_iter()
                .map(|i| PrerequisiteRow {
                    flag: form.text(&format!("prerequisites[{i}].flag")).to_owned(),
                    variations: form.text(&format!("prerequisites[{i}].variations")).to_owned(),
                })
                .filter(|p| !(p.flag.is_empty() && p.variations.is_empty()))
                .collect(),
            targets: form
                .indices("targets")
                .into_iter()
                .map(|i| TargetRow {
                    variation: form.text(&format!("targets[{i}].variation")).to_owned(),
                    values: form.multiline(&format!("targets[{i}].values")),
                })
                .filter(|t| !t.values.trim().is_empty())
                .collect(),
            rules: form
                .indices("rules")
                .into_iter()
                .map(|i| {
                    let prefix = format!("rules[{i}]");
                    RuleRow {
                        id: form.text(&format!("{prefix}.id")).to_owned(),
                        description: form.line(&format!("{prefix}.description")).to_owned(),
                        clauses: clause_rows(form, &prefix),
                        serve: ServeForm::from_form(form, &prefix),
                    }
                })
                .collect(),
            fallthrough: ServeForm::from_form(form, "fallthrough"),
            version: form.text("version").to_owned(),
        }
    }

    /// The state, or the errors (by path) of what cannot be read.
    fn parse(&self) -> Result<FlagEnvState, FieldErrors> {
        let mut errors = FieldErrors::default();
        let prerequisites = self
            .prerequisites
            .iter()
            .map(|p| Prerequisite {
                flag: p.flag.clone(),
                variations: keys(&p.variations),
            })
            .collect();
        let mut targets = Vec::new();
        for (i, t) in self.targets.iter().enumerate() {
            match list(&t.values) {
                Ok(values) => targets.push(Target {
                    variation: t.variation.clone(),
                    values,
                }),
                Err(message) => errors.add(format!("targets[{i}].values"), message),
            }
        }
        let mut rules = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            let path = format!("rules[{i}]");
            if r.clauses.is_empty() {
                errors.add(format!("{path}.clauses"), "A rule needs at least one condition.");
            }
            let clauses = parse_clauses(&r.clauses, &path, &mut errors);
            let serve = r.serve.parse(&format!("{path}.serve"), &mut errors);
            if let Some(serve) = serve {
                rules.push(Rule {
                    id: Some(r.id.clone()).filter(|s| !s.is_empty()),
                    description: Some(r.description.clone()).filter(|s| !s.is_empty()),
                    clauses,
                    serve,
                });
            }
        }
        let fallthrough = if self.fallthrough.choice.is_empty() {
            None
        } else {
            self.fallthrough.parse("fallthrough", &mut errors)
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(FlagEnvState {
            enabled: self.enabled,
            off_variation: Some(self.off_variation.clone()).filter(|s| !s.is_empty()),
            prerequisites,
            targets,
            rules,
            fallthrough,
            version: None,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The definition

#[derive(Debug, Clone, Default)]
pub struct VariationRow {
    pub key: String,
    pub name: String,
    pub value: String,
}

/// A flag's definition as typed.
#[derive(Debug, Clone, Default)]
pub struct DefinitionForm {
    pub name: String,
    pub description: String,
    pub tags: String,
    pub kind: String,
    pub flag_type: String,
    pub client_side: bool,
    pub temporary: bool,
    pub archived: bool,
    pub variations: Vec<VariationRow>,
}

/// A variation's value as its field shows it: JSON for a JSON flag (even when the value is a
/// string or a number: it is read back as JSON), the plain text otherwise.
fn value_text(flag_type: FlagType, value: &Value) -> String {
    match (flag_type, value) {
        (FlagType::Json, value) => serde_json::to_string_pretty(value).unwrap_or_default(),
        (_, Value::String(s)) => s.clone(),
        (_, Value::Bool(b)) => b.to_string(),
        (_, Value::Number(n)) => n.to_string(),
        (_, other) => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

impl DefinitionForm {
    fn from_flag(flag: &Flag) -> DefinitionForm {
        DefinitionForm {
            name: flag.name.clone(),
            description: flag.description.clone(),
            tags: list_text(&flag.tags),
            kind: flag.kind.as_str().to_owned(),
            flag_type: flag.flag_type.as_str().to_owned(),
            client_side: flag.is_client_side(),
            temporary: flag.is_temporary(),
            archived: flag.archived,
            variations: flag
                .variations
                .iter()
                .map(|v| VariationRow {
                    key: v.key.clone(),
                    name: v.name.clone().unwrap_or_default(),
                    value: value_text(flag.flag_type, &v.value),
                })
                .collect(),
        }
    }

    fn from_form(form: &Form) -> DefinitionForm {
        DefinitionForm {
            name: form.line("name").to_owned(),
            description: form.multiline("description"),
            tags: form.multiline("tags"),
            kind: form.text("kind").to_owned(),
            flag_type: form.text("type").to_owned(),
            client_side: form.checked("client_side"),
            temporary: form.checked("temporary"),
            archived: form.checked("archived"),
            variations: form
                .indices("variations")
                .into_iter()
                .map(|i| VariationRow {
                    key: form.text(&format!("variations[{i}].key")).to_owned(),
                    name: form.line(&format!("variations[{i}].name")).to_owned(),
                    // Values are not trimmed: a string flag may serve " " on purpose. String
                    // and JSON values are edited in a textarea.
                    value: form.multiline(&format!("variations[{i}].value")),
                })
                .filter(|v| !(v.key.is_empty() && v.name.is_empty() && v.value.is_empty()))
                .collect(),
        }
    }

    /// The definition (no environments), or the errors of what cannot be read.
    fn parse(&self, key: &str) -> Result<Flag, FieldErrors> {
        let mut errors = FieldErrors::default();
        let kind = FlagKind::parse(&self.kind).unwrap_or(FlagKind::Flag);
        let flag_type = FlagType::parse(&self.flag_type).unwrap_or_else(|| {
            errors.add("type", "Choose boolean, string, number or json.");
            FlagType::String
        });
        let tags = list(&self.tags).unwrap_or_else(|message| {
            errors.add("tags", message);
            Vec::new()
        });
        let mut variations = Vec::new();
        for (i, v) in self.variations.iter().enumerate() {
            let path = format!("variations[{i}].value");
            let value = match flag_type {
                FlagType::Boolean => match v.value.trim() {
                    "true" => Some(Value::Bool(true)),
                    "false" => Some(Value::Bool(false)),
                    other => {
                        errors.add(path, format!("{other:?} is not true or false."));
                        None
                    }
                },
                FlagType::String => Some(Value::String(v.value.clone())),
                FlagType::Number => match serde_json::from_str::<serde_json::Number>(v.value.trim()) {
                    Ok(n) => Some(Value::Number(n)),
                    Err(_) => {
                        errors.add(path, format!("{:?} is not a number.", v.value.trim()));
                        None
                    }
                },
                FlagType::Json => match serde_json::from_str::<Value>(&v.value) {
                    Ok(value) => Some(value),
                    Err(e) => {
                        errors.add(path, format!("Not valid JSON: {e}."));
                        None
                    }
                },
            };
            if let Some(value) = value {
                variations.push(Variation {
                    key: v.key.clone(),
                    value,
                    name: Some(v.name.clone()).filter(|n| !n.is_empty()),
                    description: None,
                });
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let default_on = kind == FlagKind::Flag;
        Ok(Flag {
            key: key.to_owned(),
            name: self.name.clone(),
            description: self.description.clone(),
            kind,
            flag_type,
            variations,
            // Left unset when it is the kind's default, so the stored JSON stays minimal.
            client_side: (self.client_side != default_on).then_some(self.client_side),
            temporary: (self.temporary != default_on).then_some(self.temporary),
            tags,
            archived: self.archived,
            environments: std::collections::BTreeMap::default(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The page

struct EnvTab {
    key: String,
    name: String,
    enabled: bool,
    summary: String,
}

#[derive(Template)]
#[template(path = "admin/editor.html")]
struct EditorPage {
    layout: Layout,
    key: String,
    title: String,
    definition: DefinitionForm,
    definition_errors: FieldErrors,
    /// The flag's variations as saved (what states may refer to).
    variations: Vec<(String, String)>,
    tabs: Vec<EnvTab>,
    env: String,
    env_name: String,
    confirm: bool,
    state: StateForm,
    state_errors: FieldErrors,
    other_flags: Vec<String>,
    segments: Vec<String>,
    ops: &'static [(&'static str, &'static str)],
    /// Which form was sent (`definition` or `state`), to focus its errors.
    sent: &'static str,
    /// This environment's scheduled changes: pending, then recent.
    schedules: Vec<super::changes::ScheduleRow>,
    /// The state saved now, as JSON (the start of a scheduled "any state").
    current_json: String,
}

impl EditorPage {
    fn type_names(&self) -> [&'static str; 4] {
        super::view::type_names()
    }

    fn kind_names(&self) -> [&'static str; 2] {
        super::view::kind_names()
    }

    /// Every error at `path` or below it (`rules[0]` holds `rules[0].clauses[1].op`).
    fn errors_under(&self, errors: &FieldErrors, path: impl AsRef<str>) -> Vec<String> {
        let path = path.as_ref();
        errors
            .0
            .iter()
            .filter(|(p, _)| {
                p == path
                    || p.strip_prefix(path)
                        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
            })
            .map(|(_, m)| m.clone())
            .collect()
    }

    fn state_errors_at(&self, path: impl AsRef<str>) -> Vec<String> {
        self.errors_under(&self.state_errors, path)
    }

    fn blank_clause(&self) -> ClauseRow {
        ClauseRow {
            op: "in".into(),
            ..ClauseRow::default()
        }
    }

    fn blank_serve(&self) -> ServeForm {
        ServeForm {
            choice: self
                .variations
                .first()
                .map(|(k, _)| k.clone())
                .unwrap_or_default(),
            weights: self
                .variations
                .iter()
                .map(|(k, _)| (k.clone(), String::new()))
                .collect(),
            ..ServeForm::default()
        }
    }

    fn serve_errors(&self, path: impl AsRef<str>) -> Vec<String> {
        let path = path.as_ref();
        let mut out = self.state_errors_at(format!("{path}.variation"));
        out.extend(self.state_errors_at(format!("{path}.rollout")));
        out
    }
}

#[derive(serde::Deserialize)]
struct EditorQuery {
    env: Option<String>,
    notice: Option<String>,
}

struct Loaded {
    flag: Flag,
    envs: Vec<Environment>,
    others: Vec<String>,
    segments: Vec<String>,
}

async fn load(state: &crate::AppState, project: &str, key: &str) -> Result<Loaded, PageError> {
    let (p, k) = (project.to_owned(), key.to_owned());
    let loaded = state
        .store
        .read(move |conn| {
            let head = projects::head(conn, &p)?;
            let flag = flags::get(conn, &p, &k)?;
            let envs = environments::list_in(conn, head.id)?;
            let others = flags::list(conn, &p, &FlagFilter::default())?
                .into_iter()
                .map(|f| f.key)
                .filter(|f| f != &k)
                .collect();
            let segments = segments::list(conn, &p)?.into_iter().map(|s| s.key).collect();
            Ok(Loaded {
                flag,
                envs,
                others,
                segments,
            })
        })
        .await?;
    Ok(loaded)
}

fn pick_env<'a>(envs: &'a [Environment], wanted: Option<&str>) -> Result<&'a Environment, PageError> {
    match wanted {
        Some(key) => envs
            .iter()
            .find(|e| e.key == key)
            .ok_or_else(|| PageError::not_found(format!("environment {key:?}"))),
        None => envs
            .first()
            .ok_or_else(|| PageError::not_found("an environment of this project")),
    }
}

#[allow(clippy::too_many_arguments)]
async fn build(
    state: &crate::AppState,
    session: &AdminSession,
    project: &str,
    loaded: Loaded,
    env_key: Option<&str>,
    definition: Option<(DefinitionForm, FieldErrors)>,
    state_form: Option<(StateForm, FieldErrors)>,
    notice: Option<&str>,
) -> Result<EditorPage, PageError> {
    let Loaded {
        flag,
        envs,
        others,
        segments,
    } = loaded;
    let env = pick_env(&envs, env_key)?.clone();
    let title = display_name(&flag.name, &flag.key).to_owned();
    let kind_section = if flag.kind == FlagKind::Config {
        "configs"
    } else {
        "flags"
    };
    let layout = frame(state, session, project, &title, kind_section)
        .await?
        .notice(notice);
    let current = flag.environments.get(&env.key).cloned().unwrap_or_default();
    let schedules = super::changes::rows(state, project, &flag.key, &env.key).await?;
    let current_json = serde_json::to_string(&FlagEnvState {
        version: None,
        ..current.clone()
    })
    .unwrap_or_default();
    let sent = match (&definition, &state_form) {
        (Some(_), _) => "definition",
        (_, Some(_)) => "state",
        _ => "",
    };
    let (definition, definition_errors) =
        definition.unwrap_or_else(|| (DefinitionForm::from_flag(&flag), FieldErrors::default()));
    let (state_form, state_errors) =
        state_form.unwrap_or_else(|| (StateForm::from_state(&current, &flag), FieldErrors::default()));
    Ok(EditorPage {
        layout,
        key: flag.key.clone(),
        title,
        definition,
        definition_errors,
        variations: flag
            .variations
            .iter()
            .map(|v| {
                (
                    v.key.clone(),
                    v.name
                        .clone()
                        .filter(|n| !n.is_empty())
                        .unwrap_or_else(|| v.key.clone()),
                )
            })
            .collect(),
        tabs: envs
            .iter()
            .map(|e| {
                let s = flag.environments.get(&e.key).cloned().unwrap_or_default();
                EnvTab {
                    key: e.key.clone(),
                    name: display_name(&e.name, &e.key).to_owned(),
                    enabled: s.enabled,
                    summary: summary(&s),
                }
            })
            .collect(),
        env_name: display_name(&env.name, &env.key).to_owned(),
        confirm: needs_confirmation(&env),
        env: env.key,
        state: state_form,
        state_errors,
        other_flags: others,
        segments,
        ops: &OPS,
        sent,
        schedules,
        current_json,
    })
}

async fn page(
    req: HttpRequest,
    session: AdminSession,
    path: web::Path<(String, String)>,
    query: web::Query<EditorQuery>,
) -> Result<HttpResponse, PageError> {
    let state = session::state(&req)?;
    let (project, key) = path.into_inner();
    let loaded = load(&state, &project, &key).await?;
    let page = build(
        &state,
        &session,
        &project,
        loaded,
        query.env.as_deref(),
        None,
        None,
        query.notice.as_deref(),
    )
    .await?;
    ok(&page)
}

async fn save_definition(
    req: HttpRequest,
    posted: Posted,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    posted.require(Role::Editor)?;
    let state = session::state(&req)?;
    let (project, key) = path.into_inner();
    let form = DefinitionForm::from_form(&posted.form);
    let env = posted.form.get("env").map(str::to_owned);
    let errors = match form.parse(&key) {
        Ok(mut flag) => {
            let (actor, p, k) = (posted.session.actor(), project.clone(), key.clone());
            match state
                .write(move |tx| {
                    // The form has no field for variations' descriptions: keep them.
                    let current = flags::get(tx, &p, &k)?;
                    for v in &mut flag.variations {
                        v.description = current
                            .variations
                            .iter()
                            .find(|c| c.key == v.key)
                            .and_then(|c| c.description.clone());
                    }
                    // The checkboxes show what is in effect: a switch left as it was keeps how
                    // it was stored (set to its default, or left out).
                    if flag.kind == current.kind {
                        if flag.is_client_side() == current.is_client_side() {
                            flag.client_side = current.client_side;
                        }
                        if flag.is_temporary() == current.is_temporary() {
                            flag.temporary = current.temporary;
                        }
                    }
                    flags::update(tx, &actor, &p, &k, flag)
                })
                .await
            {
                Ok(_) => {
                    let env = env
                        .map(|e| {
                            format!(
                                "{}&",
                                serde_urlencoded::to_string([("env", e)]).unwrap_or_default()
                            )
                        })
                        .unwrap_or_default();
                    return Ok(see_other(&format!(
                        "/projects/{project}/flags/{key}?{env}notice=saved"
                    )));
                }
                Err(e) => FieldErrors::from_store(e, "")?,
            }
        }
        Err(errors) => errors,
    };
    let loaded = load(&state, &project, &key).await?;
    let page = build(
        &state,
        &posted.session,
        &project,
        loaded,
        env.as_deref(),
        Some((form, errors)),
        None,
        None,
    )
    .await?;
    render(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

async fn save_state(
    req: HttpRequest,
    posted: Posted,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, PageError> {
    posted.require(Role::Editor)?;
    let state = session::state(&req)?;
    let (project, key, env) = path.into_inner();
    let loaded = load(&state, &project, &key).await?;
    let form = StateForm::from_form(&posted.form);
    let expected = form.version.parse::<u64>().ok();
    let errors = match form.parse() {
        Ok(new) => {
            let patch = StatePatch {
                enabled: Some(new.enabled),
                off_variation: Some(new.off_variation),
                prerequisites: Some(new.prerequisites),
                targets: Some(new.targets),
                rules: Some(new.rules),
                fallthrough: Some(new.fallthrough),
                version: None,
            };
            let (actor, p, k, e) = (posted.session.actor(), project.clone(), key.clone(), env.clone());
            match state
                .write(move |tx| flags::patch_state(tx, &actor, &p, &k, &e, patch, expected))
                .await
            {
                Ok(_) => {
                    return Ok(see_other(&format!(
                        "/projects/{project}/flags/{key}?env={env}&notice=saved"
                    )));
                }
                Err(StoreError::Stale { .. }) => {
                    let mut errors = FieldErrors::default();
                    errors.add(
                        "",
                        "Someone else changed this environment while you were editing. Your changes are below \
                         but were not saved: open the flag again to see theirs, then redo yours.",
                    );
                    errors
                }
                Err(e) => FieldErrors::from_store(e, "")?,
            }
        }
        Err(errors) => errors,
    };
    let page = build(
        &state,
        &posted.session,
        &project,
        loaded,
        Some(&env),
        None,
        Some((form, errors)),
        None,
    )
    .await?;
    render(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clause_values_are_typed_by_operator() {
        assert_eq!(
            parse_values(Op::In, "a\n b \n\nc,d").unwrap(),
            vec![Value::from("a"), "b".into(), "c,d".into()]
        );
        assert_eq!(
            parse_values(Op::In, "[1, true, \"x\"]").unwrap(),
            vec![Value::from(1), true.into(), "x".into()]
        );
        assert_eq!(
            parse_values(Op::Gt, "3\n4.5").unwrap(),
            vec![Value::from(3), Value::from(4.5)]
        );
        assert!(
            parse_values(Op::Gt, "three")
                .unwrap_err()
                .contains("not a number")
        );
        assert_eq!(
            parse_values(Op::Before, "1700000000000\n2025-01-01T00:00:00Z").unwrap(),
            vec![Value::from(1_700_000_000_000i64), "2025-01-01T00:00:00Z".into()]
        );
        assert!(parse_values(Op::In, "[not json").is_err());
        assert_eq!(values_text(Op::In, &[Value::from("a"), "b".into()]), "a\nb");
        assert_eq!(values_text(Op::In, &[Value::from(1), "b".into()]), "[1,\"b\"]");
        assert_eq!(
            values_text(Op::In, &[Value::from(" a"), "b".into()]),
            "[\" a\",\"b\"]"
        );
        for values in [
            vec![Value::from("Doe, Jane"), "<script>".into(), "12".into()],
            vec![Value::from(""), " x ".into(), "a\r\nb".into(), "[1]".into()],
            vec![Value::from(12), "12".into(), true.into()],
        ] {
            let shown = values_text(Op::In, &values);
            assert_eq!(
                parse_values(Op::In, &super::super::form::multiline(&shown)).unwrap(),
                values
            );
        }
    }

    #[test]
    fn weights_are_percentages_that_must_add_up_to_100() {
        let serve = |weights: &[(&str, &str)]| ServeForm {
            choice: ROLLOUT_CHOICE.into(),
            weights: weights
                .iter()
                .map(|(k, w)| ((*k).to_owned(), (*w).to_owned()))
                .collect(),
            ..ServeForm::default()
        };
        let mut errors = FieldErrors::default();
        let got = serve(&[("on", "25"), ("off", "75")]).parse("fallthrough", &mut errors);
        assert!(errors.is_empty());
        let Some(Serve::Rollout(r)) = got else {
            panic!("rollout")
        };
        assert_eq!(
            r.variations.iter().map(|w| w.weight).collect::<Vec<_>>(),
            vec![25_000, 75_000]
        );
        let mut errors = FieldErrors::default();
        assert!(
            serve(&[("on", "33.333"), ("off", "66.667")])
                .parse("f", &mut errors)
                .is_some()
        );
        let mut errors = FieldErrors::default();
        assert!(
            serve(&[("on", "20"), ("off", "75")])
                .parse("rules[0].serve", &mut errors)
                .is_none()
        );
        assert_eq!(
            errors.get("rules[0].serve.rollout"),
            Some("The weights add up to 95%; they must add up to 100%.")
        );
        let mut errors = FieldErrors::default();
        assert!(
            serve(&[("on", "lots"), ("off", "75")])
                .parse("f", &mut errors)
                .is_none()
        );
        assert!(errors.get("f.rollout.weight.on").is_some());
        assert_eq!(percent_text(33_333), "33.333");
        assert_eq!(percent_text(12_500), "12.5");
        assert_eq!(percent_text(100_000), "100");
    }

    #[test]
    fn a_state_form_reads_back_what_it_shows() {
        let flag: Flag = serde_json::from_value(serde_json::json!({
            "key": "f", "type": "boolean",
            "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}]
        }))
        .unwrap();
        let state: FlagEnvState = serde_json::from_value(serde_json::json!({
            "enabled": true, "off_variation": "off",
            "prerequisites": [{"flag": "g", "variations": ["a", "b"]}],
            "targets": [{"variation": "on", "values": ["u-1", "u-2"]}],
            "rules": [{"id": "r1", "clauses": [
                {"attribute": "email", "op": "ends_with", "values": ["@acme.com"], "negate": true},
                {"op": "in_segment", "values": ["beta"]}],
              "serve": {"rollout": {"bucket_by": "team", "variations": [{"variation": "on", "weight": 10000}, {"variation": "off", "weight": 90000}]}}}],
            "fallthrough": {"variation": "off"}
        }))
        .unwrap();
        let shown = StateForm::from_state(&state, &flag);
        assert_eq!(shown.parse().unwrap(), state);
    }

    #[test]
    fn definition_values_are_typed_and_errors_name_the_field() {
        let form = DefinitionForm {
            flag_type: "number".into(),
            variations: vec![
                VariationRow {
                    key: "a".into(),
                    name: String::new(),
                    value: "1.5".into(),
                },
                VariationRow {
                    key: "b".into(),
                    name: String::new(),
                    value: "many".into(),
                },
            ],
            ..DefinitionForm::default()
        };
        let errors = form.parse("f").unwrap_err();
        assert_eq!(
            errors.get("variations[1].value"),
            Some("\"many\" is not a number.")
        );
        let json = DefinitionForm {
            flag_type: "json".into(),
            variations: vec![VariationRow {
                key: "a".into(),
                name: String::new(),
                value: "{\"x\": [1,".into(),
            }],
            ..DefinitionForm::default()
        };
        assert!(
            json.parse("f")
                .unwrap_err()
                .get("variations[0].value")
                .unwrap()
                .starts_with("Not valid JSON")
        );
    }
}
