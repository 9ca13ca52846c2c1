//! The Corefile reader: CoreDNS's (Caddy v1) syntax turned into server blocks of directives,
//! every token carrying the file and line it came from.
//!
//! What it understands, as CoreDNS does:
//! - server blocks `KEY [KEY...] { ... }` (keys like `.:53`, `example.com`, `dns://.:53`,
//!   separated by spaces or commas), and one brace-less block when the file holds only one;
//! - directives of whitespace-separated tokens, one per line, with an optional nested block
//!   opened by a `{` at the end of the line (blocks nest);
//! - `"quoted tokens"` (with `\"` inside), `#` comments to the end of the line;
//! - environment variables `{$NAME}` and `{%NAME%}` inside tokens, replaced with the value
//!   the given lookup returns (empty when unset, as CoreDNS does; each use is reported);
//! - snippets `(name) { ... }` and `import name`, and `import PATTERN` of files the caller
//!   provides (e.g. the keys of a `coredns-custom` ConfigMap; `*` and `?` globs). An import
//!   nothing provides stays in the tree as an `import` directive, for the mapper to report.
//!
//! Nothing here panics on input: unbalanced braces, unterminated quotes, nesting deeper
//! than [`MAX_DEPTH`] and import cycles are [`ParseError`]s naming the line.

use std::collections::BTreeMap;
use std::fmt;

/// Deepest nesting of blocks (and of imports) accepted.
pub const MAX_DEPTH: usize = 16;

/// Most tokens a Corefile may expand to through its imports (a snippet imported many times
/// by snippets imported many times would otherwise grow exponentially).
pub const MAX_TOKENS: usize = 100_000;

/// Where something came from: a file name and a 1-based line.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// The file, as given (`Corefile`, or the path an `import` named).
    pub file: String,
    /// 1-based line number.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One token of a Corefile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// The text, quotes removed and environment variables replaced.
    pub text: String,
    /// Whether it was quoted (a quoted `{` is not a brace).
    pub quoted: bool,
    /// Where it is.
    pub at: Location,
}

impl Token {
    fn is(&self, text: &str) -> bool {
        !self.quoted && self.text == text
    }
}

/// A Corefile that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// Where.
    pub at: Location,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Something the reader did that the user should know (an environment variable used).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadNote {
    /// Where.
    pub at: Location,
    /// What.
    pub message: String,
}

/// One directive: a name, its arguments, and the directives of its block when it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    /// The directive's name (`forward`, `pods`, ...).
    pub name: Token,
    /// Its arguments on the same line.
    pub args: Vec<Token>,
    /// Its nested block (`None` when it has no `{ }`).
    pub block: Option<Vec<Directive>>,
}

impl Directive {
    /// Where the directive starts.
    pub fn at(&self) -> &Location {
        &self.name.at
    }

    /// The arguments' texts.
    pub fn arg_texts(&self) -> Vec<&str> {
        self.args.iter().map(|t| t.text.as_str()).collect()
    }

    /// The directive as written on its line (name and arguments), for messages.
    pub fn line_text(&self) -> String {
        std::iter::once(&self.name)
            .chain(&self.args)
            .map(|t| t.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The nested block's directives (empty without a block).
    pub fn sub(&self) -> &[Directive] {
        self.block.as_deref().unwrap_or(&[])
    }
}

/// One server block: its keys (zones with optional scheme and port) and directives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerBlock {
    /// The keys, commas removed.
    pub keys: Vec<Token>,
    /// The directives (plugins), in file order.
    pub directives: Vec<Directive>,
}

/// A parsed Corefile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Corefile {
    /// The server blocks, in file order (imported ones where the import was).
    pub blocks: Vec<ServerBlock>,
    /// Top-level `import` lines that nothing provided (as directives, for the mapper to
    /// report).
    pub top_level: Vec<Directive>,
    /// What the reader did along the way.
    pub notes: Vec<ReadNote>,
}

/// What the reader may look at besides the Corefile itself.
pub struct Sources<'a> {
    /// Files `import` may name, by absolute path (e.g. `/etc/coredns/custom/a.override`).
    pub files: &'a BTreeMap<String, String>,
    /// The directory relative `import` paths start from (CoreDNS: the Corefile's).
    pub base_dir: &'a str,
    /// Environment variables for `{$NAME}`.
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

