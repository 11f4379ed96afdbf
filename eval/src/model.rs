//! The document format of DESIGN.md §2: what import takes, export gives and the bundle carries.
//!
//! These types only describe shape. Whether a document makes sense (keys, references, weights,
//! values of the right type) is decided by [`crate::validate`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The version of the document format this crate reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// A whole project: what `export` writes and `import` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// Format version; must be [`FORMAT_VERSION`].
    pub flagstaff: u32,
    pub project: ProjectInfo,
    #[serde(default)]
    pub environments: Vec<EnvironmentInfo>,
    #[serde(default)]
    pub segments: Vec<Segment>,
    #[serde(default)]
    pub flags: Vec<Flag>,
    /// Changes scheduled for later (DESIGN.md §9), in time order; only pending ones are exported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<ScheduledChange>,
}

/// A change of one flag's state in one environment, scheduled for a moment (DESIGN.md §9).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduledChange {
    pub flag: String,
    pub environment: String,
    /// RFC 3339; exported in UTC.
    pub at: String,
    /// Any subset of the environment state, as a `PATCH` of the state takes it.
    pub patch: Value,
    /// Who scheduled it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub created_by: String,
}

/// What an SDK downloads: one environment's flags (each carrying only that environment's
/// state) and the project's segments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub flagstaff: u32,
    pub project: ProjectInfo,
    /// The environment key.
    pub environment: String,
    /// Grows with every change of this environment.
    pub revision: u64,
    #[serde(default)]
    pub segments: Vec<Segment>,
    #[serde(default)]
    pub flags: Vec<Flag>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectInfo {
    pub key: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentInfo {
    pub key: String,
    #[serde(default)]
    pub name: String,
    /// Whether the admin pages ask before changing it. Left out: true for `production` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_confirmation: Option<bool>,
}

/// A set of contexts shared by the environments of a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    pub key: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Context keys always in the segment (unless excluded).
    #[serde(default)]
    pub included: Vec<String>,
    /// Context keys never in the segment; beats `included` and the rules.
    #[serde(default)]
    pub excluded: Vec<String>,
    /// A context is in the segment when any rule matches.
    #[serde(default)]
    pub rules: Vec<SegmentRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub clauses: Vec<Clause>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagKind {
    /// A feature flag: listed with flags, client-side by default.
    #[default]
    Flag,
    /// A remote-config value: listed apart, not client-side by default.
    Config,
}

impl FlagKind {
    /// Every kind, in the order the pages list them.
    pub const ALL: [FlagKind; 2] = [FlagKind::Flag, FlagKind::Config];

    /// The name documents use (`"flag"`, `"config"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            FlagKind::Flag => "flag",
            FlagKind::Config => "config",
        }
    }

    /// The kind a document names, if any.
    pub fn parse(name: &str) -> Option<FlagKind> {
        FlagKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagType {
    Boolean,
    String,
    Number,
    Json,
}

impl FlagType {
    /// Every type, in the order the pages offer them.
    pub const ALL: [FlagType; 4] = [
        FlagType::Boolean,
        FlagType::String,
        FlagType::Number,
        FlagType::Json,
    ];

    /// The name documents use (`"boolean"`, `"string"`, `"number"`, `"json"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            FlagType::Boolean => "boolean",
            FlagType::String => "string",
            FlagType::Number => "number",
            FlagType::Json => "json",
        }
    }

    /// The type a document names, if any.
    pub fn parse(name: &str) -> Option<FlagType> {
        FlagType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// A flag (or config) with its per-environment state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flag {
    pub key: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default)]
    pub kind: FlagKind,
    #[serde(rename = "type")]
    pub flag_type: FlagType,
    pub variations: Vec<Variation>,
    /// Defaults to true for flags and false for configs; see [`Flag::is_client_side`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_side: Option<bool>,
    /// Defaults to true for flags and false for configs; see [`Flag::is_temporary`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporary: Option<bool>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub archived: bool,
    /// State per environment key. An environment not named here has the default state.
    #[serde(default)]
    pub environments: BTreeMap<String, FlagEnvState>,
}

impl Flag {
    /// Whether browsers (client keys) may evaluate this flag.
    pub fn is_client_side(&self) -> bool {
        self.client_side.unwrap_or(self.kind == FlagKind::Flag)
    }

