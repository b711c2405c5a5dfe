//! Typed directive keys: a plugin declares each of its directives once, as a
//! `static` [`Key`] (one value: the innermost occurrence, or the default) or
//! [`List`] (every occurrence, outer scopes first), and reads it with its
//! Rust type and its default applied:
//!
//! ```
//! use axkit::config::{Key, Scopes};
//!
//! static GREETING: Key<String> = Key::new("Greeting")
//!     .default("Hello")
//!     .scopes(Scopes::SERVER.or(Scopes::LOCATION))
//!     .doc("What the greeting plugin says");
//!
//! // In the plugin's spec: `directives: || vec![GREETING.declare()]`;
//! // in a hook: `let greeting: &String = ctx.config().get(&GREETING);`
//! ```
//!
//! The value is converted once, when the config is loaded: a bad value is
//! a load error with file:line, directive and plugin like any other (and
//! `--check` finds it without starting a plugin). At request time a read is
//! an index and a type check, never a name lookup or a parse: each key
//! remembers its index in the registry it was last read from.
//!
//! The Rust type says how the directive is written ([`FromConfig`]):
//! `String`, `PathBuf`, `i64`, `usize` (a non-negative integer), `u64` (a
//! byte size: `10K`, `1M`), `Duration` (`30s`, `500ms`, at most a century;
//! `0` is "at once" unless the key says otherwise: [`DurationType`]), `bool`
//! (on/off), `Regex`, `Option<_>` of those (unset without a default) and
//! `Vec<_>` (several arguments). Anything else is a custom type with its own parse
//! function ([`Key::parsed`]), which may also name paths and read files
//! through the config's [`FileReader`] ([`Key::parsed_with_files`]).

use std::any::Any;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;

use super::directive::{Args, Directive, Merge, Scopes, ValueType, Words};
use super::snapshot::{Expect, FileReader};
use super::value::{Setting, Value, MAX_DURATION, MAX_DURATION_TEXT};

/// A converted value, as the loader keeps it for any key type.
pub(crate) type Typed = Arc<dyn Any + Send + Sync>;

/// How each argument of a key's directive is written: a [`ValueType`] that
/// can be built in a `const` (keys are `static`s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgType {
    String,
    Path,
    Integer,
    Size,
    Duration,
    OnOff,
    Regex,
    /// One of these words (compared ignoring case).
    Words(&'static [&'static str]),
}

impl ArgType {
    fn value_type(self) -> ValueType {
        match self {
            ArgType::String => ValueType::String,
            ArgType::Path => ValueType::Path,
            ArgType::Integer => ValueType::Integer,
            ArgType::Size => ValueType::Size,
            ArgType::Duration => ValueType::Duration,
            ArgType::OnOff => ValueType::OnOff,
            ArgType::Regex => ValueType::Regex,
            ArgType::Words(words) => ValueType::Enum(Words::Static(words)),
        }
    }
}

/// A Rust type a directive's arguments convert to: how the arguments are
/// written (their [`ValueType`] and count) and how one occurrence's parsed
/// arguments become a value.
pub trait FromConfig: Sized + Send + Sync + 'static {
    /// The type of each argument in the config file.
    const VALUE: ArgType;
    /// How many arguments one occurrence takes.
    const ARGS: Args;
    /// The value when the directive is neither written nor has a default;
    /// `None` when the type has no such value (a key of it then needs a
    /// default).
    const UNSET: Option<fn() -> Self> = None;
    /// One occurrence's arguments, already parsed as [`Self::VALUE`].
    fn from_args(args: &[Value]) -> Result<Self, String>;
}

/// The one argument of a one-argument directive.
fn one(args: &[Value]) -> Result<&Value, String> {
    args.first()
        .ok_or_else(|| "expected an argument".to_string())
}

fn mismatch(v: &Value) -> String {
    format!("unexpected value {v:?}")
}

impl FromConfig for String {
    const VALUE: ArgType = ArgType::String;
    const ARGS: Args = Args::One;
    fn from_args(args: &[Value]) -> Result<Self, String> {
        let v = one(args)?;
        v.as_str().map(str::to_string).ok_or_else(|| mismatch(v))
    }
}

impl FromConfig for PathBuf {
    const VALUE: ArgType = ArgType::Path;
    const ARGS: Args = Args::One;
    fn from_args(args: &[Value]) -> Result<Self, String> {
        let v = one(args)?;
        v.as_path().map(PathBuf::from).ok_or_else(|| mismatch(v))
    }
}

