//! Per-environment snapshots (DESIGN.md §5): the engine's compiled flags plus the bundle's JSON
//! bytes, their gzip and a strong ETag, built after each committed change and swapped atomically.
//! Hot paths read them without locks and never touch SQLite.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::{Arc, OnceLock};

use actix_web::web::Bytes;
use arc_swap::ArcSwap;
use flagstaff_eval::CompiledEnvironment;
use flagstaff_eval::model::{Document, EnvironmentInfo, FORMAT_VERSION, Flag, ProjectInfo};
use rusqlite::Connection;

use crate::store::served::{self, EnvironmentHead, Served};
use crate::store::{Changes, Result};

/// What one environment serves right now.
pub struct Snapshot {
    pub environment_id: i64,
    pub project_id: i64,
    pub project: ProjectInfo,
    /// The environment key.
    pub environment: String,
    pub revision: u64,
    /// Compiled flags, for OFREP and browser evaluation.
    pub engine: CompiledEnvironment,
    /// The bundle (`model::Bundle` as JSON) for backend SDKs.
    pub bundle: Bytes,
    /// `bundle`, gzip-compressed.
    pub bundle_gzip: Bytes,
    /// Strong ETag of `bundle`, quoted, e.g. `"r12-5f1c…"`.
    pub etag: String,
    /// Each flag's JSON as it appears in the bundle, kept so one toggle re-serialises one flag.
    fragments: BTreeMap<Arc<str>, Arc<str>>,
    segments_json: Arc<str>,
    /// What the serving side derives from this snapshot on first use (the HTTP side's
    /// pre-written answers): kept as long as the snapshot, of a type this module does not know.
    derived: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("project", &self.project.key)
            .field("environment", &self.environment)
            .field("revision", &self.revision)
            .field("flags", &self.fragments.len())
            .finish()
    }
}

impl Snapshot {
    /// Builds a snapshot from everything the environment serves.
    pub fn build(served: &Served) -> Result<Snapshot> {
        let doc = Document {
            flagstaff: FORMAT_VERSION,
            project: served.head.project.clone(),
            environments: vec![EnvironmentInfo {
                key: served.head.key.clone(),
                name: String::new(),
                requires_confirmation: None,
            }],
            segments: served.segments.clone(),
            flags: served.flags.clone(),
            schedules: Vec::new(),
        };
        let engine = CompiledEnvironment::compile(&doc, &served.head.key);
        let mut fragments = BTreeMap::new();
        for flag in &served.flags {
            fragments.insert(
                Arc::from(flag.key.as_str()),
                Arc::from(serde_json::to_string(flag)?),
            );
        }
        let segments_json = Arc::from(serde_json::to_string(&served.segments)?);
        Ok(Self::assemble(&served.head, engine, fragments, segments_json))
    }

    /// A snapshot with some flags re-read from the store and everything else shared.
    fn with_flags(
        &self,
        conn: &Connection,
        head: &EnvironmentHead,
        keys: impl Iterator<Item = String>,
    ) -> Result<Snapshot> {
        let mut engine = self.engine.clone();
        let mut fragments = self.fragments.clone();
        for key in keys {
            match served::flag(conn, head, &key)? {
                Some(flag) => {
                    engine = engine.with_flag(&flag);
                    fragments.insert(Arc::from(key.as_str()), Arc::from(serde_json::to_string(&flag)?));
                }
                None => {
                    engine = engine.without_flag(&key);
                    fragments.remove(key.as_str());
                }
            }
        }
        Ok(Self::assemble(
            head,
            engine,
            fragments,
            self.segments_json.clone(),
        ))
    }

    /// A snapshot of a bundle made elsewhere: downloaded by a relay from its primary, or read
    /// from a file `flagstaff download` wrote. The bytes are kept as they are, so the ETag is the
    /// one the primary gives them. `environment_id` and `project_id` are the primary's ids.
    pub fn from_bundle(environment_id: i64, project_id: i64, json: &[u8]) -> Result<Snapshot> {
        let bundle: flagstaff_eval::model::Bundle = serde_json::from_slice(json)?;
        let head = EnvironmentHead {
            id: environment_id,
            project_id,
            project: bundle.project.clone(),
            key: bundle.environment.clone(),
            revision: bundle.revision,
        };
        let doc = Document {
            flagstaff: FORMAT_VERSION,
            project: bundle.project,
            environments: vec![EnvironmentInfo {
                key: bundle.environment.clone(),
                name: String::new(),
                requires_confirmation: None,
            }],
            segments: bundle.segments,
            flags: bundle.flags,
            schedules: Vec::new(),
        };
        let engine = CompiledEnvironment::compile(&doc, &bundle.environment);
        let mut fragments = BTreeMap::new();
        for flag in &doc.flags {
            fragments.insert(
                Arc::from(flag.key.as_str()),
                Arc::from(serde_json::to_string(flag)?),
            );
        }
        let segments_json = Arc::from(serde_json::to_string(&doc.segments)?);
        Ok(Self::finish(
            &head,
            engine,
            fragments,
            segments_json,
            json.to_vec(),
        ))
    }