    /// Whether this is a release flag expected to be removed one day.
    pub fn is_temporary(&self) -> bool {
        self.temporary.unwrap_or(self.kind == FlagKind::Flag)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variation {
    pub key: String,
    pub value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The state of one flag in one environment. Every field may be left out.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagEnvState {
    #[serde(default)]
    pub enabled: bool,
    /// Served when disabled or a prerequisite fails. Default: the `false` variation of a
    /// boolean flag, otherwise the first variation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off_variation: Option<String>,
    #[serde(default)]
    pub prerequisites: Vec<Prerequisite>,
    #[serde(default)]
    pub targets: Vec<Target>,
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Served when nothing else matched. Default: the off variation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallthrough: Option<Serve>,
    /// Grows with every change; assigned by the server, ignored on import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prerequisite {
    /// Key of the prerequisite flag.
    pub flag: String,
    /// The prerequisite passes when it serves one of these variations.
    pub variations: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub variation: String,
    /// `targetingKey` values served this variation.
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub clauses: Vec<Clause>,
    pub serve: Serve,
}

/// `{attribute, op, values, negate}`: matches when the attribute matches any of `values`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clause {
    /// Absent only for `in_segment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
    pub op: Op,
    #[serde(default)]
    pub values: Vec<Value>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub negate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    In,
    Contains,
    StartsWith,
    EndsWith,
    Matches,
    Lt,
    Lte,
    Gt,
    Gte,
    SemverEq,
    SemverLt,
    SemverLte,
    SemverGt,
    SemverGte,
    Before,
    After,
    Exists,
    InSegment,
}

impl Op {
    /// Every operator, in the order of DESIGN.md §3 (and of the clause builder).
    pub const ALL: [Op; 18] = [
        Op::In,
        Op::Contains,
        Op::StartsWith,
        Op::EndsWith,
        Op::Matches,
        Op::Lt,
        Op::Lte,
        Op::Gt,
        Op::Gte,
        Op::SemverEq,
        Op::SemverLt,
        Op::SemverLte,
        Op::SemverGt,
        Op::SemverGte,
        Op::Before,
        Op::After,
        Op::Exists,
        Op::InSegment,
    ];

    /// The name documents use (`"starts_with"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Op::In => "in",
            Op::Contains => "contains",
            Op::StartsWith => "starts_with",
            Op::EndsWith => "ends_with",
            Op::Matches => "matches",
            Op::Lt => "lt",
            Op::Lte => "lte",
            Op::Gt => "gt",
            Op::Gte => "gte",
            Op::SemverEq => "semver_eq",
            Op::SemverLt => "semver_lt",
            Op::SemverLte => "semver_lte",
            Op::SemverGt => "semver_gt",
            Op::SemverGte => "semver_gte",
            Op::Before => "before",
            Op::After => "after",
            Op::Exists => "exists",
            Op::InSegment => "in_segment",
        }
    }

    /// The operator a document names, if any.
    pub fn parse(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.as_str() == name)
    }
}

/// What a rule or the fallthrough serves: `{"variation": "on"}` or `{"rollout": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Serve {
    Variation(String),
    Rollout(Rollout),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    /// Context attribute hashed into the bucket; default `targetingKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_by: Option<String>,
    /// Hash salt; default the flag key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    pub variations: Vec<WeightedVariation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedVariation {
    pub variation: String,
    /// Out of 100000. Signed so that a negative weight is a validation error naming its
    /// path, not a parse error.
    pub weight: i64,
}

// serde's `skip_serializing_if` passes a reference.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_false(b: &bool) -> bool {
    !*b
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names are the ones serde reads and writes, and `ALL` lists every variant once.
    #[test]
    fn names_are_the_documents() {
        fn check<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug + Copy>(
            all: &[T],
            name: fn(T) -> &'static str,
            parse: fn(&str) -> Option<T>,
        ) {
            let mut seen = std::collections::BTreeSet::new();
            for &v in all {
                assert_eq!(serde_json::to_value(v).unwrap(), Value::from(name(v)));
                assert_eq!(serde_json::from_value::<T>(Value::from(name(v))).unwrap(), v);
                assert_eq!(parse(name(v)), Some(v));
                assert!(seen.insert(name(v)), "{} twice", name(v));
            }
            assert_eq!(parse("In"), None);
            assert_eq!(parse(""), None);
        }
        check(&Op::ALL, Op::as_str, Op::parse);
        check(&FlagType::ALL, FlagType::as_str, FlagType::parse);
        check(&FlagKind::ALL, FlagKind::as_str, FlagKind::parse);
        // The lists of DESIGN.md §2 and §3: a variant added to an enum must be added to `ALL`.
        assert_eq!(Op::ALL.len(), 18);
        assert_eq!(FlagType::ALL.len(), 4);
    }
}
