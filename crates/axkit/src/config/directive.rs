//! How a plugin declares a configuration directive: its name, the shape of
//! its arguments, the type of each value, where it may appear, its default
//! and a one-line doc. The core does all parsing, validation and merging from
//! this declaration, so a plugin receives typed values with almost no code.

use std::borrow::Cow;

use super::key::KeyRef;
use super::snapshot::Expect;

/// The scopes a directive may appear in (a small bit set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Scopes(u8);

impl Scopes {
    /// Outside any block.
    pub const GLOBAL: Scopes = Scopes(1);
    /// Directly inside `<Server>`.
    pub const SERVER: Scopes = Scopes(2);
    /// Inside `<Location>` (at any depth).
    pub const LOCATION: Scopes = Scopes(4);
    /// Anywhere.
    pub const ALL: Scopes = Scopes(7);

    /// Whether every scope in `other` is in `self`.
    pub fn contains(self, other: Scopes) -> bool {
        self.0 & other.0 == other.0
    }

    /// Human-readable list, e.g. `global, <Server>`.
    pub fn describe(self) -> String {
        let mut parts = Vec::new();
        if self.contains(Scopes::GLOBAL) {
            parts.push("global");
        }
        if self.contains(Scopes::SERVER) {
            parts.push("<Server>");
        }
        if self.contains(Scopes::LOCATION) {
            parts.push("<Location>");
        }
        parts.join(", ")
    }
}

impl Scopes {
    /// Both sets (`|` in a `const` or `static`, where operators cannot be
    /// used).
    pub const fn or(self, other: Scopes) -> Scopes {
        Scopes(self.0 | other.0)
    }
}

impl std::ops::BitOr for Scopes {
    type Output = Scopes;
    fn bitor(self, rhs: Scopes) -> Scopes {
        Scopes(self.0 | rhs.0)
    }
}

/// How many arguments a directive takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Args {
    /// Exactly one argument.
    One,
    /// One or more arguments, each of the directive's value type.
    Many,
    /// Between `min` and `max` arguments (inclusive), each of the value type.
    Range(u8, u8),
    /// No arguments: its presence alone switches something on.
    Flag,
    /// A `<Name args…> … </Name>` block; the lines inside are handed to the
    /// plugin untyped, as [`crate::config::BlockLine`]s.
    Block,
}

/// The type of each argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueType {
    /// Any string.
    String,
    /// A filesystem path; relative paths are taken from `ServerRoot`, or
    /// without one from the server's working directory (as Apache's
    /// ServerRoot-less configs do): see [`FileReader::path`](super::FileReader::path).
    Path,
    /// A signed integer.
    Integer,
    /// A byte size: `512`, `10K`, `10M`, `1G` (powers of 1024).
    Size,
    /// A duration: `30` (seconds), `30s`, `500ms`, `5m`, `1h`, `2d`.
    Duration,
    /// `On`/`Off` (also yes/no, true/false, 1/0), case-insensitive.
    OnOff,
    /// A regular expression (Rust `regex` syntax), compiled at load time.
    Regex,
    /// One of a fixed set of words, compared case-insensitively; the value
    /// handed to the plugin is the spelling from this list.
    Enum(Words),
}

/// The words of an [`ValueType::Enum`]: a plugin's fixed list, or one a
/// script declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Words {
    Static(&'static [&'static str]),
    Owned(Vec<String>),
}

impl Words {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let (fixed, owned) = match self {
            Words::Static(w) => (*w, &[][..]),
            Words::Owned(w) => (&[][..], w.as_slice()),
        };
        fixed
            .iter()
            .copied()
            .chain(owned.iter().map(String::as_str))
    }

    /// `a|b|c`, for messages.
    pub fn join(&self) -> String {
        self.iter().collect::<Vec<_>>().join("|")
    }
}

impl ValueType {
    /// Short name used in `--directives` output and error messages.
    pub fn describe(&self) -> String {
        match self {
            ValueType::String => "string".into(),
            ValueType::Path => "path".into(),
            ValueType::Integer => "integer".into(),
            ValueType::Size => "size".into(),
            ValueType::Duration => "duration".into(),
            ValueType::OnOff => "on|off".into(),
            ValueType::Regex => "regex".into(),
            ValueType::Enum(words) => words.join(),
        }
    }
}

