//! Evaluation insights: per flag, evaluations per variation over the last 24 hours, 7 days or
//! 30 days as a chart drawn on the server (SVG, no script), when each environment last
//! evaluated it, and the list of stale flags: temporary flags not evaluated for N days, or
//! serving one variation to everyone, unchanged, for N days.

use std::collections::BTreeMap;

use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use flagstaff_eval::model::{Flag, FlagEnvState, Serve};

use super::projects::frame;
use super::session::{self, AdminSession};
use super::view::{self, Layout, display_name};
use super::{PageError, ok};
use crate::store::environments::{self, Environment};
use crate::store::flags::{self, FlagFilter};
use crate::store::insights::{self as activity_store, FlagActivity};
use crate::store::{now_ms, projects, usage};

/// N of "not evaluated for N days" unless the page says otherwise.
pub const DEFAULT_STALE_DAYS: i64 = 30;
const DAY_MS: i64 = 86_400_000;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.route("/{project}/insights", web::get().to(overview))
        .route("/{project}/flags/{flag}/insights", web::get().to(flag_insights));
}

/// Whether a state serves one variation to every context.
fn single_variation(state: Option<&FlagEnvState>) -> bool {
    let Some(state) = state else { return true };
    if !state.enabled {
        return true;
    }
    if !state.prerequisites.is_empty() || !state.targets.is_empty() || !state.rules.is_empty() {
        return false;
    }
    match &state.fallthrough {
        None | Some(Serve::Variation(_)) => true,
        Some(Serve::Rollout(r)) => r.variations.iter().filter(|w| w.weight > 0).count() <= 1,
    }
}

