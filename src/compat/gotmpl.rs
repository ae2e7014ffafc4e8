//! Translation of vault-k8s (consul-template, Go `text/template`) templates to
//! our template engine (minijinja), so existing `agent-inject-template-*`
//! annotations keep working.
//!
//! Supported: `with secret "PATH"` (one path per template, the one the
//! annotation names), `.Data`, `.Data.data.KEY`, `.Data.KEY`,
//! `.Data.metadata.KEY`, `.LeaseID`, `.LeaseDuration`, `.Renewable`,
//! `range $k, $v := ...`, `range $v := ...`, `range ...`, `with ...`,
//! `if`/`else if`/`else`, `$x := ...`, pipelines, and the functions in
//! [`translate_call`]. Anything else is rejected with a message naming it, so
//! a pod is denied at admission instead of failing at render time.
//!
//! Translated templates are rendered with [`register`]: Go's `%v` printing
//! (`map[k:v]`, `[a b]`, `<no value>`) and the filters they use.

use base64::Engine as _;
use minijinja::value::{Value, ValueKind};
use minijinja::{Environment, Error as JinjaError, ErrorKind};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("template syntax error: {0}")]
    Syntax(String),
    #[error("template uses {0}, which vault-injector does not support")]
    Unsupported(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A translated template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    /// minijinja source.
    pub source: String,
    /// Paths named by `with secret "..."` (at most one distinct path).
    pub secret_path: Option<String>,
}

/// Translates a consul-template template.
pub fn translate(src: &str) -> Result<Translated> {
    let mut t = Translator::default();
    t.run(src)?;
    if let Some(open) = t.blocks.last() {
        return Err(Error::Syntax(format!(
            "unclosed {{{{ {} }}}} (missing {{{{ end }}}})",
            open.keyword()
        )));
    }
    Ok(Translated {
        source: t.out,
        secret_path: t.secret_path,
    })
}

#[derive(Debug)]
enum Block {
    WithSecret,
    With,
    Range,
    If,
}

impl Block {
    fn keyword(&self) -> &'static str {
        match self {
            Block::WithSecret => "with secret",
            Block::With => "with",
            Block::Range => "range",
            Block::If => "if",
        }
    }
}

/// What `.` means at a point of the template.
#[derive(Debug, Clone)]
enum Dot {
    /// Outside any `with secret`: consul-template's dot has no fields.
    Nil,
    /// The secret object of `with secret` (fields Data, LeaseID, ...).
    Secret,
    /// Any other value, as a minijinja expression.
    Expr(String),
}

#[derive(Default)]
struct Translator {
    out: String,
    blocks: Vec<Block>,
    dots: Vec<Dot>,
    secret_path: Option<String>,
    counter: usize,
}

impl Translator {
    fn dot(&self) -> Dot {
        self.dots.last().cloned().unwrap_or(Dot::Nil)
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("__{prefix}{}", self.counter)
    }

    fn run(&mut self, src: &str) -> Result<()> {
        let mut rest = src;
        while let Some(start) = rest.find("{{") {
            self.text(&rest[..start]);
            let after = &rest[start + 2..];
            let end = find_action_end(after)
                .ok_or_else(|| Error::Syntax("unclosed action: `{{` without `}}`".into()))?;
            let mut inner = &after[..end];
            let mut trim_left = false;
            let mut trim_right = false;
            if let Some(s) = inner.strip_prefix('-') {
                if s.starts_with(char::is_whitespace) {
                    trim_left = true;
                    inner = s;
                }
            }
            if let Some(s) = inner.strip_suffix('-') {
                if s.ends_with(char::is_whitespace) {
                    trim_right = true;
                    inner = s;
                }
            }
            self.action(inner.trim(), trim_left, trim_right)?;
            rest = &after[end + 2..];
        }
        self.text(rest);
        Ok(())
    }

