//! Prometheus metrics (DESIGN.md §8), written by hand in the text exposition format: a few
//! counters and histograms over atomics, process-wide, rendered by `GET /metrics`.
//!
//! Requests are counted by route *pattern* (`/api/v1/projects/{project}`), never by raw path, so
//! the number of series stays bounded whatever clients send. The request middleware
//! ([`crate::ops::request_log::RequestLog`]) does the counting and timing.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex, RwLock};
use std::time::Duration;

use actix_web::http::{Method, StatusCode};

/// Bucket bounds (seconds) of request durations: from half a millisecond to ten seconds.
const REQUEST_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Bucket bounds (seconds) of database writes and snapshot rebuilds.
const WORK_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Cells per counter. Each thread that counts writes to a cell of its own (round robin), so
/// the workers that count every request never fight over a cache line; reading sums the cells.
/// More threads than cells only share cells, which is slower, never wrong.
const SHARDS: usize = 16;

/// This thread's cell.
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

/// A counter in [`SHARDS`] cells.
struct Counter {
    cells: Box<[Padded<AtomicU64>]>,
}

/// A value alone on its cache lines (128 bytes: adjacent-line prefetching pairs lines).
#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(T);

impl Counter {
    fn new() -> Counter {
        Counter {
            cells: (0..SHARDS).map(|_| Padded::default()).collect(),
        }
    }

    fn add(&self, n: u64) {
        self.cells[shard()].0.fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.cells.iter().map(|c| c.0.load(Ordering::Relaxed)).sum()
    }
}

/// Most bounds a histogram has.
const MAX_BUCKETS: usize = 14;

/// One thread's cell of a histogram: its buckets, sum and count on one 128-byte line.
#[repr(align(128))]
#[derive(Default)]
struct HistogramCell {
    buckets: [AtomicU64; MAX_BUCKETS],
    /// Sum of observations in nanoseconds.
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

/// A histogram with fixed bounds, in [`SHARDS`] cells; counts are cumulative only when
/// rendered.
pub struct Histogram {
    bounds: &'static [f64],
    cells: Box<[HistogramCell]>,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        assert!(bounds.len() <= MAX_BUCKETS, "at most {MAX_BUCKETS} bounds");
        Histogram {
            bounds,
            cells: (0..SHARDS).map(|_| HistogramCell::default()).collect(),
        }
    }

    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let cell = &self.cells[shard()];
        let secs = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|&b| secs <= b) {
            cell.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        cell.sum_nanos
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        cell.count.fetch_add(1, Ordering::Relaxed);
    }

    /// How many durations were recorded.
    pub fn count(&self) -> u64 {
        self.cells.iter().map(|c| c.count.load(Ordering::Relaxed)).sum()
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        // Cells are read while other threads count: `+Inf` is taken as at least the buckets'
        // sum, so the histogram rendered is always monotonic.
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self
                .cells
                .iter()
                .map(|c| c.buckets[i].load(Ordering::Relaxed))
                .sum::<u64>();
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count().max(cumulative);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self
            .cells
            .iter()
            .map(|c| c.sum_nanos.load(Ordering::Relaxed) as f64)
            .sum::<f64>()
            / 1e9;
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {count}", braces(labels));
    }
}

/// The request metrics of one route pattern, made once per process and never freed (route
/// patterns are few and fixed), shared by every worker: the request middleware keeps a
/// reference per static path, so counting a request takes no allocation, no reference count
/// and no map lookup by string.
pub struct RouteMetrics {
    route: Box<str>,
    /// Requests by method and status, per thread cell (a handful each; the lock is only ever
    /// contended by a scrape).
    counts: Box<[Padded<Mutex<Vec<MethodStatusCount>>>]>,
    durations: Histogram,
}