    /// Keys of the flags whose JSON differs between `self` and `newer` (added and removed too).
    pub fn changed_flags(&self, newer: &Snapshot) -> Vec<String> {
        let mut changed: Vec<String> = newer
            .fragments
            .iter()
            .filter(|(k, v)| self.fragments.get(*k) != Some(*v))
            .map(|(k, _)| k.to_string())
            .collect();
        changed.extend(
            self.fragments
                .keys()
                .filter(|k| !newer.fragments.contains_key(*k))
                .map(std::string::ToString::to_string),
        );
        changed
    }

    fn assemble(
        head: &EnvironmentHead,
        engine: CompiledEnvironment,
        fragments: BTreeMap<Arc<str>, Arc<str>>,
        segments_json: Arc<str>,
    ) -> Snapshot {
        let size: usize = fragments.values().map(|f| f.len() + 1).sum::<usize>() + segments_json.len() + 256;
        let mut json = Vec::with_capacity(size);
        // The shape of `model::Bundle`; built by hand so unchanged flags are not re-serialised.
        json.extend_from_slice(b"{\"flagstaff\":");
        json.extend_from_slice(FORMAT_VERSION.to_string().as_bytes());
        json.extend_from_slice(b",\"project\":");
        serde_json::to_writer(&mut json, &head.project).expect("writing JSON to a Vec cannot fail");
        json.extend_from_slice(b",\"environment\":");
        serde_json::to_writer(&mut json, &head.key).expect("writing JSON to a Vec cannot fail");
        json.extend_from_slice(b",\"revision\":");
        json.extend_from_slice(head.revision.to_string().as_bytes());
        json.extend_from_slice(b",\"segments\":");
        json.extend_from_slice(segments_json.as_bytes());
        json.extend_from_slice(b",\"flags\":[");
        for (i, fragment) in fragments.values().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            json.extend_from_slice(fragment.as_bytes());
        }
        json.extend_from_slice(b"]}");
        Self::finish(head, engine, fragments, segments_json, json)
    }

    /// The snapshot of the bundle `json`: its gzip and ETag.
    fn finish(
        head: &EnvironmentHead,
        engine: CompiledEnvironment,
        fragments: BTreeMap<Arc<str>, Arc<str>>,
        segments_json: Arc<str>,
        json: Vec<u8>,
    ) -> Snapshot {
        let mut gz =
            flate2::write::GzEncoder::new(Vec::with_capacity(json.len() / 4), flate2::Compression::fast());
        gz.write_all(&json).expect("compressing into a Vec cannot fail");
        let gzip = gz.finish().expect("compressing into a Vec cannot fail");

        let etag = bundle_etag(head.revision, &json);

        Snapshot {
            environment_id: head.id,
            project_id: head.project_id,
            project: head.project.clone(),
            environment: head.key.clone(),
            revision: head.revision,
            engine,
            bundle: Bytes::from(json),
            bundle_gzip: Bytes::from(gzip),
            etag,
            fragments,
            segments_json,
            derived: OnceLock::new(),
        }
    }

    /// The value `build` derives from this snapshot, built on the first call and kept with the
    /// snapshot (so a change, which makes a new snapshot, builds it again). One type per
    /// snapshot: the HTTP side's pre-written answers (`http::evaluation::answers`), which are
    /// the only caller.
    pub fn derived<T: Any + Send + Sync>(&self, build: impl FnOnce(&Snapshot) -> T) -> &T {
        self.derived
            .get_or_init(|| Box::new(build(self)))
            .downcast_ref()
            .expect("a snapshot derives one type of value, the HTTP side's answers")
    }

    /// The flags of the bundle, for tests and tools (parses the bytes).
    pub fn flags(&self) -> Result<Vec<Flag>> {
        self.fragments
            .values()
            .map(|f| Ok(serde_json::from_str(f)?))
            .collect()
    }
}

/// The strong ETag of a bundle: its revision and the XXH3-64 of its bytes, quoted. XXH3 is a
/// specified hash whose output never changes between Rust releases or machines (the standard
/// library's `DefaultHasher` promises neither), so relays, caches and SDKs holding an ETag keep
/// it valid across upgrades of the server.
fn bundle_etag(revision: u64, json: &[u8]) -> String {
    format!("\"r{revision}-{:016x}\"", xxhash_rust::xxh3::xxh3_64(json))
}

/// The snapshots of [`Snapshots::current`].
pub struct Current(arc_swap::Guard<Arc<HashMap<i64, Arc<Snapshot>>>>);

impl Current {
    /// The snapshot of an environment.
    pub fn get(&self, environment_id: i64) -> Option<&Arc<Snapshot>> {
        self.0.get(&environment_id)
    }
}

/// Every environment's current snapshot, swapped atomically.
#[derive(Default)]
pub struct Snapshots {
    by_environment: ArcSwap<HashMap<i64, Arc<Snapshot>>>,
}

impl Snapshots {
    /// Builds every environment's snapshot from the store.
    pub fn load(conn: &Connection) -> Result<Snapshots> {
        let mut map = HashMap::new();
        for id in served::all_environment_ids(conn)? {
            if let Some(served) = served::load(conn, id)? {
                map.insert(id, Arc::new(Snapshot::build(&served)?));
            }
        }
        Ok(Snapshots {
            by_environment: ArcSwap::from_pointee(map),
        })
    }

