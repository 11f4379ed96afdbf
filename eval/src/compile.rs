//! Compilation of one environment into a form built for evaluation speed: regexes compiled
//! once, segments resolved, large `in` lists and target lists as hash sets, attribute paths
//! split, rollout weights made cumulative.
//!
//! Compilation never fails and never panics, even on a document that did not pass validation:
//! whatever cannot be compiled is neutralised (see [`CompiledEnvironment::compile`]).

use std::borrow::Borrow;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use regex::Regex;
use rustc_hash::{FxHashMap, FxHashSet};
use semver::Version;
use serde_json::{Number, Value};

use crate::Context;
use crate::evaluate::Reason;
use crate::hash::BUCKETS;
use crate::hash::Salted;
use crate::model::{Bundle, Clause, Document, Flag, FlagEnvState, FlagKind, FlagType, Op, Segment, Serve};

/// How deep evaluation follows prerequisites of prerequisites before failing.
pub const MAX_PREREQUISITE_DEPTH: usize = 16;

/// Compiled regexes may use at most this much memory each.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Up to this many values are compared one by one; more go into a hash set.
const LINEAR_SET_MAX: usize = 8;

/// One environment of a project, compiled for evaluation. Cloning is cheap (an `Arc`).
#[derive(Clone)]
pub struct CompiledEnvironment {
    pub(crate) inner: Arc<EnvironmentInner>,
}

pub(crate) struct EnvironmentInner {
    environment: Box<str>,
    revision: u64,
    segments: Arc<SegmentTable>,
    /// Sorted by key.
    pub(crate) flags: Vec<Arc<CompiledFlag>>,
    index: FxHashMap<Arc<str>, usize>,
}

type SegmentTable = FxHashMap<Box<str>, Arc<CompiledSegment>>;

impl CompiledEnvironment {
    /// Compiles `environment` of `doc`. Flags that do not mention the environment get the
    /// default state. On an unvalidated document: a flag without variations or with a key
    /// already seen is skipped; references to unknown variations serve the off variation;
    /// unknown segments are empty; values an operator cannot use are dropped, and a clause left
    /// with none never matches; rules without clauses never match; negative weights count as 0.
    pub fn compile(doc: &Document, environment: &str) -> CompiledEnvironment {
        Self::build(environment, 0, &doc.segments, &doc.flags)
    }

    /// Compiles a bundle (one environment's flags and the project's segments).
    pub fn from_bundle(bundle: &Bundle) -> CompiledEnvironment {
        Self::build(
            &bundle.environment,
            bundle.revision,
            &bundle.segments,
            &bundle.flags,
        )
    }

    fn build(environment: &str, revision: u64, segments: &[Segment], flags: &[Flag]) -> Self {
        let mut table = SegmentTable::default();
        for segment in segments {
            if !table.contains_key(segment.key.as_str()) {
                table.insert(
                    segment.key.as_str().into(),
                    Arc::new(CompiledSegment::compile(segment)),
                );
            }
        }
        let mut compiled: Vec<Arc<CompiledFlag>> = Vec::with_capacity(flags.len());
        let mut seen: FxHashSet<&str> = FxHashSet::default();
        for flag in flags {
            if seen.insert(&flag.key)
                && let Some(f) = CompiledFlag::compile(flag, environment, &table)
            {
                compiled.push(Arc::new(f));
            }
        }
        compiled.sort_by(|a, b| a.key.cmp(&b.key));
        Self::assemble(environment.into(), revision, Arc::new(table), compiled)
    }

    fn assemble(
        environment: Box<str>,
        revision: u64,
        segments: Arc<SegmentTable>,
        flags: Vec<Arc<CompiledFlag>>,
    ) -> Self {
        let index = flags
            .iter()
            .enumerate()
            .map(|(i, f)| (Arc::clone(&f.key), i))
            .collect();
        CompiledEnvironment {
            inner: Arc::new(EnvironmentInner {
                environment,
                revision,
                segments,
                flags,
                index,
            }),
        }
    }

