//! "Connect an app" (issue 20): the exact code to paste into an app, per environment, for the
//! browser SDK, the Rust, Node and Python SDKs, any OpenFeature OFREP provider, and curl —
//! filled with this server's URL and, right after a key is created, that key.
//!
//! Keys are stored only as hashes, so a snippet carries a key only in the answer that created
//! it (the keys page's and the sample project's `201`, never kept by a cache: every admin page
//! is `no-store`); the environment's page shows placeholders.
//!
//! The URL is `--public-url` when set. Otherwise it is the origin the browser used for this
//! page — the `Host` header (or a trusted proxy's `X-Forwarded-Host`) — shown back to the
//! person who sent it and used for nothing else: a spoofed `Host` can only make someone's own
//! page show a wrong URL. A host that is not a plain `name[:port]` is not shown at all (the
//! bind address is, instead), so a snippet never carries quotes or markup from a header.

use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use flagstaff_eval::model::{Flag, FlagType};

use super::projects::frame;
use super::session::{self, AdminSession};
use super::view::{Layout, display_name};
use super::{PageError, ok};
use crate::AppState;
use crate::ops::proxy;
use crate::store::api_keys::{self, KeyInfo};
use crate::store::flags::{self, FlagFilter};
use crate::store::{environments, projects};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.route("/{project}/environments/{env}/connect", web::get().to(page));
}

/// Placeholders shown where no key was just created.
pub const SERVER_KEY_PLACEHOLDER: &str = "YOUR_SERVER_KEY";
pub const CLIENT_KEY_PLACEHOLDER: &str = "YOUR_CLIENT_KEY";

/// One piece of code to paste.
#[derive(Debug, Clone)]
pub struct Snippet {
    /// Unique in a page: the element id of its code, for the copy button.
    pub id: &'static str,
    pub title: &'static str,
    /// Which kind of key it needs: `server` or `client`.
    pub key_kind: &'static str,
    /// Whether it holds a real key (rather than a placeholder).
    pub has_key: bool,
    /// Where it runs and what to install.
    pub note: &'static str,
    pub text: String,
}

/// The URL snippets name: `--public-url`, else the origin this page was asked for (see the
/// module documentation), else the bind address.
pub fn public_url(state: &AppState, req: &HttpRequest) -> String {
    if let Some(url) = &state.settings.serve.frontend.public_url {
        return safe_url(url);
    }
    let scheme = proxy::scheme(req);
    let host = proxy::host(req);
    if matches!(scheme.as_str(), "http" | "https") && is_plain_host(&host) {
        return format!("{scheme}://{host}");
    }
    super::bootstrap::base_url(state)
}

/// `name`, `name:port`, `[v6]` or `[v6]:port`, in ASCII letters, digits, `.`, `-`, `:`.
fn is_plain_host(host: &str) -> bool {
    let port_ok = |p: &str| !p.is_empty() && p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit());
    if let Some(rest) = host.strip_prefix('[') {
        let Some((addr, tail)) = rest.split_once(']') else {
            return false;
        };
        let addr_ok = !addr.is_empty()
            && addr
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
        return addr_ok && (tail.is_empty() || tail.strip_prefix(':').is_some_and(port_ok));
    }
    let (name, port) = match host.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        && port.is_none_or(port_ok)
}

/// The configured public URL with anything a string literal or a shell word would have to
/// escape percent-encoded (`--public-url` refuses only spaces, `?` and `#`).
fn safe_url(url: &str) -> String {
    const UNSAFE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'\'')
        .add(b'\\')
        .add(b'`')
        .add(b'$')
        .add(b'<')
        .add(b'>')
        .add(b'{')
        .add(b'}')
        .add(b'!');
    percent_encoding::utf8_percent_encode(url, UNSAFE).to_string()
}

/// The flag the snippets read: a boolean one, client-side if there is one, else `my-flag`.
pub fn example_flag(flags: &[Flag]) -> String {
    let boolean = |f: &&Flag| f.flag_type == FlagType::Boolean && !f.archived;
    flags
        .iter()
        .filter(boolean)
        .find(|f| f.is_client_side())
        .or_else(|| flags.iter().find(boolean))
        .map_or_else(|| "my-flag".to_owned(), |f| f.key.clone())
}

