//! Typed directive values, the parsers that produce them from config text,
//! and the frozen, merged configuration of one `<Location>` that plugins
//! read at request time.
//!
//! Parsing is strict (no `+5`, no `1.5G`, no trailing junk) because a config
//! value that is silently read as something else is worse than an error at
//! load time; every error says what was expected.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;

use super::directive::{Args, Directive, ValueType};
use super::key::{Key, List, Typed};
use super::registry::{DirectiveId, Registry};
use super::snapshot::Expect;

/// A key read but declared by no loaded plugin: a bug in the plugin.
#[cold]
fn undeclared(name: &str) -> ! {
    panic!("directive `{name}` is read but no loaded plugin declares it (add its key to the plugin's directives)")
}

/// One typed argument.
#[derive(Clone, Debug)]
pub enum Value {
    Str(String),
    Path(PathBuf),
    Int(i64),
    Size(u64),
    Duration(Duration),
    Bool(bool),
    Regex(regex::Regex),
    /// The value of an `Args::Flag` directive that is present.
    Flag,
    /// The untyped body of an `Args::Block` directive.
    Block(Vec<BlockLine>),
}

impl Value {
    /// The string of a `Str` value (String and Enum directives).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_path(&self) -> Option<&Path> {
        match self {
            Value::Path(p) => Some(p),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_size(&self) -> Option<u64> {
        match self {
            Value::Size(s) => Some(*s),
            _ => None,
        }
    }

    pub fn as_duration(&self) -> Option<Duration> {
        match self {
            Value::Duration(d) => Some(*d),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_regex(&self) -> Option<&Regex> {
        match self {
            Value::Regex(r) => Some(r),
            _ => None,
        }
    }

    pub fn as_block(&self) -> Option<&[BlockLine]> {
        match self {
            Value::Block(b) => Some(b),
            _ => None,
        }
    }
}

/// A line inside a plugin-declared block: `Name arg arg…`, with nested
/// blocks flattened as lines whose `children` are set.
#[derive(Clone, Debug)]
pub struct BlockLine {
    pub name: String,
    pub args: Vec<String>,
    pub file: Arc<str>,
    pub line: u32,
    pub children: Vec<BlockLine>,
}

/// One occurrence of a directive: its typed arguments and where it was
/// written (`file` is `<default>` for a declared default,
/// `<built-in>` for the built-in config).
///
/// For an `Args::Block` directive, `args[0]` is the [`Value::Block`] body
/// and `args[1..]` are the arguments written inside `<Name …>`, typed like
/// any other argument, so `value(name)` is always the body.
#[derive(Clone)]
pub struct Setting {
    pub args: Vec<Value>,
    pub file: Arc<str>,
    pub line: u32,
    /// The arguments converted by the directive's typed key, if it was
    /// declared from one.
    pub(crate) typed: Option<Typed>,
    /// What must be at the paths it names (see [`Expect`]), for `--check`.
    pub(crate) expected: Vec<(PathBuf, Expect)>,
}

impl std::fmt::Debug for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setting")
            .field("args", &self.args)
            .field("file", &self.file)
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

impl Setting {
    /// Whether this is a declared default rather than something written in
    /// a config file (file lines start at 1, so line 0 is unambiguous).
    pub fn is_default(&self) -> bool {
        self.line == 0 && &*self.file == DEFAULT_FILE
    }
}

/// The `file` of settings that come from a directive's declared default.
pub(crate) const DEFAULT_FILE: &str = "<default>";

/// Limit on a compiled regex (program and lazy DFA), so that a hostile or
/// careless `Foo (a{1000}){1000}` cannot eat memory at load time.
const REGEX_LIMIT: usize = 1 << 20;

/// Longest piece of a bad value quoted back in an error message.
const QUOTE_MAX: usize = 60;

/// Quotes `text` for an error message, shortened so that a megabyte of
/// garbage does not end up in a log line.
pub(crate) fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_MAX) {
        Some((cut, _)) => format!("{:?}...", &text[..cut]),
        None => format!("{text:?}"),
    }
}

/// Parses one argument as `ty`. The error says what was expected.
pub(crate) fn parse_value(ty: &ValueType, text: &str) -> Result<Value, String> {
    match ty {
        ValueType::String => Ok(Value::Str(text.to_string())),
        ValueType::Path => Ok(Value::Path(PathBuf::from(text))),
        ValueType::Integer => parse_int(text).map(Value::Int),
        ValueType::Size => parse_size(text).map(Value::Size),
        ValueType::Duration => parse_duration(text).map(Value::Duration),
        ValueType::OnOff => parse_bool(text).map(Value::Bool),
        ValueType::Regex => parse_regex(text).map(Value::Regex),
        ValueType::Enum(words) => words
            .iter()
            .find(|w| w.eq_ignore_ascii_case(text))
            .map(|w| Value::Str(w.to_string()))
            .ok_or_else(|| format!("expected one of {}, got {}", words.join(), quote(text))),
    }
}

/// Digits only, overflow-checked, as u64.
fn parse_digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.bytes().try_fold(0u64, |acc, b| {
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// An integer (`-7`, `42`), overflow-checked; the error says what was
/// expected.
pub fn parse_int(text: &str) -> Result<i64, String> {
    let (neg, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("expected an integer, got {}", quote(text)));
    }
    // i64's own parser does the range check (including i64::MIN).
    let parsed = if neg {
        text.parse::<i64>()
    } else {
        digits.parse::<i64>()
    };
    parsed.map_err(|_| {
        format!(
            "expected an integer between {} and {}, got {}",
            i64::MIN,
            i64::MAX,
            quote(text)
        )
    })
}

/// A byte size: `512`, `10K`, `10M`, `1G` (powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "expected a size like 512, 10K, 10M or 1G, got {}",
            quote(text)
        )
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n = parse_digits(digits).ok_or_else(bad)?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" => 10,
        "m" | "mb" => 20,
        "g" | "gb" => 30,
        "t" | "tb" => 40,
        _ => return Err(bad()),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size {} is too large", quote(text)))
}