    /// A new environment with `flag` compiled (added or replaced) and every other flag shared.
    /// A flag that cannot be compiled (no variations) is removed instead.
    pub fn with_flag(&self, flag: &Flag) -> CompiledEnvironment {
        let inner = &self.inner;
        let Some(compiled) = CompiledFlag::compile(flag, &inner.environment, &inner.segments) else {
            return self.without_flag(&flag.key);
        };
        let mut flags = inner.flags.clone();
        match flags.binary_search_by(|f| (*f.key).cmp(flag.key.as_str())) {
            Ok(i) => flags[i] = Arc::new(compiled),
            Err(i) => flags.insert(i, Arc::new(compiled)),
        }
        Self::assemble(
            inner.environment.clone(),
            inner.revision,
            Arc::clone(&inner.segments),
            flags,
        )
    }

    /// A new environment without the flag `key`, every other flag shared.
    pub fn without_flag(&self, key: &str) -> CompiledEnvironment {
        let inner = &self.inner;
        let mut flags = inner.flags.clone();
        if let Ok(i) = flags.binary_search_by(|f| (*f.key).cmp(key)) {
            flags.remove(i);
        }
        Self::assemble(
            inner.environment.clone(),
            inner.revision,
            Arc::clone(&inner.segments),
            flags,
        )
    }

    /// The compiled flag `key`.
    pub fn flag(&self, key: &str) -> Option<&CompiledFlag> {
        let i = *self.inner.index.get(key)?;
        Some(&self.inner.flags[i])
    }

    /// The position of the flag `key` in [`flags`](Self::flags).
    pub fn position(&self, key: &str) -> Option<usize> {
        self.inner.index.get(key).copied()
    }

    /// All flags, sorted by key.
    pub fn flags(&self) -> impl ExactSizeIterator<Item = &CompiledFlag> {
        self.inner.flags.iter().map(|f| &**f)
    }

    /// Number of flags.
    pub fn len(&self) -> usize {
        self.inner.flags.len()
    }

    /// Whether there are no flags.
    pub fn is_empty(&self) -> bool {
        self.inner.flags.is_empty()
    }

    /// The environment key.
    pub fn environment(&self) -> &str {
        &self.inner.environment
    }

    /// The bundle's revision ([`from_bundle`](Self::from_bundle)), 0 when compiled from a
    /// document.
    pub fn revision(&self) -> u64 {
        self.inner.revision
    }

    /// Whether a segment `key` exists in this environment's project.
    pub fn has_segment(&self, key: &str) -> bool {
        self.inner.segments.contains_key(key)
    }
}

impl fmt::Debug for CompiledEnvironment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut segments: Vec<&str> = self.inner.segments.keys().map(|k| &**k).collect();
        segments.sort_unstable();
        f.debug_struct("CompiledEnvironment")
            .field("environment", &self.inner.environment)
            .field("revision", &self.inner.revision)
            .field(
                "flags",
                &self.inner.flags.iter().map(|f| &*f.key).collect::<Vec<_>>(),
            )
            .field("segments", &segments)
            .finish()
    }
}

/// One flag in one environment, compiled.
#[derive(Debug)]
pub struct CompiledFlag {
    pub(crate) key: Arc<str>,
    flag_type: FlagType,
    kind: FlagKind,
    client_side: bool,
    temporary: bool,
    archived: bool,
    pub(crate) version: u64,
    pub(crate) enabled: bool,
    pub(crate) variations: Box<[CompiledVariation]>,
    /// Index into `variations`.
    pub(crate) off: usize,
    pub(crate) prerequisites: Box<[CompiledPrerequisite]>,
    /// Targeting key → variation index; the first list holding a key wins.
    pub(crate) targets: FxHashMap<Box<str>, usize>,
    pub(crate) rules: Box<[CompiledRule]>,
    pub(crate) fallthrough: CompiledServe,
    /// STATIC or DEFAULT, for a fallthrough serving one variation.
    pub(crate) fallthrough_reason: Reason,
}