impl FromConfig for i64 {
    const VALUE: ArgType = ArgType::Integer;
    const ARGS: Args = Args::One;
    fn from_args(args: &[Value]) -> Result<Self, String> {
        let v = one(args)?;
        v.as_int().ok_or_else(|| mismatch(v))
    }
}

/// A count: an integer that may not be negative.
impl FromConfig for usize {
    const VALUE: ArgType = ArgType::Integer;
    const ARGS: Args = Args::One;
    fn from_args(args: &[Value]) -> Result<Self, String> {
        let v = one(args)?;
        let n = v.as_int().ok_or_else(|| mismatch(v))?;
        usize::try_from(n).map_err(|_| format!("expected a non-negative integer, got {n}"))
    }
}

/// A byte size (`512`, `10K`, `1M`, `1G`).
impl FromConfig for u64 {
    const VALUE: ArgType = ArgType::Size;
    const ARGS: Args = Args::One;
    fn from_args(args: &[Value]) -> Result<Self, String> {
        let v = one(args)?;
        v.as_size().ok_or_else(|| mismatch(v))
    }
}

impl FromConfig for Duration {
    const VALUE: ArgType = ArgType::Duration;
    const ARGS: Args = Args::One;
    fn from_args(args: &[Value]) -> Result<Self, String> {
        let v = one(args)?;
        v.as_duration().ok_or_else(|| mismatch(v))
    }
}

/// On/Off; also a flag directive (`Args::Flag`): present is true.
impl FromConfig for bool {
    const VALUE: ArgType = ArgType::OnOff;
    const ARGS: Args = Args::One;
    const UNSET: Option<fn() -> Self> = Some(|| false);
    fn from_args(args: &[Value]) -> Result<Self, String> {
        match one(args)? {
            Value::Bool(b) => Ok(*b),
            Value::Flag => Ok(true),
            v => Err(mismatch(v)),
        }
    }
}

impl FromConfig for Regex {
    const VALUE: ArgType = ArgType::Regex;
    const ARGS: Args = Args::One;
    fn from_args(args: &[Value]) -> Result<Self, String> {
        let v = one(args)?;
        v.as_regex().cloned().ok_or_else(|| mismatch(v))
    }
}

/// A directive that may be left unset: `None` unless written (or given a
/// default).
impl<T: FromConfig> FromConfig for Option<T> {
    const VALUE: ArgType = T::VALUE;
    const ARGS: Args = T::ARGS;
    const UNSET: Option<fn() -> Self> = Some(|| None);
    fn from_args(args: &[Value]) -> Result<Self, String> {
        T::from_args(args).map(Some)
    }
}

/// Several arguments of one type (`DirectiveIndex index.html index.htm`):
/// empty unless written (or given a default).
impl<T: FromConfig> FromConfig for Vec<T> {
    const VALUE: ArgType = T::VALUE;
    const ARGS: Args = Args::Many;
    const UNSET: Option<fn() -> Self> = Some(Vec::new);
    fn from_args(args: &[Value]) -> Result<Self, String> {
        args.iter()
            .map(|a| T::from_args(std::slice::from_ref(a)))
            .collect()
    }
}