/// The longest duration accepted: a century, beyond any sensible timeout
/// or lifetime, and short enough that a deadline this far from now
/// (`Instant::now() + d`, an expiry date) never overflows and panics.
pub const MAX_DURATION: Duration = Duration::from_secs(36_500 * 86_400);

/// [`MAX_DURATION`] as it is written.
pub(crate) const MAX_DURATION_TEXT: &str = "36500d";

/// A duration: `30` (seconds), `30s`, `500ms`, `5m`, `1h`, `1m30s`; at most
/// [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "expected a duration like 30, 30s, 500ms, 5m, 1h or 1m30s, got {}",
            quote(text)
        )
    };
    let too_large = || {
        format!(
            "duration {} is too large (at most {MAX_DURATION_TEXT})",
            quote(text)
        )
    };
    let at_most = |d: Duration| {
        if d > MAX_DURATION {
            Err(too_large())
        } else {
            Ok(d)
        }
    };
    if text.is_empty() {
        return Err(bad());
    }
    // A bare number is seconds; otherwise a sequence of NUMBER UNIT pairs.
    if let Some(secs) = parse_digits(text) {
        return at_most(Duration::from_secs(secs));
    }
    let mut millis: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let d = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n = parse_digits(&rest[..d]).ok_or_else(bad)?;
        rest = &rest[d..];
        let u = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let per = match rest[..u].to_ascii_lowercase().as_str() {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        rest = &rest[u..];
        millis = n
            .checked_mul(per)
            .and_then(|v| v.checked_add(millis))
            .ok_or_else(too_large)?;
    }
    at_most(Duration::from_millis(millis))
}

/// On/Off (also yes/no, true/false, 1/0), ignoring case.
pub fn parse_bool(text: &str) -> Result<bool, String> {
    const TRUE: [&str; 4] = ["on", "yes", "true", "1"];
    const FALSE: [&str; 4] = ["off", "no", "false", "0"];
    if TRUE.iter().any(|w| w.eq_ignore_ascii_case(text)) {
        Ok(true)
    } else if FALSE.iter().any(|w| w.eq_ignore_ascii_case(text)) {
        Ok(false)
    } else {
        Err(format!("expected On or Off, got {}", quote(text)))
    }
}

