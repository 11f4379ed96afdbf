//! Operations benchmark; figures in BENCHMARKS.md ("Operations").
//!
//! `cargo bench --bench operations` (about a minute). Options after `--`: `--writes N`
//! (default 40 per size), `--dir PATH` (where the data dirs go; e.g. `/dev/shm` to take the
//! disk's `fsync` out of the figures).
//!
//! What does it cost that a plain copy of `flagstaff.db` is always a good backup? Each write
//! publishes the whole database (write a temporary file, `fsync`, rename, `fsync` the directory;
//! `flagstaff::store::published`). Against it, in the same run and on a copy of the same
//! database: the design it replaced, WAL with `synchronous=FULL` and `wal_checkpoint(FULL)`
//! after each commit (whose copies tear: docs/operations.md). For databases of about 0.3, 5 and
//! 50 MB (grown with audit rows, which is what grows in real use), one write = one audit row of
//! about 1 KB in its own transaction. Median and 90th percentile of each.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flagstaff::store::{Changes, Store};
use rusqlite::Connection;

const SIZES_MB: [f64; 3] = [0.3, 5.0, 50.0];

fn audit_row(tx: &Connection, i: usize) -> rusqlite::Result<usize> {
    let after = format!(
        "{{\"key\":\"flag-{i}\",\"enabled\":true,\"rules\":[{}]}}",
        "{\"id\":\"r\"},".repeat(60)
    );
    // Uncompressed text (as entries from before compression are), so the file grows by what is
    // written; every word names one `audit_names` row.
    tx.execute(
        "INSERT OR IGNORE INTO audit_names (id, name) VALUES (1, 'bench')",
        [],
    )?;
    tx.execute(
        "INSERT INTO audit_entries (at, actor, action, project, environment, entity_kind, entity_key, before, after) \
         VALUES (?1, 1, 1, 1, 1, 1, 1, NULL, ?2)",
        rusqlite::params![i as i64, after],
    )
}

fn percentile(times: &mut [Duration], p: f64) -> Duration {
    times.sort_unstable();
    times[((times.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let writes: usize = arg("--writes").and_then(|v| v.parse().ok()).unwrap_or(40);
    let base: PathBuf = arg("--dir").map_or_else(std::env::temp_dir, PathBuf::from);

    println!(
        "| database | publish p50 | publish p90 | WAL + checkpoint p50 | WAL + checkpoint p90 | ratio of p50 |"
    );
    println!("|---|---|---|---|---|---|");
    for target in SIZES_MB {
        let dir = tempfile::tempdir_in(&base).expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        // Grow the database in big transactions (one publication each).
        let mut n = 0;
        while std::fs::metadata(store.path()).unwrap().len() < (target * 1e6) as u64 {
            let from = n;
            store
                .write_blocking(
                    move |tx| {
                        for i in from..from + 250 {
                            audit_row(tx, i)?;
                        }
                        Ok(((), Changes::default()))
                    },
                    |_, _| {},
                )
                .expect("grow");
            n += 250;
        }
        let size = std::fs::metadata(store.path()).unwrap().len();

        let mut published: Vec<Duration> = (0..writes)
            .map(|k| {
                let started = Instant::now();
                store
                    .write_blocking(
                        move |tx| Ok((audit_row(tx, n + k)?, Changes::default())),
                        |_, _| {},
                    )
                    .expect("write");
                started.elapsed()
            })
            .collect();

        let in_place = wal_in_place(store.path(), dir.path(), n + writes, writes);
        let mut in_place = in_place;
        let (p50, p90) = (percentile(&mut published, 0.5), percentile(&mut published, 0.9));
        let (w50, w90) = (percentile(&mut in_place, 0.5), percentile(&mut in_place, 0.9));
        println!(
            "| {:.1} MB | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1}× |",
            size as f64 / 1e6,
            ms(p50),
            ms(p90),
            ms(w50),
            ms(w90),
            p50.as_secs_f64() / w50.as_secs_f64()
        );
    }
}

/// The replaced design on a copy of `published`: WAL, `synchronous=FULL`, a full checkpoint
/// after each commit.
fn wal_in_place(published: &Path, dir: &Path, first: usize, writes: usize) -> Vec<Duration> {
    let copy = dir.join("in-place.db");
    std::fs::copy(published, &copy).expect("copy");
    let mut conn = Connection::open(&copy).expect("open the copy");
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    (0..writes)
        .map(|k| {
            let started = Instant::now();
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .unwrap();
            audit_row(&tx, first + k).unwrap();
            tx.commit().unwrap();
            conn.query_row("PRAGMA wal_checkpoint(FULL)", [], |_| Ok(()))
                .unwrap();
            started.elapsed()
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
