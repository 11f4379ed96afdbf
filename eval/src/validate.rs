//! Parsing and validation of documents and bundles.
//!
//! Every problem is reported, each with the path of the offending field in the document
//! (`flags[3].environments.production.rules[0].clauses[1].op`) and what is wrong with it.
//!
//! Key patterns: project, environment and segment keys `^[a-z0-9][a-z0-9-]{0,62}$`; flag keys,
//! variation keys and rule ids `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::compile::{MAX_PREREQUISITE_DEPTH, compile_regex, parse_instant, parse_semver};
use crate::hash::BUCKETS;
use crate::model::{Bundle, Clause, Document, Flag, FlagEnvState, FlagType, Op, Segment, Serve};

/// The pattern of project, environment and segment keys.
pub const SLUG_PATTERN: &str = "^[a-z0-9][a-z0-9-]{0,62}$";
/// The pattern of flag keys, variation keys and rule ids.
pub const FLAG_KEY_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$";

/// One problem in a document: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationError {
    /// Path of the offending field, e.g. `flags[3].environments.production.rules[0].op`;
    /// empty when the problem is the document as a whole (e.g. it is not JSON).
    pub path: String,
    /// What is wrong, for a person to read.
    pub message: String,
}

impl ValidationError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ValidationError {}

/// Whether `key` is a valid project, environment or segment key ([`SLUG_PATTERN`]).
pub fn is_valid_slug(key: &str) -> bool {
    let bytes = key.as_bytes();
    let allowed = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    matches!(bytes.first(), Some(b) if allowed(b))
        && bytes.len() <= 63
        && bytes[1..].iter().all(|b| allowed(b) || *b == b'-')
}

/// Whether `key` is a valid flag key, variation key or rule id ([`FLAG_KEY_PATTERN`]).
pub fn is_valid_flag_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    matches!(bytes.first(), Some(b) if b.is_ascii_alphanumeric())
        && bytes.len() <= 128
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Parses a document; a malformed one gives the path of the first bad field. Unknown fields are
/// rejected. The result still needs [`validate_document`].
pub fn parse_document(json: &[u8]) -> Result<Document, ValidationError> {
    parse(json)
}

/// Parses a bundle, like [`parse_document`]. The result still needs [`validate_bundle`].
pub fn parse_bundle(json: &[u8]) -> Result<Bundle, ValidationError> {
    parse(json)
}

fn parse<T: DeserializeOwned>(json: &[u8]) -> Result<T, ValidationError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let parsed: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        ValidationError::new(path, e.into_inner().to_string())
    })?;
    de.end().map_err(|e| ValidationError::new("", e.to_string()))?;
    Ok(parsed)
}

/// Checks a whole document; returns every problem found.
pub fn validate_document(doc: &Document) -> Result<(), Vec<ValidationError>> {
    let mut v = Validator::default();
    v.format_version(doc.flagstaff);
    v.slug("project.key", &doc.project.key, "project key");
    let mut environments: Vec<&str> = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, env) in doc.environments.iter().enumerate() {
        let path = format!("environments[{i}].key");
        v.slug(&path, &env.key, "environment key");
        if let Some(first) = seen.insert(&env.key, i) {
            v.error(
                path,
                format!(
                    "duplicate environment key {:?} (also environments[{first}])",
                    env.key
                ),
            );
        } else {
            environments.push(&env.key);
        }
    }
    let segments = v.segments(&doc.segments);
    v.flags(&doc.flags, &segments, &Scope::Document(&environments));
    for env in &environments {
        v.prerequisite_graph(&doc.flags, env);
    }
    v.finish()
}

/// Checks a bundle: like a document, for its single environment.
pub fn validate_bundle(bundle: &Bundle) -> Result<(), Vec<ValidationError>> {
    let mut v = Validator::default();
    v.format_version(bundle.flagstaff);
    v.slug("project.key", &bundle.project.key, "project key");
    v.slug("environment", &bundle.environment, "environment key");
    let segments = v.segments(&bundle.segments);
    v.flags(&bundle.flags, &segments, &Scope::Bundle(&bundle.environment));
    v.prerequisite_graph(&bundle.flags, &bundle.environment);
    v.finish()
}

