//! What a key is: whose limits it counts against (its [`Scope`]), the
//! request attributes that tell callers apart ([`Attrs`]), and the one text
//! encoding of it that the store, the counter sync, snapshots, usage reports
//! and redaction share. Nothing outside this module builds or reads key
//! text.
//!
//! The encoding puts NUL between parts; NUL is refused in attribute values
//! and absent from names, so two keys never share a text:
//! - a policy's key: policy NUL tier NUL, then `e` endpoint NUL when an
//!   endpoint rule gives the endpoint limits of its own (and the policy's
//!   key does not already hold the endpoint), then the attributes;
//! - an inline check's key: SOH (0x01, which no name contains) namespace
//!   NUL, then the attributes;
//! - a key's identity for alert rules, the same for every tier the key may
//!   be in: policy NUL NUL (an empty tier) then the attributes; an inline
//!   key is its own;
//! - an alert rule's window: STX (0x02) rule NUL, then the identity.
//!
//! The attributes come in key order (user, ip, token, endpoint), each one
//! letter naming it and its value, NUL between them. Short keys matter: a
//! store holds millions, so the text carries no more than this.

use serde::{Deserialize, Serialize};

/// Starts an inline check's key.
const INLINE: char = '\u{1}';

/// Starts an alert rule's window.
const OBSERVED: char = '\u{2}';

/// The letters naming the attributes inside key text, in key order.
const TAGS: [char; 4] = ['u', 'i', 't', 'e'];

/// A request attribute that can form part of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyAttr {
    /// The authenticated user.
    User,
    /// The client IP address.
    Ip,
    /// The API token.
    Token,
    /// The endpoint, such as `GET /orders`.
    Endpoint,
}

impl KeyAttr {
    /// Every attribute, in key order.
    pub const ALL: [KeyAttr; 4] = [KeyAttr::User, KeyAttr::Ip, KeyAttr::Token, KeyAttr::Endpoint];

    /// The letter naming the attribute inside key text.
    pub fn tag(self) -> char {
        TAGS[self as usize]
    }

    fn of_tag(tag: u8) -> Option<KeyAttr> {
        KeyAttr::ALL.into_iter().find(|attr| attr.tag() as u8 == tag)
    }

    /// The attribute's name in config and requests.
    pub fn name(self) -> &'static str {
        match self {
            KeyAttr::User => "user",
            KeyAttr::Ip => "ip",
            KeyAttr::Token => "token",
            KeyAttr::Endpoint => "endpoint",
        }
    }
}

/// Whose limits a key counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope<'a> {
    /// A policy's tier.
    Policy {
        /// The policy's name.
        policy: &'a str,
        /// The tier the check was decided in.
        tier: &'a str,
    },
    /// Limits an inline check carried, under the caller's namespace.
    Inline {
        /// The namespace.
        namespace: &'a str,
    },
}

impl<'a> Scope<'a> {
    /// The text every key of this scope starts with.
    pub fn prefix(&self) -> Box<str> {
        let mut out = String::new();
        self.encode(&mut out);
        out.into()
    }

    fn encode(&self, out: &mut String) {
        match *self {
            Scope::Policy { policy, tier } => push_parts(out, policy, tier),
            Scope::Inline { namespace } => {
                out.push(INLINE);
                out.push_str(namespace);
                out.push('\0');
            }
        }
    }

    /// The policy, for a policy's key.
    pub fn policy(&self) -> Option<&'a str> {
        match *self {
            Scope::Policy { policy, .. } => Some(policy),
            Scope::Inline { .. } => None,
        }
    }

    /// The tier, for a policy's key.
    pub fn tier(&self) -> Option<&'a str> {
        match *self {
            Scope::Policy { tier, .. } => Some(tier),
            Scope::Inline { .. } => None,
        }
    }

    /// The namespace, for an inline key.
    pub fn namespace(&self) -> Option<&'a str> {
        match *self {
            Scope::Policy { .. } => None,
            Scope::Inline { namespace } => Some(namespace),
        }
    }
}

/// The attributes of a key, by [`KeyAttr`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Attrs<'a>([Option<&'a str>; 4]);

impl<'a> Attrs<'a> {
    /// The values by attribute, in [`KeyAttr::ALL`]'s order.
    pub fn new(values: [Option<&'a str>; 4]) -> Self {
        Self(values)
    }

    /// The value of `attr`, if the key has it.
    pub fn get(&self, attr: KeyAttr) -> Option<&'a str> {
        self.0[attr as usize]
    }

    /// Sets (or with `None`, drops) the value of `attr`.
    pub fn set(&mut self, attr: KeyAttr, value: Option<&'a str>) {
        self.0[attr as usize] = value;
    }