#[derive(Debug)]
pub(crate) struct CompiledVariation {
    pub(crate) key: Box<str>,
    pub(crate) value: Value,
}

#[derive(Debug)]
pub(crate) struct CompiledPrerequisite {
    pub(crate) flag: Box<str>,
    pub(crate) variations: Box<[Box<str>]>,
}

#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub(crate) id: Option<Box<str>>,
    pub(crate) clauses: Box<[CompiledClause]>,
    pub(crate) serve: CompiledServe,
}

#[derive(Debug)]
pub(crate) enum CompiledServe {
    /// Index into the flag's variations.
    Variation(usize),
    Rollout(CompiledRollout),
}

#[derive(Debug)]
pub(crate) struct CompiledRollout {
    pub(crate) bucket_by: AttributePath,
    /// The hash state after the salt (by default the flag key) and `"."`.
    pub(crate) salted: Salted,
    /// (exclusive cumulative upper bound, variation index), non-empty, in document order.
    pub(crate) buckets: Box<[(u32, usize)]>,
}

impl CompiledRollout {
    /// The variation index of `bucket`.
    pub(crate) fn variation(&self, bucket: u32) -> usize {
        self.buckets
            .iter()
            .find(|(upper, _)| bucket < *upper)
            .or(self.buckets.last())
            .map_or(0, |&(_, v)| v)
    }
}

impl CompiledFlag {
    fn compile(flag: &Flag, environment: &str, segments: &SegmentTable) -> Option<CompiledFlag> {
        if flag.variations.is_empty() {
            return None;
        }
        let default_state = FlagEnvState::default();
        let state = flag.environments.get(environment).unwrap_or(&default_state);
        let variations: Box<[CompiledVariation]> = flag
            .variations
            .iter()
            .map(|v| CompiledVariation {
                key: v.key.as_str().into(),
                value: v.value.clone(),
            })
            .collect();
        let find = |key: &str| variations.iter().position(|v| &*v.key == key);
        let default_off = match flag.flag_type {
            FlagType::Boolean => variations
                .iter()
                .position(|v| v.value == Value::Bool(false))
                .unwrap_or(0),
            _ => 0,
        };
        let off = state
            .off_variation
            .as_deref()
            .and_then(find)
            .unwrap_or(default_off);
        let prerequisites: Box<[CompiledPrerequisite]> = state
            .prerequisites
            .iter()
            .map(|p| CompiledPrerequisite {
                flag: p.flag.as_str().into(),
                variations: p.variations.iter().map(|v| v.as_str().into()).collect(),
            })
            .collect();
        let mut targets: FxHashMap<Box<str>, usize> = FxHashMap::default();
        for target in &state.targets {
            if let Some(variation) = find(&target.variation) {
                for key in &target.values {
                    targets.entry(key.as_str().into()).or_insert(variation);
                }
            }
        }
        let serve = |serve: &Serve| CompiledServe::compile(serve, &flag.key, &find, off);
        let rules: Box<[CompiledRule]> = state
            .rules
            .iter()
            .filter(|r| !r.clauses.is_empty())
            .map(|r| CompiledRule {
                id: r.id.as_deref().map(Into::into),
                clauses: r
                    .clauses
                    .iter()
                    .map(|c| CompiledClause::compile(c, Some(segments)))
                    .collect(),
                serve: serve(&r.serve),
            })
            .collect();
        let fallthrough = state
            .fallthrough
            .as_ref()
            .map_or(CompiledServe::Variation(off), serve);
        let fallthrough_reason = if prerequisites.is_empty() && targets.is_empty() && rules.is_empty() {
            Reason::Static
        } else {
            Reason::Default
        };
        Some(CompiledFlag {
            key: flag.key.as_str().into(),
            flag_type: flag.flag_type,
            kind: flag.kind,
            client_side: flag.is_client_side(),
            temporary: flag.is_temporary(),
            archived: flag.archived,
            version: state.version.unwrap_or(0),
            enabled: state.enabled,
            variations,
            off,
            prerequisites,
            targets,
            rules,
            fallthrough,
            fallthrough_reason,
        })
    }

