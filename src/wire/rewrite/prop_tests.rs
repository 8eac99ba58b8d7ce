//! Property tests for `wire::rewrite` against serde_json's own `Value` as the model.
//!
//! Random JSON objects are written three ways — compact, pretty, and "wild" (random
//! whitespace between every token, random `\uXXXX` and `\/` escapes inside strings and
//! keys) — and every function is checked against what serde_json says the text means:
//! `find` agrees with `Value::pointer`, `elements`/`members` list what the value holds,
//! a string spliced to X and back is the original bytes exactly, `set_member` and
//! `remove_members` give the value with that change. Random and mutated bytes never
//! panic anywhere. 1024 cases each (`PROPTEST_CASES` for more).

use std::fmt::Write as _;

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, Value};

use super::*;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-c]{0,3}",
        "[\\x00-\\x1f\"\\\\/~é😀 a]{0,6}",
        any::<String>(),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => any::<i64>().prop_map(Value::from),
        // Eighths: exact in binary, so they survive the text round trip.
        1 => (-8000i32..8000).prop_map(|n| Value::from(f64::from(n) / 8.0)),
        3 => text().prop_map(Value::String),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            1 => prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            2 => prop::collection::btree_map(text(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(text(), value(), 0..8).prop_map(|m| m.into_iter().collect())
}

/// The three spellings of the same value.
fn spellings(v: &Value, noise: &[u8]) -> Vec<Vec<u8>> {
    let mut w = Wild {
        noise,
        at: 0,
        out: String::new(),
    };
    w.ws();
    w.value(v);
    w.ws();
    vec![
        serde_json::to_vec(v).unwrap_or_default(),
        serde_json::to_vec_pretty(v).unwrap_or_default(),
        w.out.into_bytes(),
    ]
}

/// A JSON writer that spends `noise` on whitespace and escapes.
struct Wild<'a> {
    noise: &'a [u8],
    at: usize,
    out: String,
}

impl Wild<'_> {
    fn pick(&mut self) -> u8 {
        let b = match self.noise.len() {
            0 => 0,
            n => self.noise[self.at % n],
        };
        self.at += 1;
        b
    }

    fn ws(&mut self) {
        let ws = match self.pick() % 5 {
            0 | 1 => "",
            2 => " ",
            3 => "\n    ",
            _ => " \t\r\n",
        };
        self.out.push_str(ws);
    }

    fn string(&mut self, s: &str) {
        self.out.push('"');
        for c in s.chars() {
            match self.pick() % 6 {
                0 => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        let _ = write!(self.out, "\\u{u:04x}");
                    }
                }
                1 => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        let _ = write!(self.out, "\\u{u:04X}");
                    }
                }
                2 if c == '/' => self.out.push_str("\\/"),
                _ => {
                    let q = quote(&c.to_string());
                    self.out.push_str(&q[1..q.len() - 1]);
                }
            }
        }
        self.out.push('"');
    }

    fn value(&mut self, v: &Value) {
        match v {
            Value::Object(m) => {
                self.out.push('{');
                for (i, (k, x)) in m.iter().enumerate() {
                    self.ws();
                    if i > 0 {
                        self.out.push(',');
                        self.ws();
                    }
                    self.string(k);
                    self.ws();
                    self.out.push(':');
                    self.ws();
                    self.value(x);
                }
                self.ws();
                self.out.push('}');
            }
            Value::Array(a) => {
                self.out.push('[');
                for (i, x) in a.iter().enumerate() {
                    self.ws();
                    if i > 0 {
                        self.out.push(',');
                        self.ws();
                    }
                    self.value(x);
                }
                self.ws();
                self.out.push(']');
            }
            Value::String(s) => self.string(s),
            other => self.out.push_str(&other.to_string()),
        }
    }
}

/// A path chosen by `steps` through the objects of `v` (stopping at anything else), maybe
/// with one more key that need not exist.
fn walk(v: &Value, steps: &[Index], extra: &Option<String>) -> Vec<String> {
    let mut path = Vec::new();
    let mut cur = v;
    for ix in steps {
        let Some(m) = cur.as_object().filter(|m| !m.is_empty()) else {
            break;
        };
        let Some((k, next)) = m.iter().nth(ix.index(m.len())) else {
            break;
        };
        path.push(k.clone());
        cur = next;
    }
    path.extend(extra.clone());
    path
}

/// Every path (through objects only) in `v` to a value that `want` accepts.
fn paths_to(v: &Value, want: &dyn Fn(&Value) -> bool) -> Vec<Vec<String>> {
    fn go(
        v: &Value,
        want: &dyn Fn(&Value) -> bool,
        here: &mut Vec<String>,
        out: &mut Vec<Vec<String>>,
    ) {
        if want(v) {
            out.push(here.clone());
        }
        if let Value::Object(m) = v {
            for (k, x) in m {
                here.push(k.clone());
                go(x, want, here, out);
                here.pop();
            }
        }
    }
    let mut out = Vec::new();
    go(v, want, &mut Vec::new(), &mut out);
    out
}