/// Why a flag is stale, if it is: temporary, not archived, and either not evaluated for `days`
/// days, or serving one variation in every environment with no change for `days` days.
pub fn stale_reason(
    flag: &Flag,
    activity: &FlagActivity,
    envs: &[Environment],
    days: i64,
    now: i64,
) -> Option<String> {
    if !flag.is_temporary() || flag.archived {
        return None;
    }
    let limit = now - days * DAY_MS;
    if activity.created_at > limit {
        return None;
    }
    match activity.last_evaluated() {
        None => {
            return Some(format!(
                "never evaluated (created {})",
                view::ago(activity.created_at, now)
            ));
        }
        Some(at) if at < limit => return Some(format!("last evaluated {}", view::ago(at, now))),
        Some(_) => {}
    }
    let settled = envs.iter().all(|env| {
        single_variation(flag.environments.get(&env.key))
            && activity
                .state_changed
                .get(&env.id)
                .copied()
                .unwrap_or(activity.created_at)
                < limit
    });
    (settled && !envs.is_empty())
        .then(|| format!("serves one variation everywhere, unchanged for over {days} days"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Range {
    Day,
    Week,
    Month,
}

impl Range {
    fn parse(s: Option<&str>) -> Range {
        match s {
            Some("7d") => Range::Week,
            Some("30d") => Range::Month,
            _ => Range::Day,
        }
    }

    fn code(self) -> &'static str {
        match self {
            Range::Day => "24h",
            Range::Week => "7d",
            Range::Month => "30d",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Range::Day => "last 24 hours, per hour",
            Range::Week => "last 7 days, per 6 hours",
            Range::Month => "last 30 days, per day",
        }
    }

    /// (bucket length in seconds, number of buckets)
    fn buckets(self) -> (i64, usize) {
        match self {
            Range::Day => (3600, 24),
            Range::Week => (6 * 3600, 28),
            Range::Month => (86_400, 30),
        }
    }
}

const PALETTE: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

/// One variation's part of one stacked bar: a rectangle of the chart (not a model segment).
struct BarPart {
    x: i64,
    y: i64,
    width: i64,
    height: i64,
    color: &'static str,
    title: String,
}

struct Label {
    x: i64,
    y: i64,
    text: String,
}

struct LegendItem {
    color: &'static str,
    name: String,
    total: i64,
}

/// A stacked bar chart of evaluations per variation, as SVG shapes.
struct Chart {
    width: i64,
    height: i64,
    plot_left: i64,
    plot_right: i64,
    plot_bottom: i64,
    bar_parts: Vec<BarPart>,
    y_labels: Vec<Label>,
    grid: Vec<i64>,
    x_labels: Vec<Label>,
    legend: Vec<LegendItem>,
    total: i64,
    /// Rows of the data table under the chart: bucket label and counts per variation.
    table: Vec<(String, Vec<i64>)>,
}

/// The scale of a chart whose tallest bar is `n`: a round step (1, 2 or 5 times a power of
/// ten) giving at most five intervals, and the top of the scale (a multiple of the step).
fn scale(n: i64) -> (i64, i64) {
    let n = n.max(1);
    let mut magnitude = 1i64;
    loop {
        for m in [1, 2, 5] {
            let step = magnitude.saturating_mul(m);
            let intervals = (n + step - 1) / step;
            if intervals <= 5 {
                return (step, intervals * step);
            }
        }
        magnitude = magnitude.saturating_mul(10);
    }
}

fn bucket_label(start_secs: i64, range: Range) -> String {
    let format = match range {
        Range::Day => time::macros::format_description!("[hour]:00"),
        Range::Week => time::macros::format_description!("[month]-[day] [hour]h"),
        Range::Month => time::macros::format_description!("[month]-[day]"),
    };
    time::OffsetDateTime::from_unix_timestamp(start_secs)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

fn chart(counts: &[usage::HourlyCount], variations: &[String], range: Range, now_ms: i64) -> Chart {
    let (bucket_secs, n) = range.buckets();
    let now_secs = now_ms / 1000;
    // Buckets (aligned to UTC) end with the current one, oldest first.
    let end = (now_secs / bucket_secs + 1) * bucket_secs;
    let start = end - bucket_secs * n as i64;

    let mut names: Vec<String> = variations.to_vec();
    for c in counts {
        if !names.contains(&c.variant) {
            names.push(c.variant.clone());
        }
    }
    let mut grid = vec![vec![0i64; names.len()]; n];
    for c in counts {
        if c.hour < start || c.hour >= end {
            continue;
        }
        let i = ((c.hour - start) / bucket_secs) as usize;
        let v = names
            .iter()
            .position(|n| n == &c.variant)
            .expect("every variant was added to names");
        grid[i][v] = grid[i][v].saturating_add(c.count);
    }
    let totals: Vec<i64> = grid.iter().map(|row| row.iter().sum()).collect();
    let (step, max) = scale(totals.iter().copied().max().unwrap_or(0));
    let ticks = max / step;

    let (width, height, left, right, top, bottom) = (720i64, 260i64, 56i64, 712i64, 12i64, 224i64);
    let slot = (right - left) / n as i64;
    let bar = (slot * 3 / 4).max(1);
    let mut bar_parts = Vec::new();
    for (i, row) in grid.iter().enumerate() {
        let x = left + slot * i as i64 + (slot - bar) / 2;
        let mut y = bottom;
        let label = bucket_label(start + bucket_secs * i as i64, range);
        for (v, &count) in row.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let h = ((count as f64 / max as f64) * (bottom - top) as f64)
                .round()
                .max(1.0) as i64;
            y -= h;
            bar_parts.push(BarPart {
                x,
                y,
                width: bar,
                height: h,
                color: PALETTE[v % PALETTE.len()],
                title: format!("{label}: {} × {count}", names[v]),
            });
        }
    }
    let y_at = |value: i64| bottom - ((bottom - top) as f64 * value as f64 / max as f64).round() as i64;
    let y_labels = (0..=ticks)
        .map(|k| Label {
            x: left - 6,
            y: y_at(k * step) + 4,
            text: (k * step).to_string(),
        })
        .collect();
    let grid_lines = (1..=ticks).map(|k| y_at(k * step)).collect();
    let every = (n / 6).max(1);
    let x_labels = (0..n)
        .step_by(every)
        .map(|i| Label {
            x: left + slot * i as i64 + slot / 2,
            y: bottom + 18,
            text: bucket_label(start + bucket_secs * i as i64, range),
        })
        .collect();
    let legend = names
        .iter()
        .enumerate()
        .map(|(v, name)| LegendItem {
            color: PALETTE[v % PALETTE.len()],
            name: name.clone(),
            total: grid.iter().map(|row| row[v]).sum(),
        })
        .collect();
    let table = grid
        .iter()
        .enumerate()
        .filter(|(_, row)| row.iter().any(|&c| c > 0))
        .map(|(i, row)| (bucket_label(start + bucket_secs * i as i64, range), row.clone()))
        .collect();
    Chart {
        width,
        height,
        plot_left: left,
        plot_right: right,
        plot_bottom: bottom,
        bar_parts,
        y_labels,
        grid: grid_lines,
        x_labels,
        legend,
        total: totals.iter().sum(),
        table,
    }
}

#[derive(serde::Deserialize)]
struct InsightsQuery {
    env: Option<String>,
    range: Option<String>,
    days: Option<i64>,
}

struct LastEvaluated {
    env_name: String,
    when: String,
}

#[derive(Template)]
#[template(path = "admin/flag_insights.html")]
struct FlagInsightsPage {
    layout: Layout,
    flag_key: String,
    flag_name: String,
    environments: Vec<(String, String)>,
    env: String,
    env_name: String,
    range: &'static str,
    range_label: &'static str,
    chart: Chart,
    last: Vec<LastEvaluated>,
}

async fn flag_insights(
    req: HttpRequest,
    session: AdminSession,
    path: web::Path<(String, String)>,
    query: web::Query<InsightsQuery>,
) -> Result<HttpResponse, PageError> {
    let state = session::state(&req)?;
    let (project, flag_key) = path.into_inner();
    let layout = frame(&state, &session, &project, "Insights", "flags").await?;
    let range = Range::parse(query.range.as_deref());
    let wanted_env = query.env.clone();
    let (bucket_secs, n) = range.buckets();
    let since = now_ms() / 1000 - bucket_secs * (n as i64 + 1);
    let (p, f) = (project.clone(), flag_key.clone());
    let (flag, envs, env, counts, activity) = state
        .store
        .read(move |conn| {
            let head = projects::head(conn, &p)?;
            let flag = flags::get(conn, &p, &f)?;
            let envs = environments::list_in(conn, head.id)?;
            let env = match wanted_env {
                Some(key) => environments::in_project(conn, &head, &key)?,
                None => envs
                    .iter()
                    .find(|e| e.key == "production")
                    .or_else(|| envs.last())
                    .cloned()
                    .ok_or_else(|| {
                        crate::store::StoreError::not_found(
                            crate::store::Resource::Environment,
                            format!("environments of {p:?}"),
                        )
                    })?,
            };
            let counts = usage::counts(conn, env.id, Some(&f), since)?;
            let activity = activity_store::activity(conn, head.id)?
                .remove(&f)
                .unwrap_or_default();
            Ok((flag, envs, env, counts, activity))
        })
        .await?;
    let now = now_ms();
    let variations: Vec<String> = flag.variations.iter().map(|v| v.key.clone()).collect();
    let last = envs
        .iter()
        .map(|e| LastEvaluated {
            env_name: display_name(&e.name, &e.key).to_owned(),
            when: match activity.evaluated.get(&e.id) {
                Some(&at) => format!("{} ({})", view::ago(at, now), view::when(at)),
                None => "never".to_owned(),
            },
        })
        .collect();
    ok(&FlagInsightsPage {
        layout,
        flag_name: display_name(&flag.name, &flag.key).to_owned(),
        flag_key: flag.key,
        environments: envs
            .iter()
            .map(|e| (e.key.clone(), display_name(&e.name, &e.key).to_owned()))
            .collect(),
        env_name: display_name(&env.name, &env.key).to_owned(),
        env: env.key,
        range: range.code(),
        range_label: range.label(),
        chart: chart(&counts, &variations, range, now),
        last,
    })
}

struct FlagUsage {
    key: String,
    name: String,
    evaluations: i64,
    last: String,
}

struct StaleFlag {
    key: String,
    name: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "admin/insights.html")]
struct InsightsPage {
    layout: Layout,
    environments: Vec<(String, String)>,
    env: String,
    env_name: String,
    days: i64,
    stale: Vec<StaleFlag>,
    usage: Vec<FlagUsage>,
    /// Whether any flag was evaluated (else the page says how counts arrive).
    evaluated_any: bool,
}

async fn overview(
    req: HttpRequest,
    session: AdminSession,
    path: web::Path<String>,
    query: web::Query<InsightsQuery>,
) -> Result<HttpResponse, PageError> {
    let state = session::state(&req)?;
    let project = path.into_inner();
    let layout = frame(&state, &session, &project, "Insights", "insights").await?;
    let days = query.days.unwrap_or(DEFAULT_STALE_DAYS).clamp(1, 3650);
    let wanted_env = query.env.clone();
    let p = project.clone();
    let since = now_ms() / 1000 - 7 * 86_400;
    let (all, envs, env, counts, activity) = state
        .store
        .read(move |conn| {
            let head = projects::head(conn, &p)?;
            let envs = environments::list_in(conn, head.id)?;
            let env = match wanted_env {
                Some(key) => Some(environments::in_project(conn, &head, &key)?),
                None => envs
                    .iter()
                    .find(|e| e.key == "production")
                    .or_else(|| envs.last())
                    .cloned(),
            };
            let counts = match &env {
                Some(env) => usage::counts(conn, env.id, None, since)?,
                None => Vec::new(),
            };
            Ok((
                flags::list(conn, &p, &FlagFilter::default())?,
                envs,
                env,
                counts,
                activity_store::activity(conn, head.id)?,
            ))
        })
        .await?;
    let now = now_ms();
    let mut per_flag: BTreeMap<&str, i64> = BTreeMap::new();
    for c in &counts {
        *per_flag.entry(c.flag_key.as_str()).or_default() += c.count;
    }
    let stale = all
        .iter()
        .filter_map(|flag| {
            let reason = stale_reason(flag, activity.get(&flag.key)?, &envs, days, now)?;
            Some(StaleFlag {
                key: flag.key.clone(),
                name: display_name(&flag.name, &flag.key).to_owned(),
                reason,
            })
        })
        .collect();
    let usage = all
        .iter()
        .map(|flag| FlagUsage {
            key: flag.key.clone(),
            name: display_name(&flag.name, &flag.key).to_owned(),
            evaluations: per_flag.get(flag.key.as_str()).copied().unwrap_or(0),
            last: env
                .as_ref()
                .and_then(|e| activity.get(&flag.key)?.evaluated.get(&e.id).copied())
                .map_or_else(|| "never".to_owned(), |at| view::ago(at, now)),
        })
        .collect::<Vec<_>>();
    let evaluated_any = usage.iter().any(|u| u.evaluations > 0);
    ok(&InsightsPage {
        layout,
        environments: envs
            .iter()
            .map(|e| (e.key.clone(), display_name(&e.name, &e.key).to_owned()))
            .collect(),
        env_name: env
            .as_ref()
            .map(|e| display_name(&e.name, &e.key).to_owned())
            .unwrap_or_default(),
        env: env.map(|e| e.key).unwrap_or_default(),
        days,
        stale,
        usage,
        evaluated_any,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flagstaff_eval::model::{FlagKind, FlagType, Rollout, WeightedVariation};

    #[test]
    fn scales_use_round_steps() {
        assert_eq!(scale(0), (1, 1));
        assert_eq!(scale(3), (1, 3));
        assert_eq!(scale(7), (2, 8));
        assert_eq!(scale(41), (10, 50));
        assert_eq!(scale(1555), (500, 2000));
        assert_eq!(scale(1000), (200, 1000));
    }

    #[test]
    fn a_chart_stacks_counts_per_bucket_and_variation() {
        let now = 1_700_000_000_000i64; // 2023-11-14 22:13:20 UTC
        let hour = now / 1000 / 3600 * 3600;
        let count = |variant: &str, h: i64, n: i64| usage::HourlyCount {
            environment_id: 1,
            flag_key: "f".into(),
            variant: variant.into(),
            hour: h,
            count: n,
        };
        let counts = [
            count("on", hour, 30),
            count("off", hour, 10),
            count("on", hour - 3600, 5),
            count("odd", hour, 1),
        ];
        let c = chart(&counts, &["on".into(), "off".into()], Range::Day, now);
        assert_eq!(c.total, 46);
        assert_eq!(
            c.legend
                .iter()
                .map(|l| (l.name.as_str(), l.total))
                .collect::<Vec<_>>(),
            vec![("on", 35), ("off", 10), ("odd", 1)]
        );
        assert_eq!(c.table.len(), 2, "two hours have counts");
        assert_eq!(c.table[1].1, vec![30, 10, 1]);
        // The tallest bar (41) under a scale of 50 fills 41/50 of the plot.
        let tallest: i64 = c
            .bar_parts
            .iter()
            .filter(|s| s.title.contains("22:00"))
            .map(|s| s.height)
            .sum();
        assert!((170..=176).contains(&tallest), "{tallest}");
        // Counts older than the range are left out.
        let old = chart(
            &[count("on", hour - 30 * 3600, 9)],
            &["on".into()],
            Range::Day,
            now,
        );
        assert_eq!(old.total, 0);
        assert_eq!(chart(&counts, &[], Range::Month, now).total, 46);
    }

    fn flag(temporary: bool, state: FlagEnvState) -> Flag {
        Flag {
            key: "f".into(),
            name: String::new(),
            description: String::new(),
            kind: FlagKind::Flag,
            flag_type: FlagType::Boolean,
            variations: vec![],
            client_side: None,
            temporary: Some(temporary),
            tags: vec![],
            archived: false,
            environments: [("production".to_owned(), state)].into_iter().collect(),
        }
    }

    #[test]
    fn stale_flags() {
        let now = 100 * DAY_MS;
        let envs = [Environment {
            id: 1,
            key: "production".into(),
            name: String::new(),
            revision: 0,
            requires_confirmation: true,
        }];
        let on = FlagEnvState {
            enabled: true,
            ..FlagEnvState::default()
        };
        let old = FlagActivity {
            created_at: now - 60 * DAY_MS,
            ..FlagActivity::default()
        };
        assert!(
            stale_reason(&flag(true, on.clone()), &old, &envs, 30, now)
                .unwrap()
                .starts_with("never evaluated")
        );
        assert_eq!(
            stale_reason(&flag(false, on.clone()), &old, &envs, 30, now),
            None,
            "permanent flags never"
        );
        let young = FlagActivity {
            created_at: now - 3 * DAY_MS,
            ..FlagActivity::default()
        };
        assert_eq!(
            stale_reason(&flag(true, on.clone()), &young, &envs, 30, now),
            None
        );

        let mut recent = old.clone();
        recent.evaluated.insert(1, now - DAY_MS);
        // Evaluated yesterday, serving "on" to everyone, unchanged since creation 60 days ago.
        assert!(
            stale_reason(&flag(true, on.clone()), &recent, &envs, 30, now)
                .unwrap()
                .contains("one variation")
        );
        recent.state_changed.insert(1, now - 2 * DAY_MS);
        assert_eq!(
            stale_reason(&flag(true, on.clone()), &recent, &envs, 30, now),
            None,
            "changed two days ago"
        );
        recent.state_changed.insert(1, now - 40 * DAY_MS);
        let split = FlagEnvState {
            enabled: true,
            fallthrough: Some(Serve::Rollout(Rollout {
                bucket_by: None,
                salt: None,
                variations: vec![
                    WeightedVariation {
                        variation: "on".into(),
                        weight: 50_000,
                    },
                    WeightedVariation {
                        variation: "off".into(),
                        weight: 50_000,
                    },
                ],
            })),
            ..FlagEnvState::default()
        };
        assert_eq!(
            stale_reason(&flag(true, split), &recent, &envs, 30, now),
            None,
            "a 50/50 split serves two"
        );
        let mut stale_eval = old.clone();
        stale_eval.evaluated.insert(1, now - 45 * DAY_MS);
        assert_eq!(
            stale_reason(&flag(true, on), &stale_eval, &envs, 30, now).unwrap(),
            "last evaluated 45 days ago"
        );
    }
}
