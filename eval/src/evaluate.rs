//! Evaluation (DESIGN.md §3): which variation a context gets, and why.
//!
//! Order: unknown flag → `FLAG_NOT_FOUND`; disabled → off variation (`DISABLED`); each
//! prerequisite → off variation (`PREREQUISITE_FAILED`) when it fails; targets
//! (`TARGETING_MATCH`); rules in order (`TARGETING_MATCH`, or `SPLIT` for a rollout); fallthrough
//! (`STATIC`, `DEFAULT` or `SPLIT`).

use std::borrow::Cow;
use std::fmt;

use semver::Version;
use serde::Serialize;
use serde_json::Value;

use crate::Context;
use crate::compile::{
    Attributes, CompiledClause, CompiledEnvironment, CompiledFlag, CompiledPrerequisite, CompiledSegment,
    CompiledServe, MAX_PREREQUISITE_DEPTH, NumberKey, Test,
};

/// The result of evaluating one flag for one context. Borrows from the environment; a flag with
/// no rules is evaluated without allocating.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation<'a> {
    /// The flag key.
    pub key: &'a str,
    /// The served value; `None` only on error.
    pub value: Option<&'a Value>,
    /// The served variation's key; `None` only on error.
    pub variant: Option<&'a str>,
    /// The served variation's position in [`CompiledFlag::variations`]; `None` only on error.
    /// Not serialised: it means nothing outside this compiled environment.
    #[serde(skip)]
    pub variation: Option<usize>,
    pub reason: Reason,
    pub error: Option<EvalError>,
    /// The id of the matched rule, when a rule with an id served the value.
    pub rule_id: Option<&'a str>,
    /// The prerequisite flag that failed, with reason `PREREQUISITE_FAILED`.
    pub prerequisite: Option<&'a str>,
    /// The version of the flag's state in the environment; 0 if unknown.
    pub version: u64,
}

impl<'a> Evaluation<'a> {
    fn error(key: &'a str, error: EvalError, version: u64) -> Self {
        Evaluation {
            key,
            value: None,
            variant: None,
            variation: None,
            reason: Reason::Error,
            error: Some(error),
            rule_id: None,
            prerequisite: None,
            version,
        }
    }
}

/// Why a value was served (OpenFeature reasons, plus `PREREQUISITE_FAILED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// The flag is on, has no prerequisites, targets or rules, and serves one variation.
    Static,
    /// The fallthrough served one variation, past prerequisites, targets or rules.
    Default,
    /// A target list or a rule serving one variation matched.
    TargetingMatch,
    /// A rollout chose the variation.
    Split,
    /// The flag is off.
    Disabled,
    /// A prerequisite failed; the off variation was served.
    PrerequisiteFailed,
    /// No value: see the error.
    Error,
}

impl Reason {
    /// The reason as written on the wire: `"STATIC"`, `"TARGETING_MATCH"`, ….
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::Default => "DEFAULT",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Split => "SPLIT",
            Reason::Disabled => "DISABLED",
            Reason::PrerequisiteFailed => "PREREQUISITE_FAILED",
            Reason::Error => "ERROR",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why there is no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, thiserror::Error)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EvalError {
    /// No flag with this key in the environment.
    #[error("flag not found")]
    FlagNotFound,
    /// A rollout needs the context's `bucket_by` attribute (by default `targetingKey`), and the
    /// context lacks it or holds neither a string nor a number there.
    #[error("the context has no targeting key (or no string or number in the rollout's bucket_by attribute)")]
    TargetingKeyMissing,
}

impl EvalError {
    /// The OpenFeature error code: `"FLAG_NOT_FOUND"`, `"TARGETING_KEY_MISSING"`.
    pub fn code(&self) -> &'static str {
        match self {
            EvalError::FlagNotFound => "FLAG_NOT_FOUND",
            EvalError::TargetingKeyMissing => "TARGETING_KEY_MISSING",
        }
    }
}

impl CompiledEnvironment {
    /// Evaluates the flag `flag_key` for `ctx`. The result borrows from both the environment and
    /// `flag_key` (the latter only for `FLAG_NOT_FOUND`).
    pub fn evaluate<'a>(&'a self, flag_key: &'a str, ctx: &Context) -> Evaluation<'a> {
        match self.flag(flag_key) {
            Some(flag) => Evaluator::new(self, ctx, false).top(flag),
            None => Evaluation::error(flag_key, EvalError::FlagNotFound, 0),
        }
    }