/// How one occurrence becomes a value.
enum Convert<T> {
    /// From the arguments parsed as the type's [`ValueType`].
    Typed(fn(&[Value]) -> Result<T, String>),
    /// From the arguments as written, by the plugin's own function.
    Parsed(fn(&[&str]) -> Result<T, String>),
    /// The same, reading files through the config's reader.
    WithFiles(fn(&[&str], &mut FileReader<'_>) -> Result<T, String>),
}

impl<T> Convert<T> {
    fn run(&self, setting: &Setting, files: &mut FileReader<'_>) -> Result<T, String> {
        let words = || -> Vec<&str> { setting.args.iter().filter_map(Value::as_str).collect() };
        match self {
            Convert::Typed(f) => f(&setting.args),
            Convert::Parsed(f) => f(&words()),
            Convert::WithFiles(f) => f(&words(), files),
        }
    }
}

/// What every key declares, whatever its type.
struct Spec {
    name: &'static str,
    args: Args,
    value: ArgType,
    scopes: Scopes,
    default: Option<&'static str>,
    doc: &'static str,
    secret: bool,
    guard: bool,
    expect: Option<Expect>,
}

impl Spec {
    const fn new(name: &'static str, value: ArgType, args: Args) -> Spec {
        Spec {
            name,
            args,
            value,
            scopes: Scopes::ALL,
            default: None,
            doc: "",
            secret: false,
            guard: false,
            expect: None,
        }
    }

    fn directive(&self, merge: Merge, key: &'static dyn ErasedKey) -> Directive {
        let mut d = Directive::new(self.name, self.value.value_type())
            .args(self.args)
            .scopes(self.scopes)
            .doc(self.doc);
        if let Some(default) = self.default {
            d = d.default(default);
        }
        if merge == Merge::Append {
            d = d.append();
        }
        if self.secret {
            d = d.secret();
        }
        if self.guard {
            d = d.guard();
        }
        if let Some(what) = self.expect {
            d = d.expect(what);
        }
        d.key = Some(KeyRef(key));
        d
    }
}

/// The registry index a key was last found at, with the registry's
/// generation (`generation << 32 | index + 1`; 0 = not yet looked up), so
/// that a read costs one load and a compare after the first.
struct Slot(AtomicU64);

impl Slot {
    const fn new() -> Slot {
        Slot(AtomicU64::new(0))
    }

    fn get(&self, generation: u32) -> Option<usize> {
        let cached = self.0.load(Ordering::Relaxed);
        let index = cached & 0xffff_ffff;
        (cached >> 32 == u64::from(generation) && index != 0).then(|| index as usize - 1)
    }

    fn set(&self, generation: u32, index: usize) {
        let value = u64::from(generation) << 32 | (index as u64 + 1);
        self.0.store(value, Ordering::Relaxed);
    }
}

/// A directive with one value: the innermost occurrence in effect for the
/// scope (the last one written there), else the default, else the type's
/// unset value. Declare it as a `static`; see the module documentation.
pub struct Key<T: 'static> {
    spec: Spec,
    convert: Convert<T>,
    unset: Option<fn() -> T>,
    slot: Slot,
    _type: PhantomData<fn() -> T>,
}

/// A directive that may be written many times, each occurrence adding to
/// the list (outer scopes first): `MimeType`, `ErrorDocument`, `SetEnv`.
pub struct List<T: 'static> {
    spec: Spec,
    convert: Convert<T>,
    slot: Slot,
    _type: PhantomData<fn() -> T>,
}

macro_rules! builders {
    ($ty:ident) => {
        impl<T: Send + Sync + 'static> $ty<T> {
            /// Where the directive may be written (default: anywhere).
            pub const fn scopes(mut self, scopes: Scopes) -> Self {
                self.spec.scopes = scopes;
                self
            }

            /// The value when it is not written, as it would be written.
            pub const fn default(mut self, default: &'static str) -> Self {
                self.spec.default = Some(default);
                self
            }

            /// One line for `axkit --directives` and the docs.
            pub const fn doc(mut self, doc: &'static str) -> Self {
                self.spec.doc = doc;
                self
            }

            /// How many arguments an occurrence takes, when not what the
            /// type says (e.g. `Args::Range(1, 2)` for a custom type).
            pub const fn args(mut self, args: Args) -> Self {
                self.spec.args = args;
                self
            }

            /// A flag: written without arguments, present means on.
            pub const fn flag(mut self) -> Self {
                self.spec.args = Args::Flag;
                self
            }

            /// The arguments must be one of `words` (compared ignoring
            /// case; the value is spelled as in `words`).
            pub const fn one_of(mut self, words: &'static [&'static str]) -> Self {
                self.spec.value = ArgType::Words(words);
                self
            }

            /// The value is a secret (a password in a URL, a key): it is
            /// never quoted back in error messages or shown with the
            /// configuration.
            pub const fn secret(mut self) -> Self {
                self.spec.secret = true;
                self
            }

            /// The directive refuses requests (an access rule): written
            /// where its plugin does not run, it is a config error rather
            /// than a guard that guards nothing (see [`Directive::guard`]).
            pub const fn guard(mut self) -> Self {
                self.spec.guard = true;
                self
            }

            /// What must be at the path it names (a `PathBuf` key) for
            /// it to work: `axkit --check` looks (see [`Expect`]). A custom
            /// parse function says so itself ([`FileReader::expect`]).
            pub const fn expect(mut self, what: Expect) -> Self {
                self.spec.expect = Some(what);
                self
            }

            /// The directive's name.
            pub const fn name(&self) -> &'static str {
                self.spec.name
            }
        }
    };
}

builders!(Key);
builders!(List);

impl<T: FromConfig> Key<T> {
    /// A key whose value is written the way `T` says ([`FromConfig`]).
    pub const fn new(name: &'static str) -> Key<T> {
        Key {
            spec: Spec::new(name, T::VALUE, T::ARGS),
            convert: Convert::Typed(T::from_args),
            unset: T::UNSET,
            slot: Slot::new(),
            _type: PhantomData,
        }
    }
}

