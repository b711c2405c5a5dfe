//! Config text to a tree of directive lines and `<Block>`s, in AxKit2's
//! Apache-like dialect. Knows nothing about which directives exist: that is
//! the loader's job, so this stage only reports what is malformed as text
//! (quotes, blocks, NUL bytes).
//!
//! Rules, in the order they apply:
//! - a UTF-8 BOM is skipped and CRLF line endings are accepted;
//! - a `\` as the very last character of a line joins the next line to it
//!   (as Apache does, with nothing inserted, and before comments are
//!   recognised, so a comment ending in `\` swallows the next line too);
//! - a line is split into whitespace-separated words; a word starting with
//!   `"` or `'` runs to the matching quote (inside `"…"`, `\"` and `\\` are
//!   escapes; any other backslash is kept, so regexes survive quoting);
//! - an unquoted word starting with `#` starts a comment to the end of the
//!   line, while a `#` inside a word (`a#b`) is kept;
//! - `<Name args…>` opens a block and `</Name>` closes it.

use std::borrow::Cow;
use std::sync::Arc;

use super::model::ConfigError;
use super::registry::same_name;

/// Deepest block nesting accepted. The tree is walked recursively later on,
/// so a limit here is what keeps adversarial input from overflowing the
/// stack.
pub(crate) const MAX_DEPTH: usize = 32;

/// One directive line or block, with where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// `Name arg arg…`
    Directive {
        name: String,
        args: Vec<String>,
        file: Arc<str>,
        line: u32,
    },
    /// `<Name arg…>` … `</Name>`
    Block {
        name: String,
        args: Vec<String>,
        children: Vec<Node>,
        file: Arc<str>,
        line: u32,
    },
}

impl Node {
    /// The directive or block name as written.
    pub fn name(&self) -> &str {
        match self {
            Node::Directive { name, .. } | Node::Block { name, .. } => name,
        }
    }

    /// The arguments (for a block: those inside `<…>`).
    pub fn args(&self) -> &[String] {
        match self {
            Node::Directive { args, .. } | Node::Block { args, .. } => args,
        }
    }

    /// The file the node was read from.
    pub fn file(&self) -> &Arc<str> {
        match self {
            Node::Directive { file, .. } | Node::Block { file, .. } => file,
        }
    }

    /// The (first) line of the node.
    pub fn line(&self) -> u32 {
        match self {
            Node::Directive { line, .. } | Node::Block { line, .. } => *line,
        }
    }

    /// Whether this is a `<name …>` block (names compared as directive
    /// names are).
    pub(crate) fn is_block(&self, name: &str) -> bool {
        matches!(self, Node::Block { .. }) && same_name(self.name(), name)
    }
}