    /// Evaluates every flag passing `include` for `ctx`, sorted by key; e.g.
    /// `env.evaluate_all(&ctx, |f| f.is_client_side())` for browsers.
    pub fn evaluate_all<'a>(
        &'a self,
        ctx: &Context,
        include: impl Fn(&CompiledFlag) -> bool,
    ) -> Vec<Evaluation<'a>> {
        let mut all = Vec::with_capacity(self.inner.flags.len());
        self.evaluate_each(ctx, include, |_, evaluation| all.push(evaluation));
        all
    }

    /// [`evaluate_all`](Self::evaluate_all) without collecting: hands each evaluation, in key
    /// order, to `each` with its flag's position in [`flags`](Self::flags) — what a caller that
    /// keeps something per flag of this environment (pre-written answers, counters) looks it up
    /// by.
    pub fn evaluate_each<'a>(
        &'a self,
        ctx: &Context,
        include: impl Fn(&CompiledFlag) -> bool,
        mut each: impl FnMut(usize, Evaluation<'a>),
    ) {
        let mut evaluator = Evaluator::new(self, ctx, true);
        for (i, flag) in self.inner.flags.iter().enumerate() {
            if include(flag) {
                each(i, evaluator.top(flag));
            }
        }
    }
}

/// One evaluation pass over a context; remembers prerequisite outcomes so that a flag shared
/// by many prerequisite chains is evaluated once (a deep diamond of prerequisites would
/// otherwise cost exponential time).
///
/// It also remembers, for its one context, which segments hold it and what its strings read as
/// versions: flags of one environment tend to share segments and to compare the same `version`
/// attribute, and both cost far more than a look in a short list.
struct Evaluator<'a, 'c> {
    env: &'a CompiledEnvironment,
    attributes: Attributes<'c>,
    /// (prerequisite flag, the variation it served if it passes on to dependents).
    memo: Vec<(&'a CompiledFlag, Option<&'a str>)>,
    /// The current top-level evaluation reached the depth limit: results computed since then
    /// depend on depth and are not remembered.
    truncated: bool,
    /// Whether to index the context and remember segments and versions: for a pass over many
    /// flags, not one.
    remember: bool,
    /// (segment, whether the context is in it).
    segments: Vec<(&'a CompiledSegment, bool)>,
    /// (a string of the context, by address, and its version if it reads as one).
    versions: Vec<(&'c str, Option<Version>)>,
}

impl<'a, 'c> Evaluator<'a, 'c> {
    fn new(env: &'a CompiledEnvironment, ctx: &'c Context, remember: bool) -> Self {
        Evaluator {
            env,
            attributes: Attributes::new(ctx, remember),
            memo: Vec::new(),
            truncated: false,
            remember,
            segments: Vec::new(),
            versions: Vec::new(),
        }
    }

    fn top(&mut self, flag: &'a CompiledFlag) -> Evaluation<'a> {
        self.truncated = false;
        self.flag(flag, 0)
    }

    fn flag(&mut self, flag: &'a CompiledFlag, depth: usize) -> Evaluation<'a> {
        if !flag.enabled {
            return flag.variation(flag.off, Reason::Disabled);
        }
        for prerequisite in &flag.prerequisites {
            if !self.prerequisite_met(prerequisite, depth + 1) {
                let mut evaluation = flag.variation(flag.off, Reason::PrerequisiteFailed);
                evaluation.prerequisite = Some(&prerequisite.flag);
                return evaluation;
            }
        }
        if !flag.targets.is_empty()
            && let Some(key) = self.attributes.targeting_key()
            && let Some(&variation) = flag.targets.get(key)
        {
            return flag.variation(variation, Reason::TargetingMatch);
        }
        for rule in &flag.rules {
            if rule.clauses.iter().all(|c| self.clause(c)) {
                let mut evaluation = flag.serve(&rule.serve, &self.attributes, Reason::TargetingMatch);
                evaluation.rule_id = rule.id.as_deref();
                return evaluation;
            }
        }
        flag.serve(&flag.fallthrough, &self.attributes, flag.fallthrough_reason)
    }

    /// A prerequisite is met when its flag exists, is on, its own prerequisites are met, it
    /// served a value without error, and that value's variation is listed.
    fn prerequisite_met(&mut self, prerequisite: &'a CompiledPrerequisite, depth: usize) -> bool {
        if depth > MAX_PREREQUISITE_DEPTH {
            self.truncated = true;
            return false;
        }
        let Some(flag) = self.env.flag(&prerequisite.flag) else {
            return false;
        };
        let served = match self.memo.iter().find(|(f, _)| std::ptr::eq(*f, flag)) {
            Some(&(_, served)) => served,
            None => {
                let evaluation = self.flag(flag, depth);
                let served = match evaluation.reason {
                    Reason::Disabled | Reason::PrerequisiteFailed | Reason::Error => None,
                    _ => evaluation.variant,
                };
                if !self.truncated {
                    self.memo.push((flag, served));
                }
                served
            }
        };
        served.is_some_and(|variant| prerequisite.variations.iter().any(|v| &**v == variant))
    }
}

impl CompiledFlag {
    fn variation(&self, index: usize, reason: Reason) -> Evaluation<'_> {
        let variation = &self.variations[index];
        Evaluation {
            key: &self.key,
            value: Some(&variation.value),
            variant: Some(&variation.key),
            variation: Some(index),
            reason,
            error: None,
            rule_id: None,
            prerequisite: None,
            version: self.version,
        }
    }

    /// Serves `serve`; `reason` is the reason for a single variation.
    fn serve<'a>(
        &'a self,
        serve: &CompiledServe,
        attributes: &Attributes<'_>,
        reason: Reason,
    ) -> Evaluation<'a> {
        match serve {
            CompiledServe::Variation(index) => self.variation(*index, reason),
            CompiledServe::Rollout(rollout) => {
                match rollout
                    .bucket_by
                    .get(attributes)
                    .and_then(|value| rollout.salted.bucket_value(value))
                {
                    Some(bucket) => self.variation(rollout.variation(bucket), Reason::Split),
                    None => Evaluation::error(&self.key, EvalError::TargetingKeyMissing, self.version),
                }
            }
        }
    }
}

impl<'a, 'c> Evaluator<'a, 'c> {
    /// Whether the clause matches: a missing (or null) attribute never matches, negated or
    /// not, except for `exists`; an array matches when any element does; a value of the wrong
    /// type does not match (and so matches when negated).
    fn clause(&mut self, clause: &'a CompiledClause) -> bool {
        match &clause.test {
            Test::Never => false,
            Test::Exists => {
                let present = !matches!(clause.attribute.get(&self.attributes), None | Some(Value::Null));
                present != clause.negate
            }
            Test::InSegment(segments) => segments.iter().any(|s| self.in_segment(s)) != clause.negate,
            test => {
                let matched = match clause.attribute.get(&self.attributes) {
                    None | Some(Value::Null) => return false,
                    Some(Value::Array(items)) => items.iter().any(|item| self.test(test, item)),
                    Some(value) => self.test(test, value),
                };
                matched != clause.negate
            }
        }
    }