/// The snippets for an environment at `base`, with the keys given (placeholders otherwise).
/// `flag` must be a valid flag key (letters, digits, `.`, `_`, `-`): it is written into string
/// literals unescaped, as are `base` (see [`public_url`]) and the keys (base64url).
pub fn snippets(base: &str, server_key: Option<&str>, client_key: Option<&str>, flag: &str) -> Vec<Snippet> {
    let server = server_key.unwrap_or(SERVER_KEY_PLACEHOLDER);
    let client = client_key.unwrap_or(CLIENT_KEY_PLACEHOLDER);
    let (curl_key, curl_kind, curl_has_key) = match (server_key, client_key) {
        (Some(key), _) => (key, "server", true),
        (None, Some(key)) => (key, "client", true),
        (None, None) => (CLIENT_KEY_PLACEHOLDER, "client", false),
    };
    vec![
        Snippet {
            id: "browser",
            title: "Browser (flagstaff.js)",
            key_kind: "client",
            has_key: client_key.is_some(),
            note: "In a web page: no build step, nothing to install. Values are evaluated on the server; rules never reach the browser.",
            text: format!(
                r#"<script type="module">
  import * as flags from '{base}/sdk/flagstaff.js';

  await flags.init({{
    url: '{base}',
    key: '{client}',
    context: {{ targetingKey: 'user-1', email: 'ada@example.com' }},
  }});
  console.log('{flag}:', flags.get('{flag}'));
  flags.on('change', (keys) => console.log('changed:', keys, flags.all()));
</script>"#
            ),
        },
        Snippet {
            id: "rust",
            title: "Rust",
            key_kind: "server",
            has_key: server_key.is_some(),
            note: "Cargo.toml: flagstaff-sdk (sdk/rust in the Flagstaff repository), tokio with the macros and rt-multi-thread features, serde_json.",
            text: format!(
                r#"use flagstaff_sdk::Client;
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), flagstaff_sdk::Error> {{
    let client = Client::builder("{base}", "{server}").build().await?;
    let user = flagstaff_sdk::context(json!({{"targetingKey": "user-1", "email": "ada@example.com"}}));
    println!("{flag}: {{}}", client.bool_value("{flag}", &user, false));
    Ok(())
}}"#
            ),
        },
        Snippet {
            id: "node",
            title: "Node.js",
            key_kind: "server",
            has_key: server_key.is_some(),
            note: "npm install ./sdk/node (from a checkout of the Flagstaff repository); save as app.mjs.",
            text: format!(
                r"import {{ Flagstaff }} from '@flagstaff/node';

const client = await Flagstaff.start({{ url: '{base}', key: '{server}' }});
const user = {{ targetingKey: 'user-1', email: 'ada@example.com' }};
console.log('{flag}:', client.boolValue('{flag}', user, false));
await client.close();"
            ),
        },
        Snippet {
            id: "python",
            title: "Python",
            key_kind: "server",
            has_key: server_key.is_some(),
            note: "pip install ./sdk/python (from a checkout of the Flagstaff repository).",
            text: format!(
                r#"import flagstaff

with flagstaff.Client("{base}", "{server}") as client:
    user = {{"targetingKey": "user-1", "email": "ada@example.com"}}
    print("{flag}:", client.bool_value("{flag}", user, False))"#
            ),
        },
        Snippet {
            id: "openfeature",
            title: "OpenFeature (OFREP)",
            key_kind: "client",
            has_key: client_key.is_some(),
            note: "npm install @openfeature/web-sdk @openfeature/ofrep-web-provider. Any OFREP provider works the same way (Go, Java, .NET, Python, Rust…): base URL and an Authorization header; on a server, use a server key.",
            text: format!(
                r"import {{ OpenFeature }} from '@openfeature/web-sdk';
import {{ OFREPWebProvider }} from '@openfeature/ofrep-web-provider';

await OpenFeature.setContext({{ targetingKey: 'user-1' }});
await OpenFeature.setProviderAndWait(new OFREPWebProvider({{
  baseUrl: '{base}',
  headers: [['Authorization', 'Bearer {client}']],
}}));
console.log('{flag}:', OpenFeature.getClient().getBooleanValue('{flag}', false));"
            ),
        },
        Snippet {
            id: "curl",
            title: "curl",
            key_kind: curl_kind,
            has_key: curl_has_key,
            note: "Every flag this key may read, evaluated for one context (OFREP's bulk evaluation).",
            text: format!(
                r#"curl -sS -X POST '{base}/ofrep/v1/evaluate/flags' \
  -H 'Authorization: Bearer {curl_key}' \
  -H 'Content-Type: application/json' \
  -d '{{"context": {{"targetingKey": "user-1", "email": "ada@example.com"}}}}'"#
            ),
        },
    ]
}

