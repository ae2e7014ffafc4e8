//! Go's own notations, as the tools we are compatible with read them:
//! `strconv`/`time`/`resource` value parsing (`goparse`) and Go/consul-template
//! templates translated to minijinja (`gotmpl`), and how those templates print
//! Go values (`govalue`: `fmt`, encoding/json, yaml.v2). Below both the annotations and
//! the dialects in `compat`, which use them.

pub mod goparse;
pub mod gotmpl;
pub mod govalue;