/// Requests of one method with one status.
type MethodStatusCount = (&'static str, u16, u64);

impl RouteMetrics {
    fn new(route: &str) -> RouteMetrics {
        RouteMetrics {
            route: route.into(),
            counts: (0..SHARDS).map(|_| Padded::default()).collect(),
            durations: Histogram::new(REQUEST_BUCKETS),
        }
    }

    /// The route pattern (`unmatched` for paths no route serves).
    pub fn route(&self) -> &str {
        &self.route
    }

    /// Records one answered request on this route.
    pub fn record(&self, method: &Method, status: StatusCode, took: Duration) {
        let (method, status) = (method_label(method), status.as_u16());
        self.durations.observe(took);
        let mut counts = self.counts[shard()]
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match counts.iter_mut().find(|(m, s, _)| *m == method && *s == status) {
            Some((_, _, n)) => *n += 1,
            None => counts.push((method, status, 1)),
        }
    }

    /// Requests by (method, status), summed over the cells, sorted.
    fn counts(&self) -> Vec<MethodStatusCount> {
        let mut all: Vec<MethodStatusCount> = Vec::new();
        for cell in &self.counts {
            for &(method, status, n) in cell
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
            {
                match all.iter_mut().find(|(m, s, _)| *m == method && *s == status) {
                    Some((_, _, total)) => *total += n,
                    None => all.push((method, status, n)),
                }
            }
        }
        all.sort_unstable();
        all
    }
}

/// Every metric of the process.
pub struct Metrics {
    routes: RwLock<HashMap<Box<str>, &'static RouteMetrics>>,
    /// By [`Source`].
    evaluations: [Counter; 2],
    /// Write transactions, from `BEGIN IMMEDIATE` to the commit (publication included).
    pub database_writes: Histogram,
    /// Writing and renaming the published `flagstaff.db` (once per group of writes).
    pub database_publications: Histogram,
    /// Writes committed (several share a publication: group commit, `store::Store::write`).
    pub database_changes: AtomicU64,
    /// Rebuilding the snapshots a write touched (or all of them at start).
    pub snapshot_rebuilds: Histogram,
    started: std::time::SystemTime,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    routes: RwLock::default(),
    evaluations: [Counter::new(), Counter::new()],
    database_writes: Histogram::new(WORK_BUCKETS),
    database_publications: Histogram::new(WORK_BUCKETS),
    database_changes: AtomicU64::new(0),
    snapshot_rebuilds: Histogram::new(WORK_BUCKETS),
    started: std::time::SystemTime::now(),
});

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// Who made flag evaluations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Flagstaff itself (OFREP, browser clients): `source="server"`.
    Server = 0,
    /// SDKs, locally, as they reported: `source="sdk"`.
    Sdk = 1,
}

impl Source {
    const ALL: [Source; 2] = [Source::Server, Source::Sdk];

    fn label(self) -> &'static str {
        match self {
            Source::Server => "server",
            Source::Sdk => "sdk",
        }
    }
}