/// The keys of an environment that work, as hints (kind and visible start).
pub struct KeyHint {
    pub kind: &'static str,
    pub name: String,
    pub prefix: String,
}

pub fn key_hints(keys: &[KeyInfo]) -> Vec<KeyHint> {
    keys.iter()
        .filter(|k| k.revoked_at.is_none())
        .map(|k| KeyHint {
            kind: k.kind.as_str(),
            name: k.name.clone(),
            prefix: k.prefix.clone(),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "admin/connect.html")]
struct ConnectPage {
    layout: Layout,
    env_key: String,
    env_name: String,
    base: String,
    keys: Vec<KeyHint>,
    snippets: Vec<Snippet>,
}

async fn page(
    req: HttpRequest,
    session: AdminSession,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    let state = session::state(&req)?;
    let (project, env) = path.into_inner();
    let layout = frame(&state, &session, &project, "Connect an app", "environments").await?;
    let (environment, keys, list) = state
        .store
        .read(move |conn| {
            projects::head(conn, &project)?;
            let environment = environments::get(conn, &project, &env)?;
            let keys = api_keys::list(conn, environment.id)?;
            let list = flags::list(conn, &project, &FlagFilter::default())?;
            Ok((environment, keys, list))
        })
        .await?;
    let base = public_url(&state, &req);
    let snippets = snippets(&base, None, None, &example_flag(&list));
    ok(&ConnectPage {
        layout,
        env_name: display_name(&environment.name, &environment.key).to_owned(),
        env_key: environment.key,
        base,
        keys: key_hints(&keys),
        snippets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_hosts_are_shown() {
        for good in [
            "localhost",
            "localhost:8080",
            "flags.example.com",
            "[::1]:8080",
            "[::1]",
            "10.0.0.1:80",
        ] {
            assert!(is_plain_host(good), "{good}");
        }
        for bad in [
            "",
            "a b",
            "x'y",
            "evil.com/<script>",
            "h:",
            "h:99999x",
            "[::1]x",
            "[]:80",
            "a\"b",
            "é.com",
        ] {
            assert!(!is_plain_host(bad), "{bad}");
        }
    }

    #[test]
    fn a_public_url_never_breaks_out_of_a_literal() {
        let url = safe_url("https://flags.example.com/it's/\"x\"/`$(id)`");
        assert!(!url.contains(['\'', '"', '`', '$']), "{url}");
        assert_eq!(
            safe_url("https://flags.example.com/base"),
            "https://flags.example.com/base"
        );
    }

    #[test]
    fn snippets_carry_the_keys_given_and_placeholders_otherwise() {
        let list = snippets("http://h:1", Some("fs_srv_S"), None, "f");
        let by_id = |id: &str| list.iter().find(|s| s.id == id).unwrap();
        assert!(by_id("rust").text.contains("fs_srv_S") && by_id("rust").has_key);
        assert!(by_id("browser").text.contains(CLIENT_KEY_PLACEHOLDER) && !by_id("browser").has_key);
        assert!(by_id("curl").text.contains("Bearer fs_srv_S"));
        assert!(list.iter().all(|s| s.text.contains("http://h:1")));
        let list = snippets("http://h:1", None, Some("fs_cli_C"), "f");
        assert_eq!(list.iter().find(|s| s.id == "curl").unwrap().key_kind, "client");
    }
}