/// Parses config text. `file` is only used to label nodes and errors.
/// Returns every syntax error found, not just the first.
pub fn parse(text: &str, file: &str) -> Result<Vec<Node>, Vec<ConfigError>> {
    let mut p = Parser {
        file: Arc::from(file),
        root: Vec::new(),
        stack: Vec::new(),
        errors: Vec::new(),
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lineno: u32 = 0;
    // (first line, text so far) of a directive continued with `\`.
    let mut pending: Option<(u32, String)> = None;
    for raw in text.split('\n') {
        lineno = lineno.saturating_add(1);
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(body) = raw.strip_suffix('\\') {
            let (_, buf) = pending.get_or_insert_with(|| (lineno, String::new()));
            buf.push_str(body);
            continue;
        }
        let (start, logical) = match pending.take() {
            Some((start, mut buf)) => {
                buf.push_str(raw);
                (start, Cow::Owned(buf))
            }
            None => (lineno, Cow::Borrowed(raw)),
        };
        if !p.line(start, &logical) {
            return Err(p.errors);
        }
    }
    // A `\` on the last line continues into nothing: keep what we have.
    if let Some((start, buf)) = pending {
        if !p.line(start, &buf) {
            return Err(p.errors);
        }
    }
    p.finish()
}

struct Open {
    name: String,
    args: Vec<String>,
    children: Vec<Node>,
    line: u32,
}

struct Parser {
    file: Arc<str>,
    root: Vec<Node>,
    stack: Vec<Open>,
    errors: Vec<ConfigError>,
}

struct Token {
    text: String,
    quoted: bool,
}

impl Parser {
    fn error(&mut self, line: u32, message: String) {
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line,
            directive: None,
            plugin: None,
            message,
        });
    }

    fn push(&mut self, node: Node) {
        match self.stack.last_mut() {
            Some(open) => open.children.push(node),
            None => self.root.push(node),
        }
    }

    fn close_top(&mut self) {
        if let Some(open) = self.stack.pop() {
            let node = Node::Block {
                name: open.name,
                args: open.args,
                children: open.children,
                file: self.file.clone(),
                line: open.line,
            };
            self.push(node);
        }
    }

    /// Handles one logical line. Returns false when parsing cannot go on
    /// (nesting too deep): the rest of the file would only produce noise.
    fn line(&mut self, line: u32, text: &str) -> bool {
        if text.contains('\0') {
            self.error(line, "NUL byte in config text".to_string());
            return true;
        }
        let mut tokens = match tokenize(text) {
            Ok(t) => t,
            Err(msg) => {
                self.error(line, msg);
                return true;
            }
        };
        if tokens.is_empty() {
            return true;
        }
        let first = tokens.remove(0);
        if !first.quoted && first.text.starts_with("</") {
            self.close(line, &first.text[2..], tokens);
            true
        } else if !first.quoted && first.text.starts_with('<') {
            self.open(line, &first.text[1..], tokens)
        } else {
            let node = Node::Directive {
                name: first.text,
                args: tokens.into_iter().map(|t| t.text).collect(),
                file: self.file.clone(),
                line,
            };
            self.push(node);
            true
        }
    }

    fn open(&mut self, line: u32, name: &str, mut args: Vec<Token>) -> bool {
        let mut name = name.to_string();
        // The `>` may end the name (`<Server>`), be attached to the last
        // unquoted argument (`<Location /x>`), or stand alone (`<X "a" >`).
        let closed = if args.is_empty() {
            name.pop_if_gt()
        } else if name.contains('>') {
            self.error(line, format!("unexpected text after `<{name}`"));
            return true;
        } else {
            match args.last_mut() {
                Some(last) if !last.quoted && last.text.ends_with('>') => {
                    last.text.pop();
                    if last.text.is_empty() {
                        args.pop();
                    }
                    true
                }
                _ => false,
            }
        };
        if !closed {
            self.error(line, format!("missing `>` at the end of `<{name} ...`"));
            return true;
        }
        if name.is_empty() || name.contains(['<', '>']) {
            self.error(line, format!("invalid block name `<{name}>`"));
            return true;
        }
        if self.stack.len() >= MAX_DEPTH {
            self.error(line, format!("blocks nested deeper than {MAX_DEPTH}"));
            return false;
        }
        self.stack.push(Open {
            name,
            args: args.into_iter().map(|t| t.text).collect(),
            children: Vec::new(),
            line,
        });
        true
    }

    fn close(&mut self, line: u32, name: &str, rest: Vec<Token>) {
        let mut name = name.to_string();
        let well_formed = match rest.as_slice() {
            [] => name.pop_if_gt(),
            [gt] => !gt.quoted && gt.text == ">",
            _ => false,
        };
        if !well_formed || name.is_empty() || name.contains(['<', '>']) {
            self.error(line, format!("malformed closing tag; expected `</{name}>`"));
            return;
        }
        let Some(pos) = self.stack.iter().rposition(|o| same_name(&o.name, &name)) else {
            let message = match self.stack.last() {
                Some(top) => format!(
                    "`</{name}>` does not match `<{}>` opened at {}:{}",
                    top.name, self.file, top.line
                ),
                None => format!("`</{name}>` without a matching `<{name}>`"),
            };
            self.error(line, message);
            return;
        };
        // Blocks opened after the one being closed were never closed: report
        // each at its opener, then close them so the tree stays usable.
        while self.stack.len() > pos + 1 {
            if let Some(top) = self.stack.last() {
                let (tname, tline) = (top.name.clone(), top.line);
                self.error(
                    tline,
                    format!("`<{tname}>` is not closed (found `</{name}>` at line {line} first)"),
                );
            }
            self.close_top();
        }
        self.close_top();
    }

    fn finish(mut self) -> Result<Vec<Node>, Vec<ConfigError>> {
        while let Some(top) = self.stack.last() {
            let (name, line) = (top.name.clone(), top.line);
            self.error(
                line,
                format!("`<{name}>` is never closed; expected `</{name}>`"),
            );
            self.close_top();
        }
        if self.errors.is_empty() {
            Ok(self.root)
        } else {
            Err(self.errors)
        }
    }
}

trait PopGt {
    /// Removes a trailing `>`; returns whether there was one.
    fn pop_if_gt(&mut self) -> bool;
}

impl PopGt for String {
    fn pop_if_gt(&mut self) -> bool {
        if self.ends_with('>') {
            self.pop();
            true
        } else {
            false
        }
    }
}

/// Apache's isspace(): ASCII whitespace including vertical tab. Non-ASCII
/// spaces are ordinary characters, as they are there.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n' | '\x0b' | '\x0c')
}