/// The model: serde_json's pointer lookup, where every step but the last is an object.
fn model_find<'v>(v: &'v Value, path: &[String]) -> Option<&'v Value> {
    let mut cur = v;
    let mut pointer = String::new();
    for k in path {
        cur.as_object()?;
        pointer.push('/');
        pointer.push_str(&k.replace('~', "~0").replace('/', "~1"));
        cur = v.pointer(&pointer)?;
    }
    Some(cur)
}

fn at_mut<'v>(v: &'v mut Value, path: &[String]) -> Option<&'v mut Value> {
    path.iter().try_fold(v, |cur, k| cur.get_mut(k))
}

fn parse(bytes: &[u8]) -> Option<Value> {
    serde_json::from_slice(bytes).ok()
}

fn strs(path: &[String]) -> Vec<&str> {
    path.iter().map(String::as_str).collect()
}

/// Small changes to valid JSON: a byte set, inserted or removed at a chosen place.
fn mutate(bytes: &[u8], edits: &[(Index, u8, u8)]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for (ix, what, b) in edits {
        let i = ix.index(out.len() + 1);
        match what % 3 {
            0 if i < out.len() => out[i] = *b,
            1 => out.insert(i, *b),
            _ if i < out.len() => {
                out.remove(i);
            }
            _ => out.push(*b),
        }
    }
    out
}

