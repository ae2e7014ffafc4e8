//! Translation of vault-k8s (consul-template, Go `text/template`) templates to
//! our template engine (minijinja), so existing `agent-inject-template-*`
//! annotations keep working.
//!
//! Supported: `with secret "PATH" ["k=v" ...]` (any number of them, nested
//! or not, reading any paths; with parameters it is a write, e.g.
//! `pki/issue/ROLE`), `$s := secret "PATH"`, `.Data`, `.Data.data.KEY`,
//! `.Data.KEY`, `.Data.metadata.KEY`, `.LeaseID`, `.LeaseDuration`,
//! `.Renewable`, `range $k, $v := ...`, `range $v := ...`, `range ...`,
//! `with ...`, `if`/`else if`/`else`, `$x := ...`, pipelines, and the
//! functions in [`translate_call`]. Every path is a literal, so the full list
//! of Vault calls ([`Translated::reads`]) is known at admission, checked by
//! the cluster policy and handed to the agent. Anything else is rejected with
//! a message naming it, so a pod is denied at admission instead of failing at
//! render time.
//!
//! Translated templates are rendered with [`register`]: Go's `%v` printing
//! (`map[k:v]`, `[a b]`, `<no value>`) and the filters they use
//! ([`super::govalue`]).

use base64::Engine as _;
use minijinja::value::{Rest, Value, ValueKind};
use minijinja::{Environment, Error as JinjaError, ErrorKind};

use super::govalue;
use crate::contract::ReadSpec;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("template syntax error: {0}")]
    Syntax(String),
    #[error("template uses {0}, which vault-injector does not support")]
    Unsupported(String),
    /// A limit of [`translate`] was reached; the message names it.
    #[error("{0}")]
    Limit(String),
}

// Limits on what one template may cost to translate. They are constants:
// legitimate vault-k8s templates are far below them, and the translator runs
// on the admission path for text any pod author controls.

/// Largest template accepted, in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;
/// Deepest nesting of open blocks (`with`, `range`, `if`) plus parentheses
/// inside one action. Keeps the translation and minijinja's parser (whose own
/// limit the translated source must stay under) far from the stack's end.
pub const MAX_NESTING: usize = 64;
/// Most actions (`{{ ... }}`) in one template.
pub const MAX_ACTIONS: usize = 4096;
/// Most tokens in one action.
pub const MAX_ACTION_TOKENS: usize = 1024;
/// Most distinct Vault calls (`secret` with a path and parameters) in one
/// template.
pub const MAX_READS: usize = 64;
/// Largest translated source, in bytes. The translation is linear in its
/// input, so this is a guard against a translator defect, not a usual limit.
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A translated template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    /// minijinja source.
    pub source: String,
    /// The Vault calls, in the order `reads[i]` refers to them.
    pub reads: Vec<ReadSpec>,
}

/// A Go template's action delimiters: `{{`/`}}` unless a pod sets others
/// (vault-k8s `agent-template-left-delim-NAME`/`-right-delim-NAME`;
/// Bank-Vaults templates use `${`/`}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delims<'a> {
    pub left: &'a str,
    pub right: &'a str,
}

/// Go's own delimiters.
pub const GO_DELIMS: Delims<'static> = Delims {
    left: "{{",
    right: "}}",
};

/// Translates a consul-template template.
pub fn translate(src: &str) -> Result<Translated> {
    translate_with(src, GO_DELIMS)
}

/// [`translate`] with other action delimiters.
pub fn translate_with(src: &str, delims: Delims<'_>) -> Result<Translated> {
    translate_inner(src, delims, None)
}

/// Translates the template of a Bank-Vaults reference
/// (`vault:PATH#prefix ${ .KEY | b64enc } suffix`): a Go template with
/// `${`/`}` delimiters whose dot is the secret's data, which the render
/// context must name `data`. Sprig's text functions that read nothing
/// but their arguments are available ([`sprig_call`]).
pub fn translate_bankvaults(src: &str) -> Result<Translated> {
    translate_inner(
        src,
        Delims {
            left: "${",
            right: "}",
        },
        Some("data"),
    )
}

