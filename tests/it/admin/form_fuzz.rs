//! Every form of the admin pages, posted with arbitrary field values (fields kept, dropped,
//! replaced by hostile text, repeated, or added), answers 2xx, 3xx or 4xx — never 5xx — and
//! leaves the stored data exactly as it was whenever it answers 4xx.
//!
//! The forms are found by crawling the pages of a seeded site as an admin; each case opens the
//! page that holds its form (so the CSRF token and versions are fresh), changes the fields as
//! drawn, posts, and compares a dump of every table before and after. A case whose form made a
//! change (a delete, a role change) is followed by re-seeding, so later cases still reach
//! every page.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::json;

use super::round_trip::{Site, any_text, hostile, run};
use crate::helpers::{TestApp, html_forms};

/// Forms posted (about 45 forms, each several times with different changes).
const CASES: u32 = 250;

/// A change to the fields of a form.
#[derive(Debug, Clone)]
enum Change {
    /// Replace a field's value.
    Replace(Index, String),
    /// Leave a field out.
    Drop(Index),
    /// Send a field twice, the second time with another value.
    Repeat(Index, String),
    /// Add a field the form does not have (or an indexed one it might read).
    Add(String, String),
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("csrf".to_owned()),
        Just("version".to_owned()),
        Just("rules[0].clauses[0].op".to_owned()),
        Just("rules[999999999999].id".to_owned()),
        Just("targets[1].values".to_owned()),
        Just("variations[3].key".to_owned()),
        Just("fallthrough.rollout.weight.on".to_owned()),
        Just("role".to_owned()),
        Just("enabled".to_owned()),
        Just("confirmed".to_owned()),
        any_text(),
    ]
}

/// Values that stress a parser as well as text: numbers at the edges, JSON, huge text.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any_text(),
        1 => Just("-1".to_owned()),
        1 => Just("18446744073709551616".to_owned()),
        1 => Just("1e309".to_owned()),
        1 => Just("NaN".to_owned()),
        1 => Just("100.0000001".to_owned()),
        1 => Just("[1, {\"a\": null}]".to_owned()),
        1 => Just("{\"x\": [".to_owned()),
        1 => Just("*rollout".to_owned()),
        1 => Just("x".repeat(100_000)),
        1 => hostile().prop_map(|s| s.repeat(50)),
    ]
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        4 => (any::<Index>(), value()).prop_map(|(i, v)| Change::Replace(i, v)),
        1 => any::<Index>().prop_map(Change::Drop),
        1 => (any::<Index>(), value()).prop_map(|(i, v)| Change::Repeat(i, v)),
        1 => (field_name(), value()).prop_map(|(n, v)| Change::Add(n, v)),
    ]
}

/// A case: which form, and what to change in it.
fn case() -> impl Strategy<Value = (Index, Vec<Change>)> {
    (any::<Index>(), prop::collection::vec(change(), 1..5))
}