    fn text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if text.contains("{{") || text.contains("{%") || text.contains("{#") {
            self.out.push_str("{% raw %}");
            self.out.push_str(text);
            self.out.push_str("{% endraw %}");
        } else {
            self.out.push_str(text);
        }
    }

    fn stmt(&mut self, body: &str, tl: bool, tr: bool) {
        self.out.push_str(if tl { "{%- " } else { "{% " });
        self.out.push_str(body);
        self.out.push_str(if tr { " -%}" } else { " %}" });
    }

    /// Emits an empty statement that only carries whitespace trimming, for
    /// actions that translate to nothing (`with secret`, its `end`).
    fn trim_only(&mut self, tl: bool, tr: bool) {
        if tl || tr {
            self.out
                .push_str(if tl { "{%- if true " } else { "{% if true " });
            self.out.push_str(if tr { "-%}" } else { "%}" });
            self.out.push_str("{% endif %}");
            // The endif must not undo a right trim: re-open trimming after it.
            if tr {
                self.out.push_str("{%- if true -%}{%- endif -%}");
            }
        }
    }

    fn action(&mut self, inner: &str, tl: bool, tr: bool) -> Result<()> {
        if inner.starts_with("/*") {
            // A comment; it still trims.
            self.trim_only(tl, tr);
            return Ok(());
        }
        let tokens = lex(inner)?;
        let Some(first) = tokens.first() else {
            return Err(Error::Syntax("empty action {{ }}".into()));
        };
        match first {
            Tok::Ident(kw) if kw == "end" => {
                if tokens.len() != 1 {
                    return Err(Error::Syntax("`end` takes no arguments".into()));
                }
                let block = self
                    .blocks
                    .pop()
                    .ok_or_else(|| Error::Syntax("`{{ end }}` without an open block".into()))?;
                match block {
                    Block::WithSecret => {
                        self.dots.pop();
                        self.trim_only(tl, tr);
                    }
                    Block::With => {
                        self.dots.pop();
                        self.stmt("endif", tl, tr);
                    }
                    Block::Range => {
                        self.dots.pop();
                        self.stmt("endfor", tl, tr);
                    }
                    Block::If => self.stmt("endif", tl, tr),
                }
                Ok(())
            }
            Tok::Ident(kw) if kw == "else" => {
                match self.blocks.last() {
                    Some(Block::If) | Some(Block::Range) => {}
                    Some(Block::With) if tokens.len() == 1 => {
                        // `with X`/`else`: the else branch sees the outer dot.
                    }
                    Some(b) => {
                        return Err(Error::Unsupported(format!(
                            "`else` inside `{}`",
                            b.keyword()
                        )))
                    }
                    None => return Err(Error::Syntax("`else` without an open block".into())),
                }
                if tokens.len() == 1 {
                    self.stmt("else", tl, tr);
                    return Ok(());
                }
                match (&tokens[1], self.blocks.last()) {
                    (Tok::Ident(k), Some(Block::If)) if k == "if" => {
                        let e = self.pipeline(&tokens[2..])?;
                        self.stmt(&format!("elif {e}"), tl, tr);
                        Ok(())
                    }
                    _ => Err(Error::Unsupported(
                        "`else` followed by anything but `if` (inside an `if`)".into(),
                    )),
                }
            }
            Tok::Ident(kw) if kw == "if" => {
                let e = self.pipeline(&tokens[1..])?;
                self.blocks.push(Block::If);
                self.stmt(&format!("if {e}"), tl, tr);
                Ok(())
            }
            Tok::Ident(kw) if kw == "with" => {
                if matches!(tokens.get(1), Some(Tok::Ident(f)) if f == "secret") {
                    return self.with_secret(&tokens[2..], tl, tr);
                }
                let e = self.pipeline(&tokens[1..])?;
                let var = self.fresh("w");
                self.stmt(&format!("set {var} = {e}"), tl, false);
                self.stmt(&format!("if {var}"), false, tr);
                self.blocks.push(Block::With);
                self.dots.push(Dot::Expr(var));
                Ok(())
            }
            Tok::Ident(kw) if kw == "range" => self.range(&tokens[1..], tl, tr),
            Tok::Ident(kw)
                if matches!(
                    kw.as_str(),
                    "template" | "define" | "block" | "break" | "continue"
                ) =>
            {
                Err(Error::Unsupported(format!("`{kw}`")))
            }
            Tok::Var(name) if matches!(tokens.get(1), Some(Tok::Declare) | Some(Tok::Assign)) => {
                let e = self.pipeline(&tokens[2..])?;
                let v = var_name(name)?;
                self.stmt(&format!("set {v} = {e}"), tl, tr);
                Ok(())
            }
            _ => {
                let e = self.pipeline(&tokens)?;
                self.out.push_str(if tl { "{{- " } else { "{{ " });
                self.out.push_str(&e);
                self.out.push_str(if tr { " -}}" } else { " }}" });
                Ok(())
            }
        }
    }

    fn with_secret(&mut self, args: &[Tok], tl: bool, tr: bool) -> Result<()> {
        if self.blocks.iter().any(|b| matches!(b, Block::WithSecret)) {
            return Err(Error::Unsupported(
                "a `with secret` nested in another".into(),
            ));
        }
        let path = match args {
            [Tok::Str(p)] => p.clone(),
            [Tok::Str(_), ..] => {
                return Err(Error::Unsupported(
                    "`secret` with parameters (a write, e.g. PKI issue)".into(),
                ))
            }
            _ => return Err(Error::Syntax("`with secret` needs one quoted path".into())),
        };
        match &self.secret_path {
            Some(p) if p != &path => {
                return Err(Error::Unsupported(format!(
                    "two different secrets ({p:?} and {path:?}) in one template; use one annotation per secret"
                )))
            }
            _ => self.secret_path = Some(path),
        }
        self.blocks.push(Block::WithSecret);
        self.dots.push(Dot::Secret);
        self.trim_only(tl, tr);
        Ok(())
    }

    fn range(&mut self, toks: &[Tok], tl: bool, tr: bool) -> Result<()> {
        let (k, v, expr_toks) = match toks {
            [Tok::Var(k), Tok::Comma, Tok::Var(v), Tok::Declare, rest @ ..] => {
                (Some(var_name(k)?), Some(var_name(v)?), rest)
            }
            [Tok::Var(v), Tok::Declare, rest @ ..] => (None, Some(var_name(v)?), rest),
            rest => (None, None, rest),
        };
        let e = self.pipeline(expr_toks)?;
        let head = match (&k, &v) {
            (Some(k), Some(v)) => format!("for {k}, {v} in ({e})|go_items"),
            (None, Some(v)) => format!("for {v} in ({e})|go_values"),
            _ => {
                let it = self.fresh("it");
                let h = format!("for {it} in ({e})|go_values");
                self.dots.push(Dot::Expr(it));
                self.blocks.push(Block::Range);
                self.stmt(&h, tl, tr);
                return Ok(());
            }
        };
        self.dots.push(Dot::Expr(v.clone().unwrap_or_default()));
        self.blocks.push(Block::Range);
        self.stmt(&head, tl, tr);
        Ok(())
    }

    /// `cmd | cmd | ...` where a piped value becomes the last argument.
    fn pipeline(&mut self, toks: &[Tok]) -> Result<String> {
        if toks.is_empty() {
            return Err(Error::Syntax("missing value in action".into()));
        }
        let mut acc: Option<String> = None;
        for cmd in toks.split(|t| *t == Tok::Pipe) {
            if cmd.is_empty() {
                return Err(Error::Syntax("empty command in pipeline".into()));
            }
            acc = Some(self.command(cmd, acc)?);
        }
        Ok(acc.expect("pipeline has a command"))
    }

    fn command(&mut self, toks: &[Tok], piped: Option<String>) -> Result<String> {
        let operands = split_operands(toks)?;
        let (head, args) = operands.split_first().expect("non-empty command");
        if let [Tok::Ident(name)] = head.as_slice() {
            if !matches!(name.as_str(), "true" | "false" | "nil") {
                let mut a = args
                    .iter()
                    .map(|o| self.operand(o))
                    .collect::<Result<Vec<_>>>()?;
                a.extend(piped);
                return translate_call(name, &a);
            }
        }
        if !args.is_empty() {
            return Err(Error::Syntax(
                "a value cannot be called with arguments".into(),
            ));
        }
        if piped.is_some() {
            return Err(Error::Syntax("cannot pipe into a value".into()));
        }
        self.operand(head)
    }

    fn operand(&mut self, toks: &[Tok]) -> Result<String> {
        match toks {
            [Tok::Str(s)] => Ok(jinja_str(s)),
            [Tok::Num(n)] => Ok(n.clone()),
            [Tok::Ident(i)] if i == "true" || i == "false" => Ok(i.clone()),
            [Tok::Ident(i)] if i == "nil" => Ok("none".into()),
            [Tok::Ident(name)] => translate_call(name, &[]),
            [Tok::Field(fields)] => self.fields(self.dot(), fields),
            [Tok::Var(name)] => {
                let (base, fields) = split_var(name);
                let base = var_name(base)?;
                self.fields(Dot::Expr(base), &fields)
            }
            [Tok::Open, inner @ .., Tok::Close] => Ok(format!("({})", self.pipeline(inner)?)),
            _ => Err(Error::Syntax("unexpected tokens in expression".into())),
        }
    }

    fn fields(&self, dot: Dot, fields: &[String]) -> Result<String> {
        let mut iter = fields.iter();
        let mut expr = match dot {
            Dot::Nil => {
                return match fields.first() {
                    None => Err(Error::Unsupported("`.` outside `with secret`".into())),
                    Some(f) => Err(Error::Unsupported(format!(
                        "`.{f}` outside `with secret \"PATH\"`"
                    ))),
                }
            }
            Dot::Secret => match iter.next().map(String::as_str) {
                None => return Err(Error::Unsupported("the whole secret object `.`".into())),
                Some("Data") => "secret".to_string(),
                Some("LeaseID") => "lease.id".to_string(),
                Some("LeaseDuration") => "lease.duration".to_string(),
                Some("Renewable") => "lease.renewable".to_string(),
                Some(other) => {
                    return Err(Error::Unsupported(format!("the secret field `.{other}`")))
                }
            },
            Dot::Expr(e) => e,
        };
        for f in iter {
            expr.push('[');
            expr.push_str(&jinja_str(f));
            expr.push(']');
        }
        Ok(expr)
    }
}

