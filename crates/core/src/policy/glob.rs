//! Shell-style globs (`*`, `?`) and the path and service-account matchers the
//! policy and volume allowlists share.
//!
//! No character classes and no `**`: the patterns come from operators, and a
//! smaller language is easier to audit.

/// `*` matches any run of characters (including none), `?` one character.
pub fn matches(pattern: &str, text: &str) -> bool {
    if !pattern.contains(['*', '?']) {
        return pattern == text;
    }
    // Bytes are characters for ASCII, the common case (namespaces, roles);
    // anything else is matched per char so `?` never splits a UTF-8 sequence.
    if pattern.is_ascii() && text.is_ascii() {
        match_slices(pattern.as_bytes(), text.as_bytes(), b'*', b'?')
    } else {
        let p: Vec<char> = pattern.chars().collect();
        let t: Vec<char> = text.chars().collect();
        match_slices(&p, &t, '*', '?')
    }
}

/// Iterative matcher with single-star backtracking: linear in practice and
/// immune to the exponential blow-up of naive recursion.
fn match_slices<T: PartialEq + Copy>(p: &[T], t: &[T], star_c: T, any: T) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == any || p[pi] == t[ti]) && p[pi] != star_c {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == star_c {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == star_c)
}

pub fn any_matches(patterns: &[String], text: &str) -> bool {
    patterns.iter().any(|p| matches(p, text))
}

/// Whether a service-account pattern admits `namespace/service_account`.
/// `ns/sa` patterns name both (each part a glob); a bare `sa` pattern matches
/// the service account in any namespace the surrounding rule already admits.
pub fn service_account_matches(pattern: &str, namespace: &str, service_account: &str) -> bool {
    match pattern.split_once('/') {
        Some((ns, sa)) => matches(ns, namespace) && matches(sa, service_account),
        None => matches(pattern, service_account),
    }
}

/// Vault path segments with the KV v2 `data/` segment removed, so
/// `secret/team-a/db` and `secret/data/team-a/db` compare equal: the agent
/// inserts `data/` itself, and a policy must not be bypassable by spelling.
pub fn canonical_segments(path: &str) -> Vec<&str> {
    let mut segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segs.len() > 1 && segs[1] == "data" {
        segs.remove(1);
    }
    segs
}

/// Whether a Vault path is inside a prefix. Whole segments are compared (each
/// prefix segment a glob), so `secret/team-a` does not admit `secret/team-ab`.
/// `*` alone admits every path.
pub fn path_within(prefix: &str, path: &str) -> bool {
    segments_within(prefix, &canonical_segments(path))
}

/// [`path_within`] for a path already split by [`canonical_segments`].
pub fn segments_within(prefix: &str, path: &[&str]) -> bool {
    let pre = canonical_segments(prefix);
    !pre.is_empty() && path.len() >= pre.len() && pre.iter().zip(path).all(|(g, s)| matches(g, s))
}

pub use crate::contract::path_is_suspicious;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(matches("team-*", "team-a"));
        assert!(matches("*", ""));
        assert!(matches("t?am", "team"));
        assert!(matches("a*b*c", "axxbyyc"));
        assert!(!matches("team-*", "other"));
        assert!(!matches("team", "team-a"));
        assert!(!matches("a*b", "a"));
        assert!(matches("é?", "éü"));
        assert!(!matches("é?", "é"));
        assert!(matches("*b", "*b"));
    }

    #[test]
    fn many_stars_stay_polynomial() {
        // Naive backtracking takes exponential time here; the single-star
        // matcher is O(pattern x text), so this returns at once.
        let pattern = format!("{}b", "*a".repeat(40));
        let text = "a".repeat(16 * 1024);
        assert!(!matches(&pattern, &text));
        assert!(matches(&pattern, &format!("{text}b")));
        let unicode = "é".repeat(4096);
        assert!(!matches(&format!("{}ü", "*é".repeat(40)), &unicode));
    }

    #[test]
    fn service_accounts() {
        assert!(service_account_matches("web", "team-a", "web"));
        assert!(service_account_matches("team-a/web", "team-a", "web"));
        assert!(!service_account_matches("team-a/web", "team-b", "web"));
        assert!(service_account_matches("team-*/w*", "team-b", "web"));
    }

    #[test]
    fn paths() {
        assert!(path_within("secret/data/team-a", "secret/team-a/db"));
        assert!(path_within("secret/team-a/", "secret/data/team-a/db"));
        assert!(path_within("secret/team-a", "secret/team-a"));
        assert!(!path_within("secret/team-a", "secret/team-ab/db"));
        assert!(!path_within("secret/team-a/db", "secret/team-a"));
        assert!(path_within(
            "database/creds/team-a-*",
            "database/creds/team-a-ro"
        ));
        assert!(path_within("*", "anything/at/all"));
        assert!(!path_within("", "secret/x"));
        assert!(path_is_suspicious("secret/team-a/../team-b/db"));
        assert!(!path_is_suspicious("secret/team-a/db"));
    }
}