    /// Every environment's snapshot as of now, lent without touching a reference count that
    /// other threads touch too: for hot paths that use a snapshot and answer without awaiting.
    pub fn current(&self) -> Current {
        Current(self.by_environment.load())
    }

    /// The current snapshot of an environment.
    pub fn get(&self, environment_id: i64) -> Option<Arc<Snapshot>> {
        self.by_environment.load().get(&environment_id).cloned()
    }

    /// The current snapshot of an environment found by keys.
    pub fn find(&self, project: &str, environment: &str) -> Option<Arc<Snapshot>> {
        self.by_environment
            .load()
            .values()
            .find(|s| s.project.key == project && s.environment == environment)
            .cloned()
    }

    /// Every current snapshot.
    pub fn all(&self) -> Vec<Arc<Snapshot>> {
        self.by_environment.load().values().cloned().collect()
    }

    /// Replaces every snapshot with `snapshots` (a relay, with what its primary or its file
    /// holds) and returns those whose bundle changed, each with the keys of its changed flags.
    pub fn replace(&self, snapshots: Vec<Snapshot>) -> Vec<(Arc<Snapshot>, Vec<String>)> {
        let before = self.by_environment.load_full();
        let mut map = HashMap::with_capacity(snapshots.len());
        let mut changed = Vec::new();
        for snapshot in snapshots {
            let snapshot = Arc::new(snapshot);
            match before.get(&snapshot.environment_id) {
                Some(old) if old.etag == snapshot.etag => {
                    // Unchanged: keep the old one and what was derived from it.
                    map.insert(snapshot.environment_id, old.clone());
                }
                old => {
                    let flags = match old {
                        Some(old) => old.changed_flags(&snapshot),
                        None => snapshot
                            .fragments
                            .keys()
                            .map(std::string::ToString::to_string)
                            .collect(),
                    };
                    map.insert(snapshot.environment_id, snapshot.clone());
                    changed.push((snapshot, flags));
                }
            }
        }
        self.by_environment.store(Arc::new(map));
        changed
    }

    /// Rebuilds what `changes` touched, swaps the new snapshots in, and returns them with the
    /// flag keys that changed. Called after the commit, with the writer held.
    pub fn apply(&self, conn: &Connection, changes: &Changes) -> Vec<(Arc<Snapshot>, Vec<String>)> {
        let mut map = HashMap::clone(&self.by_environment.load());
        let mut rebuilt = Vec::new();
        for id in &changes.removed_environments {
            map.remove(id);
        }
        for (&id, change) in &changes.environments {
            let current = map.get(&id).cloned();
            let result = match (current, change.full) {
                (Some(current), false) => served::head(conn, id).and_then(|head| match head {
                    Some(head) => current
                        .with_flags(conn, &head, change.flags.iter().cloned())
                        .map(Some),
                    None => Ok(None),
                }),
                _ => served::load(conn, id).and_then(|s| s.map(|s| Snapshot::build(&s)).transpose()),
            };
            match result {
                Ok(Some(snapshot)) => {
                    let snapshot = Arc::new(snapshot);
                    map.insert(id, snapshot.clone());
                    let changed = if change.full {
                        snapshot
                            .fragments
                            .keys()
                            .map(std::string::ToString::to_string)
                            .collect()
                    } else {
                        change.flags.iter().cloned().collect()
                    };
                    rebuilt.push((snapshot, changed));
                }
                Ok(None) => {
                    map.remove(&id);
                }
                Err(e) => {
                    // The change is committed; serving the older snapshot until the next
                    // change is the least bad outcome. This is not a user's mistake.
                    tracing::error!(environment_id = id, error = %e, "snapshot rebuild failed");
                }
            }
        }
        self.by_environment.store(Arc::new(map));
        rebuilt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed bundle, with a hostile string in it.
    const BUNDLE: &str = r#"{"flagstaff":1,"project":{"key":"shop","name":"Shop, \"the\" <script>"},"environment":"production","revision":12,"segments":[],"flags":[{"key":"new-checkout","type":"boolean","variations":[{"key":"on","value":true},{"key":"off","value":false}],"environments":{"production":{"enabled":true,"fallthrough":{"variation":"on"}}}}]}"#;

    #[test]
    fn the_bundle_etag_is_pinned_across_releases() {
        // Changing the hash changes every ETag SDKs, relays and caches hold: it must be noticed.
        let snapshot = Snapshot::from_bundle(3, 1, BUNDLE.as_bytes()).expect("a valid bundle");
        assert_eq!(snapshot.revision, 12);
        assert_eq!(snapshot.etag, "\"r12-52edcaf4376c1c4a\"");
        // XXH3-64 of nothing is 0x2d06800538d394c2 in the specification's test vectors.
        assert_eq!(bundle_etag(0, b""), "\"r0-2d06800538d394c2\"");
        assert_ne!(bundle_etag(12, b"a"), bundle_etag(12, b"b"));
    }
}
