//! What every page shows around its content (navigation, the signed-in user, notices), and
//! small formatting helpers for templates.

use flagstaff_eval::model::{FlagKind, FlagType};
use rusqlite::Connection;

use super::PageError;
use super::assets;
use super::session::AdminSession;
use crate::store::users::Role;
use crate::store::{Result, StoreError};

/// The flag types by name, in the order the type selects offer them.
pub fn type_names() -> [&'static str; 4] {
    FlagType::ALL.map(FlagType::as_str)
}

/// The flag kinds by name, in the order the kind selects offer them.
pub fn kind_names() -> [&'static str; 2] {
    FlagKind::ALL.map(FlagKind::as_str)
}

/// A project in the navigation.
#[derive(Debug, Clone)]
pub struct ProjectNav {
    pub key: String,
    pub name: String,
}

/// The frame of every signed-in page.
#[derive(Debug, Clone)]
pub struct Layout {
    pub title: String,
    pub email: String,
    pub role: &'static str,
    pub csrf: String,
    pub is_admin: bool,
    pub is_editor: bool,
    /// The project the page belongs to, if any.
    pub project: Option<ProjectNav>,
    /// Every project, for the switcher.
    pub projects: Vec<ProjectNav>,
    /// Which navigation entry is current (`flags`, `configs`, `users`…).
    pub section: &'static str,
    /// A one-line confirmation of what was just done.
    pub notice: Option<&'static str>,
    pub css: &'static str,
    pub js: &'static str,
    pub icon: &'static str,
}

impl Layout {
    pub fn new(session: &AdminSession, title: impl Into<String>, section: &'static str) -> Layout {
        Layout {
            title: title.into(),
            email: session.user.email.clone(),
            role: session.user.role.as_str(),
            csrf: session.csrf.clone(),
            is_admin: session.can(Role::Admin),
            is_editor: session.can(Role::Editor),
            project: None,
            projects: Vec::new(),
            section,
            notice: None,
            css: assets::css_url(),
            js: assets::js_url(),
            icon: assets::icon_url(),
        }
    }

    /// The page belongs to a project.
    pub fn in_project(mut self, key: &str, name: &str) -> Layout {
        self.project = Some(ProjectNav {
            key: key.to_owned(),
            name: display_name(name, key).to_owned(),
        });
        self
    }

    /// Lists the projects for the switcher.
    pub fn with_projects(mut self, projects: Vec<ProjectNav>) -> Layout {
        self.projects = projects;
        self
    }

    /// Shows the notice named by a `?notice=` code, if it is one we know.
    pub fn notice(mut self, code: Option<&str>) -> Layout {
        self.notice = code.and_then(notice_text);
        self
    }

    pub fn is_section(&self, section: &str) -> bool {
        self.section == section
    }

    pub fn project_key(&self) -> &str {
        self.project.as_ref().map_or("", |p| p.key.as_str())
    }

    pub fn is_project(&self, key: &str) -> bool {
        self.project_key() == key
    }
}

/// Errors shown beside the fields that caused them, by field name (`""`: the form as a whole).
#[derive(Debug, Default, Clone)]
pub struct FieldErrors(pub Vec<(String, String)>);

impl FieldErrors {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push((field.into(), message.into()));
    }

    /// The first error of a field.
    pub fn get(&self, field: impl AsRef<str>) -> Option<&str> {
        let field = field.as_ref();
        self.0.iter().find(|(f, _)| f == field).map(|(_, m)| m.as_str())
    }

    pub fn has(&self, field: impl AsRef<str>) -> bool {
        self.get(field).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Errors whose field no input of the form shows (listed at the top of the form).
    pub fn others(&self, shown: &[&str]) -> Vec<&(String, String)> {
        self.0
            .iter()
            .filter(|(f, _)| !shown.contains(&f.as_str()))
            .collect()
    }

    /// Turns a store error about a submitted form into errors beside its fields: validation
    /// errors by path, a conflict (a key in use) beside `conflict_field`. Anything else is not
    /// the form's fault and stays an error.
    pub fn from_store(e: StoreError, conflict_field: &str) -> std::result::Result<FieldErrors, PageError> {
        let mut errors = FieldErrors::default();
        match e {
            StoreError::Invalid(list) => {
                for v in list {
                    errors.add(v.path, v.message);
                }
            }
            StoreError::BadRequest { message, path } => errors.add(path.unwrap_or_default(), message),
            StoreError::Conflict { message } => errors.add(conflict_field, message),
            other => return Err(other.into()),
        }
        Ok(errors)
    }
}

/// Notices are fixed texts chosen by a code, so a link cannot make a page say anything else.
fn notice_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "saved" => "Saved.",
        "created" => "Created.",
        "deleted" => "Deleted.",
        "restored" => "Restored. The restored version is now live.",
        "revoked" => "Revoked.",
        "password" => "Your password was changed. Your other sessions were signed out.",
        "signed-out-others" => "Your other sessions were signed out.",
        "toggled" => "Changed.",
        "scheduled" => "Scheduled.",
        "cancelled" => "Cancelled.",
        "promoted" => "Promoted. The promoted states are now live.",
        "sample-exists" => "The sample project exists already: here it is.",
        _ => return None,
    })
}

/// Every project for the navigation, by key.
pub fn projects_nav(conn: &Connection) -> Result<Vec<ProjectNav>> {
    let mut stmt = conn.prepare_cached("SELECT key, name FROM projects ORDER BY key")?;
    let rows = stmt.query_map([], |r| {
        let key: String = r.get(0)?;
        let name: String = r.get(1)?;
        Ok(ProjectNav {
            name: display_name(&name, &key).to_owned(),
            key,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// A thing's name, or its key when it has none.
pub fn display_name<'a>(name: &'a str, key: &'a str) -> &'a str {
    if name.trim().is_empty() { key } else { name }
}

/// A time (Unix ms) as `2025-01-31 17:05 UTC`.
pub fn when(ms: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// How long ago a time (Unix ms) was, roughly: `just now`, `5 min ago`, `3 h ago`, `12 days ago`.
pub fn ago(ms: i64, now_ms: i64) -> String {
    let secs = (now_ms - ms).max(0) / 1000;
    match secs {
        0..60 => "just now".to_owned(),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86_400 => format!("{} h ago", secs / 3600),
        _ => {
            let days = secs / 86_400;
            if days == 1 {
                "1 day ago".to_owned()
            } else {
                format!("{days} days ago")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_well() {
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
        assert_eq!(ago(1_000, 30_000), "just now");
        assert_eq!(ago(0, 3_600_000 * 5), "5 h ago");
        assert_eq!(ago(0, 86_400_000 * 3), "3 days ago");
    }

    #[test]
    fn only_known_notices_show() {
        assert_eq!(notice_text("saved"), Some("Saved."));
        assert_eq!(notice_text("<script>"), None);
    }
}