/// What happens when a directive is given more than once, within one scope
/// or across nested scopes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// The innermost, last occurrence wins (DocumentRoot, timeouts…).
    Replace,
    /// Every occurrence counts, outer scopes first (MimeType, SetEnv…).
    Append,
}

/// A directive declaration. Build one with [`Directive::new`] and the
/// builder methods:
///
/// ```
/// use axkit::config::{Directive, ValueType, Scopes};
/// let d = Directive::new("Greeting", ValueType::String)
///     .scopes(Scopes::SERVER | Scopes::LOCATION)
///     .default("Hello")
///     .doc("What to greet with");
/// ```
#[derive(Clone, Debug)]
pub struct Directive {
    /// Canonical spelling, e.g. `DocumentRoot`. Matching ignores case, `_`
    /// and `-`.
    pub name: Cow<'static, str>,
    pub args: Args,
    pub value: ValueType,
    pub scopes: Scopes,
    /// Default, written as it would be in a config file (one argument, or
    /// several separated by spaces for Many/Range).
    pub default: Option<Cow<'static, str>>,
    pub doc: Cow<'static, str>,
    pub merge: Merge,
    /// The value is never quoted back in messages or shown with the
    /// configuration (a password in a URL, a key).
    pub secret: bool,
    /// The directive refuses requests (an access rule): written in a scope
    /// whose plugin chain lacks its plugin, it would guard nothing there
    /// while the config reads as guarded, so the loader refuses that.
    pub guard: bool,
    /// What must be at the path each argument names (a path-typed
    /// directive), for `axkit --check` to look at.
    pub expect: Option<Expect>,
    /// The typed key this was declared from, if any (see [`super::Key`]).
    pub(crate) key: Option<KeyRef>,
}

impl Directive {
    /// A one-argument directive allowed everywhere, no default, replace-merge.
    pub fn new(name: impl Into<Cow<'static, str>>, value: ValueType) -> Directive {
        Directive {
            name: name.into(),
            args: Args::One,
            value,
            scopes: Scopes::ALL,
            default: None,
            doc: Cow::Borrowed(""),
            merge: Merge::Replace,
            secret: false,
            guard: false,
            expect: None,
            key: None,
        }
    }

    pub fn args(mut self, args: Args) -> Directive {
        self.args = args;
        self
    }

    pub fn scopes(mut self, scopes: Scopes) -> Directive {
        self.scopes = scopes;
        self
    }

    pub fn default(mut self, default: impl Into<Cow<'static, str>>) -> Directive {
        self.default = Some(default.into());
        self
    }

    pub fn doc(mut self, doc: impl Into<Cow<'static, str>>) -> Directive {
        self.doc = doc.into();
        self
    }

    /// Every occurrence counts (see [`Merge::Append`]).
    pub fn append(mut self) -> Directive {
        self.merge = Merge::Append;
        self
    }

    /// The value is a secret (see [`Directive::secret`]).
    pub fn secret(mut self) -> Directive {
        self.secret = true;
        self
    }

    /// The directive refuses requests (see [`Directive::guard`]).
    pub fn guard(mut self) -> Directive {
        self.guard = true;
        self
    }

    /// What must be at the paths it names (see [`Directive::expect`]).
    pub fn expect(mut self, what: Expect) -> Directive {
        self.expect = Some(what);
        self
    }

    /// Usage line for help and errors, e.g. `DocumentRoot <path>`.
    pub fn usage(&self) -> String {
        let ty = self.value.describe();
        match self.args {
            Args::One => format!("{} <{}>", self.name, ty),
            Args::Many => format!("{} <{}>...", self.name, ty),
            Args::Range(min, max) => format!("{} <{}>{{{},{}}}", self.name, ty, min, max),
            Args::Flag => self.name.to_string(),
            Args::Block => format!("<{} ...> ... </{}>", self.name, self.name),
        }
    }
}