/// Maps a Go template function call to minijinja. `args` are already
/// translated, the piped value (if any) last.
pub fn translate_call(name: &str, args: &[String]) -> Result<String> {
    let arity = |n: usize| -> Result<()> {
        if args.len() == n {
            Ok(())
        } else {
            Err(Error::Syntax(format!(
                "`{name}` takes {n} argument(s), got {}",
                args.len()
            )))
        }
    };
    let filter = |f: &str| -> Result<String> {
        arity(1)?;
        Ok(format!("({})|{f}", args[0]))
    };
    match name {
        "toJSON" => filter("tojson"),
        "toJSONPretty" => filter("tojson(indent=2)"),
        "base64Decode" => filter("base64decode"),
        "base64Encode" => filter("base64encode"),
        "base64URLDecode" => filter("base64urldecode"),
        "base64URLEncode" => filter("base64urlencode"),
        "toLower" => filter("lower"),
        "toUpper" => filter("upper"),
        "trimSpace" => filter("trim"),
        "len" => filter("length"),
        "not" => {
            arity(1)?;
            Ok(format!("(not {})", args[0]))
        }
        "eq" | "ne" | "lt" | "le" | "gt" | "ge" => {
            arity(2)?;
            let op = match name {
                "eq" => "==",
                "ne" => "!=",
                "lt" => "<",
                "le" => "<=",
                "gt" => ">",
                _ => ">=",
            };
            Ok(format!("({} {op} {})", args[0], args[1]))
        }
        "and" | "or" => {
            if args.len() < 2 {
                return Err(Error::Syntax(format!(
                    "`{name}` takes at least 2 arguments"
                )));
            }
            Ok(format!("({})", args.join(&format!(" {name} "))))
        }
        "index" => {
            if args.len() < 2 {
                return Err(Error::Syntax("`index` takes a value and keys".into()));
            }
            let mut e = format!("({})", args[0]);
            for k in &args[1..] {
                e.push('[');
                e.push_str(k);
                e.push(']');
            }
            Ok(e)
        }
        "join" => {
            arity(2)?;
            Ok(format!("({})|join({})", args[1], args[0]))
        }
        "contains" => {
            arity(2)?;
            Ok(format!("({} in {})", args[0], args[1]))
        }
        "secret" => Err(Error::Unsupported(
            "`secret` outside `with secret \"PATH\"`".into(),
        )),
        other => Err(Error::Unsupported(format!("the function `{other}`"))),
    }
}