    /// The flag key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The type of the flag's values.
    pub fn flag_type(&self) -> FlagType {
        self.flag_type
    }

    /// Flag or config.
    pub fn kind(&self) -> FlagKind {
        self.kind
    }

    /// Whether browsers (client keys) may evaluate this flag.
    pub fn is_client_side(&self) -> bool {
        self.client_side
    }

    /// Whether this is a release flag expected to be removed one day.
    pub fn is_temporary(&self) -> bool {
        self.temporary
    }

    /// Whether the flag is archived.
    pub fn is_archived(&self) -> bool {
        self.archived
    }

    /// The version of the flag's state in this environment (0 if unknown).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Whether the flag is on in this environment.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The variations, as (key, value), in document order.
    pub fn variations(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.variations.iter().map(|v| (&*v.key, &v.value))
    }

    /// The variation served when the flag is off, as (key, value).
    pub fn off_variation(&self) -> (&str, &Value) {
        let v = &self.variations[self.off];
        (&v.key, &v.value)
    }
}

impl CompiledServe {
    fn compile(
        serve: &Serve,
        flag_key: &str,
        find: &impl Fn(&str) -> Option<usize>,
        off: usize,
    ) -> CompiledServe {
        match serve {
            Serve::Variation(key) => CompiledServe::Variation(find(key).unwrap_or(off)),
            Serve::Rollout(rollout) => {
                let mut upper: u32 = 0;
                let mut buckets = Vec::with_capacity(rollout.variations.len());
                for weighted in &rollout.variations {
                    let room = i64::from(BUCKETS - upper);
                    // Clamped into [0, room], so the sum never passes BUCKETS.
                    let weight = weighted.weight.clamp(0, room) as u32;
                    if weight == 0 {
                        continue;
                    }
                    upper += weight;
                    buckets.push((upper, find(&weighted.variation).unwrap_or(off)));
                }
                if buckets.is_empty() {
                    return CompiledServe::Variation(off);
                }
                CompiledServe::Rollout(CompiledRollout {
                    bucket_by: AttributePath::new(rollout.bucket_by.as_deref().unwrap_or("targetingKey")),
                    salted: Salted::new(rollout.salt.as_deref().unwrap_or(flag_key)),
                    buckets: buckets.into(),
                })
            }
        }
    }
}

/// A segment, compiled.
#[derive(Debug)]
pub(crate) struct CompiledSegment {
    pub(crate) included: FxHashSet<Box<str>>,
    pub(crate) excluded: FxHashSet<Box<str>>,
    /// Each rule is its clauses; rules without clauses are dropped.
    pub(crate) rules: Box<[Box<[CompiledClause]>]>,
}

impl CompiledSegment {
    fn compile(segment: &Segment) -> CompiledSegment {
        CompiledSegment {
            included: segment.included.iter().map(|k| k.as_str().into()).collect(),
            excluded: segment.excluded.iter().map(|k| k.as_str().into()).collect(),
            rules: segment
                .rules
                .iter()
                .filter(|r| !r.clauses.is_empty())
                .map(|r| {
                    r.clauses
                        .iter()
                        .map(|c| CompiledClause::compile(c, None))
                        .collect()
                })
                .collect(),
        }
    }
}

/// A context attribute name, with its dotted path split once and the hashes [`Attributes`]
/// finds names by.
#[derive(Debug)]
pub(crate) struct AttributePath {
    name: Box<str>,
    hash: u64,
    /// The parts of `name` split at dots; empty when it has none.
    parts: Box<[Box<str>]>,
    /// The hash of the first part.
    first_hash: u64,
}

