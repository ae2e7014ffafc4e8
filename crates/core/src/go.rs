//! Go's own notations, as the tools we are compatible with read them:
//! `strconv`/`time`/`resource` value parsing (`goparse`) and Go/consul-template
//! templates translated to minijinja (`gotmpl`). Below both the annotations and
//! the dialects in `compat`, which use them.

pub mod goparse;
pub mod gotmpl;