/// A config regex matches a path or a name as one line: `.` matches a
/// newline too, or a decoded `%0a` would sidestep `^/private/.*$` (Apache
/// compiles with DOTALL for the same reason; `$` is end-only already).
fn parse_regex(text: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(text)
        .dot_matches_new_line(true)
        .size_limit(REGEX_LIMIT)
        .dfa_size_limit(REGEX_LIMIT)
        .build()
        .map_err(|e| {
            // regex's syntax errors span several lines (pattern, caret,
            // "error: …"); keep the one that says what is wrong so the
            // message fits on the file:line it belongs to.
            let full = e.to_string();
            let reason = full
                .lines()
                .find_map(|l| l.strip_prefix("error: "))
                .unwrap_or_else(|| full.trim())
                .to_string();
            format!("invalid regular expression {}: {reason}", quote(text))
        })
}

/// The declared default of `d` as a setting, if it has one. `Err` means the
/// declaration itself is broken.
pub(crate) fn default_setting(d: &Directive) -> Result<Option<Arc<Setting>>, String> {
    let Some(text) = d.default.as_deref() else {
        return Ok(None);
    };
    let args = match d.args {
        // A Flag's default says whether it is on when not written.
        Args::Flag => {
            if parse_bool(text)? {
                vec![Value::Flag]
            } else {
                return Ok(None);
            }
        }
        Args::Block => return Err("a block directive cannot have a default".to_string()),
        Args::One => vec![parse_value(&d.value, text)?],
        Args::Many | Args::Range(..) => {
            let words: Vec<&str> = text.split_whitespace().collect();
            let (min, max) = match d.args {
                Args::Range(min, max) => (usize::from(min), usize::from(max)),
                _ => (1, usize::MAX),
            };
            if words.len() < min || words.len() > max {
                return Err(format!(
                    "default {} has the wrong number of arguments",
                    quote(text)
                ));
            }
            words
                .into_iter()
                .map(|w| parse_value(&d.value, w))
                .collect::<Result<_, _>>()?
        }
    };
    let mut setting = Setting {
        args,
        file: Arc::from(DEFAULT_FILE),
        line: 0,
        typed: None,
        expected: Vec::new(),
    };
    if let Some(key) = d.key {
        // A default is part of the program, not of a config: it reads no
        // file (the reader has nothing to give).
        let nothing = super::Snapshot::default();
        let mut files = super::FileReader::new(Some(&nothing));
        setting.typed = Some(key.0.convert(&setting, &mut files)?);
    }
    Ok(Some(Arc::new(setting)))
}

/// The effective configuration of one scope after merging global → Server →
/// Location. Cheap to look up; never changes after load.
pub struct LocationConfig {
    pub(crate) registry: Arc<Registry>,
    /// Indexed by DirectiveId: the effective occurrences (Replace: at most
    /// one; Append: all, outer first). Defaults are filled in.
    pub(crate) settings: Vec<Vec<Arc<Setting>>>,
    /// Indexed by DirectiveId: the value of a typed key in effect here
    /// (see [`Key`]); `None` for directives declared without one.
    pub(crate) typed: Vec<Option<Typed>>,
}

