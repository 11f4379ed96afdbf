//! Backup (admins only): download a consistent copy of the database.
//!
//! `flagstaff.db` is only ever replaced whole, by a rename (see `ops::backup`), so the file as
//! opened once is a consistent database holding every change committed before: the download
//! streams that open file. The download is a form post (CSRF-checked) and is audited.

use actix_web::http::header;
use actix_web::web::{self, Bytes, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use futures_util::stream;
use tokio::io::AsyncReadExt as _;

use super::session::{self, AdminSession, Posted};
use super::view::{self, Layout};
use super::{PageError, ok};
use crate::store::audit::{self, Entity};
use crate::store::users::Role;
use crate::store::{Changes, StoreError, now_ms};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.route("", web::get().to(page))
        .route("", web::post().to(download));
}

#[derive(Template)]
#[template(path = "admin/backup.html")]
struct BackupPage {
    layout: Layout,
    size: String,
}

fn human_size(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} bytes"),
        1024..1_048_576 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / 1_048_576.0),
    }
}

async fn page(req: HttpRequest, session: AdminSession) -> Result<HttpResponse, PageError> {
    session.require(Role::Admin)?;
    let state = session::state(&req)?;
    let nav = state.store.read(view::projects_nav).await?;
    let size = std::fs::metadata(state.store.path())
        .map(|m| human_size(m.len()))
        .unwrap_or_default();
    ok(&BackupPage {
        layout: Layout::new(&session, "Backup", "backup").with_projects(nav),
        size,
    })
}

async fn download(req: HttpRequest, posted: Posted) -> Result<HttpResponse, PageError> {
    posted.require(Role::Admin)?;
    let state = session::state(&req)?;
    // Opened before anything else: the copy holds every change committed before this moment.
    let file = tokio::fs::File::open(state.store.path())
        .await
        .map_err(|e| PageError::internal(StoreError::io("cannot open the database for a backup", e)))?;
    let length = file.metadata().await.map(|m| m.len()).ok();
    let actor = posted.session.actor();
    state
        .write(move |tx| {
            let entity = Entity {
                kind: "backup",
                key: None,
                project: None,
                environment: None,
            };
            audit::record(tx, &actor, "download", entity, None, None)?;
            Ok(((), Changes::default()))
        })
        .await?;
    tracing::info!(email = %posted.session.user.email, "backup downloaded");
    let body = stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<Bytes, std::io::Error>(Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    let stamp = view::when(now_ms())
        .replace([' ', ':'], "-")
        .trim_end_matches("-UTC")
        .to_owned();
    let mut resp = HttpResponse::Ok();
    resp.content_type("application/vnd.sqlite3")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"flagstaff-{stamp}.db\""),
        ))
        // The database holds password and key hashes: no cache keeps it.
        .insert_header((header::CACHE_CONTROL, "no-store"));
    if let Some(length) = length {
        resp.no_chunking(length);
    }
    Ok(resp.streaming(body))
}