impl<T: Send + Sync + 'static> Key<T> {
    /// A key of a custom type: `parse` gets an occurrence's arguments as
    /// written and says what is wrong with them. It runs once, when the
    /// config is loaded. Give it a default, or make it
    /// [`optional`](Key::optional).
    pub const fn parsed(name: &'static str, parse: fn(&[&str]) -> Result<T, String>) -> Self {
        Key {
            spec: Spec::new(name, ArgType::String, Args::One),
            convert: Convert::Parsed(parse),
            unset: None,
            slot: Slot::new(),
            _type: PhantomData,
        }
    }

    /// A key of a custom type whose parse function also names paths or
    /// reads files (a secret kept in a file of its own, say) through
    /// `files`. A path found in the words means what
    /// [`FileReader::path`] says (relative: beneath `ServerRoot`), as for
    /// every path-typed key; what must be there for the directive to work
    /// is said with [`FileReader::expect`]. Files are read with
    /// [`FileReader::plugin_file`]: the master's reads are recorded into
    /// the configuration snapshot and a worker's are answered from it, so
    /// every worker of a generation, a restarted one included, sees what
    /// the master read.
    pub const fn parsed_with_files(
        name: &'static str,
        parse: fn(&[&str], &mut FileReader<'_>) -> Result<T, String>,
    ) -> Self {
        Key {
            spec: Spec::new(name, ArgType::String, Args::One),
            convert: Convert::WithFiles(parse),
            unset: None,
            slot: Slot::new(),
            _type: PhantomData,
        }
    }
}

/// The type of a duration key: `Duration`, or `Option<Duration>` (`None`
/// when unset).
///
/// What `0` means for such a key: as written, "at once", which for a
/// timeout fails every request. A key says when it means something else
/// ([`Key::nonzero`], [`Key::zero_is_no_limit`]), and its doc string
/// says what.
pub trait DurationType: FromConfig {
    /// [`FromConfig::from_args`], refusing `0`.
    const NONZERO: fn(&[Value]) -> Result<Self, String>;
}

impl DurationType for Duration {
    const NONZERO: fn(&[Value]) -> Result<Self, String> = nonzero;
}

impl DurationType for Option<Duration> {
    const NONZERO: fn(&[Value]) -> Result<Self, String> = some_nonzero;
}

impl<T: DurationType> Key<T> {
    /// `0` is refused when the config is loaded (a timeout that would
    /// expire at once).
    pub const fn nonzero(mut self) -> Self {
        self.convert = Convert::Typed(T::NONZERO);
        self
    }
}

impl Key<Duration> {
    /// `0` means no limit (as PHP's `max_execution_time 0`): the value is
    /// [`MAX_DURATION`], which whatever reads the key already handles, as
    /// it may be written.
    pub const fn zero_is_no_limit(mut self) -> Self {
        self.convert = Convert::Typed(zero_is_no_limit);
        self
    }
}

fn nonzero(args: &[Value]) -> Result<Duration, String> {
    match Duration::from_args(args)? {
        d if d.is_zero() => Err(format!(
            "0 would expire at once: expected a duration from 1ms to {MAX_DURATION_TEXT}"
        )),
        d => Ok(d),
    }
}

fn some_nonzero(args: &[Value]) -> Result<Option<Duration>, String> {
    nonzero(args).map(Some)
}

fn zero_is_no_limit(args: &[Value]) -> Result<Duration, String> {
    Duration::from_args(args).map(|d| if d.is_zero() { MAX_DURATION } else { d })
}

impl<T: Send + Sync + 'static> Key<T> {
    /// The value when the directive is neither written nor given a
    /// default, for a custom type ([`Key::parsed`]); keys of the common
    /// types get it from their type (`None`, an empty `Vec`, `false`).
    pub const fn unset(mut self, value: fn() -> T) -> Self {
        self.unset = Some(value);
        self
    }
}

impl<T: Send + Sync + 'static> Key<Option<T>> {
    /// Unset is `None` (see [`Key::unset`]).
    pub const fn optional(self) -> Self {
        self.unset(none::<T>)
    }
}

fn none<T>() -> Option<T> {
    None
}

impl<T: FromConfig + Clone> List<T> {
    /// A list whose items are written the way `T` says ([`FromConfig`]).
    pub const fn new(name: &'static str) -> List<T> {
        List {
            spec: Spec::new(name, T::VALUE, T::ARGS),
            convert: Convert::Typed(T::from_args),
            slot: Slot::new(),
            _type: PhantomData,
        }
    }
}