    /// Whether one context value matches any of the clause's values.
    fn test(&mut self, test: &Test, value: &'c Value) -> bool {
        match test {
            Test::Never | Test::Exists | Test::InSegment(_) => false,
            Test::In(values) => match value {
                Value::String(s) => values.strings.contains(s.as_str()),
                Value::Number(n) => values.numbers.contains(&NumberKey::of(n)),
                Value::Bool(b) => {
                    if *b {
                        values.has_true
                    } else {
                        values.has_false
                    }
                }
                _ => false,
            },
            Test::Contains(needles) => value
                .as_str()
                .is_some_and(|s| needles.iter().any(|n| s.contains(&**n))),
            Test::StartsWith(prefixes) => value
                .as_str()
                .is_some_and(|s| prefixes.iter().any(|p| s.starts_with(&**p))),
            Test::EndsWith(suffixes) => value
                .as_str()
                .is_some_and(|s| suffixes.iter().any(|p| s.ends_with(&**p))),
            Test::Matches(regexes) => value
                .as_str()
                .is_some_and(|s| regexes.iter().any(|r| r.is_match(s))),
            Test::Number(ordering, bound) => value
                .as_f64()
                .and_then(|x| x.partial_cmp(bound))
                .is_some_and(|ord| ordering.holds(ord)),
            Test::SemverEq(versions) => self.version(value).is_some_and(|v| {
                versions
                    .iter()
                    .any(|w| v.cmp_precedence(w) == std::cmp::Ordering::Equal)
            }),
            Test::Semver(ordering, bound) => self
                .version(value)
                .is_some_and(|v| ordering.holds(v.cmp_precedence(bound))),
            Test::Before(bound) => crate::compile::parse_instant(value).is_some_and(|t| t < *bound),
            Test::After(bound) => crate::compile::parse_instant(value).is_some_and(|t| t > *bound),
        }
    }

    /// The version a context string reads as, parsed once per pass over many flags.
    fn version(&mut self, value: &'c Value) -> Option<Cow<'_, Version>> {
        let text = value.as_str()?;
        if !self.remember {
            return crate::compile::parse_semver(text).map(Cow::Owned);
        }
        let i = match self.versions.iter().position(|(s, _)| std::ptr::eq(*s, text)) {
            Some(i) => i,
            None => {
                self.versions.push((text, crate::compile::parse_semver(text)));
                self.versions.len() - 1
            }
        };
        self.versions[i].1.as_ref().map(Cow::Borrowed)
    }

    /// Whether the context is in the segment: excluded beats everything, then included, then
    /// any rule. Decided once per pass over many flags.
    fn in_segment(&mut self, segment: &'a CompiledSegment) -> bool {
        if let Some(&(_, inside)) = self.segments.iter().find(|(s, _)| std::ptr::eq(*s, segment)) {
            return inside;
        }
        let inside = self.segment_holds(segment);
        if self.remember {
            self.segments.push((segment, inside));
        }
        inside
    }

    fn segment_holds(&mut self, segment: &'a CompiledSegment) -> bool {
        match self.attributes.targeting_key() {
            Some(key) if segment.excluded.contains(key) => false,
            Some(key) if segment.included.contains(key) => true,
            _ => segment
                .rules
                .iter()
                .any(|clauses| clauses.iter().all(|c| self.clause(c))),
        }
    }
}
