//! The names clients see for the tools and prompts of several servers behind one router,
//! and the way back from such a name to the server and its own name.
//!
//! A name is `<prefix><sep><name>` made to fit the client rule `^[A-Za-z0-9_-]{1,64}$`
//! (what the strictest clients accept for tool names): every other character becomes `_`,
//! and a name past 64 characters keeps its first 55, then `_` and 8 hex digits of a
//! stable hash of the full name before sanitizing. Sanitizing can make two items' names
//! equal (`a.b` + `x` and `a_b` + `x`): the item that arrives second gets a numbered
//! variant, and the collision is reported once for the log. [`Names`] remembers which
//! name went to which item so a `tools/call` or `prompts/get` is routed back; before any
//! list has been seen, [`split_prefixed`] routes by the plain rule.
//!
//! Deliberately not here: parsing or writing list replies (the caller hands in names and
//! puts the results into bytes), choosing prefixes or separators (config), I/O.
//! Everything is pure and deterministic: the hash is FNV-1a, the same in every build and
//! version, never std's per-process `RandomState`.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

/// The longest name clients accept.
const MAX_LEN: usize = 64;
/// What a shortened name keeps of the sanitized name before `_` and the hash.
const KEEP: usize = MAX_LEN - 1 - 8;
/// Bound on remembered reported collisions (a server renaming its tools on every list
/// must not grow this forever; past it a collision may be reported again).
const MAX_REPORTED: usize = 4096;

/// The name the client sees for item `name` of the server with `prefix`:
/// `<prefix><sep><name>`, made to fit `^[A-Za-z0-9_-]{1,64}$`: every char outside
/// `[A-Za-z0-9_-]` becomes `_`; if longer than 64, the first 55 chars + `_` + 8 lowercase
/// hex chars of the FNV-1a 64 hash (high half XOR low half) of the full *unsanitized*
/// `<prefix><sep><name>`. Empty only when prefix, separator and name all are.
pub fn exposed(prefix: &str, sep: &str, name: &str) -> String {
    fit(&format!("{prefix}{sep}{name}"))
}

/// `full` sanitized and, when too long, shortened with its hash.
fn fit(full: &str) -> String {
    let mut out: String = full
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '_' | '-' => c,
            _ => '_',
        })
        .collect();
    // One ASCII byte per char of `full` now, so byte lengths are char counts.
    if out.len() > MAX_LEN {
        out.truncate(KEEP);
        let h = fnv1a(full.as_bytes());
        let _ = write!(out, "_{:08x}", (h >> 32) as u32 ^ h as u32);
    }
    out
}

/// `name` (already fitted, so ASCII) cut short enough to end in `_<n>` within 64.
fn numbered(name: &str, n: u64) -> String {
    let suffix = format!("_{n}");
    let keep = name.len().min(MAX_LEN - suffix.len());
    format!("{}{suffix}", &name[..keep])
}

/// 64-bit FNV-1a: tiny, fixed by its definition, so names never change between builds.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Two items that wanted the same exposed name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collision {
    /// The exposed name both wanted.
    pub name: String,
    /// The server index and original name that kept it.
    pub kept: (usize, String),
    /// The server index and original name that got a variant, and the variant.
    pub renamed: (usize, String, String),
}

/// Maps exposed names to (server index, original name) for one kind of item (tools or
/// prompts); built as list replies arrive.
#[derive(Debug, Default)]
pub struct Names {
    /// Exposed name → (server, original).
    by_exposed: HashMap<String, (usize, String)>,
    /// Server → original → exposed name.
    by_server: HashMap<usize, HashMap<String, String>>,
    /// Collisions not yet taken.
    collisions: Vec<Collision>,
    /// (kept server, kept original, renamed server, renamed original) already reported,
    /// so a list rebuilt on every `list_changed` does not report the same one again.
    reported: HashSet<(usize, String, usize, String)>,
}