    /// The attributes the key has, in key order, with their values.
    pub fn iter(&self) -> impl Iterator<Item = (KeyAttr, &'a str)> + '_ {
        KeyAttr::ALL
            .into_iter()
            .filter_map(|attr| Some((attr, self.get(attr)?)))
    }

    /// True when the key has no attribute.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }
}

/// A key, borrowed from the request and config that made it (or from key
/// text, [`Key::parse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key<'a> {
    /// Whose limits.
    pub scope: Scope<'a>,
    /// For a policy's key: the endpoint, when an endpoint rule gives it
    /// limits of its own and the attributes do not already hold it.
    pub endpoint_rule: Option<&'a str>,
    /// The request attributes.
    pub attrs: Attrs<'a>,
}

impl<'a> Key<'a> {
    /// Appends the key's text to `out`; returns where its attributes start
    /// in `out`.
    pub fn encode(&self, out: &mut String) -> usize {
        self.scope.encode(out);
        self.encode_after_scope(out)
    }

    /// [`encode`](Self::encode) with the scope's text already written:
    /// `prefix`, from [`Scope::prefix`] of this key's scope, made once per
    /// tier rather than on every check.
    pub fn encode_with(&self, prefix: &str, out: &mut String) -> usize {
        debug_assert_eq!(prefix, self.scope.prefix().as_ref());
        out.push_str(prefix);
        self.encode_after_scope(out)
    }

    fn encode_after_scope(&self, out: &mut String) -> usize {
        if let (Scope::Policy { .. }, Some(endpoint)) = (self.scope, self.endpoint_rule) {
            out.push(KeyAttr::Endpoint.tag());
            out.push_str(endpoint);
            out.push('\0');
        }
        let attrs_at = out.len();
        self.encode_attrs(out);
        attrs_at
    }

    /// The key's text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.encode(&mut out);
        out
    }

    /// Appends the key's identity for alert rules to `out`: the same for
    /// every tier (and endpoint rule) a policy's key may be decided in, so
    /// a key moved to another tier keeps its count, cooldown and owner.
    pub fn encode_identity(&self, out: &mut String) {
        match self.scope {
            Scope::Policy { policy, .. } => {
                push_parts(out, policy, "");
                self.encode_attrs(out);
            }
            Scope::Inline { .. } => {
                self.encode(out);
            }
        }
    }

    fn encode_attrs(&self, out: &mut String) {
        let mut after_first = false;
        // Slices, not array iterators: this runs on every check.
        for (tag, value) in TAGS.iter().zip(&self.attrs.0) {
            if let Some(value) = value {
                if after_first {
                    out.push('\0');
                }
                after_first = true;
                out.push(*tag);
                out.push_str(value);
            }
        }
    }

    /// Reads key text as [`encode`](Self::encode) writes it. An alert
    /// identity reads as a policy's key with an empty tier. `None` for text
    /// no key has (an alert rule's window, or garbage from a peer).
    pub fn parse(text: &'a str) -> Option<Key<'a>> {
        let mut parts = text.split('\0');
        let scope = match text.strip_prefix(INLINE) {
            Some(rest) => {
                parts = rest.split('\0');
                Scope::Inline {
                    namespace: parts.next()?,
                }
            }
            None if text.starts_with(OBSERVED) => return None,
            None => Scope::Policy {
                policy: parts.next()?,
                tier: parts.next()?,
            },
        };
        let mut key = Key {
            scope,
            endpoint_rule: None,
            attrs: Attrs::default(),
        };
        let mut parts = parts.peekable();
        let mut first = true;
        let mut last: Option<KeyAttr> = None;
        while let Some(part) = parts.next() {
            let attr = KeyAttr::of_tag(*part.as_bytes().first()?)?;
            let value = &part[1..];
            // The endpoint rule's part comes first, and is never last: the
            // attributes follow it, and leave the endpoint out.
            let rule_part = first && attr == KeyAttr::Endpoint && parts.peek().is_some();
            first = false;
            if rule_part && matches!(scope, Scope::Policy { .. }) {
                key.endpoint_rule = Some(value);
                continue;
            }
            // In key order, each at most once.
            if last.is_some_and(|last| last >= attr) {
                return None;
            }
            key.attrs.set(attr, Some(value));
            last = Some(attr);
        }
        (!key.attrs.is_empty()).then_some(key)
    }
}

fn push_parts(out: &mut String, first: &str, second: &str) {
    out.push_str(first);
    out.push('\0');
    out.push_str(second);
    out.push('\0');
}

/// True for an inline check's key text.
pub fn is_inline(text: &str) -> bool {
    text.starts_with(INLINE)
}

/// An alert rule's window over a key: rule and the key's identity.
pub mod observed {
    use super::OBSERVED;