impl AttributePath {
    pub(crate) fn new(name: &str) -> AttributePath {
        let parts: Box<[Box<str>]> = if name.contains('.') {
            name.split('.').map(Into::into).collect()
        } else {
            Box::default()
        };
        AttributePath {
            name: name.into(),
            hash: name_hash(name),
            first_hash: parts.first().map_or(0, |p| name_hash(p)),
            parts,
        }
    }

    /// The value of the attribute: the top-level key if present, else the dotted path.
    pub(crate) fn get<'c>(&self, attributes: &Attributes<'c>) -> Option<&'c Value> {
        if let Some(value) = attributes.top(&self.name, self.hash) {
            return Some(value);
        }
        let (first, rest) = self.parts.split_first()?;
        let mut value = attributes.top(first, self.first_hash)?;
        for part in rest {
            value = value.as_object()?.get(&**part)?;
        }
        Some(value)
    }
}

fn name_hash(name: &str) -> u64 {
    use std::hash::BuildHasher as _;
    rustc_hash::FxBuildHasher.hash_one(name)
}

/// A context's top-level attributes for one evaluation pass. A pass over many flags (a bulk
/// evaluation makes hundreds of lookups) indexes them by the hashes of their names, and clauses
/// then find them by comparing a number (then the name once) instead of walking the map's
/// string comparisons; a pass over one flag looks in the map and never pays for the index.
pub(crate) struct Attributes<'c> {
    ctx: &'c Context,
    /// Empty when not indexed, and for contexts of more than [`SCAN_AT_MOST`] attributes.
    by_hash: Vec<(u64, &'c str, &'c Value)>,
    targeting_key: Option<Option<&'c str>>,
}

/// Above this many attributes, a scan would lose to the map's search.
const SCAN_AT_MOST: usize = 32;

impl<'c> Attributes<'c> {
    pub(crate) fn new(ctx: &'c Context, indexed: bool) -> Attributes<'c> {
        let by_hash = if indexed && ctx.len() <= SCAN_AT_MOST {
            ctx.iter().map(|(k, v)| (name_hash(k), k.as_str(), v)).collect()
        } else {
            Vec::new()
        };
        Attributes {
            ctx,
            by_hash,
            targeting_key: None,
        }
    }

    /// The top-level attribute `name`, whose hash is `hash`.
    fn top(&self, name: &str, hash: u64) -> Option<&'c Value> {
        if self.by_hash.is_empty() {
            return self.ctx.get(name);
        }
        self.by_hash
            .iter()
            .find(|(h, k, _)| *h == hash && *k == name)
            .map(|&(_, _, v)| v)
    }

    /// The context's `targetingKey`, when it is a string.
    pub(crate) fn targeting_key(&mut self) -> Option<&'c str> {
        *self
            .targeting_key
            .get_or_insert_with(|| self.ctx.get("targetingKey").and_then(Value::as_str))
    }
}

/// A clause, compiled.
#[derive(Debug)]
pub(crate) struct CompiledClause {
    pub(crate) attribute: AttributePath,
    pub(crate) negate: bool,
    pub(crate) test: Test,
}

/// What a clause checks. Lists of thresholds are reduced to one bound: "less than any of
/// `values`" is "less than the largest".
#[derive(Debug)]
pub(crate) enum Test {
    /// Matches nothing, negated or not: what is left of a clause that could not compile.
    Never,
    Exists,
    InSegment(Box<[Arc<CompiledSegment>]>),
    In(InValues),
    Contains(Box<[Box<str>]>),
    StartsWith(Box<[Box<str>]>),
    EndsWith(Box<[Box<str>]>),
    Matches(Box<[Regex]>),
    Number(Ordering, f64),
    SemverEq(Box<[Version]>),
    Semver(Ordering, Version),
    Before(i128),
    After(i128),
}

/// A comparison of a context value against a bound.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ordering {
    Lt,
    Lte,
    Gt,
    Gte,
}