impl<T: Clone + Send + Sync + 'static> List<T> {
    /// A list of a custom type: `parse` turns one occurrence's arguments,
    /// as written, into an item (`ErrorDocument 404 /404.html`).
    pub const fn parsed(name: &'static str, parse: fn(&[&str]) -> Result<T, String>) -> Self {
        List {
            spec: Spec::new(name, ArgType::String, Args::One),
            convert: Convert::Parsed(parse),
            slot: Slot::new(),
            _type: PhantomData,
        }
    }

    /// A list of a custom type whose parse function also reads files
    /// (see [`Key::parsed_with_files`]).
    pub const fn parsed_with_files(
        name: &'static str,
        parse: fn(&[&str], &mut FileReader<'_>) -> Result<T, String>,
    ) -> Self {
        List {
            spec: Spec::new(name, ArgType::String, Args::One),
            convert: Convert::WithFiles(parse),
            slot: Slot::new(),
            _type: PhantomData,
        }
    }
}

impl<T: Send + Sync + 'static> Key<T> {
    /// The declaration to list in the plugin's `directives`.
    pub fn declare(&'static self) -> Directive {
        self.spec.directive(Merge::Replace, self)
    }

    pub(crate) fn slot(&self, generation: u32) -> Option<usize> {
        self.slot.get(generation)
    }

    pub(crate) fn remember(&self, generation: u32, index: usize) {
        self.slot.set(generation, index);
    }
}

impl<T: Clone + Send + Sync + 'static> List<T> {
    /// The declaration to list in the plugin's `directives`.
    pub fn declare(&'static self) -> Directive {
        self.spec.directive(Merge::Append, self)
    }

    pub(crate) fn slot(&self, generation: u32) -> Option<usize> {
        self.slot.get(generation)
    }

    pub(crate) fn remember(&self, generation: u32, index: usize) {
        self.slot.set(generation, index);
    }
}

/// A key of any type, as the loader sees it.
pub(crate) trait ErasedKey: Send + Sync {
    /// One occurrence converted (a parse function that reads files reads
    /// them through `files`).
    fn convert(&self, setting: &Setting, files: &mut FileReader<'_>) -> Result<Typed, String>;
    /// The value in effect for a scope from its occurrences (the winning
    /// one, or all of them for a list; none: unset). `None` when the key
    /// has no value at all there (no default, and a type without an unset
    /// value: the registry refuses such a declaration).
    fn merge(&self, settings: &[Arc<Setting>]) -> Option<Typed>;
    /// Whether a scope without any occurrence still has a value.
    fn has_unset(&self) -> bool;
}

impl<T: Send + Sync + 'static> ErasedKey for Key<T> {
    fn convert(&self, setting: &Setting, files: &mut FileReader<'_>) -> Result<Typed, String> {
        self.convert
            .run(setting, files)
            .map(|v| Arc::new(v) as Typed)
    }

    fn merge(&self, settings: &[Arc<Setting>]) -> Option<Typed> {
        match settings.last() {
            Some(s) => s.typed.clone(),
            None => self.unset.map(|f| Arc::new(f()) as Typed),
        }
    }

    fn has_unset(&self) -> bool {
        self.unset.is_some()
    }
}

impl<T: Clone + Send + Sync + 'static> ErasedKey for List<T> {
    fn convert(&self, setting: &Setting, files: &mut FileReader<'_>) -> Result<Typed, String> {
        self.convert
            .run(setting, files)
            .map(|v| Arc::new(v) as Typed)
    }

    fn merge(&self, settings: &[Arc<Setting>]) -> Option<Typed> {
        let items: Vec<T> = settings
            .iter()
            .filter_map(|s| s.typed.as_ref()?.downcast_ref::<T>().cloned())
            .collect();
        Some(Arc::new(items))
    }

    fn has_unset(&self) -> bool {
        true
    }
}

/// The key a [`Directive`] was declared from, compared by address (the
/// loader checks that a read names the very key that was declared).
#[derive(Clone, Copy)]
pub(crate) struct KeyRef(pub(crate) &'static dyn ErasedKey);

impl KeyRef {
    pub(crate) fn is(&self, key: *const ()) -> bool {
        std::ptr::addr_eq(self.0 as *const dyn ErasedKey, key)
    }
}

impl std::fmt::Debug for KeyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyRef")
    }
}

/// Parsers for the common value types, for a custom type's parse function
/// that reads one inside a larger argument (`Expires access+1h`).
pub mod parse {
    pub use super::super::value::{parse_bool as on_off, parse_duration as duration};
    pub use super::super::value::{parse_int as integer, parse_size as size};
}

#[cfg(test)]
#[path = "key_tests.rs"]
mod tests;