/// Which environments a flag's `environments` map may name.
enum Scope<'a> {
    Document(&'a [&'a str]),
    Bundle(&'a str),
}

#[derive(Default)]
struct Validator {
    errors: Vec<ValidationError>,
}

impl Validator {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ValidationError::new(path, message));
    }

    fn finish(self) -> Result<(), Vec<ValidationError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }

    fn format_version(&mut self, version: u32) {
        if version != crate::model::FORMAT_VERSION {
            self.error(
                "flagstaff",
                format!(
                    "unsupported format version {version}; this server reads version {}",
                    crate::model::FORMAT_VERSION
                ),
            );
        }
    }

    fn slug(&mut self, path: &str, key: &str, what: &str) {
        if !is_valid_slug(key) {
            self.error(path, format!("invalid {what} {key:?}: must match {SLUG_PATTERN}"));
        }
    }

    /// Text shown in a one-line field (names, a rule's description, attributes, a rollout's
    /// bucket_by and salt): no line break or NUL, which no page could show and read back.
    fn one_line(&mut self, path: impl Into<String>, text: &str) {
        if text.contains(['\n', '\r', '\0']) {
            self.error(path, "must be one line: no line breaks or NUL characters");
        }
    }

    /// Text that may span lines (descriptions, string values): line breaks are `\n`, and no NUL.
    fn multi_line(&mut self, path: impl Into<String>, text: &str) {
        if text.contains(['\r', '\0']) {
            self.error(
                path,
                "line breaks must be \\n alone: no carriage returns or NUL characters",
            );
        }
    }

    /// An optional text that, when given, is one line and not empty (leave it out instead).
    fn optional_line(&mut self, path: String, text: Option<&str>) {
        match text {
            Some("") => self.error(path, "must not be empty: leave it out instead"),
            Some(text) => self.one_line(path, text),
            None => {}
        }
    }

    fn flag_key(&mut self, path: &str, key: &str, what: &str) {
        if !is_valid_flag_key(key) {
            self.error(
                path,
                format!("invalid {what} {key:?}: must match {FLAG_KEY_PATTERN}"),
            );
        }
    }

    /// Checks the segments; returns the set of their keys.
    fn segments<'d>(&mut self, segments: &'d [Segment]) -> HashSet<&'d str> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, segment) in segments.iter().enumerate() {
            let path = format!("segments[{i}]");
            let key_path = format!("{path}.key");
            self.slug(&key_path, &segment.key, "segment key");
            self.one_line(format!("{path}.name"), &segment.name);
            self.multi_line(format!("{path}.description"), &segment.description);
            if let Some(first) = seen.get(segment.key.as_str()) {
                self.error(
                    key_path,
                    format!("duplicate segment key {:?} (also segments[{first}])", segment.key),
                );
            } else {
                seen.insert(&segment.key, i);
            }
            let mut rule_ids: HashMap<&str, usize> = HashMap::new();
            for (r, rule) in segment.rules.iter().enumerate() {
                let rule_path = format!("{path}.rules[{r}]");
                self.rule_id(&rule_path, r, rule.id.as_deref(), &mut rule_ids);
                self.clauses(&rule_path, &rule.clauses, None);
            }
        }
        seen.into_keys().collect()
    }

    fn rule_id<'d>(
        &mut self,
        rule_path: &str,
        index: usize,
        id: Option<&'d str>,
        seen: &mut HashMap<&'d str, usize>,
    ) {
        let Some(id) = id else { return };
        let path = format!("{rule_path}.id");
        self.flag_key(&path, id, "rule id");
        if let Some(first) = seen.get(id) {
            self.error(path, format!("duplicate rule id {id:?} (also rules[{first}])"));
        } else {
            seen.insert(id, index);
        }
    }

    fn clauses(&mut self, rule_path: &str, clauses: &[Clause], segments: Option<&HashSet<&str>>) {
        if clauses.is_empty() {
            self.error(format!("{rule_path}.clauses"), "a rule needs at least one clause");
        }
        for (c, clause) in clauses.iter().enumerate() {
            self.clause(&format!("{rule_path}.clauses[{c}]"), clause, segments);
        }
    }

    /// `segments` is `None` inside a segment's own rules, where `in_segment` is not allowed.
    fn clause(&mut self, path: &str, clause: &Clause, segments: Option<&HashSet<&str>>) {
        let op = clause.op;
        let op_name = op.as_str();
        match (op, clause.attribute.as_deref()) {
            (Op::InSegment, Some(_)) => self.error(
                format!("{path}.attribute"),
                "in_segment takes no attribute: its values are segment keys",
            ),
            (Op::InSegment, None) => {}
            (_, None) => self.error(
                format!("{path}.attribute"),
                format!("missing: op {op_name} needs an attribute"),
            ),
            (_, Some("")) => self.error(format!("{path}.attribute"), "must not be empty"),
            (_, Some(attribute)) => self.one_line(format!("{path}.attribute"), attribute),
        }
        if op == Op::InSegment && segments.is_none() {
            self.error(
                format!("{path}.op"),
                "in_segment cannot be used in a segment's own rules",
            );
        }
        if op == Op::Exists {
            if !clause.values.is_empty() {
                self.error(format!("{path}.values"), "exists takes no values");
            }
            return;
        }
        if clause.values.is_empty() {
            self.error(
                format!("{path}.values"),
                format!("op {op_name} needs at least one value"),
            );
        }
        for (i, value) in clause.values.iter().enumerate() {
            if let Err(message) = check_operand(op, value, segments) {
                self.error(format!("{path}.values[{i}]"), message);
            }
        }
    }

    fn flags(&mut self, flags: &[Flag], segments: &HashSet<&str>, scope: &Scope<'_>) {
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, flag) in flags.iter().enumerate() {
            index.entry(&flag.key).or_insert(i);
        }
        for (i, flag) in flags.iter().enumerate() {
            let path = format!("flags[{i}]");
            let key_path = format!("{path}.key");
            self.flag_key(&key_path, &flag.key, "flag key");
            if index[flag.key.as_str()] != i {
                self.error(
                    key_path,
                    format!(
                        "duplicate flag key {:?} (also flags[{}])",
                        flag.key,
                        index[flag.key.as_str()]
                    ),
                );
            }
            self.one_line(format!("{path}.name"), &flag.name);
            self.multi_line(format!("{path}.description"), &flag.description);
            self.variations(&path, flag);
            for (env, state) in &flag.environments {
                let env_path = format!("{path}.environments.{env}");
                match scope {
                    Scope::Document(known) if !known.contains(&env.as_str()) => self.error(
                        &env_path,
                        format!(
                            "unknown environment {env:?}; the document's environments are: {}",
                            list(known.iter().copied())
                        ),
                    ),
                    Scope::Bundle(only) if env != only => self.error(
                        &env_path,
                        format!("this bundle is for environment {only:?}, not {env:?}"),
                    ),
                    _ => {}
                }
                self.state(&env_path, flag, state, flags, &index, segments);
            }
        }
    }

    fn variations(&mut self, path: &str, flag: &Flag) {
        if flag.variations.is_empty() {
            self.error(
                format!("{path}.variations"),
                "a flag needs at least one variation",
            );
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (j, variation) in flag.variations.iter().enumerate() {
            let key_path = format!("{path}.variations[{j}].key");
            self.flag_key(&key_path, &variation.key, "variation key");
            if let Some(first) = seen.get(variation.key.as_str()) {
                self.error(
                    key_path,
                    format!(
                        "duplicate variation key {:?} (also variations[{first}])",
                        variation.key
                    ),
                );
            } else {
                seen.insert(&variation.key, j);
            }
            self.optional_line(format!("{path}.variations[{j}].name"), variation.name.as_deref());
            if let (FlagType::String, Value::String(text)) = (flag.flag_type, &variation.value) {
                self.multi_line(format!("{path}.variations[{j}].value"), text);
            }
            if !value_has_type(flag.flag_type, &variation.value) {
                self.error(
                    format!("{path}.variations[{j}].value"),
                    format!(
                        "expected {} for a {} flag, got {}",
                        type_expectation(flag.flag_type),
                        flag.flag_type.as_str(),
                        show(&variation.value)
                    ),
                );
            }
        }
    }

    fn state(
        &mut self,
        path: &str,
        flag: &Flag,
        state: &FlagEnvState,
        flags: &[Flag],
        index: &HashMap<&str, usize>,
        segments: &HashSet<&str>,
    ) {
        if let Some(off) = &state.off_variation {
            self.variation_ref(&format!("{path}.off_variation"), flag, off);
        }
        let mut prerequisites: HashMap<&str, usize> = HashMap::new();
        for (k, prerequisite) in state.prerequisites.iter().enumerate() {
            let p_path = format!("{path}.prerequisites[{k}]");
            let flag_path = format!("{p_path}.flag");
            if let Some(first) = prerequisites.get(prerequisite.flag.as_str()) {
                self.error(
                    &flag_path,
                    format!(
                        "duplicate prerequisite {:?} (also prerequisites[{first}])",
                        prerequisite.flag
                    ),
                );
            } else {
                prerequisites.insert(&prerequisite.flag, k);
            }
            let target = index.get(prerequisite.flag.as_str()).map(|&i| &flags[i]);
            if prerequisite.flag == flag.key {
                self.error(&flag_path, "a flag cannot be its own prerequisite");
            } else if target.is_none() {
                self.error(&flag_path, format!("unknown flag {:?}", prerequisite.flag));
            }
            if prerequisite.variations.is_empty() {
                self.error(
                    format!("{p_path}.variations"),
                    "list at least one variation of the prerequisite flag",
                );
            }
            if let Some(target) = target {
                for (m, variation) in prerequisite.variations.iter().enumerate() {
                    self.variation_ref(&format!("{p_path}.variations[{m}]"), target, variation);
                }
            }
        }
        let mut targeted: HashMap<&str, usize> = HashMap::new();
        for (k, target) in state.targets.iter().enumerate() {
            let t_path = format!("{path}.targets[{k}]");
            self.variation_ref(&format!("{t_path}.variation"), flag, &target.variation);
            for (m, value) in target.values.iter().enumerate() {
                match targeted.get(value.as_str()) {
                    Some(&first) if first != k => self.error(
                        format!("{t_path}.values[{m}]"),
                        format!("{value:?} is already targeted by targets[{first}]"),
                    ),
                    Some(_) => {}
                    None => {
                        targeted.insert(value, k);
                    }
                }
            }
        }
        let mut rule_ids: HashMap<&str, usize> = HashMap::new();
        for (r, rule) in state.rules.iter().enumerate() {
            let rule_path = format!("{path}.rules[{r}]");
            self.rule_id(&rule_path, r, rule.id.as_deref(), &mut rule_ids);
            self.optional_line(format!("{rule_path}.description"), rule.description.as_deref());
            self.clauses(&rule_path, &rule.clauses, Some(segments));
            self.serve(&format!("{rule_path}.serve"), flag, &rule.serve);
        }
        if let Some(fallthrough) = &state.fallthrough {
            self.serve(&format!("{path}.fallthrough"), flag, fallthrough);
        }
    }

    fn serve(&mut self, path: &str, flag: &Flag, serve: &Serve) {
        match serve {
            Serve::Variation(variation) => {
                self.variation_ref(&format!("{path}.variation"), flag, variation);
            }
            Serve::Rollout(rollout) => {
                let path = format!("{path}.rollout");
                if rollout.bucket_by.as_deref() == Some("") {
                    self.error(format!("{path}.bucket_by"), "must not be empty");
                } else if let Some(bucket_by) = &rollout.bucket_by {
                    self.one_line(format!("{path}.bucket_by"), bucket_by);
                }
                match rollout.salt.as_deref() {
                    Some("") => self.error(
                        format!("{path}.salt"),
                        "must not be empty: leave it out to salt with the flag key",
                    ),
                    Some(salt) => self.one_line(format!("{path}.salt"), salt),
                    None => {}
                }
                if rollout.variations.is_empty() {
                    self.error(
                        format!("{path}.variations"),
                        "a rollout needs at least one variation",
                    );
                    return;
                }
                let mut total: i128 = 0;
                let mut listed: HashMap<&str, usize> = HashMap::new();
                for (w, weighted) in rollout.variations.iter().enumerate() {
                    let w_path = format!("{path}.variations[{w}]");
                    self.variation_ref(&format!("{w_path}.variation"), flag, &weighted.variation);
                    if let Some(first) = listed.insert(&weighted.variation, w) {
                        self.error(
                            format!("{w_path}.variation"),
                            format!(
                                "variation {:?} is already in this rollout (variations[{first}])",
                                weighted.variation
                            ),
                        );
                    }
                    if weighted.weight < 0 {
                        self.error(
                            format!("{w_path}.weight"),
                            format!("weight {} is negative", weighted.weight),
                        );
                    }
                    total += i128::from(weighted.weight);
                }
                if total != i128::from(BUCKETS) {
                    self.error(
                        format!("{path}.variations"),
                        format!("weights sum to {total}; they must sum to {BUCKETS}"),
                    );
                }
            }
        }
    }

    fn variation_ref(&mut self, path: &str, flag: &Flag, key: &str) {
        if !flag.variations.iter().any(|v| v.key == key) {
            self.error(
                path,
                format!(
                    "unknown variation {key:?} of flag {:?} (its variations: {})",
                    flag.key,
                    list(flag.variations.iter().map(|v| v.key.as_str()))
                ),
            );
        }
    }

    /// Prerequisite cycles, and chains deeper than evaluation follows, in one environment.
    fn prerequisite_graph(&mut self, flags: &[Flag], env: &str) {
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, flag) in flags.iter().enumerate() {
            index.entry(&flag.key).or_insert(i);
        }
        // edges[i]: (prerequisite flag index, position in the prerequisites list)
        let edges: Vec<Vec<(usize, usize)>> = flags
            .iter()
            .map(|flag| {
                flag.environments
                    .get(env)
                    .map(|state| {
                        state
                            .prerequisites
                            .iter()
                            .enumerate()
                            // A flag naming itself is reported on its own.
                            .filter(|(_, p)| p.flag != flag.key)
                            .filter_map(|(k, p)| index.get(p.flag.as_str()).map(|&t| (t, k)))
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect();
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Open,
            Done,
        }
        let mut mark = vec![Mark::New; flags.len()];
        // Longest chain of prerequisites below each flag, in edges.
        let mut depth = vec![0usize; flags.len()];
        // Iterative depth-first search: a chain of thousands of flags must not overflow the stack.
        for start in 0..flags.len() {
            if mark[start] != Mark::New {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            mark[start] = Mark::Open;
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                if let Some(&(target, k)) = edges[node].get(*next) {
                    *next += 1;
                    match mark[target] {
                        Mark::New => {
                            mark[target] = Mark::Open;
                            stack.push((target, 0));
                        }
                        Mark::Open => {
                            let from = stack
                                .iter()
                                .position(|&(n, _)| n == target)
                                .expect("an open node is on the stack");
                            let cycle: Vec<&str> = stack[from..]
                                .iter()
                                .map(|&(n, _)| flags[n].key.as_str())
                                .chain([flags[target].key.as_str()])
                                .collect();
                            self.error(
                                format!("flags[{node}].environments.{env}.prerequisites[{k}].flag"),
                                format!("prerequisite cycle: {}", cycle.join(" → ")),
                            );
                        }
                        Mark::Done => {}
                    }
                } else {
                    stack.pop();
                    mark[node] = Mark::Done;
                    depth[node] = edges[node]
                        .iter()
                        .filter(|&&(t, _)| mark[t] == Mark::Done)
                        .map(|&(t, _)| depth[t] + 1)
                        .max()
                        .unwrap_or(0);
                }
            }
        }
        for (i, &d) in depth.iter().enumerate() {
            if d > MAX_PREREQUISITE_DEPTH {
                self.error(
                    format!("flags[{i}].environments.{env}.prerequisites"),
                    format!(
                        "prerequisite chain is {d} flags deep; evaluation follows at most {MAX_PREREQUISITE_DEPTH}"
                    ),
                );
            }
        }
    }
}

/// Whether `value` may stand in a clause with `op`; the error says why not.
fn check_operand(op: Op, value: &Value, segments: Option<&HashSet<&str>>) -> Result<(), String> {
    let expect_string = || {
        value
            .as_str()
            .ok_or_else(|| format!("op {} takes strings, got {}", op.as_str(), show(value)))
    };
    match op {
        Op::In => match value {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(()),
            _ => Err(format!(
                "op in takes strings, numbers or booleans, got {}",
                show(value)
            )),
        },
        Op::Contains | Op::StartsWith | Op::EndsWith => expect_string().map(drop),
        Op::Matches => {
            let pattern = expect_string()?;
            compile_regex(pattern)
                .map(drop)
                .map_err(|e| format!("invalid regex {pattern:?}: {}", regex_error(&e)))
        }
        Op::Lt | Op::Lte | Op::Gt | Op::Gte => match value {
            Value::Number(_) => Ok(()),
            _ => Err(format!("op {} takes numbers, got {}", op.as_str(), show(value))),
        },
        Op::SemverEq | Op::SemverLt | Op::SemverLte | Op::SemverGt | Op::SemverGte => {
            let version = expect_string()?;
            parse_semver(version)
                .map(drop)
                .ok_or_else(|| format!("invalid semantic version {version:?}"))
        }
        Op::Before | Op::After => match value {
            Value::String(s) => parse_instant(value)
                .map(drop)
                .ok_or_else(|| format!("invalid date {s:?}: expected RFC 3339, e.g. 2024-05-01T12:00:00Z")),
            Value::Number(_) => Ok(()),
            _ => Err(format!(
                "op {} takes RFC 3339 strings or Unix milliseconds, got {}",
                op.as_str(),
                show(value)
            )),
        },
        Op::Exists => Ok(()),
        Op::InSegment => {
            let key = expect_string()?;
            match segments {
                Some(known) if !known.contains(key) => Err(format!("unknown segment {key:?}")),
                _ => Ok(()),
            }
        }
    }
}

/// The last line of a regex error ("error: unclosed group"), without the multi-line drawing.
fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    match text.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(line) => line.trim().trim_start_matches("error: ").to_owned(),
        None => text,
    }
}