/// Calls every function on `bytes`; only panics matter.
fn exercise(bytes: &[u8], path: &[&str], span: Span) {
    let _ = find(bytes, path);
    let _ = elements(bytes, path);
    let _ = elements(bytes, &[]);
    let _ = string_at(bytes, span.clone());
    if let Some(s) = find(bytes, path) {
        let _ = string_at(bytes, s.clone());
        let _ = splice(bytes, &[(s, b"x")]);
    }
    let start = span.start.min(bytes.len());
    let clamped = start..span.end.clamp(start, bytes.len());
    let _ = splice(bytes, &[(clamped, b"\"y\"")]);
    let _ = set_member(bytes, path, "k", b"1");
    let _ = set_member(bytes, path, "k", bytes);
    let _ = remove_members(bytes, path, |k| k.len() % 2 == 0);
    let _ = members(bytes, path);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn find_agrees_with_pointer(
        obj in object(),
        noise in prop::collection::vec(any::<u8>(), 1..64),
        steps in prop::collection::vec(any::<Index>(), 0..5),
        extra in prop::option::weighted(0.3, text()),
    ) {
        let v = Value::Object(obj);
        let path = walk(&v, &steps, &extra);
        let expected = model_find(&v, &path).cloned();
        for bytes in spellings(&v, &noise) {
            let got = find(&bytes, &strs(&path)).map(|s| parse(&bytes[s]));
            prop_assert_eq!(&got, &expected.clone().map(Some), "path {:?} in {}", path, String::from_utf8_lossy(&bytes));
            if let Some(Value::String(s)) = &expected {
                let span = find(&bytes, &strs(&path)).unwrap_or_default();
                let read = string_at(&bytes, span);
                prop_assert_eq!(read.as_deref(), Some(s.as_str()));
            }
        }
    }

    #[test]
    fn members_and_elements_list_the_value(
        obj in object(),
        noise in prop::collection::vec(any::<u8>(), 1..64),
        pick in any::<Index>(),
    ) {
        let v = Value::Object(obj);
        let objects = paths_to(&v, &Value::is_object);
        let path = &objects[pick.index(objects.len())];
        let m = model_find(&v, path).and_then(Value::as_object).cloned().unwrap_or_default();
        let arrays = paths_to(&v, &Value::is_array);
        for bytes in spellings(&v, &noise) {
            let got = members(&bytes, &strs(path)).unwrap_or_default();
            let got: Vec<(String, Option<Value>)> = got.into_iter().map(|(k, s)| (k, parse(&bytes[s]))).collect();
            let want: Vec<(String, Option<Value>)> = m.iter().map(|(k, x)| (k.clone(), Some(x.clone()))).collect();
            prop_assert_eq!(got, want);
            for a in &arrays {
                let want: Vec<Option<Value>> = model_find(&v, a).and_then(Value::as_array).into_iter().flatten().cloned().map(Some).collect();
                let got: Vec<Option<Value>> = elements(&bytes, &strs(a)).unwrap_or_default().into_iter().map(|s| parse(&bytes[s])).collect();
                prop_assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn splice_to_x_and_back_is_the_original(
        obj in object(),
        noise in prop::collection::vec(any::<u8>(), 1..64),
        pick in any::<Index>(),
        x in text(),
    ) {
        let v = Value::Object(obj);
        let strings = paths_to(&v, &Value::is_string);
        prop_assume!(!strings.is_empty());
        let path = &strings[pick.index(strings.len())];
        let mut changed = v.clone();
        if let Some(slot) = at_mut(&mut changed, path) {
            *slot = Value::String(x.clone());
        }
        for bytes in spellings(&v, &noise) {
            let span = find(&bytes, &strs(path)).unwrap_or_default();
            let original = bytes[span.clone()].to_vec();
            let quoted = quote(&x);
            let once = splice(&bytes, &[(span, quoted.as_bytes())]);
            prop_assert_eq!(parse(&once), Some(changed.clone()));
            let span = find(&once, &strs(path)).unwrap_or_default();
            let read = string_at(&once, span.clone());
            prop_assert_eq!(read.as_deref(), Some(x.as_str()));
            let back = splice(&once, &[(span, &original)]);
            prop_assert_eq!(back, bytes);
        }
    }

    #[test]
    fn remove_members_removes_exactly_those(
        obj in object(),
        noise in prop::collection::vec(any::<u8>(), 1..64),
        pick in any::<Index>(),
        mask in prop::collection::vec(any::<bool>(), 0..10),
    ) {
        let v = Value::Object(obj);
        let objects = paths_to(&v, &Value::is_object);
        let path = &objects[pick.index(objects.len())];
        let keys: Vec<String> = model_find(&v, path).and_then(Value::as_object).map(|m| m.keys().cloned().collect()).unwrap_or_default();
        let gone: Vec<&String> = keys.iter().zip(mask.iter().chain(std::iter::repeat(&false))).filter(|(_, d)| **d).map(|(k, _)| k).collect();
        let mut want = v.clone();
        if let Some(Value::Object(m)) = at_mut(&mut want, path) {
            m.retain(|k, _| !gone.contains(&k));
        }
        for bytes in spellings(&v, &noise) {
            let out = remove_members(&bytes, &strs(path), |k| gone.iter().any(|g| g.as_str() == k));
            prop_assert_eq!(out.as_deref().and_then(parse), Some(want.clone()), "{}", String::from_utf8_lossy(&bytes));
            if gone.is_empty() {
                prop_assert_eq!(out, Some(bytes));
            }
        }
    }

    #[test]
    fn set_member_sets_exactly_that(
        obj in object(),
        noise in prop::collection::vec(any::<u8>(), 1..64),
        pick in any::<Index>(),
        existing in any::<Index>(),
        fresh in prop::option::of(text()),
        new in value(),
    ) {
        let v = Value::Object(obj);
        let objects = paths_to(&v, &Value::is_object);
        let path = &objects[pick.index(objects.len())];
        let keys: Vec<String> = model_find(&v, path).and_then(Value::as_object).map(|m| m.keys().cloned().collect()).unwrap_or_default();
        // A fresh key (which may still happen to exist) or one that surely exists.
        let key = match fresh {
            Some(k) => k,
            None if keys.is_empty() => "k".to_owned(),
            None => keys[existing.index(keys.len())].clone(),
        };
        let mut want = v.clone();
        if let Some(Value::Object(m)) = at_mut(&mut want, path) {
            m.insert(key.clone(), new.clone());
        }
        let new_json = serde_json::to_vec(&new).unwrap_or_default();
        for bytes in spellings(&v, &noise) {
            let out = set_member(&bytes, &strs(path), &key, &new_json);
            prop_assert_eq!(out.as_deref().and_then(parse), Some(want.clone()));
        }
    }

    #[test]
    fn quote_is_serde_json(s in prop_oneof![any::<String>(), "[\\x00-\\x1f\\x7f\"\\\\/é😀a]{0,12}"]) {
        prop_assert_eq!(Some(quote(&s)), serde_json::to_string(&s).ok());
    }

    #[test]
    fn random_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        path in prop::collection::vec(prop_oneof!["[a-c]", Just(String::new())], 0..3),
        a in 0usize..300,
        b in 0usize..300,
    ) {
        exercise(&bytes, &strs(&path), a..b);
    }

    #[test]
    fn mutated_json_never_panics(
        obj in object(),
        noise in prop::collection::vec(any::<u8>(), 1..64),
        steps in prop::collection::vec(any::<Index>(), 0..4),
        edits in prop::collection::vec((any::<Index>(), any::<u8>(), prop_oneof![any::<u8>(), prop::sample::select(b"{}[]\",:\\ 0".to_vec())]), 1..4),
        a in 0usize..300,
        b in 0usize..300,
    ) {
        let v = Value::Object(obj);
        let path = walk(&v, &steps, &None);
        for bytes in spellings(&v, &noise) {
            let broken = mutate(&bytes, &edits);
            exercise(&broken, &strs(&path), a..b);
            if let Some(p) = path.split_last().map(|(_, p)| p) {
                exercise(&broken, &strs(p), a..b);
            }
        }
    }
}
