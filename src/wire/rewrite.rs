//! Byte-level JSON field surgery: find a value by its path of object keys, list an
//! array's elements or an object's members, read a string, and rewrite a message by
//! splicing only the bytes that change (set one member, remove some members).
//!
//! Aggregation rewrites payloads (tool names get a prefix, lists are merged, cursors are
//! replaced); the router's rule is that a payload is never re-serialized, so every
//! rewrite here is a splice of the original bytes and everything not named stays exactly
//! as it arrived — whitespace, key order, number spelling, escapes. Offsets come from
//! serde_json's borrowed `RawValue`s (pointer arithmetic against the input, as
//! `router::cancelled_request` does), so serde_json does all the parsing and validation:
//! no `serde_json::Value` is ever built and there is no second JSON grammar to get wrong.
//!
//! Every function takes any bytes and never panics; anything malformed (not JSON, not
//! UTF-8, trailing garbage, a step of the path missing or not an object) is `None`.
//! Duplicate keys resolve as serde_json's maps do: the last one wins.
//!
//! Deliberately not here: deciding *what* to rewrite (that is `router::aggregate`), I/O,
//! and JSON arrays indexed by position in a path (paths are object keys only).

use std::borrow::Cow;
use std::fmt;

use serde::de::{
    Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::value::RawValue;

/// A byte range inside a JSON text.
pub type Span = std::ops::Range<usize>;

/// Span of the JSON value at `path` (a chain of object keys, e.g. `&["params","name"]`)
/// inside the JSON text `raw`; `None` if a step is missing or not an object. With
/// duplicate keys, the last one (serde_json map semantics) wins. An empty path is the
/// whole value, without the whitespace around it.
pub fn find(raw: &[u8], path: &[&str]) -> Option<Span> {
    if path.is_empty() {
        return value_span(raw);
    }
    locate(raw, path)
}

/// Spans of the elements of the JSON array at `path` (empty path = `raw` itself), in
/// order.
pub fn elements(raw: &[u8], path: &[&str]) -> Option<Vec<Span>> {
    let part = raw.get(locate(raw, path)?)?;
    let Arr(items) = serde_json::from_slice(part).ok()?;
    items.into_iter().map(|v| offset_of(raw, v)).collect()
}

/// The string value at `span` of `raw`, unescaped; `None` when it is not exactly a JSON
/// string (whitespace around it included).
pub fn string_at(raw: &[u8], span: Span) -> Option<Cow<'_, str>> {
    let part = raw.get(span)?;
    if part.len() < 2 || part.first() != Some(&b'"') || part.last() != Some(&b'"') {
        return None;
    }
    let Key(s) = serde_json::from_slice(part).ok()?;
    Some(s)
}

/// `raw` with each span replaced by its text; spans sorted ascending and disjoint
/// (checked by `debug_assert`). In a release build an edit out of order or out of range
/// is clamped to what is left rather than panicking.
pub fn splice(raw: &[u8], edits: &[(Span, &[u8])]) -> Vec<u8> {
    debug_assert!(
        edits.windows(2).all(|w| w[0].0.end <= w[1].0.start),
        "splice: spans must be sorted and disjoint"
    );
    debug_assert!(
        edits
            .iter()
            .all(|(s, _)| s.start <= s.end && s.end <= raw.len()),
        "splice: span out of range"
    );
    let grow: usize = edits.iter().map(|(_, t)| t.len()).sum();
    let mut out = Vec::with_capacity(raw.len() + grow);
    let mut at = 0;
    for (span, text) in edits {
        let start = span.start.clamp(at, raw.len());
        let end = span.end.clamp(start, raw.len());
        out.extend_from_slice(&raw[at..start]);
        out.extend_from_slice(text);
        at = end;
    }
    out.extend_from_slice(&raw[at..]);
    out
}

/// The JSON string literal for `s` (quotes and escapes, exactly as serde_json writes it:
/// `"` `\` and the C0 controls escaped, `\b \t \n \f \r` by name, the others as `\u00xx`
/// in lowercase hex; everything else, non-ASCII included, verbatim).
pub fn quote(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 2);
    quote_into(&mut out, s);
    // Only ASCII escapes were added to valid UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// [`quote`], appended to `out`.
pub fn quote_into(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&s.as_bytes()[plain..i]);
        if esc.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(esc);
        }
        plain = i + 1;
    }
    out.extend_from_slice(&s.as_bytes()[plain..]);
    out.push(b'"');
}

/// `raw` (a JSON object text) with member `"key":value_json` set in the object at `path`:
/// the value replaced in place if the key exists (its last occurrence), else the member
/// inserted as the object's first member, right after `{`. Objects along the path must
/// exist. `None` if the target is not an object, or if `value_json` is not one JSON
/// value (so the result is always valid JSON).
pub fn set_member(raw: &[u8], path: &[&str], key: &str, value_json: &[u8]) -> Option<Vec<u8>> {
    serde_json::from_slice::<&RawValue>(value_json).ok()?;
    let (open, members) = object(raw, locate(raw, path)?)?;
    if let Some(m) = members.iter().rev().find(|m| m.key == key) {
        return Some(splice(raw, &[(m.value.clone(), value_json)]));
    }
    let mut member = quote(key).into_bytes();
    member.push(b':');
    member.extend_from_slice(value_json);
    if !members.is_empty() {
        member.push(b',');
    }
    Some(splice(raw, &[(open + 1..open + 1, &member)]))
}