/// Reads a Corefile named `file` with text `text`.
pub fn parse(file: &str, text: &str, sources: &Sources<'_>) -> Result<Corefile, ParseError> {
    let mut notes = Vec::new();
    let tokens = tokenize(file, text, sources, &mut notes)?;
    let (tokens, snippets) = take_snippets(tokens)?;
    let tokens = expand_imports(tokens, &snippets, sources, &mut notes, 0)?;
    let mut parser = Parser {
        tokens,
        pos: 0,
        top_level: Vec::new(),
    };
    let blocks = parser.server_blocks()?;
    Ok(Corefile {
        blocks,
        top_level: parser.top_level,
        notes,
    })
}

/// Splits text into tokens.
pub fn tokenize(
    file: &str,
    text: &str,
    sources: &Sources<'_>,
    notes: &mut Vec<ReadNote>,
) -> Result<Vec<Token>, ParseError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    let at = |line| Location {
        file: file.to_string(),
        line,
    };
    while let Some(&c) = chars.peek() {
        if c == '\n' {
            line += 1;
            chars.next();
        } else if c.is_whitespace() {
            chars.next();
        } else if c == '#' {
            while chars.peek().is_some_and(|&c| c != '\n') {
                chars.next();
            }
        } else if c == '"' {
            chars.next();
            let start = line;
            let mut value = String::new();
            loop {
                match chars.next() {
                    None => {
                        return Err(ParseError {
                            at: at(start),
                            message: "unterminated quoted string".into(),
                        });
                    }
                    Some('\\') if chars.peek() == Some(&'"') => {
                        chars.next();
                        value.push('"');
                    }
                    Some('"') => break,
                    Some(c) => {
                        if c == '\n' {
                            line += 1;
                        }
                        value.push(c);
                    }
                }
            }
            let value = substitute_env(&value, &at(start), sources, notes);
            tokens.push(Token {
                text: value,
                quoted: true,
                at: at(start),
            });
        } else {
            let mut value = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || (c == '"' && !value.is_empty()) {
                    break;
                }
                value.push(c);
                chars.next();
            }
            let value = substitute_env(&value, &at(line), sources, notes);
            tokens.push(Token {
                text: value,
                quoted: false,
                at: at(line),
            });
        }
    }
    Ok(tokens)
}

/// Replaces `{$NAME}` and `{%NAME%}` with the environment's values.
fn substitute_env(
    text: &str,
    at: &Location,
    sources: &Sources<'_>,
    notes: &mut Vec<ReadNote>,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let (close, name) = match after.chars().next() {
            Some('$') => match after.find('}') {
                Some(end) => (end, &after[1..end]),
                None => break,
            },
            Some('%') => match after[1..].find("%}") {
                Some(end) => (end + 2, &after[1..end + 1]),
                None => break,
            },
            _ => {
                out.push_str(&rest[..start + 1]);
                rest = after;
                continue;
            }
        };
        out.push_str(&rest[..start]);
        let value = (sources.env)(name);
        notes.push(ReadNote {
            at: at.clone(),
            message: match &value {
                Some(v) => format!("environment variable {name} replaced with {v:?}"),
                None => format!(
                    "environment variable {name} is not set; replaced with nothing, as CoreDNS does"
                ),
            },
        });
        out.push_str(value.as_deref().unwrap_or(""));
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Removes the top-level snippet definitions `(name) { ... }`, returning them by name.
/// Snippets by name: their tokens.
type Snippets = BTreeMap<String, Vec<Token>>;

fn take_snippets(tokens: Vec<Token>) -> Result<(Vec<Token>, Snippets), ParseError> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut snippets = BTreeMap::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        let is_snippet = depth == 0
            && !token.quoted
            && token.text.len() > 2
            && token.text.starts_with('(')
            && token.text.ends_with(')')
            && tokens.get(i + 1).is_some_and(|t| t.is("{"));
        if is_snippet {
            let name = token.text[1..token.text.len() - 1].to_string();
            let (body, end) = matching_brace(&tokens, i + 1)?;
            snippets.insert(name, body.to_vec());
            i = end + 1;
            continue;
        }
        if token.is("{") {
            depth += 1;
        } else if token.is("}") {
            depth = depth.saturating_sub(1);
        }
        out.push(token.clone());
        i += 1;
    }
    Ok((out, snippets))
}

