//! API tokens are secrets. Wherever weir shows a key to people (the usage
//! API and dashboard, alert records and webhooks), a token shows as a short
//! prefix and a stable hash, unless the operator turned that off with
//! `--show-tokens`. The hash is the same on every node and across restarts,
//! so a redacted token still identifies one caller.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};

use crate::key::{self, Key, KeyAttr};

/// Marks a redacted token: a token value itself never holds it.
pub const MARK: char = '…';

static SHOW: AtomicBool = AtomicBool::new(false);

/// Shows tokens in full (`--show-tokens`), or redacts them (the default).
pub fn show_tokens(show: bool) {
    SHOW.store(show, Ordering::Relaxed);
}

/// `value` as shown: up to four leading characters (none for a short
/// token), [`MARK`], and eight hex digits of its SHA-256.
pub fn token(value: &str) -> String {
    if SHOW.load(Ordering::Relaxed) {
        return value.to_string();
    }
    let hash = Sha256::digest(value.as_bytes());
    let shown = value.chars().count() / 4;
    let prefix: String = value.chars().take(shown.min(4)).collect();
    let hex: String = hash[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{MARK}{hex}")
}

/// Store key text as shown: its token attribute redacted. An alert
/// rule's window shows its rule and the key's identity so. Text that is no
/// key shows as [`MARK`] alone: what it holds cannot be told apart.
pub fn store_key(text: &str) -> Cow<'_, str> {
    if SHOW.load(Ordering::Relaxed) {
        return Cow::Borrowed(text);
    }
    let (window, identity) = match key::observed::parse(text) {
        Some((_, identity)) => (&text[..text.len() - identity.len()], identity),
        None => ("", text),
    };
    let Some(mut parsed) = Key::parse(identity) else {
        return Cow::Owned(MARK.to_string());
    };
    let Some(value) = parsed.attrs.get(KeyAttr::Token) else {
        return Cow::Borrowed(text);
    };
    let shown = token(value);
    parsed.attrs.set(KeyAttr::Token, Some(&shown));
    let mut out = window.to_string();
    parsed.encode(&mut out);
    Cow::Owned(out)
}

/// A URL as shown in the config view and logs: its scheme and host only.
/// Webhook URLs are often credentials (a Slack hook's path, a
/// `user:pass@host`), so neither their user info, path nor query is shown.
pub fn url(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else {
        return "…".into();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let more = rest.len() > authority.len() || authority.len() > host.len();
    format!("{scheme}://{host}{}", if more { "/…" } else { "" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_shows_its_scheme_and_host_only() {
        let slack = url("https://hooks.slack.com/services/T000/B000/XXXXSECRET");
        assert_eq!(slack, "https://hooks.slack.com/…");
        assert_eq!(
            url("http://user:pass@hooks.example.com:8080/x?token=1"),
            "http://hooks.example.com:8080/…"
        );
        assert_eq!(url("https://example.com"), "https://example.com");
        assert_eq!(url("not a url"), "…");
    }

    #[test]
    fn a_token_keeps_a_short_prefix_and_a_stable_hash() {
        let shown = token("sk_live_4eC39HqLyjWDarjtT1zdp7dc");
        assert!(shown.starts_with("sk_l…"), "{shown}");
        assert_eq!(shown.len(), "sk_l".len() + MARK.len_utf8() + 8);
        assert_eq!(shown, token("sk_live_4eC39HqLyjWDarjtT1zdp7dc"));
        assert_ne!(shown, token("sk_live_4eC39HqLyjWDarjtT1zdp7dd"));
        assert!(token("abc").starts_with(MARK));
    }

    #[test]
    fn only_the_token_attribute_of_a_store_key_is_redacted() {
        let key = "tiered\0team\0uteam\0tsk_live_secret_value";
        let shown = store_key(key);
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.starts_with("tiered\0team\0uteam\0tsk_l…"), "{shown}");
        let window = store_key("\u{2}rule\0tiered\0\0uteam\0tsk_live_secret_value");
        assert!(
            window.starts_with("\u{2}rule\0tiered\0\0uteam\0tsk_l…"),
            "{window}"
        );
        assert_eq!(
            store_key("tiered\0team\0tsk_live_secret_value\0uteam"),
            MARK.to_string()
        );
        // A tier or policy that starts with "t" is not an attribute.
        assert_eq!(store_key("trial\0tier\0uann"), "trial\0tier\0uann");
        let inline = store_key("\u{1}drf:token\0tabcdefgh12345678");
        assert!(!inline.contains("abcdefgh12345678"), "{inline}");
    }
}