fn translate_inner(src: &str, delims: Delims<'_>, root: Option<&str>) -> Result<Translated> {
    if delims.left.is_empty() || delims.right.is_empty() {
        return Err(Error::Syntax("empty template delimiter".into()));
    }
    if src.len() > MAX_TEMPLATE_BYTES {
        return Err(Error::Limit(format!(
            "template is {} bytes, above the limit of {MAX_TEMPLATE_BYTES} bytes",
            src.len()
        )));
    }
    let mut t = Translator {
        left: delims.left.to_string(),
        right: delims.right.to_string(),
        sprig: root.is_some(),
        ..Default::default()
    };
    if let Some(r) = root {
        t.dots.push(Dot::Expr(r.to_string()));
    }
    t.run(src)?;
    if let Some(open) = t.blocks.last() {
        return Err(Error::Syntax(format!(
            "unclosed {{{{ {} }}}} (missing {{{{ end }}}})",
            open.keyword()
        )));
    }
    Ok(Translated {
        source: t.out,
        reads: t.reads,
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
    /// The secret object of `with secret` (fields Data, LeaseID, ...), as
    /// a minijinja expression (`reads[i]`).
    Secret(String),
    /// Any other value, as a minijinja expression.
    Expr(String),
}

#[derive(Default)]
struct Translator {
    out: String,
    blocks: Vec<Block>,
    dots: Vec<Dot>,
    reads: Vec<ReadSpec>,
    counter: usize,
    actions: usize,
    left: String,
    right: String,
    /// Bank-Vaults: Sprig names before consul-template's.
    sprig: bool,
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
        let mut trim_next = false;
        let (left, right) = (self.left.clone(), self.right.clone());
        while let Some(start) = rest.find(left.as_str()) {
            self.actions += 1;
            if self.actions > MAX_ACTIONS {
                return Err(Error::Limit(format!(
                    "template has more than {MAX_ACTIONS} actions"
                )));
            }
            let text = &rest[..start];
            let after = &rest[start + left.len()..];
            let end = find_action_end(after, &right).ok_or_else(|| {
                Error::Syntax(format!("unclosed action: `{left}` without `{right}`"))
            })?;
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
            self.text(text, trim_next, trim_left);
            self.action(inner.trim(), trim_left, trim_right)?;
            trim_next = trim_right;
            self.check_output()?;
            rest = &after[end + right.len()..];
        }
        self.text(rest, trim_next, false);
        self.check_output()
    }

    fn check_output(&self) -> Result<()> {
        if self.out.len() > MAX_OUTPUT_BYTES {
            return Err(Error::Limit(format!(
                "translated template exceeds {MAX_OUTPUT_BYTES} bytes"
            )));
        }
        Ok(())
    }

    /// Opens a block, refusing nesting beyond [`MAX_NESTING`].
    fn open(&mut self, block: Block) -> Result<()> {
        if self.blocks.len() >= MAX_NESTING {
            return Err(nesting_error());
        }
        self.blocks.push(block);
        Ok(())
    }

    /// Literal text stays literal whatever it contains. Text that holds
    /// something minijinja could read as a tag (`{{`, `{%`, `{#`, or a final
    /// `{` the next emitted tag would complete) becomes one string expression;
    /// no raw block, whose end marker could itself appear in the text. Go's
    /// `{{-`/`-}}` trimming (`trim_start`, `trim_end`) is applied here, as
    /// minijinja does not trim inside an expression.
    fn text(&mut self, text: &str, trim_start: bool, trim_end: bool) {
        let tag_like = text.contains("{{")
            || text.contains("{%")
            || text.contains("{#")
            || text.ends_with('{');
        if !tag_like {
            self.out.push_str(text);
            return;
        }
        let go_space = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n');
        let mut t = text;
        if trim_start {
            t = t.trim_start_matches(go_space);
        }
        if trim_end {
            t = t.trim_end_matches(go_space);
        }
        if !t.is_empty() {
            self.out.push_str("{{ ");
            self.out.push_str(&jinja_str(t));
            self.out.push_str(" }}");
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
        let tokens = lex(inner, self.blocks.len())?;
        if paren_depth(&tokens)? + self.blocks.len() > MAX_NESTING {
            return Err(nesting_error());
        }
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
                self.open(Block::If)?;
                self.stmt(&format!("if {e}"), tl, tr);
                Ok(())
            }
            Tok::Ident(kw) if kw == "with" => {
                if matches!(tokens.get(1), Some(Tok::Ident(f)) if f == "secret") {
                    return self.with_secret(None, &tokens[2..], tl, tr);
                }
                if let [_, Tok::Var(v), Tok::Declare, Tok::Ident(f), rest @ ..] = &tokens[..] {
                    if f == "secret" {
                        return self.with_secret(Some(v), rest, tl, tr);
                    }
                }
                let e = self.pipeline(&tokens[1..])?;
                let var = self.fresh("w");
                self.stmt(&format!("set {var} = {e}"), tl, false);
                self.stmt(&format!("if {var}"), false, tr);
                self.open(Block::With)?;
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

    /// `with secret "P" ...` / `with $v := secret "P" ...`: a Go `with` on
    /// a secret is always true once the agent has it, so the block is its
    /// body with `.` the secret.
    fn with_secret(&mut self, var: Option<&str>, args: &[Tok], tl: bool, tr: bool) -> Result<()> {
        let expr = self.secret_call(args)?;
        self.open(Block::WithSecret)?;
        self.dots.push(Dot::Secret(expr.clone()));
        match var {
            Some(v) => {
                let v = var_name(v)?;
                self.stmt(&format!("set {v} = {expr}"), tl, tr);
            }
            None => self.trim_only(tl, tr),
        }
        Ok(())
    }

    /// Registers the Vault call of `secret "PATH" "k=v"...` (literals only:
    /// every path must be known at admission) and returns its expression.
    fn secret_call(&mut self, args: &[Tok]) -> Result<String> {
        let mut strs = Vec::with_capacity(args.len());
        for a in args {
            match a {
                Tok::Str(s) => strs.push(s.clone()),
                _ => {
                    return Err(Error::Unsupported(
                        "`secret` with a computed path or parameter (every path must be a \
                         quoted literal, so the cluster policy can check it at admission)"
                            .into(),
                    ))
                }
            }
        }
        let Some((raw_path, params)) = strs.split_first() else {
            return Err(Error::Syntax("`secret` needs a quoted path".into()));
        };
        let read = parse_read(raw_path, params)?;
        let idx = match self.reads.iter().position(|r| r == &read) {
            Some(i) => i,
            None => {
                if self.reads.len() >= MAX_READS {
                    return Err(Error::Limit(format!(
                        "template makes more than {MAX_READS} different `secret` calls"
                    )));
                }
                self.reads.push(read);
                self.reads.len() - 1
            }
        };
        Ok(format!("reads[{idx}]"))
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
                self.open(Block::Range)?;
                self.dots.push(Dot::Expr(it));
                self.stmt(&h, tl, tr);
                return Ok(());
            }
        };
        self.open(Block::Range)?;
        self.dots.push(Dot::Expr(v.clone().unwrap_or_default()));
        self.stmt(&head, tl, tr);
        Ok(())
    }

    /// `cmd | cmd | ...` where a piped value becomes the last argument.
    fn pipeline(&mut self, toks: &[Tok]) -> Result<String> {
        if toks.is_empty() {
            return Err(Error::Syntax("missing value in action".into()));
        }
        let mut acc: Option<String> = None;
        for cmd in split_top_level(toks, &Tok::Pipe) {
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
        if let [Tok::Ident(name)] = *head {
            if name == "secret" {
                if piped.is_some() {
                    return Err(Error::Unsupported("a value piped into `secret`".into()));
                }
                let flat: Vec<Tok> = args.iter().flat_map(|a| a.iter().cloned()).collect();
                return self.secret_call(&flat);
            }
            if !matches!(name.as_str(), "true" | "false" | "nil") {
                let mut a = args
                    .iter()
                    .map(|o| self.operand(o))
                    .collect::<Result<Vec<_>>>()?;
                a.extend(piped);
                if self.sprig {
                    if let Some(call) = sprig_call(name, &a) {
                        return call;
                    }
                }
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
            // Every translated call brackets its operands itself, so a group
            // needs no brackets of its own; adding them would double the
            // depth minijinja's parser sees.
            [Tok::Open, inner @ .., Tok::Close] => self.pipeline(inner),
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
            Dot::Secret(e) => match iter.next().map(String::as_str) {
                // Go prints the whole struct, request id included: no two
                // reads print the same, so nothing could depend on it.
                None => return Err(Error::Unsupported("the whole secret object `.`".into())),
                Some(f @ ("Data" | "LeaseID" | "LeaseDuration" | "Renewable")) => {
                    format!("{e}[{}]", jinja_str(f))
                }
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

/// `name` called with exactly `n` arguments, or a syntax error saying so.
fn check_arity(name: &str, args: &[String], n: usize) -> Result<()> {
    if args.len() == n {
        Ok(())
    } else {
        Err(Error::Syntax(format!(
            "`{name}` takes {n} argument(s), got {}",
            args.len()
        )))
    }
}

/// Maps a Go template function call to minijinja. `args` are already
/// translated, the piped value (if any) last.
pub fn translate_call(name: &str, args: &[String]) -> Result<String> {
    let arity = |n: usize| check_arity(name, args, n);
    let filter = |f: &str| -> Result<String> {
        arity(1)?;
        Ok(format!("({})|{f}", args[0]))
    };
    match name {
        "toJSON" => filter("go_json"),
        "toJSONPretty" => filter("go_json_pretty"),
        "toUnescapedJSON" => filter("go_json_unescaped"),
        "toUnescapedJSONPretty" => filter("go_json_unescaped_pretty"),
        "toYAML" => filter("go_yaml"),
        "parseJSON" => filter("go_parse_json"),
        "base64Decode" | "sprig_b64dec" => filter("base64decode"),
        "base64Encode" | "sprig_b64enc" => filter("base64encode"),
        "base64URLDecode" => filter("base64urldecode"),
        "base64URLEncode" => filter("base64urlencode"),
        "toLower" | "sprig_lower" => filter("go_lower"),
        "toUpper" | "sprig_upper" => filter("go_upper"),
        "trimSpace" | "sprig_trim" => filter("go_trim_space"),
        "len" => filter("go_len"),
        "printf" => {
            if args.is_empty() {
                return Err(Error::Syntax("`printf` needs a format".into()));
            }
            Ok(format!("go_printf({})", args.join(", ")))
        }
        "print" => Ok(format!("go_print({})", args.join(", "))),
        "println" => Ok(format!("go_println({})", args.join(", "))),
        "trimPrefix" | "trimSuffix" => {
            arity(2)?;
            let f = if name == "trimPrefix" {
                "go_trim_prefix"
            } else {
                "go_trim_suffix"
            };
            Ok(format!("({})|{f}({})", args[1], args[0]))
        }
        "replaceAll" => {
            arity(3)?;
            Ok(format!(
                "({})|go_replace({}, {})",
                args[2], args[0], args[1]
            ))
        }
        "split" => {
            arity(2)?;
            Ok(format!("({})|go_split({})", args[1], args[0]))
        }
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
            match name {
                "eq" => Ok(format!("go_eq({}, {})", args[0], args[1])),
                "ne" => Ok(format!("(not go_eq({}, {}))", args[0], args[1])),
                _ => Ok(format!("({} {op} {})", args[0], args[1])),
            }
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
        "secret" => Err(Error::Syntax("`secret` needs a quoted path".into())),
        "secrets" | "pkiCert" | "writeToFile" | "file" | "env" | "key" | "keyOrDefault" | "ls"
        | "tree" | "service" | "services" | "caRoots" | "caLeaf" | "executeTemplate" => {
            Err(Error::Unsupported(format!(
                "the function `{name}` (see docs/compat.md: it lists Vault, reads \
                 files or Consul, or writes outside the secrets volume)"
            )))
        }
        other => Err(Error::Unsupported(format!("the function `{other}`"))),
    }
}

/// The Vault call of `secret "PATH?version=N" "k=v"...`, as consul-template
/// reads it: a `version` query pins a KV v2 version; each parameter is split
/// at its first `=`.
fn parse_read(raw_path: &str, params: &[String]) -> Result<ReadSpec> {
    let (path, query) = match raw_path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw_path, None),
    };
    let path = path.trim_matches('/');
    if path.is_empty() {
        return Err(Error::Syntax("`secret` needs a non-empty path".into()));
    }
    if path.split('/').any(|s| s == "." || s == "..")
        || path.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(Error::Unsupported(format!(
            "the Vault path {path:?} (`.`/`..` segments, spaces or control characters)"
        )));
    }
    let version = match query {
        None | Some("") => None,
        Some(q) => match q.strip_prefix("version=").map(str::parse::<u64>) {
            Some(Ok(v)) => Some(v),
            _ => {
                return Err(Error::Unsupported(format!(
                    "the query {q:?} in a `secret` path (only `version=N` is known)"
                )))
            }
        },
    };
    let mut map = std::collections::BTreeMap::new();
    for p in params {
        match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                map.insert(k.trim().to_string(), v.to_string());
            }
            _ => {
                return Err(Error::Syntax(format!(
                    "`secret` parameter {p:?} is not of the form key=value"
                )))
            }
        }
    }
    if version.is_some() && !map.is_empty() {
        return Err(Error::Unsupported(
            "a `version` query on a `secret` call with parameters (a write)".into(),
        ));
    }
    Ok(ReadSpec {
        path: path.to_string(),
        version,
        params: map,
    })
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

/// Sprig functions of Bank-Vaults templates that only transform their
/// arguments (no file, blob, KMS or environment access); `None` for any
/// other name, which then goes to [`translate_call`].
fn sprig_call(name: &str, args: &[String]) -> Option<Result<String>> {
    let arity = |n: usize| check_arity(name, args, n);
    let filter = |f: &str| arity(1).map(|()| format!("({})|{f}", args[0]));
    Some(match name {
        "b64enc" => filter("base64encode"),
        "b64dec" => filter("base64decode"),
        "title" => filter("go_title"),
        "upper" => filter("upper"),
        "lower" => filter("lower"),
        "trim" => filter("trim"),
        "urlquery" => filter("go_urlquery"),
        "quote" => filter("tojson"),
        "replace" => arity(3).map(|()| format!("({})|replace({}, {})", args[2], args[0], args[1])),
        "default" => arity(2).map(|()| format!("(({1}) if ({1}) else ({0}))", args[0], args[1])),
        "file" | "blob" | "awskms" | "gcpkms" | "env" | "expandenv" | "accessor" => {
            Err(Error::Unsupported(format!(
                "the function `{name}` (it reads files, cloud services or the environment)"
            )))
        }
        _ => return None,
    })
}

/// Finds the delimiter closing an action, skipping quoted strings.
fn find_action_end(s: &str, right: &str) -> Option<usize> {
    let r = right.as_bytes();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
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
            _ if b[i..].starts_with(r) => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// `open_blocks` counts toward [`MAX_NESTING`], so deep parentheses are
/// refused as such, before the token limit.
fn lex(s: &str, open_blocks: usize) -> Result<Vec<Tok>> {
    let mut out = Vec::new();
    let mut depth = open_blocks;
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let ident_char = |c: char| c.is_alphanumeric() || c == '_';
    while i < chars.len() {
        if out.len() >= MAX_ACTION_TOKENS {
            return Err(Error::Limit(format!(
                "an action has more than {MAX_ACTION_TOKENS} tokens"
            )));
        }
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '|' => {
                out.push(Tok::Pipe);
                i += 1
            }
            '(' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(nesting_error());
                }
                out.push(Tok::Open);
                i += 1
            }
            ')' => {
                depth = depth.saturating_sub(1);
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

fn nesting_error() -> Error {
    Error::Limit(format!(
        "template nesting exceeds {MAX_NESTING} levels (open blocks plus parentheses)"
    ))
}

/// The deepest parenthesis nesting of an action, checking balance, so the
/// recursive translation below never goes deeper than [`MAX_NESTING`].
fn paren_depth(toks: &[Tok]) -> Result<usize> {
    let (mut depth, mut max) = (0usize, 0usize);
    for t in toks {
        match t {
            Tok::Open => {
                depth += 1;
                max = max.max(depth);
            }
            Tok::Close => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| Error::Syntax("unexpected `)`".into()))?;
            }
            _ => {}
        }
    }
    if depth > 0 {
        return Err(Error::Syntax("unclosed `(`".into()));
    }
    Ok(max)
}

/// Splits at `sep` outside parentheses (a `|` inside a group belongs to it).
fn split_top_level<'a>(toks: &'a [Tok], sep: &Tok) -> Vec<&'a [Tok]> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, t) in toks.iter().enumerate() {
        match t {
            Tok::Open => depth += 1,
            Tok::Close => depth = depth.saturating_sub(1),
            t if depth == 0 && t == sep => {
                out.push(&toks[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&toks[start..]);
    out
}

/// Splits a command into operands; a parenthesised group is one operand.
/// Slices of the action's tokens: nothing is copied per nesting level.
fn split_operands(toks: &[Tok]) -> Result<Vec<&[Tok]>> {
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
            out.push(&toks[i..=j]);
            i = j + 1;
        } else if toks[i] == Tok::Close {
            return Err(Error::Syntax("unexpected `)`".into()));
        } else {
            out.push(&toks[i..=i]);
            i += 1;
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Rendering support for translated templates
// ---------------------------------------------------------------------------

/// Makes `env` print values the way Go's `text/template` does and adds the
/// functions translated templates use.
pub fn register(env: &mut Environment<'_>) {
    // Go keeps a template's final newline.
    env.set_keep_trailing_newline(true);
    env.set_formatter(|out, _state, value| {
        // text/template prints a missing key and a nil alike: `<no value>`
        // (inside a printed map or list a nil is `<nil>`).
        let text = if value.is_undefined() || value.is_none() {
            "<no value>".to_string()
        } else {
            govalue::format_v(value)
        };
        out.write_str(&text)
            .map_err(|e| JinjaError::new(ErrorKind::WriteFailure, e.to_string()))
    });
    register_filters(env);
    env.add_filter("go_json", |v: Value| govalue::to_json(&v, false, true));
    env.add_filter("go_json_pretty", |v: Value| {
        govalue::to_json(&v, true, true)
    });
    env.add_filter("go_json_unescaped", |v: Value| {
        govalue::to_json(&v, false, false)
    });
    env.add_filter("go_json_unescaped_pretty", |v: Value| {
        govalue::to_json(&v, true, false)
    });
    env.add_filter("go_yaml", |v: Value| govalue::to_yaml(&v));
    env.add_filter("go_parse_json", |s: String| govalue::parse_json(&s));
    env.add_filter("go_lower", |v: Value| go_text(&v).to_lowercase());
    env.add_filter("go_upper", |v: Value| go_text(&v).to_uppercase());
    env.add_filter("go_trim_space", |v: Value| go_text(&v).trim().to_string());
    env.add_filter(
        "go_len",
        |v: Value| -> std::result::Result<Value, JinjaError> {
            if let Some(n) = v.downcast_object_ref::<govalue::GoNumber>() {
                return Ok(Value::from(n.0.len()));
            }
            match v.kind() {
                // Go's len counts bytes.
                ValueKind::String => Ok(Value::from(
                    govalue::text_to_bytes(v.as_str().unwrap_or_default()).len(),
                )),
                _ => v.len().map(Value::from).ok_or_else(|| {
                    JinjaError::new(
                        ErrorKind::InvalidOperation,
                        "len of a value without a length",
                    )
                }),
            }
        },
    );
    env.add_filter("go_trim_prefix", |v: Value, p: Value| {
        let s = go_text(&v);
        let p = go_text(&p);
        s.strip_prefix(p.as_str()).unwrap_or(&s).to_string()
    });
    env.add_filter("go_trim_suffix", |v: Value, p: Value| {
        let s = go_text(&v);
        let p = go_text(&p);
        s.strip_suffix(p.as_str()).unwrap_or(&s).to_string()
    });
    env.add_filter("go_replace", |v: Value, old: Value, new: Value| {
        go_text(&v).replace(&go_text(&old), &go_text(&new))
    });
    env.add_filter("go_split", |v: Value, sep: Value| {
        let s = go_text(&v);
        let sep = go_text(&sep);
        let parts: Vec<Value> = if sep.is_empty() {
            s.chars().map(|c| Value::from(c.to_string())).collect()
        } else {
            s.split(sep.as_str()).map(Value::from).collect()
        };
        Value::from(parts)
    });
    env.add_function("go_printf", |format: Value, args: Rest<Value>| {
        govalue::sprintf(&go_text(&format), &args)
    });
    env.add_function("go_print", |args: Rest<Value>| {
        // fmt.Sprint: spaces only between operands that are not strings.
        let mut out = String::new();
        for (i, a) in args.iter().enumerate() {
            let is_str = |v: &Value| v.kind() == ValueKind::String;
            if i > 0 && !is_str(a) && !is_str(&args[i - 1]) {
                out.push(' ');
            }
            out.push_str(&govalue::format_v(a));
        }
        out
    });
    env.add_function("go_println", |args: Rest<Value>| {
        let parts: Vec<String> = args.iter().map(govalue::format_v).collect();
        format!("{}\n", parts.join(" "))
    });
    env.add_function("go_eq", |a: Value, b: Value| govalue::equal(&a, &b));
}

/// A string or json.Number as Go text; anything else as `%v` prints it.
fn go_text(v: &Value) -> String {
    match v.as_str() {
        Some(s) => s.to_string(),
        None => govalue::format_v(v),
    }
}

/// Most minijinja instructions one render may execute. Rendering a
/// template over one secret takes thousands; this leaves room for large
/// loops over big secrets and stops a loop bomb within a second.
pub const RENDER_FUEL: u64 = 10_000_000;

/// Filters shared by every template (native and translated), and the render
/// work limit ([`RENDER_FUEL`]).
pub fn register_filters(env: &mut Environment<'_>) {
    // A template is pod-author text: `{% for i in range(100000) %}` nested
    // twice must fail the secret, not spin the agent forever.
    env.set_fuel(Some(RENDER_FUEL));
    // Debug info makes errors list the template's variables, i.e. secret
    // values; it must never be on.
    env.set_debug(false);
    env.add_filter("base64decode", |s: String| {
        decode_base64(&s, &base64::engine::general_purpose::STANDARD)
    });
    env.add_filter("base64urldecode", |s: String| {
        decode_base64(&s, &base64::engine::general_purpose::URL_SAFE)
    });
    env.add_filter("base64encode", |s: String| {
        base64::engine::general_purpose::STANDARD.encode(govalue::text_to_bytes(&s))
    });
    env.add_filter("base64urlencode", |s: String| {
        base64::engine::general_purpose::URL_SAFE.encode(govalue::text_to_bytes(&s))
    });
    env.add_filter("go_title", go_title);
    env.add_filter("go_urlquery", go_urlquery);
    env.add_filter("go_items", go_items);
    env.add_filter("go_values", go_values);
}

/// Go's `base64.StdEncoding.DecodeString` (or URL): `\r` and `\n` are
/// skipped anywhere, padding is required. The result is bytes, carried as
/// text by [`govalue::bytes_to_text`]: a keystore is not UTF-8.
fn decode_base64(
    s: &str,
    engine: &base64::engine::GeneralPurpose,
) -> std::result::Result<String, JinjaError> {
    let cleaned: String = s.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
    // The error never quotes the input: it is a secret.
    let bytes = engine.decode(cleaned).map_err(|_| {
        JinjaError::new(
            ErrorKind::InvalidOperation,
            "base64Decode: value is not valid base64",
        )
    })?;
    Ok(govalue::bytes_to_text(&bytes))
}

/// Sprig's `title` (Go's `strings.Title`): the first letter of every word
/// upper-cased, the rest left as it is.
fn go_title(s: String) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphanumeric() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else {
            !c.is_alphanumeric() && c.is_whitespace()
        };
    }
    out
}

/// Go's `urlquery` (`url.QueryEscape`): space is `+`, every byte other than
/// letters, digits and `-_.~` is `%XX`.
fn go_urlquery(s: String) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
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
    govalue::format_v(v)
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
                "reads": [{"Data": secret, "LeaseID": "database/creds/app/abc",
                           "LeaseDuration": 3600, "Renewable": true}],
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
        assert_eq!(t.reads.len(), 1);
        assert_eq!(t.reads[0].path, "secret/data/web");
    }

    #[test]
    fn default_json_template() {
        let tpl = "{{ with secret \"kv/web\" }}{{ .Data | toJSON }}\n{{ end }}";
        let out = render(tpl, json!({"a": "1"}));
        assert_eq!(out, "{\"a\":\"1\"}\n");
    }

    #[test]
    fn other_delimiters() {
        let d = Delims {
            left: "[[",
            right: "]]",
        };
        let tpl =
            r#"{{ literal }} [[ with secret "db/creds/app" ]]u=[[ .Data.username ]][[ end ]]"#;
        let t = translate_with(tpl, d).unwrap();
        assert_eq!(
            t.reads.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
            ["db/creds/app"]
        );
        let mut env = Environment::new();
        register(&mut env);
        let out = env
            .render_str(&t.source, json!({"reads": [{"Data": {"username": "v-1"}}]}))
            .unwrap();
        assert_eq!(out, "{{ literal }} u=v-1");
        // Go's delimiters are plain text then.
        assert!(translate_with("[[ .Data.x ", d)
            .unwrap_err()
            .to_string()
            .contains("`[[` without `]]`"));
    }

    fn render_bv(tpl: &str, data: serde_json::Value) -> String {
        let t = translate_bankvaults(tpl).unwrap_or_else(|e| panic!("{tpl}: {e}"));
        let mut env = Environment::new();
        register(&mut env);
        env.render_str(&t.source, json!({ "data": data }))
            .unwrap_or_else(|e| panic!("{}: {e}", t.source))
    }

    #[test]
    fn bank_vaults_templates() {
        let data = json!({"DOCKER_USERNAME": "banzaicloud", "AWS_ACCESS_KEY_ID": "secretId",
            "password": "p@ss word", "value": {"nested": {"key": "deep"}}});
        for (tpl, want) in [
            ("${.password}", "p@ss word"),
            (
                "My username on DockerHub is: ${title .DOCKER_USERNAME}",
                "My username on DockerHub is: Banzaicloud",
            ),
            (
                "AWS key in base64: ${.AWS_ACCESS_KEY_ID | b64enc}",
                "AWS key in base64: c2VjcmV0SWQ=",
            ),
            ("prefix ${.value.nested.key} suffix", "prefix deep suffix"),
            ("${.password | urlquery}", "p%40ss+word"),
            ("${ .missing }", "<no value>"),
            ("${ default \"x\" .missing }", "x"),
            (
                "${ .DOCKER_USERNAME | upper | replace \"BANZAI\" \"b\" }",
                "bCLOUD",
            ),
            ("{{ not a tag }} ${.password}", "{{ not a tag }} p@ss word"),
        ] {
            assert_eq!(render_bv(tpl, data.clone()), want, "{tpl}");
        }
        for (tpl, want) in [
            ("${ file \"/etc/passwd\" }", "reads files"),
            ("${ env \"HOME\" }", "reads files"),
            ("${ awskms .x }", "reads files"),
            ("${ .x", "without `}`"),
        ] {
            let e = translate_bankvaults(tpl).unwrap_err().to_string();
            assert!(e.contains(want), "{tpl}: {e}");
        }
        assert_eq!(
            go_title("hello wORLD o'neil x_y".into()),
            "Hello WORLD O'Neil X_y"
        );
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
    fn every_secret_call_is_a_read_found_at_translation() {
        let t = translate(
            r#"{{ with secret "database/creds/app" }}{{ .Data.username }}{{ end }}
{{ with secret "/kv/data/app/" }}{{ with secret "pki/issue/web" "common_name=a.example.com" "ttl=60s" "alt_names=b=c" }}{{ .Data.certificate }}{{ end }}{{ end }}
{{ $s := secret "database/creds/app" }}{{ $s.Data.password }}{{ with $v := secret "kv/app?version=2" }}{{ $v.Data.x }}{{ .Data.x }}{{ end }}"#,
        )
        .unwrap();
        let read = |path: &str, version: Option<u64>, params: &[(&str, &str)]| ReadSpec {
            path: path.into(),
            version,
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        assert_eq!(
            t.reads,
            vec![
                read("database/creds/app", None, &[]),
                read("kv/data/app", None, &[]),
                read(
                    "pki/issue/web",
                    None,
                    &[
                        ("alt_names", "b=c"),
                        ("common_name", "a.example.com"),
                        ("ttl", "60s")
                    ]
                ),
                read("kv/app", Some(2), &[]),
            ],
            "the same call twice is one read"
        );
        assert!(t.source.contains("reads[0]") && t.source.contains("reads[3]"));
        let many: String = (0..=MAX_READS)
            .map(|i| format!("{{{{ with secret \"kv/{i}\" }}}}{{{{ end }}}}"))
            .collect();
        let err = translate(&many).unwrap_err().to_string();
        assert!(
            err.contains("more than 64 different `secret` calls"),
            "{err}"
        );
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
                "{{ with secret (printf \"secret/%s\" \"a\") }}{{ end }}",
                "computed path",
            ),
            ("{{ range secrets \"secret/\" }}{{ end }}", "`secrets`"),
            (
                "{{ with secret \"pki/issue/x\" \"common_name\" }}{{ end }}",
                "key=value",
            ),
            ("{{ with secret \"a?foo=1\" }}{{ end }}", "query"),
            ("{{ with secret \"a/../sys\" }}{{ end }}", "`..`"),
            (
                "{{ with secret \"a\" }}{{ .Data.x | sprig_thing }}{{ end }}",
                "`sprig_thing`",
            ),
            ("{{ .Data.x }}", "outside `with secret"),
            ("{{ template \"x\" }}", "`template`"),
            (
                "{{ with secret \"a\" }}{{ .Data.x | writeToFile \"/x\" \"\" \"\" \"0644\" }}{{ end }}",
                "`writeToFile`",
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

    /// Renders `text` + the value of `.Data.x` + `text`.
    fn sandwich(text: &str) -> String {
        let tpl =
            format!("{text}{{{{ with secret \"kv/a\" }}}}{{{{ .Data.x }}}}{{{{ end }}}}{text}");
        render(&tpl, json!({"x": "V"}))
    }

    #[test]
    fn hostile_literal_text_renders_byte_for_byte() {
        for text in [
            "{% endraw %}{{ data }}",
            "{%- endraw -%}{{ secret }}{% raw %}",
            "{% raw %}",
            "{%raw%}x{%endraw%}{% if true %}y{% endif %}",
            "{# c #}{#",
            "{x",
            "a{ ",
            "{ { { x",
            "{%{%{#{ ",
            "} }} %} #} -}}",
            "\"quotes\" 'single' \\ backslash \\\" \\u0041 \\n",
            "unicode é ü 中文 🦀 {% endraw %}",
            "\u{0}\u{1}\t\r\n",
        ] {
            // `{{` opens a Go action, so Go literal text never holds it;
            // everything else must come out unchanged.
            let text = text.replace("{{", "{ {");
            assert_eq!(sandwich(&text), format!("{text}V{text}"), "{text:?}");
        }
    }

    #[test]
    fn go_trimming_applies_to_tag_like_literal_text() {
        let tpl = "  {% x %}  {{- with secret \"a\" -}}  {% y %}  {{- .Data.x -}}  {# z #}\n {{- end -}}  ";
        assert_eq!(render(tpl, json!({"x": "V"})), "  {% x %}{% y %}V{# z #}");
    }

    #[test]
    fn endraw_in_text_cannot_smuggle_a_construct() {
        // Before the fix this rendered the secret through `data`, a
        // construct the translator never emits.
        let text = "{% endraw %}{% for k in secret %}K{% endfor %}{% raw %}";
        let tpl = format!("{text}{{{{ with secret \"kv/a\" }}}}{{{{ end }}}}");
        let t = translate(&tpl).unwrap();
        // No statement at all reaches minijinja: the text is one string.
        use minijinja::machinery::{tokenize, Token, WhitespaceConfig};
        let statements = tokenize(
            &t.source,
            false,
            Default::default(),
            WhitespaceConfig::default(),
        )
        .filter(|tok| matches!(tok, Ok((Token::BlockStart, _))))
        .count();
        assert_eq!(statements, 0, "{}", t.source);
        assert_eq!(render(&tpl, json!({"x": "V"})), text);
    }

    #[test]
    fn pipes_inside_groups_belong_to_the_group() {
        let tpl = r#"{{ with secret "a" }}{{ (.Data.x | toUpper) | toLower }}{{ end }}"#;
        assert_eq!(render(tpl, json!({"x": "MiXed"})), "mixed");
    }

    fn nested_parens(n: usize) -> String {
        format!(
            "{{{{ with secret \"kv/a\" }}}}{{{{ {}.Data.data.x{} }}}}{{{{ end }}}}",
            "(".repeat(n),
            ")".repeat(n)
        )
    }

    #[test]
    fn deep_nesting_is_refused_naming_the_limit() {
        // ~9.7 KB of parentheses used to overflow the stack.
        for n in [MAX_NESTING, 4850, 100_000] {
            let err = translate(&nested_parens(n)).unwrap_err().to_string();
            assert!(
                err.contains("nesting exceeds 64 levels") || err.contains("bytes, above the limit"),
                "{n}: {err}"
            );
        }
        let blocks = format!(
            "{{{{ with secret \"kv/a\" }}}}{}{}{{{{ end }}}}",
            "{{ if .Data.x }}".repeat(MAX_NESTING),
            "{{ end }}".repeat(MAX_NESTING)
        );
        let err = translate(&blocks).unwrap_err().to_string();
        assert!(err.contains("nesting exceeds 64 levels"), "{err}");
    }

    #[test]
    fn nesting_at_the_limit_translates_and_compiles() {
        let deep_calls = format!(
            "{{{{ with secret \"kv/a\" }}}}{{{{ {}.Data.x{} }}}}{{{{ end }}}}",
            "(toLower ".repeat(MAX_NESTING - 1),
            ")".repeat(MAX_NESTING - 1)
        );
        let half = MAX_NESTING / 2;
        let mixed = format!(
            "{{{{ with secret \"kv/a\" }}}}{}{{{{ {}.Data.x{} }}}}{}{{{{ end }}}}",
            "{{ if .Data.x }}".repeat(half - 1),
            "(eq \"a\" ".repeat(half),
            ")".repeat(half),
            "{{ end }}".repeat(half - 1)
        );
        for tpl in [nested_parens(MAX_NESTING - 1), deep_calls, mixed] {
            let t = translate(&tpl).unwrap();
            crate::annotations::check_template(&t.source)
                .unwrap_or_else(|e| panic!("{e}: {}", t.source));
            render(&tpl, json!({"x": "v", "data": {"x": "v"}}));
        }
    }

    #[test]
    fn size_action_and_token_limits_are_named() {
        let big = "x".repeat(MAX_TEMPLATE_BYTES + 1);
        let err = translate(&big).unwrap_err().to_string();
        assert!(err.contains("above the limit of 65536 bytes"), "{err}");
        let many = "{{ \"a\" }}".repeat(MAX_ACTIONS + 1);
        let err = translate(&many).unwrap_err().to_string();
        assert!(err.contains("more than 4096 actions"), "{err}");
        let tokens = format!("{{{{ and{} }}}}", " true".repeat(MAX_ACTION_TOKENS));
        let err = translate(&tokens).unwrap_err().to_string();
        assert!(err.contains("more than 1024 tokens"), "{err}");
    }

    #[test]
    fn output_stays_linear_in_the_input() {
        // The most expanding inputs: escaped braces and escaped strings.
        for unit in [
            "\u{1}{%",
            "{%",
            "{{ \"\\u0001\" }}",
            "{{ with secret \"a\" }}{{ .Data.a.b.c.d }}{{ end }}",
        ] {
            let src = unit.repeat(MAX_TEMPLATE_BYTES / unit.len());
            if let Ok(t) = translate(&src) {
                assert!(
                    t.source.len() <= 8 * src.len(),
                    "{unit}: {}",
                    t.source.len()
                );
            }
        }
    }

    #[test]
    fn render_work_is_bounded_by_fuel() {
        let mut env = Environment::new();
        register_filters(&mut env);
        env.add_template(
            "t",
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        )
        .unwrap();
        let err = env.get_template("t").unwrap().render(()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::OutOfFuel, "{err}");
    }

    /// Literal text without `{{` (Go's only delimiter) and not ending in `{`.
    fn literal() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        proptest::collection::vec(
            prop_oneof![
                Just("{%".to_string()),
                Just("{#".to_string()),
                Just("%}".to_string()),
                Just("}}".to_string()),
                Just("{% endraw %}".to_string()),
                Just("{%- endraw -%}".to_string()),
                Just("{% raw %}".to_string()),
                Just("-".to_string()),
                "[ -~]",
                "\\PC",
                Just("\\".to_string()),
                Just("\"".to_string()),
                Just("\n".to_string()),
            ],
            0..24,
        )
        .prop_map(|v| {
            // One pass of replace leaves `{{` behind in `{{{`.
            let mut s = v.concat();
            while s.contains("{{") {
                s = s.replace("{{", "{ {");
            }
            s
        })
        .prop_filter("no trailing {", |s| !s.ends_with('{'))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn literal_text_round_trips(a in literal(), b in literal()) {
            let tpl = format!("{a}{{{{ with secret \"kv/a\" }}}}{b}{{{{ .Data.x }}}}{a}{{{{ end }}}}{b}");
            proptest::prop_assert_eq!(render(&tpl, json!({"x": "V"})), format!("{a}{b}V{a}{b}"));
        }

        #[test]
        fn translation_never_panics_and_stays_bounded(
            src in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just("{{".to_string()),
                    proptest::strategy::Just("}}".to_string()),
                    proptest::strategy::Just("(".to_string()),
                    proptest::strategy::Just(")".to_string()),
                    proptest::strategy::Just("|".to_string()),
                    proptest::strategy::Just(" with secret \"a\" ".to_string()),
                    proptest::strategy::Just(" end ".to_string()),
                    proptest::strategy::Just(" if ".to_string()),
                    proptest::strategy::Just(" range $k, $v := ".to_string()),
                    proptest::strategy::Just(" else ".to_string()),
                    proptest::strategy::Just(".Data.x".to_string()),
                    proptest::strategy::Just("$v".to_string()),
                    proptest::strategy::Just(" toJSON ".to_string()),
                    proptest::strategy::Just(" eq ".to_string()),
                    proptest::strategy::Just("\"s\"".to_string()),
                    proptest::strategy::Just("-".to_string()),
                    "\\PC{0,3}",
                ],
                0..64,
            )
        ) {
            let src = src.concat();
            if let Ok(t) = translate(&src) {
                proptest::prop_assert!(t.source.len() <= 8 * src.len() + 64);
                let mut env = Environment::new();
                register(&mut env);
                // What translates must compile: the pod would otherwise fail
                // only at render time.
                proptest::prop_assert!(
                    env.add_template("t", &t.source).is_ok(),
                    "{:?} -> {:?}", src, t.source
                );
            }
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
            .render(json!({"reads": [{"Data": {"x": "TOPSECRET!!"}}]}))
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(!msg.contains("TOPSECRET"), "{msg}");
        assert!(msg.contains("not valid base64"), "{msg}");
    }
}