/// The tokens between the `{` at `open` and its `}`, and the `}`'s index.
fn matching_brace(tokens: &[Token], open: usize) -> Result<(&[Token], usize), ParseError> {
    let mut depth = 0usize;
    for (i, token) in tokens.iter().enumerate().skip(open) {
        if token.is("{") {
            depth += 1;
        } else if token.is("}") {
            depth -= 1;
            if depth == 0 {
                return Ok((&tokens[open + 1..i], i));
            }
        }
    }
    Err(ParseError {
        at: tokens[open].at.clone(),
        message: "this `{` is never closed".into(),
    })
}

/// Replaces each `import X` line whose X is a snippet or matches provided files with their
/// tokens; other imports stay.
fn expand_imports(
    tokens: Vec<Token>,
    snippets: &Snippets,
    sources: &Sources<'_>,
    notes: &mut Vec<ReadNote>,
    depth: usize,
) -> Result<Vec<Token>, ParseError> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        let first_on_line = i == 0 || tokens[i - 1].at != token.at;
        let arg = tokens
            .get(i + 1)
            .filter(|a| a.at == token.at && token.is("import") && first_on_line);
        let Some(arg) = arg else {
            out.push(token.clone());
            i += 1;
            continue;
        };
        let expansion: Option<Vec<Token>> = if let Some(snippet) = snippets.get(&arg.text) {
            // A snippet's tokens take the import's place (their own lines kept).
            Some(snippet.clone())
        } else {
            let pattern = resolve_path(sources.base_dir, &arg.text);
            let matched: Vec<(&String, &String)> = sources
                .files
                .iter()
                .filter(|(path, _)| glob_match(&pattern, path))
                .collect();
            if matched.is_empty() {
                None
            } else {
                let mut all = Vec::new();
                for (path, text) in matched {
                    notes.push(ReadNote {
                        at: token.at.clone(),
                        message: format!("import {}: read {path}", arg.text),
                    });
                    let file_tokens = tokenize(path, text, sources, notes)?;
                    all.extend(file_tokens);
                }
                Some(all)
            }
        };
        // Skip the rest of the import line.
        let mut next = i + 1;
        while next < tokens.len() && tokens[next].at == token.at {
            next += 1;
        }
        match expansion {
            Some(expanded) => {
                if depth >= MAX_DEPTH {
                    return Err(ParseError {
                        at: token.at.clone(),
                        message: format!(
                            "imports nest deeper than {MAX_DEPTH} levels (an import cycle?)"
                        ),
                    });
                }
                out.extend(expand_imports(
                    expanded,
                    snippets,
                    sources,
                    notes,
                    depth + 1,
                )?);
                if out.len() > MAX_TOKENS {
                    return Err(ParseError {
                        at: token.at.clone(),
                        message: format!("imports expand to more than {MAX_TOKENS} tokens"),
                    });
                }
            }
            None => out.extend(tokens[i..next].iter().cloned()),
        }
        i = next;
    }
    Ok(out)
}

/// An absolute path for `path` relative to `base`.
fn resolve_path(base: &str, path: &str) -> String {
    if path.starts_with('/') || base.is_empty() {
        path.to_string()
    } else {
        format!("{}/{path}", base.trim_end_matches('/'))
    }
}