impl std::fmt::Debug for LocationConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocationConfig")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl LocationConfig {
    /// A config holding only the declared defaults: handy for plugin unit
    /// tests that need a `LocationConfig` without a config file.
    pub fn with_defaults(registry: Arc<Registry>) -> LocationConfig {
        let settings: Vec<Vec<Arc<Setting>>> = registry
            .iter()
            .map(|(_, d, _)| match default_setting(d) {
                Ok(Some(s)) => vec![s],
                _ => Vec::new(),
            })
            .collect();
        LocationConfig::new(registry, settings)
    }

    /// The frozen config of a scope from its effective occurrences: each
    /// typed key's value is worked out here, once.
    pub(crate) fn new(registry: Arc<Registry>, settings: Vec<Vec<Arc<Setting>>>) -> LocationConfig {
        let typed = registry
            .iter()
            .zip(&settings)
            .map(|((_, d, _), set)| d.key.and_then(|k| k.0.merge(set)))
            .collect();
        LocationConfig {
            registry,
            settings,
            typed,
        }
    }

    /// The value of `key` in effect here, its default applied.
    ///
    /// # Panics
    /// If no loaded plugin declared `key` (it is missing from its
    /// `directives`): a hook that panics answers 500 and the log names the
    /// directive.
    #[inline]
    pub fn get<T: Send + Sync + 'static>(&self, key: &'static Key<T>) -> &T {
        self.try_get(key).unwrap_or_else(|| undeclared(key.name()))
    }

    /// As [`get`](Self::get), or `None` if no loaded plugin declared `key`
    /// (for a plugin that reads another plugin's directive, which may not
    /// be loaded).
    #[inline]
    pub fn try_get<T: Send + Sync + 'static>(&self, key: &'static Key<T>) -> Option<&T> {
        let index = self.index(
            key.name(),
            key as *const Key<T> as *const (),
            |g| key.slot(g),
            |g, i| key.remember(g, i),
        )?;
        self.typed.get(index)?.as_deref()?.downcast_ref()
    }

    /// Every item of `list` in effect here, outer scopes first.
    ///
    /// # Panics
    /// As [`get`](Self::get).
    pub fn list<T: Clone + Send + Sync + 'static>(&self, list: &'static List<T>) -> &[T] {
        let index = self.index(
            list.name(),
            list as *const List<T> as *const (),
            |g| list.slot(g),
            |g, i| list.remember(g, i),
        );
        let items = index.and_then(|i| self.typed.get(i)?.as_deref()?.downcast_ref::<Vec<T>>());
        items.unwrap_or_else(|| undeclared(list.name()))
    }

    /// Whether the directive of `key` is written in the config for this
    /// scope (or an enclosing one), as opposed to only having a default.
    pub fn is_written<T: Send + Sync + 'static>(&self, key: &'static Key<T>) -> bool {
        self.settings_of(key).iter().any(|s| !s.is_default())
    }

    /// The occurrences of `key` in effect here, with where each was written.
    pub fn settings_of<T: Send + Sync + 'static>(&self, key: &'static Key<T>) -> &[Arc<Setting>] {
        match self.index(
            key.name(),
            key as *const Key<T> as *const (),
            |g| key.slot(g),
            |g, i| key.remember(g, i),
        ) {
            Some(i) => self.settings.get(i).map_or(&[], Vec::as_slice),
            None => &[],
        }
    }

    /// Where a key's values are in this registry: remembered in the key
    /// after the first read, so later reads cost a load and a compare.
    fn index(
        &self,
        name: &str,
        key: *const (),
        cached: impl Fn(u32) -> Option<usize>,
        remember: impl Fn(u32, usize),
    ) -> Option<usize> {
        let generation = self.registry.generation();
        if let Some(i) = cached(generation) {
            return Some(i);
        }
        let id = self.registry.lookup(name)?;
        // The directive of that name must be this very key's declaration.
        if !self.registry.directive(id).key.is_some_and(|k| k.is(key)) {
            return None;
        }
        remember(generation, id.0 as usize);
        Some(id.0 as usize)
    }

    /// The registry the ids index into.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Effective occurrences of a directive by name: the winning one for
    /// Replace directives, all of them (outer scopes first) for Append
    /// ones, or the default when none is written. Empty for an unknown
    /// name. For script hosts, whose scripts name directives at run time;
    /// a Rust plugin reads its typed keys ([`get`](Self::get)).
    pub fn settings(&self, name: &str) -> &[Arc<Setting>] {
        match self.registry.lookup(name) {
            Some(id) => self.settings_by_id(id),
            None => &[],
        }
    }

    /// As [`settings`](Self::settings), for a plugin that resolved the id
    /// once at startup.
    pub fn settings_by_id(&self, id: DirectiveId) -> &[Arc<Setting>] {
        self.settings.get(id.0 as usize).map_or(&[], Vec::as_slice)
    }
}