fn var_name(go: &str) -> Result<String> {
    let name = go.trim_start_matches('$');
    if name.is_empty() {
        return Err(Error::Unsupported("the root variable `$`".into()));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::Syntax(format!("bad variable name `{go}`")));
    }
    Ok(format!("v_{name}"))
}

fn split_var(tok: &str) -> (&str, Vec<String>) {
    let mut parts = tok.split('.');
    let base = parts.next().unwrap_or("");
    (base, parts.map(str::to_string).collect())
}

fn jinja_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `.A.B` (empty for `.`)
    Field(Vec<String>),
    /// `$x` or `$x.A.B`
    Var(String),
    Str(String),
    Num(String),
    Pipe,
    Open,
    Close,
    Comma,
    Declare,
    Assign,
}

/// Finds the `}}` closing an action, skipping quoted strings.
fn find_action_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b[i + 1] == b'}' => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn lex(s: &str) -> Result<Vec<Tok>> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let ident_char = |c: char| c.is_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '|' => {
                out.push(Tok::Pipe);
                i += 1
            }
            '(' => {
                out.push(Tok::Open);
                i += 1
            }
            ')' => {
                out.push(Tok::Close);
                i += 1
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                out.push(Tok::Declare);
                i += 2
            }
            '=' => {
                out.push(Tok::Assign);
                i += 1
            }
            '"' => {
                let mut j = i + 1;
                let mut raw = String::from('"');
                while j < chars.len() && chars[j] != '"' {
                    if chars[j] == '\\' && j + 1 < chars.len() {
                        raw.push(chars[j]);
                        j += 1;
                    }
                    raw.push(chars[j]);
                    j += 1;
                }
                if j >= chars.len() {
                    return Err(Error::Syntax("unterminated string".into()));
                }
                raw.push('"');
                let v: String = serde_json::from_str(&raw)
                    .map_err(|_| Error::Syntax(format!("bad string literal {raw}")))?;
                out.push(Tok::Str(v));
                i = j + 1;
            }
            '`' => {
                let j = chars[i + 1..]
                    .iter()
                    .position(|&c| c == '`')
                    .ok_or_else(|| Error::Syntax("unterminated raw string".into()))?;
                out.push(Tok::Str(chars[i + 1..i + 1 + j].iter().collect()));
                i += j + 2;
            }
            '.' => {
                let mut fields = Vec::new();
                let mut j = i;
                while j < chars.len() && chars[j] == '.' {
                    let start = j + 1;
                    let mut k = start;
                    while k < chars.len() && ident_char(chars[k]) {
                        k += 1;
                    }
                    if k > start {
                        fields.push(chars[start..k].iter().collect());
                    }
                    j = k;
                    if k == start {
                        break;
                    }
                }
                out.push(Tok::Field(fields));
                i = j;
            }
            '$' => {
                let mut j = i + 1;
                while j < chars.len() && (ident_char(chars[j]) || chars[j] == '.') {
                    j += 1;
                }
                out.push(Tok::Var(chars[i..j].iter().collect()));
                i = j;
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' => {
                let mut j = i + 1;
                while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '.') {
                    j += 1;
                }
                let n: String = chars[i..j].iter().collect();
                if n.parse::<f64>().is_err() {
                    return Err(Error::Syntax(format!("bad number {n}")));
                }
                out.push(Tok::Num(n));
                i = j;
            }
            c if ident_char(c) => {
                let mut j = i;
                while j < chars.len() && ident_char(chars[j]) {
                    j += 1;
                }
                out.push(Tok::Ident(chars[i..j].iter().collect()));
                i = j;
            }
            other => return Err(Error::Syntax(format!("unexpected character {other:?}"))),
        }
    }
    Ok(out)
}