impl Ordering {
    pub(crate) fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Ordering::Lt => ord == Less,
            Ordering::Lte => ord != Greater,
            Ordering::Gt => ord == Greater,
            Ordering::Gte => ord != Less,
        }
    }

    fn wants_largest(self) -> bool {
        matches!(self, Ordering::Lt | Ordering::Lte)
    }
}

/// The values of an `in` clause, by JSON type.
#[derive(Debug)]
pub(crate) struct InValues {
    pub(crate) strings: ValueSet<Box<str>>,
    pub(crate) numbers: ValueSet<NumberKey>,
    pub(crate) has_true: bool,
    pub(crate) has_false: bool,
}

/// A set that is a short list below [`LINEAR_SET_MAX`] values and a hash set above.
#[derive(Debug)]
pub(crate) enum ValueSet<T> {
    Few(Box<[T]>),
    Many(FxHashSet<T>),
}

impl<T: Hash + Eq> ValueSet<T> {
    fn new(mut values: Vec<T>) -> Self {
        if values.len() <= LINEAR_SET_MAX {
            values.dedup();
            ValueSet::Few(values.into())
        } else {
            ValueSet::Many(values.into_iter().collect())
        }
    }

    pub(crate) fn contains<Q>(&self, value: &Q) -> bool
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self {
            ValueSet::Few(values) => values.iter().any(|v| v.borrow() == value),
            ValueSet::Many(set) => set.contains(value),
        }
    }
}

/// A JSON number as a hashable key: integers exactly (so that large IDs do not collide through
/// floating point), `1.0` the same as `1`, other floats by their bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum NumberKey {
    Int(i128),
    Float(u64),
}

impl NumberKey {
    pub(crate) fn of(n: &Number) -> NumberKey {
        if let Some(i) = n.as_i64() {
            return NumberKey::Int(i128::from(i));
        }
        if let Some(u) = n.as_u64() {
            return NumberKey::Int(i128::from(u));
        }
        let f = n.as_f64().unwrap_or(f64::NAN);
        if f.fract() == 0.0 && f.abs() < 1e36 {
            NumberKey::Int(f as i128)
        } else {
            // Adding 0.0 turns -0.0 into 0.0.
            NumberKey::Float((f + 0.0).to_bits())
        }
    }
}

impl CompiledClause {
    /// `segments` is `None` inside a segment's own rules, where `in_segment` never matches.
    fn compile(clause: &Clause, segments: Option<&SegmentTable>) -> CompiledClause {
        let attribute = AttributePath::new(clause.attribute.as_deref().unwrap_or(""));
        let test = if clause.attribute.is_none() && clause.op != Op::InSegment {
            Test::Never
        } else {
            compile_test(clause.op, &clause.values, segments)
        };
        CompiledClause {
            attribute,
            negate: clause.negate,
            test,
        }
    }
}