impl Names {
    /// Records item `original` of server `server` (with its prefix and the separator) and
    /// returns the exposed name. The same (server, original) always gets the same name
    /// until the server is forgotten. If the name is already taken by a different
    /// (server, original), the newcomer gets the first free of `exposed(prefix, sep,
    /// original + "_2")`, `… + "_3"`, … (shortened with the hash rule, so it still fits
    /// 64), and the collision is returned once by [`Names::take_collisions`].
    pub fn insert(&mut self, server: usize, prefix: &str, sep: &str, original: &str) -> String {
        if let Some(name) = self.by_server.get(&server).and_then(|m| m.get(original)) {
            return name.clone();
        }
        let base = exposed(prefix, sep, original);
        let name = match self.by_exposed.get(&base) {
            None => base,
            Some((kept_server, kept_original)) => {
                let kept = (*kept_server, kept_original.clone());
                let full = format!("{prefix}{sep}{original}");
                // Shortened candidates differ only by their 32-bit hashes, which could
                // (in theory) keep colliding with taken names; past as many tries as names
                // are taken, candidates differ by their visible number instead, and one of
                // the next `taken + 1` of those is free, so this always ends.
                let tries = self.by_exposed.len() as u64 + 2;
                let mut n: u64 = 2;
                let variant = loop {
                    let candidate = if n <= tries {
                        fit(&format!("{full}_{n}"))
                    } else {
                        numbered(&base, n)
                    };
                    if !self.by_exposed.contains_key(&candidate) {
                        break candidate;
                    }
                    n += 1;
                };
                self.report(Collision {
                    name: base,
                    kept,
                    renamed: (server, original.to_owned(), variant.clone()),
                });
                variant
            }
        };
        self.by_exposed
            .insert(name.clone(), (server, original.to_owned()));
        self.by_server
            .entry(server)
            .or_default()
            .insert(original.to_owned(), name.clone());
        name
    }

    fn report(&mut self, c: Collision) {
        let key = (c.kept.0, c.kept.1.clone(), c.renamed.0, c.renamed.1.clone());
        if self.reported.len() >= MAX_REPORTED {
            self.reported.clear();
        }
        if self.reported.insert(key) {
            self.collisions.push(c);
        }
    }

    /// The server and original name behind an exposed name, if known.
    pub fn resolve(&self, exposed: &str) -> Option<(usize, &str)> {
        self.by_exposed
            .get(exposed)
            .map(|(server, original)| (*server, original.as_str()))
    }

    /// Forgets every name of `server` (its list is being rebuilt or it went away). The
    /// names of other servers stay as they are.
    pub fn forget_server(&mut self, server: usize) {
        if let Some(items) = self.by_server.remove(&server) {
            for name in items.values() {
                self.by_exposed.remove(name);
            }
        }
    }

    /// Collisions found since the last call (each pair of items at most once).
    pub fn take_collisions(&mut self) -> Vec<Collision> {
        std::mem::take(&mut self.collisions)
    }
}