fn value_has_type(flag_type: FlagType, value: &Value) -> bool {
    match flag_type {
        FlagType::Boolean => value.is_boolean(),
        FlagType::String => value.is_string(),
        FlagType::Number => value.is_number(),
        FlagType::Json => true,
    }
}

fn type_expectation(flag_type: FlagType) -> &'static str {
    match flag_type {
        FlagType::Boolean => "true or false",
        FlagType::String => "a string",
        FlagType::Number => "a number",
        FlagType::Json => "any JSON value",
    }
}

/// A value for a message: compact JSON, shortened if long.
fn show(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 {
        let short: String = text.chars().take(57).collect();
        format!("{short}…")
    } else {
        text
    }
}

fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let items: Vec<&str> = items.collect();
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_patterns() {
        assert!(is_valid_slug("production"));
        assert!(is_valid_slug("0-a"));
        assert!(is_valid_slug(&"a".repeat(63)));
        assert!(!is_valid_slug(&"a".repeat(64)));
        assert!(!is_valid_slug(""));
        assert!(!is_valid_slug("-a"));
        assert!(!is_valid_slug("Prod"));
        assert!(!is_valid_slug("a_b"));
        assert!(!is_valid_slug("é"));
        assert!(is_valid_flag_key("checkout.big-button_2"));
        assert!(is_valid_flag_key("A"));
        assert!(is_valid_flag_key(&"a".repeat(128)));
        assert!(!is_valid_flag_key(&"a".repeat(129)));
        assert!(!is_valid_flag_key(".a"));
        assert!(!is_valid_flag_key("a b"));
        assert!(!is_valid_flag_key(""));
    }

    #[test]
    fn display_joins_path_and_message() {
        let e = ValidationError::new("flags[0].key", "bad");
        assert_eq!(e.to_string(), "flags[0].key: bad");
        assert_eq!(ValidationError::new("", "not JSON").to_string(), "not JSON");
    }

    #[test]
    fn regex_errors_are_one_line() {
        let e = compile_regex("(abc").unwrap_err();
        let line = regex_error(&e);
        assert!(!line.contains('\n'));
        assert!(line.contains("unclosed group"), "{line}");
    }
}