fn compile_test(op: Op, values: &[Value], segments: Option<&SegmentTable>) -> Test {
    let strings = || -> Box<[Box<str>]> { values.iter().filter_map(Value::as_str).map(Into::into).collect() };
    let numbers = || values.iter().filter_map(Value::as_f64);
    let nonempty = |list: Box<[Box<str>]>, make: fn(Box<[Box<str>]>) -> Test| {
        if list.is_empty() { Test::Never } else { make(list) }
    };
    match op {
        Op::Exists => Test::Exists,
        Op::InSegment => {
            let Some(table) = segments else {
                return Test::Never;
            };
            // An unknown segment is an empty one.
            let found: Box<[Arc<CompiledSegment>]> = values
                .iter()
                .filter_map(Value::as_str)
                .filter_map(|key| table.get(key).cloned())
                .collect();
            Test::InSegment(found)
        }
        Op::In => {
            let mut strings = Vec::new();
            let mut numbers = Vec::new();
            let (mut has_true, mut has_false) = (false, false);
            for value in values {
                match value {
                    Value::String(s) => strings.push(s.as_str().into()),
                    Value::Number(n) => numbers.push(NumberKey::of(n)),
                    Value::Bool(true) => has_true = true,
                    Value::Bool(false) => has_false = true,
                    _ => {}
                }
            }
            if strings.is_empty() && numbers.is_empty() && !has_true && !has_false {
                return Test::Never;
            }
            Test::In(InValues {
                strings: ValueSet::new(strings),
                numbers: ValueSet::new(numbers),
                has_true,
                has_false,
            })
        }
        Op::Contains => nonempty(strings(), Test::Contains),
        Op::StartsWith => nonempty(strings(), Test::StartsWith),
        Op::EndsWith => nonempty(strings(), Test::EndsWith),
        Op::Matches => {
            let regexes: Box<[Regex]> = values
                .iter()
                .filter_map(Value::as_str)
                .filter_map(|p| compile_regex(p).ok())
                .collect();
            if regexes.is_empty() {
                Test::Never
            } else {
                Test::Matches(regexes)
            }
        }
        Op::Lt | Op::Lte | Op::Gt | Op::Gte => {
            let ordering = ordering(op);
            let bound = if ordering.wants_largest() {
                numbers().reduce(f64::max)
            } else {
                numbers().reduce(f64::min)
            };
            bound.map_or(Test::Never, |b| Test::Number(ordering, b))
        }
        Op::SemverEq | Op::SemverLt | Op::SemverLte | Op::SemverGt | Op::SemverGte => {
            let mut versions: Vec<Version> = values
                .iter()
                .filter_map(Value::as_str)
                .filter_map(parse_semver)
                .collect();
            if versions.is_empty() {
                return Test::Never;
            }
            if op == Op::SemverEq {
                return Test::SemverEq(versions.into());
            }
            let ordering = ordering(op);
            versions.sort_by(Version::cmp_precedence);
            let bound = if ordering.wants_largest() {
                versions.pop()
            } else {
                versions.into_iter().next()
            };
            bound.map_or(Test::Never, |b| Test::Semver(ordering, b))
        }
        Op::Before => values
            .iter()
            .filter_map(parse_instant)
            .max()
            .map_or(Test::Never, Test::Before),
        Op::After => values
            .iter()
            .filter_map(parse_instant)
            .min()
            .map_or(Test::Never, Test::After),
    }
}

fn ordering(op: Op) -> Ordering {
    match op {
        Op::Lt | Op::SemverLt => Ordering::Lt,
        Op::Lte | Op::SemverLte => Ordering::Lte,
        Op::Gt | Op::SemverGt => Ordering::Gt,
        _ => Ordering::Gte,
    }
}