/// The site every case starts from (imported again after a case that changed it).
fn seed() -> serde_json::Value {
    json!({
        "flagstaff": 1,
        "project": {"key": "shop", "name": "Shop"},
        "environments": [{"key": "development"}, {"key": "staging"}, {"key": "production"}],
        "segments": [{"key": "beta", "name": "Beta", "included": ["u-1", "Doe, Jane"],
                      "rules": [{"id": "r", "clauses": [{"attribute": "plan", "op": "in", "values": ["pro"]}]}]}],
        "flags": [
            {"key": "other", "type": "boolean",
             "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}]},
            {"key": "rich", "name": "Rich <b>flag</b>", "type": "string", "tags": ["web", "a, b"],
             "variations": [{"key": "a", "value": "A"}, {"key": "b", "value": "line\nbreak"}],
             "environments": {"production": {
                 "enabled": true, "off_variation": "a",
                 "prerequisites": [{"flag": "other", "variations": ["on"]}],
                 "targets": [{"variation": "b", "values": ["u-1", " padded "]}],
                 "rules": [{"id": "r1", "description": "first", "clauses": [
                     {"attribute": "email", "op": "ends_with", "values": ["@acme.com"]},
                     {"op": "in_segment", "values": ["beta"]}],
                   "serve": {"rollout": {"bucket_by": "org", "variations": [
                     {"variation": "b", "weight": 40000}, {"variation": "a", "weight": 60000}]}}}],
                 "fallthrough": {"variation": "b"}}}},
            {"key": "theme", "kind": "config", "type": "json",
             "variations": [{"key": "dark", "value": {"bg": "#000"}}, {"key": "light", "value": {"bg": "#fff"}}]}
        ]
    })
}

/// Every row of every table, as text; minus what a read may write (last-used times) and what a
/// refused sign-in must record (its throttling).
fn dump(app: &TestApp) -> Vec<String> {
    app.state
        .store
        .read_blocking(|c| {
            let tables: Vec<String> = c
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut rows = Vec::new();
            for table in tables {
                if ["sign_in", "throttl", "attempt"]
                    .iter()
                    .any(|w| table.contains(w))
                {
                    continue;
                }
                let mut statement = c.prepare(&format!("SELECT * FROM \"{table}\""))?;
                let columns: Vec<String> = statement.column_names().into_iter().map(str::to_owned).collect();
                let mut query = statement.query([])?;
                while let Some(row) = query.next()? {
                    let mut line = format!("{table}:");
                    for (i, column) in columns.iter().enumerate() {
                        if matches!(column.as_str(), "last_seen_at" | "last_used_at") {
                            continue;
                        }
                        let value: rusqlite::types::Value = row.get(i)?;
                        let _ = write!(line, " {column}={value:?}");
                    }
                    rows.push(line);
                }
            }
            rows.sort();
            Ok(rows)
        })
        .expect("dump the database")
}

/// The pages that hold forms: crawled once from the admin's start pages, following links that
/// stay on the admin pages (never signing out by a link).
async fn pages_with_forms(site: &mut Site) -> Vec<(String, String)> {
    let mut todo: Vec<String> = [
        "/projects",
        "/projects/shop/flags",
        "/projects/shop/configs",
        "/projects/shop/flags/rich?env=production",
        "/projects/shop/flags/theme",
        "/projects/shop/segments",
        "/projects/shop/segments/beta",
        "/users",
        "/account",
        "/audit",
        "/backup",
    ]
    .map(str::to_owned)
    .to_vec();
    let mut seen = BTreeSet::new();
    // Each form once (by action), from the first page found holding it.
    let mut forms = std::collections::BTreeMap::new();
    while let Some(page) = todo.pop() {
        if seen.len() >= 60 || !seen.insert(page.clone()) {
            continue;
        }
        let shown = site.browser.get(&page).await;
        if shown.status != 200 {
            continue;
        }
        for form in html_forms(&shown.body) {
            if form.method == "post" {
                forms.entry(form.action).or_insert_with(|| page.clone());
            }
        }
        let document = scraper::Html::parse_document(&shown.body);
        let links = scraper::Selector::parse("a[href]").unwrap();
        for a in document.select(&links) {
            let href = a.value().attr("href").unwrap_or("");
            let href = href.split('#').next().unwrap_or("");
            if (href.starts_with("/projects") || href.starts_with("/users") || href.starts_with("/audit"))
                && !href.contains("/insights")
                && !href.contains("/static/")
            {
                todo.push(href.to_owned());
            }
        }
    }
    forms.into_iter().map(|(action, page)| (page, action)).collect()
}

/// Brings the site back to the seed: the admin signed in as an admin, the project and its
/// flags and segments imported again (an import only writes what differs).
async fn reseed(site: &mut Site) {
    site.app
        .state
        .write_blocking(|tx| {
            tx.execute(
                "UPDATE users SET role = 'admin', disabled = 0, must_change_password = 0 \
                 WHERE email = 'admin@example.com'",
                [],
            )?;
            Ok(((), flagstaff::store::Changes::default()))
        })
        .expect("keep the admin");
    let (status, body) = site.api("POST", "/api/v1/import", Some(seed())).await;
    assert!((200..300).contains(&status), "re-seed: {status} {body}");
    if site.browser.get("/projects").await.status != 200 {
        // Signed out by a case: a new session straight from the store (signing in again would
        // meet the throttling of the failed password checks that earlier cases made).
        let store = &site.app.state.store;
        let id: i64 = store
            .read_blocking(|conn| {
                Ok(conn.query_row(
                    "SELECT id FROM users WHERE email = 'admin@example.com'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .expect("the admin's id");
        // Sessions live in the operational database (DESIGN.md §5).
        let token = store
            .operational_blocking(|tx| Ok(flagstaff::store::sessions::create(tx, id, 3_600_000)?.token))
            .expect("a new session");
        site.browser.cookies.clear();
        site.browser
            .cookies
            .insert(flagstaff::http::admin::session::SESSION_COOKIE.to_owned(), token);
    }
}

#[test]
fn every_admin_form_answers_4xx_to_bad_input_and_then_changes_nothing() {
    let forms = std::cell::RefCell::new(Vec::new());
    let posted = std::cell::Cell::new(0usize);
    let refused = std::cell::Cell::new(0usize);
    run(CASES, case(), async |site, (which, changes)| {
        if forms.borrow().is_empty() {
            reseed(site).await;
            let found = pages_with_forms(site).await;
            assert!(found.len() >= 30, "few forms found: {found:?}");
            *forms.borrow_mut() = found;
        }
        let (page, action) = which.get(&forms.borrow()).clone();
        let mut shown = site.browser.get(&page).await;
        if shown.status != 200 {
            reseed(site).await;
            shown = site.browser.get(&page).await;
        }
        let Some(form) = html_forms(&shown.body).into_iter().find(|f| f.action == action) else {
            // The form is not on the page now (e.g. a key revoked by an earlier case).
            reseed(site).await;
            return Ok(());
        };
        let mut fields = form.fields;
        for change in changes {
            match change {
                Change::Replace(i, v) if !fields.is_empty() => {
                    let at = i.index(fields.len());
                    fields[at].1 = v;
                }
                Change::Drop(i) if !fields.is_empty() => {
                    fields.remove(i.index(fields.len()));
                }
                Change::Repeat(i, v) if !fields.is_empty() => {
                    let name = fields[i.index(fields.len())].0.clone();
                    fields.push((name, v));
                }
                Change::Add(name, v) => fields.push((name, v)),
                _ => {}
            }
        }
        let before = dump(&site.app);
        let answer = site.browser.post(&action, &fields).await;
        posted.set(posted.get() + 1);
        prop_assert!(
            answer.status < 500,
            "POST {} (from {}) answered {}: {}\nfields: {:?}",
            action,
            page,
            answer.status,
            answer.body,
            fields
        );
        if (400..500).contains(&answer.status) {
            refused.set(refused.get() + 1);
            let after = dump(&site.app);
            let gone: Vec<&String> = before.iter().filter(|r| !after.contains(r)).collect();
            let new: Vec<&String> = after.iter().filter(|r| !before.contains(r)).collect();
            prop_assert!(
                gone.is_empty() && new.is_empty(),
                "POST {} answered {} but changed the database:\nremoved {:?}\nadded {:?}",
                action,
                answer.status,
                gone,
                new
            );
        } else {
            reseed(site).await;
        }
        Ok(())
    });
    eprintln!(
        "{} forms; {} posts, {} refused (4xx): {:?}",
        forms.borrow().len(),
        posted.get(),
        refused.get(),
        forms.borrow()
    );
    // The run reached the forms and was refused often enough to mean something.
    assert!(
        posted.get() > 0 && refused.get() > 0,
        "{} posted, {} refused",
        posted.get(),
        refused.get()
    );
}
