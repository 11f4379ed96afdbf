//! The on-disk copy of the last bundle: a start-up source when no server answers.
//!
//! The file is JSON: `{"flagstaff_sdk_cache": 1, "key": "<fingerprint>", "etag": …,
//! "saved_at": "<RFC 3339>", "bundle": <the bundle as served>}`. It is replaced atomically
//! (written to a temporary file in the same directory, synced, renamed), so a reader or a crash
//! never sees half a file. The fingerprint (a truncated SHA-256 of the server key, not the key)
//! keeps a client from starting on a copy written for another environment's key.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use flagstaff_eval::model::Bundle;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The format version written in the file.
const CACHE_FORMAT: u32 = 1;

/// What a cache file holds.
#[derive(Debug)]
pub(crate) struct Cached {
    pub bundle: Bundle,
    pub etag: Option<String>,
}

#[derive(Deserialize)]
struct CacheFile {
    flagstaff_sdk_cache: u32,
    key: String,
    etag: Option<String>,
    bundle: Bundle,
}

/// Why a cache file could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CacheError {
    #[error("no such file")]
    Missing,
    #[error("cannot read it: {0}")]
    Io(#[from] io::Error),
    #[error("not a Flagstaff SDK cache file: {0}")]
    Malformed(String),
    #[error("cache format {0} is not supported (expected {CACHE_FORMAT})")]
    Format(u32),
    #[error("it was written for another server key")]
    OtherKey,
}

/// A fingerprint of a server key that does not reveal it.
pub(crate) fn key_fingerprint(server_key: &str) -> String {
    let digest = Sha256::digest(format!("flagstaff-sdk-cache:{server_key}").as_bytes());
    digest[..8].iter().fold(String::with_capacity(16), |mut out, b| {
        use std::fmt::Write as _;
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Reads the cache file at `path`, written for the key with `fingerprint`.
pub(crate) fn read(path: &Path, fingerprint: &str) -> Result<Cached, CacheError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(CacheError::Missing),
        Err(e) => return Err(CacheError::Io(e)),
    };
    let file: CacheFile = serde_json::from_slice(&bytes).map_err(|e| CacheError::Malformed(e.to_string()))?;
    if file.flagstaff_sdk_cache != CACHE_FORMAT {
        return Err(CacheError::Format(file.flagstaff_sdk_cache));
    }
    if file.key != fingerprint {
        return Err(CacheError::OtherKey);
    }
    Ok(Cached {
        bundle: file.bundle,
        etag: file.etag,
    })
}

/// Replaces the cache file at `path` with `bundle_json` (the bundle's bytes as served).
pub(crate) fn write(
    path: &Path,
    fingerprint: &str,
    etag: Option<&str>,
    bundle_json: &[u8],
) -> io::Result<()> {
    let saved_at = OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default();
    let mut out = Vec::with_capacity(bundle_json.len() + 200);
    out.extend_from_slice(b"{\"flagstaff_sdk_cache\":");
    out.extend_from_slice(CACHE_FORMAT.to_string().as_bytes());
    out.extend_from_slice(b",\"key\":");
    serde_json::to_writer(&mut out, fingerprint)?;
    out.extend_from_slice(b",\"etag\":");
    serde_json::to_writer(&mut out, &etag)?;
    out.extend_from_slice(b",\"saved_at\":");
    serde_json::to_writer(&mut out, &saved_at)?;
    out.extend_from_slice(b",\"bundle\":");
    out.extend_from_slice(bundle_json);
    out.extend_from_slice(b"}\n");
    write_atomically(path, &out)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the cache path names no file"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".{}.{:08x}.tmp",
        std::process::id(),
        rand::random::<u32>()
    ));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        // Make the rename itself durable; not every platform can open a directory.
        if let Ok(dir) = fs::File::open(&dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUNDLE: &str = r#"{"flagstaff":1,"project":{"key":"shop","name":"Shop"},"environment":"production",
        "revision":12,"segments":[],"flags":[{"key":"f","type":"boolean",
        "variations":[{"key":"on","value":true},{"key":"off","value":false}],
        "environments":{"production":{"enabled":true,"fallthrough":{"variation":"on"},"version":3}}}]}"#;

    #[test]
    fn a_written_file_reads_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("flags.json");
        let print = key_fingerprint("fs_srv_secret");
        write(&path, &print, Some("\"r12-abc\""), BUNDLE.as_bytes()).expect("write");
        let cached = read(&path, &print).expect("read back");
        assert_eq!(cached.etag.as_deref(), Some("\"r12-abc\""));
        assert_eq!(cached.bundle.revision, 12);
        assert_eq!(cached.bundle.flags[0].key, "f");
        assert_eq!(
            cached.bundle,
            flagstaff_eval::parse_bundle(BUNDLE.as_bytes()).expect("bundle")
        );
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("flags.json")]);
    }

    #[test]
    fn the_file_does_not_contain_the_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("flags.json");
        write(&path, &key_fingerprint("fs_srv_secret"), None, BUNDLE.as_bytes()).expect("write");
        let text = fs::read_to_string(&path).expect("read");
        assert!(!text.contains("fs_srv_secret"));
        assert!(
            read(&path, &key_fingerprint("fs_srv_secret"))
                .expect("read")
                .etag
                .is_none()
        );
    }

    #[test]
    fn a_replacement_overwrites_the_previous_copy() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("flags.json");
        let print = key_fingerprint("k");
        write(&path, &print, Some("\"a\""), BUNDLE.as_bytes()).expect("write");
        let newer = BUNDLE.replace("\"revision\":12", "\"revision\":13");
        write(&path, &print, Some("\"b\""), newer.as_bytes()).expect("rewrite");
        let cached = read(&path, &print).expect("read");
        assert_eq!(
            (cached.bundle.revision, cached.etag.as_deref()),
            (13, Some("\"b\""))
        );
    }

    #[test]
    fn unusable_files_say_why() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("flags.json");
        let print = key_fingerprint("k");
        assert!(matches!(read(&path, &print), Err(CacheError::Missing)));

        fs::write(&path, b"{\"flagstaff_sdk_cache\":1,").expect("write");
        assert!(matches!(read(&path, &print), Err(CacheError::Malformed(_))));

        write(&path, &print, None, BUNDLE.as_bytes()).expect("write");
        assert!(matches!(
            read(&path, &key_fingerprint("other")),
            Err(CacheError::OtherKey)
        ));

        let text = fs::read_to_string(&path)
            .expect("read")
            .replace("\"flagstaff_sdk_cache\":1", "\"flagstaff_sdk_cache\":9");
        fs::write(&path, text).expect("write");
        assert!(matches!(read(&path, &print), Err(CacheError::Format(9))));

        write(&path, &print, None, b"{\"flagstaff\":1}").expect("write");
        assert!(matches!(read(&path, &print), Err(CacheError::Malformed(_))));
    }

    #[test]
    fn a_failed_replacement_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        // A directory where the file should be: the final rename fails.
        let path = dir.path().join("flags.json");
        fs::create_dir(&path).expect("mkdir");
        assert!(write(&path, "x", None, BUNDLE.as_bytes()).is_err());
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("flags.json")]);
        assert!(
            write(
                &dir.path().join("missing").join("flags.json"),
                "x",
                None,
                BUNDLE.as_bytes()
            )
            .is_err()
        );
    }
}