/// Shell-style `*` and `?` matching (a `*` does not cross `/`).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with one backtrack point: linear-ish, no recursion.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' && t[ti] != '/' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            if t[st] == '/' {
                return false;
            }
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    top_level: Vec<Directive>,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn last_location(&self) -> Location {
        self.tokens
            .last()
            .map(|t| t.at.clone())
            .unwrap_or(Location {
                file: "Corefile".into(),
                line: 1,
            })
    }

    fn server_blocks(&mut self) -> Result<Vec<ServerBlock>, ParseError> {
        let mut blocks = Vec::new();
        while let Some(first) = self.peek().cloned() {
            if first.is("import") {
                // An import nothing provided: its line, kept for the report.
                self.pos += 1;
                let mut args = Vec::new();
                while let Some(token) = self.peek().filter(|t| t.at == first.at).cloned() {
                    self.pos += 1;
                    args.push(token);
                }
                self.top_level.push(Directive {
                    name: first,
                    args,
                    block: None,
                });
                continue;
            }
            if first.is("{") || first.is("}") {
                return Err(ParseError {
                    at: first.at,
                    message: format!(
                        "unexpected `{}`: expected server block keys such as `.:53` or `example.com`",
                        first.text
                    ),
                });
            }
            // Keys: the tokens of the first line, and of following lines while a key ends
            // with a comma.
            let mut keys = Vec::new();
            let mut line = first.at.clone();
            while let Some(token) = self.peek().cloned() {
                if token.is("{") {
                    break;
                }
                let continues = keys.last().is_some_and(|k: &Token| k.text.ends_with(','));
                if token.at != line && !continues {
                    break;
                }
                line = token.at.clone();
                self.pos += 1;
                for part in token.text.split(',').filter(|p| !p.is_empty()) {
                    keys.push(Token {
                        text: part.to_string(),
                        quoted: token.quoted,
                        at: token.at.clone(),
                    });
                }
                if token.text.ends_with(',') {
                    // Keep the "continues" signal on the last key.
                    if let Some(last) = keys.last_mut() {
                        last.text.push(',');
                    }
                }
            }
            for key in &mut keys {
                if key.text.ends_with(',') {
                    key.text.pop();
                }
            }
            match self.peek() {
                Some(t) if t.is("{") => {
                    self.pos += 1;
                    let directives = self.directives(1)?;
                    blocks.push(ServerBlock { keys, directives });
                }
                _ if blocks.is_empty() => {
                    // One brace-less server block: the rest of the file.
                    let directives = self.directives(0)?;
                    blocks.push(ServerBlock { keys, directives });
                }
                other => {
                    let at = other
                        .map(|t| t.at.clone())
                        .unwrap_or_else(|| self.last_location());
                    return Err(ParseError {
                        at,
                        message: format!(
                            "expected `{{` after the server block keys {}",
                            keys.iter()
                                .map(|k| k.text.as_str())
                                .collect::<Vec<_>>()
                                .join(" ")
                        ),
                    });
                }
            }
        }
        Ok(blocks)
    }

    /// Directives until the `}` closing the current block (consumed), or the end of the
    /// file at depth 0.
    fn directives(&mut self, depth: usize) -> Result<Vec<Directive>, ParseError> {
        if depth > MAX_DEPTH {
            return Err(ParseError {
                at: self
                    .peek()
                    .map(|t| t.at.clone())
                    .unwrap_or_else(|| self.last_location()),
                message: format!("blocks nest deeper than {MAX_DEPTH} levels"),
            });
        }
        let mut directives = Vec::new();
        loop {
            let Some(name) = self.peek().cloned() else {
                if depth == 0 {
                    return Ok(directives);
                }
                return Err(ParseError {
                    at: self.last_location(),
                    message: "a block is not closed: missing `}` at the end".into(),
                });
            };
            self.pos += 1;
            if name.is("}") {
                if depth == 0 {
                    return Err(ParseError {
                        at: name.at,
                        message: "`}` without a matching `{`".into(),
                    });
                }
                return Ok(directives);
            }
            if name.is("{") {
                return Err(ParseError {
                    at: name.at,
                    message: "`{` must end the line of a directive".into(),
                });
            }
            let mut args = Vec::new();
            let mut block = None;
            while let Some(token) = self.peek().cloned() {
                if token.at != name.at {
                    break;
                }
                self.pos += 1;
                if token.is("{") {
                    block = Some(self.directives(depth + 1)?);
                    break;
                }
                if token.is("}") {
                    // `}` closing the block on the directive's own line (`a { b }` styles
                    // are not CoreDNS syntax, but `}` right after arguments is).
                    self.pos -= 1;
                    break;
                }
                args.push(token);
            }
            directives.push(Directive { name, args, block });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Corefile, ParseError> {
        let files = BTreeMap::new();
        parse(
            "Corefile",
            text,
            &Sources {
                files: &files,
                base_dir: "/etc/coredns",
                env: &|name| (name == "UPSTREAM").then(|| "192.0.2.53".to_string()),
            },
        )
    }

    #[test]
    fn blocks_directives_nested_blocks_and_lines() {
        let corefile = read(
            "# comment\n.:53 {\n    errors\n    kubernetes cluster.local in-addr.arpa {\n       pods insecure # why\n    }\n    forward . {$UPSTREAM}\n}\nexample.com, example.org:53 {\n  forward . \"192.0.2.1\"\n}\n",
        )
        .expect("parses");
        assert_eq!(corefile.blocks.len(), 2);
        let main = &corefile.blocks[0];
        assert_eq!(main.keys[0].text, ".:53");
        assert_eq!(main.directives.len(), 3);
        let kubernetes = &main.directives[1];
        assert_eq!(kubernetes.at().line, 4);
        assert_eq!(kubernetes.arg_texts(), ["cluster.local", "in-addr.arpa"]);
        assert_eq!(kubernetes.sub()[0].line_text(), "pods insecure");
        assert_eq!(kubernetes.sub()[0].at().line, 5);
        assert_eq!(main.directives[2].arg_texts(), [".", "192.0.2.53"]);
        let keys: Vec<_> = corefile.blocks[1].keys.iter().map(|k| &k.text).collect();
        assert_eq!(keys, ["example.com", "example.org:53"]);
        assert_eq!(corefile.blocks[1].directives[0].at().line, 10);
    }

    #[test]
    fn snippets_and_provided_imports_expand_others_stay() {
        let mut files = BTreeMap::new();
        files.insert(
            "/etc/coredns/custom/a.override".to_string(),
            "log\n".to_string(),
        );
        files.insert(
            "/etc/coredns/custom/b.server".to_string(),
            "b.example:53 {\n forward . 192.0.2.2\n}\n".to_string(),
        );
        let corefile = parse(
            "Corefile",
            "(common) {\n errors\n}\n.:53 {\n import common\n import custom/*.override\n import /nowhere/*.conf\n}\nimport custom/*.server\n",
            &Sources {
                files: &files,
                base_dir: "/etc/coredns",
                env: &|_| None,
            },
        )
        .expect("parses");
        let names: Vec<_> = corefile.blocks[0]
            .directives
            .iter()
            .map(|d| d.line_text())
            .collect();
        assert_eq!(names, ["errors", "log", "import /nowhere/*.conf"]);
        assert_eq!(
            corefile.blocks[0].directives[1].at().file,
            "/etc/coredns/custom/a.override"
        );
        assert_eq!(corefile.blocks[1].keys[0].text, "b.example:53");
    }

    #[test]
    fn bad_input_names_the_line() {
        for (text, line, what) in [
            (".:53 {\n  errors\n", 2, "not closed"),
            (".:53 {\n}\n}\n", 3, "expected server block keys"),
            (".:53 {\n forward . \"192.0.2.1\n}\n", 2, "unterminated"),
            ("a.example {\n}\nb.example\nerrors\n", 4, "expected `{`"),
        ] {
            let error = read(text).expect_err(text);
            assert_eq!(error.at.line, line, "{text}: {error}");
            assert!(error.message.contains(what), "{text}: {error}");
        }
    }

    #[test]
    fn deep_nesting_and_import_cycles_are_errors_not_stack_overflows() {
        let deep = format!(".:53 {{\n{}", "a {\n".repeat(100));
        assert!(read(&deep).expect_err("too deep").message.contains("nest"));
        let cycle = read("(a) {\n import b\n}\n(b) {\n import a\n}\n.:53 {\n import a\n}\n");
        assert!(cycle.expect_err("a cycle").message.contains("deeper"));
    }

    #[test]
    fn globs() {
        assert!(glob_match(
            "/etc/coredns/custom/*.server",
            "/etc/coredns/custom/x.server"
        ));
        assert!(!glob_match(
            "/etc/coredns/custom/*.server",
            "/etc/coredns/custom/x.override"
        ));
        assert!(!glob_match("/etc/*.server", "/etc/a/x.server"));
        assert!(glob_match("a?c", "abc"));
    }
}