/// Compiles a `matches` pattern, with a bounded size.
pub(crate) fn compile_regex(pattern: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// Parses a semantic version, leniently: an optional leading `v`, and a missing minor or patch
/// number counts as 0 (`1.2` is `1.2.0`, `v2` is `2.0.0`).
pub(crate) fn parse_semver(text: &str) -> Option<Version> {
    let text = text.strip_prefix('v').unwrap_or(text);
    if let Ok(version) = Version::parse(text) {
        return Some(version);
    }
    let end = text.find(['-', '+']).unwrap_or(text.len());
    let (core, rest) = text.split_at(end);
    let padded = match core.matches('.').count() {
        0 => format!("{core}.0.0{rest}"),
        1 => format!("{core}.0{rest}"),
        _ => return None,
    };
    Version::parse(&padded).ok()
}

/// An instant in nanoseconds since the Unix epoch, from an RFC 3339 string or a number of
/// Unix milliseconds.
pub(crate) fn parse_instant(value: &Value) -> Option<i128> {
    match value {
        Value::String(s) => {
            let time = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
            Some(time.unix_timestamp_nanos())
        }
        Value::Number(n) => {
            if let Some(ms) = n.as_i64() {
                Some(i128::from(ms) * 1_000_000)
            } else if let Some(ms) = n.as_u64() {
                Some(i128::from(ms) * 1_000_000)
            } else {
                // `as` saturates, and JSON has no NaN or infinity.
                n.as_f64().map(|ms| (ms * 1e6) as i128)
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_semver() {
        assert_eq!(parse_semver("1.2.3"), Some(Version::new(1, 2, 3)));
        assert_eq!(parse_semver("v1.2.3"), Some(Version::new(1, 2, 3)));
        assert_eq!(parse_semver("1.2"), Some(Version::new(1, 2, 0)));
        assert_eq!(parse_semver("2"), Some(Version::new(2, 0, 0)));
        assert_eq!(
            parse_semver("1.2-beta.1").map(|v| v.pre.to_string()),
            Some("beta.1".into())
        );
        assert_eq!(parse_semver("1.2.3.4"), None);
        assert_eq!(parse_semver("one"), None);
        assert_eq!(parse_semver(""), None);
    }

    #[test]
    fn instants() {
        let ms = 1_714_564_800_000i64; // 2024-05-01T12:00:00Z
        assert_eq!(
            parse_instant(&Value::from("2024-05-01T12:00:00Z")),
            Some(i128::from(ms) * 1_000_000)
        );
        assert_eq!(
            parse_instant(&Value::from("2024-05-01T14:00:00+02:00")),
            Some(i128::from(ms) * 1_000_000)
        );
        assert_eq!(parse_instant(&Value::from(ms)), Some(i128::from(ms) * 1_000_000));
        assert_eq!(parse_instant(&Value::from(1.5)), Some(1_500_000));
        assert_eq!(parse_instant(&Value::from("2024-05-01")), None);
        assert_eq!(parse_instant(&Value::Bool(true)), None);
    }

    #[test]
    fn number_keys_equate_integral_floats() {
        let key = |v: Value| NumberKey::of(v.as_number().unwrap());
        assert_eq!(key(1.into()), key(1.0.into()));
        assert_eq!(key(0.0.into()), key((-0.0).into()));
        assert_ne!(key(1.5.into()), key(1.into()));
        assert_ne!(
            key(9_007_199_254_740_993u64.into()),
            key(9_007_199_254_740_992u64.into())
        );
        assert_eq!(key(u64::MAX.into()), NumberKey::Int(i128::from(u64::MAX)));
    }

    #[test]
    fn rollout_buckets_are_cumulative() {
        let rollout = CompiledRollout {
            bucket_by: AttributePath::new("targetingKey"),
            salted: Salted::new("s"),
            buckets: Box::new([(25_000, 0), (100_000, 1)]),
        };
        assert_eq!(rollout.variation(0), 0);
        assert_eq!(rollout.variation(24_999), 0);
        assert_eq!(rollout.variation(25_000), 1);
        assert_eq!(rollout.variation(99_999), 1);
    }

    #[test]
    fn dotted_paths() {
        let ctx: Context =
            serde_json::from_str(r#"{"user": {"email": "a@b", "org": {"id": 7}}, "a.b": 1, "a": {"b": 2}}"#)
                .unwrap();
        // Small contexts are scanned by hash, big ones searched in the map: the same answers.
        let mut big = ctx.clone();
        for i in 0..=SCAN_AT_MOST {
            big.insert(format!("filler-{i}"), Value::from(i));
        }
        for ctx in [&ctx, &big] {
            for indexed in [false, true] {
                let attributes = Attributes::new(ctx, indexed);
                let get = |name: &str| AttributePath::new(name).get(&attributes);
                assert_eq!(get("user.email"), Some(&Value::from("a@b")));
                assert_eq!(get("user.org.id"), Some(&Value::from(7)));
                assert_eq!(get("a.b"), Some(&Value::from(1)));
                assert_eq!(get("user.missing"), None);
                assert_eq!(get("user.email.x"), None);
                assert_eq!(get(""), None);
                assert_eq!(get("nope"), None);
            }
        }
        assert_eq!(
            AttributePath::new("filler-3").get(&Attributes::new(&big, true)),
            Some(&Value::from(3))
        );
    }
}