/// Splits a command into operands; a parenthesised group is one operand.
fn split_operands(toks: &[Tok]) -> Result<Vec<Vec<Tok>>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if toks[i] == Tok::Open {
            let mut depth = 0;
            let mut j = i;
            loop {
                match toks.get(j) {
                    Some(Tok::Open) => depth += 1,
                    Some(Tok::Close) => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    Some(_) => {}
                    None => return Err(Error::Syntax("unclosed `(`".into())),
                }
                j += 1;
            }
            out.push(toks[i..=j].to_vec());
            i = j + 1;
        } else if toks[i] == Tok::Close {
            return Err(Error::Syntax("unexpected `)`".into()));
        } else {
            out.push(vec![toks[i].clone()]);
            i += 1;
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Rendering support for translated templates
// ---------------------------------------------------------------------------

/// Makes `env` print values the way Go's `text/template` does and adds the
/// filters translated templates use.
pub fn register(env: &mut Environment<'_>) {
    // Go keeps a template's final newline.
    env.set_keep_trailing_newline(true);
    env.set_formatter(|out, _state, value| {
        if value.is_undefined() {
            out.write_str("<no value>")
                .map_err(|e| JinjaError::new(ErrorKind::WriteFailure, e.to_string()))
        } else {
            out.write_str(&go_format(value))
                .map_err(|e| JinjaError::new(ErrorKind::WriteFailure, e.to_string()))
        }
    });
    register_filters(env);
}

/// Filters shared by every template (native and translated).
pub fn register_filters(env: &mut Environment<'_>) {
    // Debug info makes errors list the template's variables, i.e. secret
    // values; it must never be on.
    env.set_debug(false);
    env.add_filter("base64decode", |s: String| {
        decode_utf8(base64::engine::general_purpose::STANDARD.decode(s.trim()))
    });
    env.add_filter("base64urldecode", |s: String| {
        decode_utf8(base64::engine::general_purpose::URL_SAFE.decode(s.trim()))
    });
    env.add_filter("base64encode", |s: String| {
        base64::engine::general_purpose::STANDARD.encode(s)
    });
    env.add_filter("base64urlencode", |s: String| {
        base64::engine::general_purpose::URL_SAFE.encode(s)
    });
    env.add_filter("go_items", go_items);
    env.add_filter("go_values", go_values);
}

fn decode_utf8(
    r: std::result::Result<Vec<u8>, base64::DecodeError>,
) -> std::result::Result<String, JinjaError> {
    // The error never quotes the input: it is a secret.
    let bytes = r.map_err(|_| {
        JinjaError::new(
            ErrorKind::InvalidOperation,
            "base64Decode: value is not valid base64",
        )
    })?;
    String::from_utf8(bytes).map_err(|_| {
        JinjaError::new(
            ErrorKind::InvalidOperation,
            "base64Decode: decoded value is not UTF-8 text",
        )
    })
}

/// `range $k, $v := X`: maps in key order, sequences with their index.
fn go_items(v: Value) -> std::result::Result<Value, JinjaError> {
    match v.kind() {
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            keys.sort();
            let pairs: Vec<Value> = keys
                .into_iter()
                .map(|k| {
                    let val = v.get_item(&k).unwrap_or_default();
                    Value::from(vec![k, val])
                })
                .collect();
            Ok(Value::from(pairs))
        }
        ValueKind::Seq => Ok(Value::from(
            v.try_iter()?
                .enumerate()
                .map(|(i, x)| Value::from(vec![Value::from(i), x]))
                .collect::<Vec<_>>(),
        )),
        ValueKind::Undefined | ValueKind::None => Ok(Value::from(Vec::<Value>::new())),
        _ => Err(JinjaError::new(
            ErrorKind::InvalidOperation,
            "range over a value that is not a map or list",
        )),
    }
}