/// `raw` with the members of the object at `path` whose key satisfies `drop` removed
/// (every occurrence of a duplicate key is asked about). Commas are fixed and the
/// whitespace of the rest is untouched: a dropped member goes with the separator before
/// it, or, before the first member kept, with the separator after it. Unchanged bytes
/// when nothing is dropped. `None` if not an object.
pub fn remove_members(raw: &[u8], path: &[&str], drop: impl Fn(&str) -> bool) -> Option<Vec<u8>> {
    let (_, members) = object(raw, locate(raw, path)?)?;
    let dropped: Vec<bool> = members.iter().map(|m| drop(&m.key)).collect();
    let Some(first_kept) = dropped.iter().position(|d| !d) else {
        // Everything goes: from the first key to the last value, the whitespace after
        // `{` and before `}` stays.
        return Some(match (members.first(), members.last()) {
            (Some(a), Some(z)) => splice(raw, &[(a.key_start..z.value.end, b"")]),
            _ => raw.to_vec(),
        });
    };
    let mut edits: Vec<(Span, &[u8])> = Vec::new();
    for (i, m) in members.iter().enumerate() {
        if !dropped[i] {
            continue;
        }
        let span = if i < first_kept {
            m.key_start..members[i + 1].key_start
        } else {
            members[i - 1].value.end..m.value.end
        };
        // Runs of dropped members give touching spans; one edit each keeps it simple.
        edits.push((span, b""));
    }
    Some(splice(raw, &edits))
}

/// Key names (unescaped) and value spans of the object at `path`, in document order,
/// duplicates included.
pub fn members(raw: &[u8], path: &[&str]) -> Option<Vec<(String, Span)>> {
    let (_, members) = object(raw, locate(raw, path)?)?;
    Some(
        members
            .into_iter()
            .map(|m| (m.key.into_owned(), m.value))
            .collect(),
    )
}

/// One member of an object, located in the whole text.
struct Member<'a> {
    key: Cow<'a, str>,
    /// Offset of the key's opening quote.
    key_start: usize,
    value: Span,
}

/// The offset of the `{` and the members of the object that is exactly `raw[span]`.
fn object(raw: &[u8], span: Span) -> Option<(usize, Vec<Member<'_>>)> {
    let part = raw.get(span.clone())?;
    if part.first() != Some(&b'{') {
        return None;
    }
    let Obj(entries) = serde_json::from_slice(part).ok()?;
    let mut out = Vec::with_capacity(entries.len());
    let mut after = span.start + 1;
    for (key, value) in entries {
        let value = offset_of(raw, value)?;
        // serde_json accepted the text, so between the previous value (or `{`) and this
        // value there is only whitespace, a comma, the key and a colon: the first quote
        // is the key's.
        let gap = raw.get(after..value.start)?;
        let key_start = after + memchr::memchr(b'"', gap)?;
        after = value.end;
        out.push(Member {
            key,
            key_start,
            value,
        });
    }
    Some((span.start, out))
}

/// [`find`], except that with an empty path the span is only `raw` trimmed, not yet
/// checked to be JSON: the caller parses it anyway (as an object or an array), and one
/// pass over a large list reply is enough.
fn locate(raw: &[u8], path: &[&str]) -> Option<Span> {
    let mut span = trimmed(raw);
    for step in path {
        let part = raw.get(span)?;
        if part.first() != Some(&b'{') {
            return None;
        }
        let mut de = serde_json::Deserializer::from_slice(part);
        let value = Pick(step).deserialize(&mut de).ok()??;
        de.end().ok()?;
        span = offset_of(raw, value)?;
    }
    Some(span)
}

/// `raw` without the JSON whitespace around it.
fn trimmed(raw: &[u8]) -> Span {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let start = raw.iter().position(|b| !ws(b)).unwrap_or(raw.len());
    let end = raw.iter().rposition(|b| !ws(b)).map_or(start, |i| i + 1);
    start..end
}

/// The span of the one JSON value that is `raw`, without the whitespace around it.
fn value_span(raw: &[u8]) -> Option<Span> {
    let v: &RawValue = serde_json::from_slice(raw).ok()?;
    offset_of(raw, v)
}

/// Where a `RawValue` borrowed from `raw` sits in it.
fn offset_of(raw: &[u8], v: &RawValue) -> Option<Span> {
    let text = v.get();
    let start = (text.as_ptr() as usize).checked_sub(raw.as_ptr() as usize)?;
    let end = start.checked_add(text.len())?;
    (end <= raw.len()).then_some(start..end)
}

/// A string borrowed from the input when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// An object's members in document order, duplicates kept, values unparsed.
struct Obj<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Obj<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Obj<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Obj<'de>, A::Error> {
                let mut out = Vec::new();
                while let Some(Key(k)) = map.next_key()? {
                    out.push((k, map.next_value()?));
                }
                Ok(Obj(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// The value of one key of an object (the last one when the key repeats), the others
/// validated and skipped. Every routed call looks up `params.name` this way: no member
/// list is built, nothing is allocated unless a key has escapes.
struct Pick<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for Pick<'_> {
    type Value = Option<&'de RawValue>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Pick<'_> {
    type Value = Option<&'de RawValue>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(Key(k)) = map.next_key()? {
            if k == self.0 {
                found = Some(map.next_value()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// An array's elements in order, unparsed.
struct Arr<'a>(Vec<&'a RawValue>);

impl<'de> Deserialize<'de> for Arr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Arr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Arr<'de>, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element()? {
                    out.push(v);
                }
                Ok(Arr(out))
            }
        }
        d.deserialize_seq(V)
    }
}

#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod tests;