/// Counts `n` flag evaluations made by `source`.
pub fn record_evaluations(source: Source, n: u64) {
    if n > 0 {
        METRICS.evaluations[source as usize].add(n);
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

impl Metrics {
    /// The metrics of a route pattern (`None`: unmatched paths, which share one label so that
    /// scanners cannot create series).
    pub fn route(&self, pattern: Option<&str>) -> &'static RouteMetrics {
        let pattern = pattern.unwrap_or("unmatched");
        if let Some(r) = self
            .routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(pattern)
        {
            return r;
        }
        self.routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(pattern.into())
            .or_insert_with(|| Box::leak(Box::new(RouteMetrics::new(pattern))))
    }

    /// Records one answered request.
    pub fn record_request(&self, route: Option<&str>, method: &Method, status: StatusCode, took: Duration) {
        self.route(route).record(method, status, took);
    }

    /// Requests answered so far on `route` with `status` (any method).
    pub fn requests(&self, route: &str, status: u16) -> u64 {
        let routes = self
            .routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(r) = routes.get(route) else { return 0 };
        r.counts()
            .iter()
            .filter(|(_, s, _)| *s == status)
            .map(|(_, _, n)| n)
            .sum()
    }

    /// The routes seen so far, sorted by pattern.
    fn sorted_routes(&self) -> Vec<&'static RouteMetrics> {
        let mut routes: Vec<_> = self
            .routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .copied()
            .collect();
        routes.sort_by(|a, b| a.route.cmp(&b.route));
        routes
    }

    /// Evaluations counted so far from `source`.
    pub fn evaluations(&self, source: Source) -> u64 {
        self.evaluations[source as usize].get()
    }

    /// The Prometheus text exposition (format 0.0.4), with the gauges the caller reads at
    /// scrape time.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(8 * 1024);
        header(
            &mut out,
            "flagstaff_build_info",
            "gauge",
            "Always 1; the version is a label.",
        );
        let _ = writeln!(
            out,
            "flagstaff_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        let started = self
            .started
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        header(
            &mut out,
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch.",
        );
        let _ = writeln!(out, "process_start_time_seconds {started}");

        header(
            &mut out,
            "flagstaff_http_requests_total",
            "counter",
            "HTTP requests answered, by route, method and status.",
        );
        let routes = self.sorted_routes();
        for r in &routes {
            let route = escape(&r.route);
            for (method, status, n) in r.counts() {
                let _ = writeln!(
                    out,
                    "flagstaff_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
                );
            }
        }

        header(
            &mut out,
            "flagstaff_http_request_duration_seconds",
            "histogram",
            "Time to answer a request (to the response head; a stream's life is not counted), by route.",
        );
        for r in &routes {
            r.durations.render(
                &mut out,
                "flagstaff_http_request_duration_seconds",
                &format!("route=\"{}\"", escape(&r.route)),
            );
        }

        header(
            &mut out,
            "flagstaff_open_streams",
            "gauge",
            "Open change streams (SSE).",
        );
        let _ = writeln!(out, "flagstaff_open_streams {}", gauges.open_streams);

        header(
            &mut out,
            "flagstaff_evaluations_total",
            "counter",
            "Flag evaluations: made by the server (source=server) or reported by SDKs (source=sdk).",
        );
        for source in Source::ALL {
            let n = self.evaluations(source);
            let _ = writeln!(
                out,
                "flagstaff_evaluations_total{{source=\"{}\"}} {n}",
                source.label()
            );
        }

        header(
            &mut out,
            "flagstaff_snapshot_rebuild_seconds",
            "histogram",
            "Time to rebuild the snapshots a change touched.",
        );
        self.snapshot_rebuilds
            .render(&mut out, "flagstaff_snapshot_rebuild_seconds", "");
        header(
            &mut out,
            "flagstaff_database_write_seconds",
            "histogram",
            "Time of a write transaction, from BEGIN IMMEDIATE to the commit, publication included.",
        );
        self.database_writes
            .render(&mut out, "flagstaff_database_write_seconds", "");
        header(
            &mut out,
            "flagstaff_database_publish_seconds",
            "histogram",
            "Time to write, flush and rename the published flagstaff.db (part of each write).",
        );
        self.database_publications
            .render(&mut out, "flagstaff_database_publish_seconds", "");
        header(
            &mut out,
            "flagstaff_database_changes_total",
            "counter",
            "Writes committed; writes that arrive together share one publication (its count is \
             flagstaff_database_publish_seconds_count).",
        );
        let _ = writeln!(
            out,
            "flagstaff_database_changes_total {}",
            self.database_changes.load(Ordering::Relaxed)
        );

        header(
            &mut out,
            "flagstaff_environments",
            "gauge",
            "Environments served (one snapshot each).",
        );
        let _ = writeln!(out, "flagstaff_environments {}", gauges.environments);
        header(
            &mut out,
            "flagstaff_database_bytes",
            "gauge",
            "Size of the published flagstaff.db.",
        );
        let _ = writeln!(out, "flagstaff_database_bytes {}", gauges.database_bytes);
        out
    }
}

/// Values read at scrape time from the application's state.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub open_streams: usize,
    pub environments: usize,
    pub database_bytes: u64,
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value (backslash, double quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_renders_cumulative_buckets_sum_and_count() {
        let h = Histogram::new(&[0.001, 0.01, 0.1]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(1));
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "route=\"/a\"");
        let expected = "x_seconds_bucket{route=\"/a\",le=\"0.001\"} 1\n\
                        x_seconds_bucket{route=\"/a\",le=\"0.01\"} 3\n\
                        x_seconds_bucket{route=\"/a\",le=\"0.1\"} 3\n\
                        x_seconds_bucket{route=\"/a\",le=\"+Inf\"} 4\n\
                        x_seconds_sum{route=\"/a\"} 1.0105\n\
                        x_seconds_count{route=\"/a\"} 4\n";
        assert_eq!(out, expected);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
    }
}