/// `range X` / `range $v := X`: map values in key order, or the elements.
fn go_values(v: Value) -> std::result::Result<Value, JinjaError> {
    let items = go_items(v)?;
    Ok(Value::from(
        items
            .try_iter()?
            .map(|pair| pair.get_item_by_index(1).unwrap_or_default())
            .collect::<Vec<_>>(),
    ))
}

/// Go's `%v` for the JSON-shaped values Vault returns.
pub fn go_format(v: &Value) -> String {
    match v.kind() {
        ValueKind::Undefined => "<no value>".into(),
        ValueKind::None => "<nil>".into(),
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter().map(|i| i.collect()).unwrap_or_default();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| {
                    let val = v.get_item(k).unwrap_or_default();
                    format!("{}:{}", go_format(k), go_format(&val))
                })
                .collect();
            format!("map[{}]", parts.join(" "))
        }
        ValueKind::Seq => {
            let parts: Vec<String> = v
                .try_iter()
                .map(|i| i.map(|x| go_format(&x)).collect())
                .unwrap_or_default();
            format!("[{}]", parts.join(" "))
        }
        _ => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(tpl: &str, secret: serde_json::Value) -> String {
        let t = translate(tpl).unwrap_or_else(|e| panic!("translate {tpl:?}: {e}"));
        let mut env = Environment::new();
        register(&mut env);
        env.add_template("t", &t.source)
            .unwrap_or_else(|e| panic!("compile {:?}: {e}", t.source));
        env.get_template("t")
            .unwrap()
            .render(json!({
                "secret": secret,
                "lease": {"id": "database/creds/app/abc", "duration": 3600, "renewable": true}
            }))
            .unwrap_or_else(|e| panic!("render {:?}: {e}", t.source))
    }

    fn kv2() -> serde_json::Value {
        json!({"data": {"username": "app", "password": "s3cr3t", "b64": "aGVsbG8="},
               "metadata": {"version": 3}})
    }

    #[test]
    fn default_map_template_prints_like_go() {
        let tpl = "{{ with secret \"secret/data/web\" }}{{ range $k, $v := .Data }}{{ $k }}: {{ $v }}\n{{ end }}{{ end }}";
        assert_eq!(
            render(tpl, kv2()),
            "data: map[b64:aGVsbG8= password:s3cr3t username:app]\nmetadata: map[version:3]\n"
        );
        let t = translate(tpl).unwrap();
        assert_eq!(t.secret_path.as_deref(), Some("secret/data/web"));
    }

    #[test]
    fn default_json_template() {
        let tpl = "{{ with secret \"kv/web\" }}{{ .Data | toJSON }}\n{{ end }}";
        let out = render(tpl, json!({"a": "1"}));
        assert_eq!(out, "{\"a\":\"1\"}\n");
    }

    #[test]
    fn common_vault_k8s_forms() {
        let tpl = r#"{{- with secret "database/creds/db-app" -}}
postgresql://{{ .Data.username }}:{{ .Data.password }}@postgres:5432/wizard
{{- end }}"#;
        assert_eq!(
            render(tpl, json!({"username": "u1", "password": "p1"})),
            "postgresql://u1:p1@postgres:5432/wizard"
        );

        let tpl = r#"{{ with secret "secret/data/web" -}}
{{ range $k, $v := .Data.data }}export {{ $k }}="{{ $v }}"
{{ end }}{{ end }}"#;
        assert_eq!(
            render(tpl, kv2()),
            "export b64=\"aGVsbG8=\"\nexport password=\"s3cr3t\"\nexport username=\"app\"\n"
        );

        let tpl = r#"{{ with secret "secret/data/web" }}{{ .Data.data.b64 | base64Decode }} {{ base64Decode .Data.data.b64 }} v{{ .Data.metadata.version }}{{ end }}"#;
        assert_eq!(render(tpl, kv2()), "hello hello v3");

        let tpl = r#"{{ with secret "secret/data/web" }}{{ if .Data.data.password }}yes{{ else }}no{{ end }}{{ if eq .Data.data.username "app" }}!{{ end }}{{ end }}"#;
        assert_eq!(render(tpl, kv2()), "yes!");

        let tpl = r#"{{ with secret "secret/data/web" }}{{ index .Data.data "username" }} {{ .LeaseDuration }}{{ end }}"#;
        assert_eq!(render(tpl, kv2()), "app 3600");
    }

    #[test]
    fn missing_keys_print_no_value_like_go() {
        let tpl = r#"{{ with secret "secret/data/web" }}[{{ .Data.data.nope }}]{{ end }}"#;
        assert_eq!(render(tpl, kv2()), "[<no value>]");
    }

    #[test]
    fn text_with_jinja_syntax_is_kept_literally() {
        let tpl = "{% not a tag %} {# nor this #}{{ with secret \"kv/a\" }}{{ .Data.x }}{{ end }}";
        assert_eq!(
            render(tpl, json!({"x": "1"})),
            "{% not a tag %} {# nor this #}1"
        );
    }

    #[test]
    fn unsupported_forms_are_named() {
        let cases = [
            (
                "{{ with secret \"a\" }}{{ with secret \"a\" }}{{ end }}{{ end }}",
                "nested",
            ),
            (
                "{{ with secret \"a\" }}{{ end }}{{ with secret \"b\" }}{{ end }}",
                "two different secrets",
            ),
            (
                "{{ with secret \"pki/issue/x\" \"common_name=a\" }}{{ end }}",
                "parameters",
            ),
            (
                "{{ with secret \"a\" }}{{ .Data.x | sprig_thing }}{{ end }}",
                "`sprig_thing`",
            ),
            ("{{ .Data.x }}", "outside `with secret"),
            ("{{ template \"x\" }}", "`template`"),
            (
                "{{ with secret \"a\" }}{{ printf \"%s\" .Data.x }}{{ end }}",
                "`printf`",
            ),
        ];
        for (tpl, want) in cases {
            let err = translate(tpl).unwrap_err().to_string();
            assert!(
                err.contains(want),
                "{tpl:?}: {err:?} should mention {want:?}"
            );
        }
    }

    #[test]
    fn syntax_errors_are_reported() {
        for tpl in [
            "{{ with secret \"a\" }}",
            "{{ end }}",
            "{{ with secret \"a\" }}{{ .Data.x ",
            "{{ with secret \"a\" }}{{ \"unterminated }}{{ end }}",
            "{{ }}",
        ] {
            assert!(translate(tpl).is_err(), "{tpl:?} must be rejected");
        }
    }

    #[test]
    fn base64_errors_do_not_echo_the_value() {
        let t = translate("{{ with secret \"a\" }}{{ .Data.x | base64Decode }}{{ end }}").unwrap();
        let mut env = Environment::new();
        register(&mut env);
        env.add_template("t", &t.source).unwrap();
        let err = env
            .get_template("t")
            .unwrap()
            .render(json!({"secret": {"x": "TOPSECRET!!"}}))
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(!msg.contains("TOPSECRET"), "{msg}");
        assert!(msg.contains("not valid base64"), "{msg}");
    }
}