/// Reads by name, for the loader's unit tests, which check raw values of
/// directives their made-up plugins declare without keys.
#[cfg(test)]
impl LocationConfig {
    pub(crate) fn values(&self, name: &str) -> &[Value] {
        self.settings(name)
            .last()
            .map_or(&[], |s| s.args.as_slice())
    }
    pub(crate) fn value(&self, name: &str) -> Option<&Value> {
        self.values(name).first()
    }
    pub(crate) fn str(&self, name: &str) -> Option<&str> {
        self.value(name)?.as_str()
    }
    pub(crate) fn path(&self, name: &str) -> Option<&Path> {
        self.value(name)?.as_path()
    }
    pub(crate) fn int(&self, name: &str) -> Option<i64> {
        self.value(name)?.as_int()
    }
    pub(crate) fn size(&self, name: &str) -> Option<u64> {
        self.value(name)?.as_size()
    }
    pub(crate) fn duration(&self, name: &str) -> Option<Duration> {
        self.value(name)?.as_duration()
    }
    pub(crate) fn flag(&self, name: &str) -> bool {
        matches!(self.value(name), Some(Value::Bool(true) | Value::Flag))
    }
    pub(crate) fn regex(&self, name: &str) -> Option<&Regex> {
        self.value(name)?.as_regex()
    }
    pub(crate) fn is_set(&self, name: &str) -> bool {
        self.settings(name).iter().any(|s| !s.is_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(ty: ValueType, text: &str) -> String {
        parse_value(&ty, text).unwrap_err()
    }

    #[test]
    fn integers() {
        assert_eq!(
            parse_value(&ValueType::Integer, "42").unwrap().as_int(),
            Some(42)
        );
        assert_eq!(
            parse_value(&ValueType::Integer, "-7").unwrap().as_int(),
            Some(-7)
        );
        assert_eq!(
            parse_value(&ValueType::Integer, "-9223372036854775808")
                .unwrap()
                .as_int(),
            Some(i64::MIN)
        );
        assert_eq!(
            err(ValueType::Integer, "four"),
            "expected an integer, got \"four\""
        );
        for bad in ["", "+5", "-", "1.5", " 1", "1_000", "٣"] {
            assert!(parse_value(&ValueType::Integer, bad).is_err(), "{bad}");
        }
        assert_eq!(
            err(ValueType::Integer, "9223372036854775808"),
            "expected an integer between -9223372036854775808 and 9223372036854775807, \
             got \"9223372036854775808\""
        );
    }

    #[test]
    fn sizes() {
        let size = |t| parse_value(&ValueType::Size, t).unwrap().as_size().unwrap();
        assert_eq!(size("512"), 512);
        assert_eq!(size("512b"), 512);
        assert_eq!(size("10K"), 10 << 10);
        assert_eq!(size("10kb"), 10 << 10);
        assert_eq!(size("10M"), 10 << 20);
        assert_eq!(size("10m"), 10 << 20);
        assert_eq!(size("10MB"), 10 << 20);
        assert_eq!(size("1G"), 1 << 30);
        assert_eq!(size("2tb"), 2 << 40);
        assert_eq!(size("0"), 0);
        assert_eq!(
            err(ValueType::Size, "10Q"),
            "expected a size like 512, 10K, 10M or 1G, got \"10Q\""
        );
        for bad in ["", "M", "-1", "1.5G", "10 M", "10MiB", "1e3"] {
            assert!(parse_value(&ValueType::Size, bad).is_err(), "{bad}");
        }
        assert_eq!(
            err(ValueType::Size, "99999999T"),
            "size \"99999999T\" is too large"
        );
        assert!(parse_value(&ValueType::Size, "99999999999999999999").is_err());
    }

    #[test]
    fn durations() {
        let dur = |t| {
            parse_value(&ValueType::Duration, t)
                .unwrap()
                .as_duration()
                .unwrap()
        };
        assert_eq!(dur("30"), Duration::from_secs(30));
        assert_eq!(dur("30s"), Duration::from_secs(30));
        assert_eq!(dur("500ms"), Duration::from_millis(500));
        assert_eq!(dur("5m"), Duration::from_secs(300));
        assert_eq!(dur("1h"), Duration::from_secs(3600));
        assert_eq!(dur("2d"), Duration::from_secs(2 * 86400));
        assert_eq!(dur("1m30s"), Duration::from_secs(90));
        assert_eq!(dur("1H1M1S1MS"), Duration::from_millis(3_661_001));
        assert_eq!(
            err(ValueType::Duration, "soon"),
            "expected a duration like 30, 30s, 500ms, 5m, 1h or 1m30s, got \"soon\""
        );
        for bad in ["", "s", "1m30", "1w", "-1s", "1.5s", "1 s", "1mss"] {
            assert!(parse_value(&ValueType::Duration, bad).is_err(), "{bad}");
        }
        assert_eq!(
            err(ValueType::Duration, "999999999999999999d"),
            "duration \"999999999999999999d\" is too large (at most 36500d)"
        );
        assert!(parse_value(&ValueType::Duration, "99999999999999999999").is_err());
        // A century at most, however written: a deadline that far off
        // cannot overflow.
        assert_eq!(dur("36500d"), MAX_DURATION);
        assert_eq!(dur("3153600000"), MAX_DURATION);
        for huge in [
            "36500d1ms",
            "3153600001",
            "1000000000000s",
            "18446744073709551615",
        ] {
            assert_eq!(
                err(ValueType::Duration, huge),
                format!("duration \"{huge}\" is too large (at most 36500d)")
            );
        }
    }

    #[test]
    fn bools_strings_paths_enums() {
        for t in ["on", "ON", "yes", "True", "1"] {
            assert_eq!(
                parse_value(&ValueType::OnOff, t).unwrap().as_bool(),
                Some(true)
            );
        }
        for t in ["off", "No", "FALSE", "0"] {
            assert_eq!(
                parse_value(&ValueType::OnOff, t).unwrap().as_bool(),
                Some(false)
            );
        }
        assert_eq!(
            err(ValueType::OnOff, "maybe"),
            "expected On or Off, got \"maybe\""
        );
        assert_eq!(
            parse_value(&ValueType::String, "").unwrap().as_str(),
            Some("")
        );
        assert_eq!(
            parse_value(&ValueType::Path, "a/b").unwrap().as_path(),
            Some(Path::new("a/b"))
        );
        let levels = ValueType::Enum(super::super::directive::Words::Static(&[
            "LOGWARN", "LOGINFO",
        ]));
        assert_eq!(
            parse_value(&levels, "loginfo").unwrap().as_str(),
            Some("LOGINFO")
        );
        assert_eq!(
            err(levels, "LOUD"),
            "expected one of LOGWARN|LOGINFO, got \"LOUD\""
        );
        // Long garbage is shortened in messages.
        let long = "x".repeat(1000);
        assert!(err(ValueType::OnOff, &long).len() < 120);
    }

    #[test]
    fn regexes() {
        let re = parse_value(&ValueType::Regex, r"\.(cgi|pl)$").unwrap();
        assert!(re.as_regex().unwrap().is_match("/a.cgi"));
        // One line: `.` takes a newline, `$` is the very end.
        let re = parse_value(&ValueType::Regex, "^/private/.*$").unwrap();
        assert!(re.as_regex().unwrap().is_match("/private/\nx"));
        let re = parse_value(&ValueType::Regex, "^/exact$").unwrap();
        assert!(!re.as_regex().unwrap().is_match("/exact\n"));
        assert_eq!(
            err(ValueType::Regex, "(a"),
            "invalid regular expression \"(a\": unclosed group"
        );
        let huge = err(ValueType::Regex, "(?:a{1000}){1000}");
        assert!(huge.starts_with("invalid regular expression"), "{huge}");
    }

    #[test]
    fn defaults() {
        let d = Directive::new("X", ValueType::Size).default("8K");
        let s = default_setting(&d).unwrap().unwrap();
        assert!(s.is_default());
        assert_eq!(s.args[0].as_size(), Some(8192));
        let many = Directive::new("X", ValueType::Integer)
            .args(Args::Many)
            .default("1 2");
        assert_eq!(default_setting(&many).unwrap().unwrap().args.len(), 2);
        let flag = Directive::new("X", ValueType::String)
            .args(Args::Flag)
            .default("off");
        assert!(default_setting(&flag).unwrap().is_none());
        let bad = Directive::new("X", ValueType::Integer).default("ten");
        assert!(default_setting(&bad).is_err());
        let range = Directive::new("X", ValueType::Integer)
            .args(Args::Range(2, 3))
            .default("1");
        assert!(default_setting(&range).is_err());
    }

    #[test]
    fn accessors_on_defaults() {
        let cfg = LocationConfig::with_defaults(Arc::new(Registry::new()));
        assert_eq!(cfg.int("workers"), Some(0));
        assert_eq!(cfg.size("max_request_line"), Some(8192));
        assert_eq!(
            cfg.duration("Shutdown-Timeout"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(cfg.str("ServerToken"), Some("AxKit"));
        assert!(cfg.flag("KeepAlive"));
        assert!(!cfg.is_set("KeepAlive"));
        assert!(!cfg.flag("NoSuchThing"));
        assert!(cfg.settings("NoSuchThing").is_empty());
        assert!(cfg.values("Plugin").is_empty());
        assert_eq!(cfg.str("Workers"), None);
        assert!(cfg.settings_by_id(DirectiveId(9999)).is_empty());
        assert!(cfg.regex("Workers").is_none());
        assert!(cfg.path("PluginDir").is_none());
    }
}