fn tokenize(line: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|&c| is_space(c)).is_some() {}
        let Some(&c) = chars.peek() else { break };
        match c {
            '#' => break,
            '"' => {
                chars.next();
                let mut text = String::new();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => match chars.next_if(|&n| n == '"' || n == '\\') {
                            Some(n) => text.push(n),
                            None => text.push('\\'),
                        },
                        c => text.push(c),
                    }
                }
                if !closed {
                    return Err("unterminated \"...\" quote".to_string());
                }
                tokens.push(Token { text, quoted: true });
            }
            '\'' => {
                chars.next();
                let mut text = String::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '\'' {
                        closed = true;
                        break;
                    }
                    text.push(c);
                }
                if !closed {
                    return Err("unterminated '...' quote".to_string());
                }
                tokens.push(Token { text, quoted: true });
            }
            _ => {
                let mut text = String::new();
                while let Some(c) = chars.next_if(|&c| !is_space(c)) {
                    text.push(c);
                }
                tokens.push(Token {
                    text,
                    quoted: false,
                });
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(name: &str, args: &[&str], line: u32) -> Node {
        Node::Directive {
            name: name.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            file: Arc::from("t.conf"),
            line,
        }
    }

    fn errs(text: &str) -> Vec<String> {
        parse(text, "t.conf")
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn directives_comments_and_quotes() {
        let text =
            "# comment\n\n   # indented comment\nWorkers 4  # four\nCGI_Match a#b \\.(cgi|pl)$\n\
                    Say \"hello world\" 'it''s' \"\" \"a\\\"b\\\\c\\d\"\nX 'back\\slash'\n";
        let nodes = parse(text, "t.conf").unwrap();
        assert_eq!(
            nodes,
            vec![
                d("Workers", &["4"], 4),
                d("CGI_Match", &["a#b", "\\.(cgi|pl)$"], 5),
                d("Say", &["hello world", "it", "s", "", "a\"b\\c\\d"], 6),
                d("X", &["back\\slash"], 7),
            ]
        );
    }

    #[test]
    fn continuation_bom_crlf() {
        let text = "\u{feff}A one \\\r\n  two\\\r\nthree\r\nB x\r\nC y\\";
        let nodes = parse(text, "t.conf").unwrap();
        assert_eq!(
            nodes,
            vec![
                d("A", &["one", "twothree"], 1),
                d("B", &["x"], 4),
                d("C", &["y"], 5)
            ]
        );
        // A quoted argument may span a continuation.
        let nodes = parse("Say \"a \\\nb\"\n", "t.conf").unwrap();
        assert_eq!(nodes, vec![d("Say", &["a b"], 1)]);
    }

    #[test]
    fn blocks() {
        let text = "<Server>\n  Port 80\n  <Location /icons>\n    X 1\n  </location>\n\
                    <Location \"/a b\" >\n</LOCATION >\n</server>\n<Perl x y> # c\n</Perl>";
        let nodes = parse(text, "t.conf").unwrap();
        assert_eq!(nodes.len(), 2);
        let Node::Block {
            name,
            args,
            children,
            line,
            ..
        } = &nodes[0]
        else {
            panic!()
        };
        assert_eq!((name.as_str(), args.len(), *line), ("Server", 0, 1));
        assert_eq!(children.len(), 3);
        let Node::Block {
            args,
            children: inner,
            ..
        } = &children[1]
        else {
            panic!()
        };
        assert_eq!(args, &["/icons"]);
        assert_eq!(inner, &vec![d("X", &["1"], 4)]);
        assert_eq!(children[2].args(), &["/a b"]);
        assert_eq!(nodes[1].args(), &["x", "y"]);
        // Closing names match through normalisation too.
        assert!(parse("<Foo_Bar>\n</foo-bar>", "t").is_ok());
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(errs("X \"abc\n"), ["t.conf:1: unterminated \"...\" quote"]);
        assert_eq!(errs("\nX 'abc\n"), ["t.conf:2: unterminated '...' quote"]);
        assert_eq!(errs("X a\0b"), ["t.conf:1: NUL byte in config text"]);
        assert_eq!(
            errs("<Server>\nX 1\n"),
            ["t.conf:1: `<Server>` is never closed; expected `</Server>`"]
        );
        assert_eq!(
            errs("</Server>"),
            ["t.conf:1: `</Server>` without a matching `<Server>`"]
        );
        assert_eq!(
            errs("<Server>\n</Location>\n</Server>"),
            ["t.conf:2: `</Location>` does not match `<Server>` opened at t.conf:1"]
        );
        assert_eq!(
            errs("<Server>\n<Location /a>\n</Server>"),
            ["t.conf:2: `<Location>` is not closed (found `</Server>` at line 3 first)"]
        );
        assert_eq!(
            errs("<Location /a"),
            ["t.conf:1: missing `>` at the end of `<Location ...`"]
        );
        assert_eq!(
            errs("<Location \"/a>\""),
            ["t.conf:1: missing `>` at the end of `<Location ...`"]
        );
        assert_eq!(errs("<>"), ["t.conf:1: invalid block name `<>`"]);
        assert_eq!(
            errs("</Server x>"),
            ["t.conf:1: malformed closing tag; expected `</Server>`"]
        );
        // Several errors are all reported.
        assert_eq!(errs("X \"a\nY 'b\n").len(), 2);
    }

    #[test]
    fn nesting_limit() {
        let ok = "<A>\n".repeat(MAX_DEPTH) + &"</A>\n".repeat(MAX_DEPTH);
        assert!(parse(&ok, "t").is_ok());
        let deep = "<A>\n".repeat(100_000);
        assert_eq!(
            parse(&deep, "t").unwrap_err()[0].to_string(),
            format!("t:{}: blocks nested deeper than 32", MAX_DEPTH + 1)
        );
    }
}