/// When no list has been seen yet: which server (by its prefix in `prefixes`, index
/// order) an exposed name belongs to by the plain rule `<prefix><sep><original>` with no
/// sanitizing; the longest matching prefix wins (the first of equal ones). The original
/// must not be empty.
pub fn split_prefixed<'a>(
    exposed: &'a str,
    sep: &str,
    prefixes: &[&str],
) -> Option<(usize, &'a str)> {
    let mut best: Option<(usize, usize, &'a str)> = None;
    for (i, prefix) in prefixes.iter().enumerate() {
        let Some(original) = exposed
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix(sep))
            .filter(|o| !o.is_empty())
        else {
            continue;
        };
        if best.is_none_or(|(_, len, _)| prefix.len() > len) {
            best = Some((i, prefix.len(), original));
        }
    }
    best.map(|(i, _, original)| (i, original))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn valid(name: &str) -> bool {
        (1..=MAX_LEN).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    }

    #[test]
    fn fnv1a_is_the_published_function() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn exposed_joins_and_sanitizes() {
        assert_eq!(
            exposed("github", "__", "create_issue"),
            "github__create_issue"
        );
        assert_eq!(exposed("fs", "__", "read-file"), "fs__read-file");
        assert_eq!(exposed("fs", ".", "read file"), "fs_read_file");
        assert_eq!(exposed("a.b", "__", "x/y:z"), "a_b__x_y_z");
        // One `_` per character, not per byte.
        assert_eq!(exposed("s", "__", "é😀"), "s____");
        assert_eq!(exposed("s", "", ""), "s");
        assert_eq!(exposed("", "", ""), "");
    }

    #[test]
    fn exposed_shortens_with_a_stable_hash() {
        // Exactly 64 fits as is.
        let y59 = "y".repeat(59);
        assert_eq!(exposed("a.b", "__", &y59), format!("a_b__{y59}"));
        let x70 = "x".repeat(70);
        assert_eq!(
            exposed("srv", "__", &x70),
            "srv__xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx_d6da54e7"
        );
        // The hash is of the unsanitized name: names equal after sanitizing differ.
        assert_eq!(
            exposed("srv", "__", &"é".repeat(60)),
            "srv_____________________________________________________a487104c"
        );
        assert_ne!(
            exposed("srv", "__", &"é".repeat(60)),
            exposed("srv", "__", &"ü".repeat(60))
        );
        assert_eq!(exposed("srv", "__", &x70).len(), 64);
    }

    #[test]
    fn names_insert_resolve_and_collide() {
        let mut n = Names::default();
        assert_eq!(n.insert(0, "a.b", "__", "x"), "a_b__x");
        assert_eq!(n.insert(1, "a_b", "__", "x"), "a_b__x_2");
        assert_eq!(n.insert(2, "a-b", "__", "x"), "a-b__x");
        // A third claimant gets the next free variant.
        assert_eq!(n.insert(3, "a:b", "__", "x"), "a_b__x_3");
        assert_eq!(n.resolve("a_b__x"), Some((0, "x")));
        assert_eq!(n.resolve("a_b__x_2"), Some((1, "x")));
        assert_eq!(n.resolve("a_b__x_3"), Some((3, "x")));
        assert_eq!(n.resolve("a-b__x"), Some((2, "x")));
        assert_eq!(n.resolve("nope"), None);
        // The same item keeps its name.
        assert_eq!(n.insert(1, "a_b", "__", "x"), "a_b__x_2");
        assert_eq!(
            n.take_collisions(),
            [
                Collision {
                    name: "a_b__x".into(),
                    kept: (0, "x".into()),
                    renamed: (1, "x".into(), "a_b__x_2".into()),
                },
                Collision {
                    name: "a_b__x".into(),
                    kept: (0, "x".into()),
                    renamed: (3, "x".into(), "a_b__x_3".into()),
                },
            ]
        );
        assert_eq!(n.take_collisions(), []);
    }

    #[test]
    fn numbered_fits() {
        assert_eq!(numbered("s__t", 7), "s__t_7");
        let long = "x".repeat(64);
        assert_eq!(numbered(&long, 12), format!("{}_12", "x".repeat(61)));
        assert_eq!(numbered(&long, u64::MAX).len(), 64);
    }

    #[test]
    fn a_variant_already_taken_is_skipped() {
        let mut n = Names::default();
        assert_eq!(n.insert(0, "s", "_", "t_2"), "s_t_2");
        assert_eq!(n.insert(0, "s", "_", "t"), "s_t");
        assert_eq!(n.insert(1, "s", "_", "t"), "s_t_3");
        assert_eq!(n.resolve("s_t_2"), Some((0, "t_2")));
    }

    #[test]
    fn long_variants_still_fit() {
        let mut n = Names::default();
        let long = "x".repeat(70);
        // Shortened names hash the unsanitized name, so these two do not collide...
        let a = n.insert(0, "a.b", "__", &long);
        let b = n.insert(1, "a_b", "__", &long);
        assert_ne!(a, b);
        assert!(n.take_collisions().is_empty());
        // ...but two servers under one prefix do, and the variant is shortened too.
        let first = n.insert(2, "s", "__", &long);
        let second = n.insert(3, "s", "__", &long);
        assert_eq!(
            first,
            "s__xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx_68e488c7"
        );
        assert_eq!(
            second,
            "s__xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx_bf602af1"
        );
        assert!(valid(&first) && valid(&second), "{first} {second}");
        assert_eq!(second, fit(&format!("s__{long}_2")));
        assert_eq!(n.resolve(&second), Some((3, long.as_str())));
    }

    #[test]
    fn forget_server_frees_its_names_only() {
        let mut n = Names::default();
        n.insert(0, "a.b", "__", "x");
        n.insert(1, "a_b", "__", "x");
        n.insert(1, "a_b", "__", "y");
        n.forget_server(0);
        assert_eq!(n.resolve("a_b__x"), None);
        assert_eq!(n.resolve("a_b__x_2"), Some((1, "x")));
        assert_eq!(n.resolve("a_b__y"), Some((1, "y")));
        // Server 0 comes back: the base name is free again, and 1 keeps its variant.
        assert_eq!(n.insert(0, "a.b", "__", "x"), "a_b__x");
        n.forget_server(1);
        assert_eq!(n.resolve("a_b__x_2"), None);
        assert_eq!(n.resolve("a_b__y"), None);
        assert_eq!(n.resolve("a_b__x"), Some((0, "x")));
        n.forget_server(7);
        // Rebuilt, the same collision is not reported twice.
        assert_eq!(n.take_collisions().len(), 1);
        assert_eq!(n.insert(1, "a_b", "__", "x"), "a_b__x_2");
        assert_eq!(n.take_collisions(), []);
    }

    #[test]
    fn split_prefixed_by_the_plain_rule() {
        let prefixes = ["gh", "gh__enterprise", "fs", "fs"];
        assert_eq!(
            split_prefixed("gh__create", "__", &prefixes),
            Some((0, "create"))
        );
        assert_eq!(
            split_prefixed("gh__enterprise__create", "__", &prefixes),
            Some((1, "create"))
        );
        assert_eq!(
            split_prefixed("gh__enterprise", "__", &prefixes),
            Some((0, "enterprise"))
        );
        // Equal prefixes: the first.
        assert_eq!(
            split_prefixed("fs__read", "__", &prefixes),
            Some((2, "read"))
        );
        assert_eq!(split_prefixed("fs__", "__", &prefixes), None);
        assert_eq!(split_prefixed("fs_read", "__", &prefixes), None);
        assert_eq!(split_prefixed("xfs__read", "__", &prefixes), None);
        assert_eq!(split_prefixed("gh.x", ".", &prefixes), Some((0, "x")));
        assert_eq!(split_prefixed("ghx", "", &["g", "gh"]), Some((1, "x")));
        // No sanitizing: the exposed form of `a.b` is not `a_b`.
        assert_eq!(split_prefixed("a_b__x", "__", &["a.b"]), None);
        assert_eq!(split_prefixed("a.b__x.y", "__", &["a.b"]), Some((0, "x.y")));
        assert_eq!(split_prefixed("x", "__", &[]), None);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert { server: usize, item: usize },
        Forget { server: usize },
    }

    /// Prefixes and items chosen so that sanitizing makes names collide often.
    const PREFIXES: [&str; 4] = ["a", "a.b", "a_b", "a:b"];
    fn items() -> Vec<String> {
        let long = "l".repeat(60);
        vec![
            "x".into(),
            "b_x".into(),
            "b.x".into(),
            "x_2".into(),
            "b_x_2".into(),
            "é".into(),
            "_".into(),
            long.clone(),
            format!("{long}_2"),
            format!("{long}é"),
            format!("{long}ü"),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..PREFIXES.len(), 0..11usize).prop_map(|(server, item)| Op::Insert { server, item }),
            1 => (0..PREFIXES.len()).prop_map(|server| Op::Forget { server }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 1024,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn exposed_always_fits(prefix in "[A-Za-z0-9_-]{1,32}", sep in prop_oneof![Just(""), Just("__"), Just("."), Just("::"), Just("-")], name in any::<String>()) {
            let e = exposed(&prefix, sep, &name);
            prop_assert!(valid(&e), "{:?}", e);
            prop_assert_eq!(e, exposed(&prefix, sep, &name));
        }

        #[test]
        fn exposed_is_injective_for_valid_names(
            prefix in "[A-Za-z0-9_-]{1,32}",
            a in prop_oneof!["[A-Za-z0-9_-]{1,20}", "[A-Za-z0-9_-]{40,80}"],
            b in prop_oneof!["[A-Za-z0-9_-]{1,20}", "[A-Za-z0-9_-]{40,80}"],
        ) {
            prop_assume!(a != b);
            prop_assert_ne!(exposed(&prefix, "__", &a), exposed(&prefix, "__", &b));
        }

        #[test]
        fn names_resolve_what_they_gave(ops in prop::collection::vec(op(), 1..60)) {
            let items = items();
            let mut n = Names::default();
            // The model: the live (server, item) → name, and collisions seen.
            let mut live: HashMap<(usize, usize), String> = HashMap::new();
            let mut reported: HashSet<(usize, String, usize, String)> = HashSet::new();
            for op in ops {
                match op {
                    Op::Insert { server, item } => {
                        let original = &items[item];
                        let name = n.insert(server, PREFIXES[server], "__", original);
                        prop_assert!(valid(&name), "{}", name);
                        prop_assert_eq!(n.resolve(&name), Some((server, original.as_str())));
                        if let Some(before) = live.get(&(server, item)) {
                            prop_assert_eq!(before, &name);
                        }
                        let base = exposed(PREFIXES[server], "__", original);
                        let fresh = !live.contains_key(&(server, item));
                        let mut got = n.take_collisions();
                        if fresh && name != base {
                            let holder = live.iter().find(|(_, v)| **v == base).map(|(k, _)| *k);
                            prop_assert!(holder.is_some(), "variant {} while {} is free", name, base);
                            let (ks, ki) = holder.unwrap_or_default();
                            let new = reported.insert((ks, items[ki].clone(), server, original.clone()));
                            let want: Vec<Collision> = new.then(|| Collision {
                                name: base,
                                kept: (ks, items[ki].clone()),
                                renamed: (server, original.clone(), name.clone()),
                            }).into_iter().collect();
                            prop_assert_eq!(std::mem::take(&mut got), want);
                        }
                        prop_assert_eq!(got, vec![]);
                        live.insert((server, item), name);
                    }
                    Op::Forget { server } => {
                        n.forget_server(server);
                        let gone: Vec<String> = live.iter().filter(|(k, _)| k.0 == server).map(|(_, v)| v.clone()).collect();
                        live.retain(|k, _| k.0 != server);
                        for name in gone {
                            prop_assert_eq!(n.resolve(&name), None);
                        }
                    }
                }
                // Every live item still resolves to itself, under distinct names.
                let distinct: HashSet<&String> = live.values().collect();
                prop_assert_eq!(distinct.len(), live.len());
                for ((server, item), name) in &live {
                    prop_assert_eq!(n.resolve(name), Some((*server, items[*item].as_str())));
                }
            }
        }
    }
}