    /// Appends the text of `rule`'s window to `out`; returns where the
    /// identity starts. The caller appends the identity
    /// ([`Key::encode_identity`](super::Key::encode_identity)).
    pub fn start(rule: &str, out: &mut String) -> usize {
        out.push(OBSERVED);
        out.push_str(rule);
        out.push('\0');
        out.len()
    }

    /// The rule and the key identity of a window's text; `None` for other
    /// text.
    pub fn parse(text: &str) -> Option<(&str, &str)> {
        text.strip_prefix(OBSERVED)?.split_once('\0')
    }

    /// True for an alert rule's window.
    pub fn is(text: &str) -> bool {
        text.starts_with(OBSERVED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9_:-]{0,8}"
    }

    fn value() -> impl Strategy<Value = String> {
        // Anything but NUL, which requests may not carry.
        "[^\u{0}]{1,12}"
    }

    #[derive(Debug, Clone)]
    struct Owned {
        scope: (String, Option<String>),
        endpoint_rule: Option<String>,
        attrs: [Option<String>; 4],
    }

    impl Owned {
        fn key(&self) -> Key<'_> {
            let scope = match &self.scope {
                (policy, Some(tier)) => Scope::Policy { policy, tier },
                (namespace, None) => Scope::Inline { namespace },
            };
            let mut attrs = Attrs::default();
            for attr in KeyAttr::ALL {
                attrs.set(attr, self.attrs[attr as usize].as_deref());
            }
            Key {
                scope,
                endpoint_rule: self.endpoint_rule.as_deref(),
                attrs,
            }
        }
    }

    fn key() -> impl Strategy<Value = Owned> {
        let attrs = proptest::array::uniform4(proptest::option::of(value()))
            .prop_filter("a key has an attribute", |a| a.iter().any(Option::is_some));
        (
            name(),
            proptest::option::of(name()),
            proptest::option::of(value()),
            attrs,
        )
            .prop_map(|(scope, tier, endpoint, attrs)| {
                // An endpoint rule's part: policies only, and only when the
                // attributes leave the endpoint out.
                let endpoint_rule = endpoint.filter(|_| tier.is_some() && attrs[3].is_none());
                Owned {
                    scope: (scope, tier),
                    endpoint_rule,
                    attrs,
                }
            })
    }

    proptest! {
        #[test]
        fn every_key_reads_back_from_its_text(owned in key()) {
            let key = owned.key();
            let mut text = String::new();
            let attrs_at = key.encode(&mut text);
            prop_assert_eq!(Key::parse(&text), Some(key));
            let mut attrs_only = String::new();
            Key { scope: key.scope, endpoint_rule: None, attrs: key.attrs }.encode_attrs(&mut attrs_only);
            prop_assert_eq!(&text[attrs_at..], attrs_only);
            prop_assert_eq!(is_inline(&text), key.scope.namespace().is_some());
        }

        #[test]
        fn an_identity_is_the_same_in_every_tier(owned in key(), other in name()) {
            let key = owned.key();
            let mut moved = key;
            if let Scope::Policy { policy, .. } = key.scope {
                moved.scope = Scope::Policy { policy, tier: &other };
                moved.endpoint_rule = None;
            }
            let (mut first, mut second) = (String::new(), String::new());
            key.encode_identity(&mut first);
            moved.encode_identity(&mut second);
            prop_assert_eq!(&first, &second);
            let read = Key::parse(&first).unwrap();
            prop_assert_eq!(read.attrs, key.attrs);
            prop_assert_eq!(read.scope.policy(), key.scope.policy());
        }

        #[test]
        fn no_text_reads_as_a_key_of_other_text(text in "[a-z\u{0}\u{1}\u{2}]{0,16}") {
            if let Some(key) = Key::parse(&text) {
                prop_assert_eq!(key.to_text(), text);
            }
        }
    }

    #[test]
    fn the_layout_is_what_snapshots_and_peers_hold() {
        let mut attrs = Attrs::default();
        attrs.set(KeyAttr::User, Some("alice"));
        attrs.set(KeyAttr::Token, Some("tk"));
        let key = Key {
            scope: Scope::Policy {
                policy: "api",
                tier: "free",
            },
            endpoint_rule: Some("POST /x"),
            attrs,
        };
        assert_eq!(key.to_text(), "api\0free\0ePOST /x\0ualice\0ttk");
        let inline = Key {
            scope: Scope::Inline {
                namespace: "drf:anon",
            },
            endpoint_rule: None,
            attrs,
        };
        assert_eq!(inline.to_text(), "\u{1}drf:anon\0ualice\0ttk");
        let mut window = String::new();
        let at = observed::start("hammering", &mut window);
        key.encode_identity(&mut window);
        assert_eq!(window, "\u{2}hammering\0api\0\0ualice\0ttk");
        assert_eq!(observed::parse(&window), Some(("hammering", &window[at..])));
        assert_eq!(Key::parse(&window), None);
    }
}
