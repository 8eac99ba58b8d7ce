//! Byte-for-byte examples for every function of `wire::rewrite`: input bytes → exact
//! output bytes (or exact spans), whitespace-laden and escaped input included.

use super::*;

/// The text of `span` in `raw`, for readable assertions.
fn at(raw: &[u8], span: Span) -> &str {
    std::str::from_utf8(&raw[span]).unwrap_or("<not utf-8>")
}

fn found<'a>(raw: &'a [u8], path: &[&str]) -> Option<&'a str> {
    find(raw, path).map(|s| at(raw, s))
}

const CALL: &[u8] =
    br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"x":1}}}"#;

#[test]
fn find_compact_nested_paths() {
    assert_eq!(find(CALL, &["params", "name"]), Some(63..69));
    assert_eq!(found(CALL, &["params", "name"]), Some(r#""echo""#));
    assert_eq!(found(CALL, &["id"]), Some("1"));
    assert_eq!(found(CALL, &["params", "arguments"]), Some(r#"{"x":1}"#));
    assert_eq!(found(CALL, &["params", "arguments", "x"]), Some("1"));
    assert_eq!(found(CALL, &[]), std::str::from_utf8(CALL).ok());
}

#[test]
fn find_with_whitespace_everywhere() {
    let raw = b" \r\n{ \"params\" :\t{ \"name\" :  \"echo\" ,\n \"n\":[ 1 ] } }\n ";
    assert_eq!(find(raw, &["params", "name"]), Some(28..34));
    assert_eq!(found(raw, &["params", "n"]), Some("[ 1 ]"));
    assert_eq!(find(raw, &[]), Some(3..raw.len() - 2));
    assert_eq!(find(b"  [1, 2] ", &[]), Some(2..8));
    assert_eq!(find(b" 7 ", &[]), Some(1..2));
}

#[test]
fn find_escaped_keys_and_duplicates() {
    assert_eq!(found(br#"{"na\u006de":"x"}"#, &["name"]), Some(r#""x""#));
    assert_eq!(found(br#"{"a\"b":1,"a\\b":2}"#, &["a\"b"]), Some("1"));
    assert_eq!(found(br#"{"a\"b":1,"a\\b":2}"#, &["a\\b"]), Some("2"));
    // serde_json's maps keep the last of duplicate keys, and so does find.
    assert_eq!(found(br#"{"a":1,"b":0,"a":2}"#, &["a"]), Some("2"));
    assert_eq!(found(br#"{"a":{"x":1},"a":{"y":2}}"#, &["a", "x"]), None);
    assert_eq!(found("{\"é\":\"ü\"}".as_bytes(), &["é"]), Some("\"ü\""));
}

#[test]
fn find_missing_or_non_object_steps() {
    assert_eq!(find(CALL, &["nope"]), None);
    assert_eq!(find(CALL, &["params", "nope"]), None);
    assert_eq!(find(CALL, &["method", "x"]), None);
    assert_eq!(find(br#"{"a":[{"b":1}]}"#, &["a", "b"]), None);
    assert_eq!(find(br#"{"a":null}"#, &["a", "b"]), None);
    assert_eq!(find(br#"[{"a":1}]"#, &["a"]), None);
    assert_eq!(find(b"\"a\"", &["a"]), None);
}

#[test]
fn find_malformed_is_none() {
    for raw in [
        &b""[..],
        b"   ",
        b"{",
        br#"{"a":1"#,
        br#"{"a":1} x"#,
        br#"{"a":1}{}"#,
        br#"{"a":01}"#,
        br#"{"a":1,}"#,
        br#"{a:1}"#,
        b"{\"a\":\"\xff\"}",
        b"{\"\xff\":1}",
    ] {
        assert_eq!(
            find(raw, &["a"]),
            None,
            "{:?}",
            String::from_utf8_lossy(raw)
        );
        assert_eq!(find(raw, &[]), None, "{:?}", String::from_utf8_lossy(raw));
    }
    // Garbage after the value is malformed even when the path stops before it.
    assert_eq!(find(br#"{"a":{"b":1}} ]"#, &["a", "b"]), None);
}

#[test]
fn elements_in_order() {
    let raw = br#"{"result":{"tools":[ {"name":"a"} , 2,"x" ,[]],"nextCursor":"c"}}"#;
    let spans = elements(raw, &["result", "tools"]).unwrap_or_default();
    let texts: Vec<&str> = spans.iter().map(|s| at(raw, s.clone())).collect();
    assert_eq!(texts, [r#"{"name":"a"}"#, "2", r#""x""#, "[]"]);
    assert_eq!(spans[0], 21..33);
    assert_eq!(elements(b" [ 1 ,2 ] ", &[]), Some(vec![3..4, 6..7]));
    assert_eq!(elements(b"[]", &[]), Some(vec![]));
    assert_eq!(elements(b"[ \n ]", &[]), Some(vec![]));
    assert_eq!(elements(br#"{"a":[]}"#, &["a"]), Some(vec![]));
}

#[test]
fn elements_of_non_arrays_are_none() {
    assert_eq!(elements(br#"{"a":{}}"#, &["a"]), None);
    assert_eq!(elements(br#"{"a":"[1]"}"#, &["a"]), None);
    assert_eq!(elements(br#"{"a":[1,]}"#, &["a"]), None);
    assert_eq!(elements(b"[1] [2]", &[]), None);
    assert_eq!(elements(br#"{"b":[1]}"#, &["a"]), None);
    assert_eq!(elements(b"", &[]), None);
}

#[test]
fn string_at_unescapes_and_borrows() {
    let raw = br#"{"a":"plain","b":"q\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"}"#;
    let a = find(raw, &["a"]).unwrap_or_default();
    assert!(matches!(string_at(raw, a), Some(Cow::Borrowed("plain"))));
    let b = find(raw, &["b"]).unwrap_or_default();
    assert_eq!(
        string_at(raw, b).as_deref(),
        Some("q\"\\/\u{8}\u{c}\n\r\té😀")
    );
    assert_eq!(string_at(b"\"\"", 0..2).as_deref(), Some(""));
}

#[test]
fn string_at_non_strings_are_none() {
    let raw = br#"{"n":1,"s":"x","o":{}}"#;
    assert_eq!(string_at(raw, find(raw, &["n"]).unwrap_or_default()), None);
    assert_eq!(string_at(raw, find(raw, &["o"]).unwrap_or_default()), None);
    assert_eq!(string_at(raw, 0..raw.len()), None);
    // The span must be exactly the literal.
    assert_eq!(string_at(b" \"x\" ", 0..5), None);
    assert_eq!(string_at(b" \"x\" ", 1..4).as_deref(), Some("x"));
    assert_eq!(string_at(b"\"x\"", 0..2), None);
    assert_eq!(string_at(b"\"", 0..1), None);
    assert_eq!(string_at(b"\"x\\\"", 0..4), None);
    assert_eq!(string_at(b"\"\xff\"", 0..3), None);
    // Grammatical JSON, but no Rust string: a lone surrogate.
    let lone = br#"{"a":"\ud800"}"#;
    assert_eq!(find(lone, &["a"]), Some(5..13));
    assert_eq!(string_at(lone, 5..13), None);
    assert_eq!(string_at(b"\"a\"\"b\"", 0..6), None);
    // Out of range or reversed spans are not strings either.
    assert_eq!(string_at(b"\"x\"", 0..9), None);
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = 2..1;
    assert_eq!(string_at(b"\"x\"", reversed), None);
}

#[test]
fn splice_replaces_exactly_the_spans() {
    let raw = br#"{"name":"echo","cursor":"c1"}"#;
    assert_eq!(
        splice(raw, &[(8..14, br#""srv__echo""#), (24..28, b"null")]),
        br#"{"name":"srv__echo","cursor":null}"#
    );
    assert_eq!(splice(raw, &[]), raw);
    assert_eq!(splice(b"abc", &[(0..0, b"<"), (3..3, b">")]), b"<abc>");
    assert_eq!(splice(b"abc", &[(0..3, b"")]), b"");
    assert_eq!(splice(b"abc", &[(1..1, b"x"), (1..2, b"y")]), b"axyc");
    assert_eq!(splice(b"", &[(0..0, b"z")]), b"z");
}

#[test]
fn quote_writes_what_serde_json_writes() {
    assert_eq!(quote(""), r#""""#);
    assert_eq!(quote("echo"), r#""echo""#);
    assert_eq!(
        quote("a\"b\\c/\u{8}\u{c}\n\r\t\u{0}\u{1f}\u{7f}é😀"),
        "\"a\\\"b\\\\c/\\b\\f\\n\\r\\t\\u0000\\u001f\u{7f}é😀\""
    );
    for s in ["", "x", "\u{0}\u{1}\u{1b}", "\"\\", "é\n"] {
        assert_eq!(Some(quote(s)), serde_json::to_string(s).ok());
    }
}

#[test]
fn set_member_replaces_in_place() {
    let raw = b"{ \"a\" : 1 ,\n \"b\" :  \"old\" }";
    assert_eq!(
        set_member(raw, &[], "b", b"\"new\"").as_deref(),
        Some(&b"{ \"a\" : 1 ,\n \"b\" :  \"new\" }"[..])
    );
    // The key is compared unescaped; the last of duplicates is the one replaced.
    assert_eq!(
        set_member(br#"{"na\u006de":"x"}"#, &[], "name", br#""y""#).as_deref(),
        Some(&br#"{"na\u006de":"y"}"#[..])
    );
    assert_eq!(
        set_member(br#"{"a":1,"a":2}"#, &[], "a", b"3").as_deref(),
        Some(&br#"{"a":1,"a":3}"#[..])
    );
    assert_eq!(
        set_member(CALL, &["params"], "name", br#""srv__echo""#).as_deref(),
        Some(
            &br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"srv__echo","arguments":{"x":1}}}"#[..]
        )
    );
    assert_eq!(
        set_member(br#"{"a":{"b":{"c":[1,2]}}}"#, &["a", "b"], "c", b"{}").as_deref(),
        Some(&br#"{"a":{"b":{"c":{}}}}"#[..])
    );
}

#[test]
fn set_member_inserts_first() {
    assert_eq!(
        set_member(br#"{"a":1}"#, &[], "k", b"true").as_deref(),
        Some(&br#"{"k":true,"a":1}"#[..])
    );
    assert_eq!(
        set_member(b"{\n  \"a\": 1\n}", &[], "k", b"[]").as_deref(),
        Some(&b"{\"k\":[],\n  \"a\": 1\n}"[..])
    );
    assert_eq!(
        set_member(b"{}", &[], "k", b"1").as_deref(),
        Some(&b"{\"k\":1}"[..])
    );
    assert_eq!(
        set_member(b" { \n } ", &[], "k", b"1").as_deref(),
        Some(&b" {\"k\":1 \n } "[..])
    );
    assert_eq!(
        set_member(
            br#"{"result":{"tools":[]}}"#,
            &["result"],
            "nextCursor",
            br#""mr1.x""#
        )
        .as_deref(),
        Some(&br#"{"result":{"nextCursor":"mr1.x","tools":[]}}"#[..])
    );
    // The key is written as serde_json would write it.
    assert_eq!(
        set_member(b"{}", &[], "a\"\n", b"null").as_deref(),
        Some(&br#"{"a\"\n":null}"#[..])
    );
}

#[test]
fn set_member_refuses() {
    // Not an object, a missing step, a malformed text, or a value that is not JSON.
    assert_eq!(set_member(b"[]", &[], "k", b"1"), None);
    assert_eq!(set_member(br#"{"a":[]}"#, &["a"], "k", b"1"), None);
    assert_eq!(set_member(br#"{"a":"{}"}"#, &["a"], "k", b"1"), None);
    assert_eq!(set_member(br#"{"a":{}}"#, &["b"], "k", b"1"), None);
    assert_eq!(set_member(br#"{"a":{}"#, &["a"], "k", b"1"), None);
    assert_eq!(set_member(b"{}", &[], "k", b""), None);
    assert_eq!(set_member(b"{}", &[], "k", b"1 2"), None);
    assert_eq!(set_member(b"{}", &[], "k", b"{"), None);
}

fn removed(raw: &[u8], path: &[&str], keys: &[&str]) -> Option<String> {
    remove_members(raw, path, |k| keys.contains(&k))
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

#[test]
fn remove_members_compact() {
    let raw = br#"{"a":1,"b":2,"c":3}"#;
    assert_eq!(
        removed(raw, &[], &["a"]).as_deref(),
        Some(r#"{"b":2,"c":3}"#)
    );
    assert_eq!(
        removed(raw, &[], &["b"]).as_deref(),
        Some(r#"{"a":1,"c":3}"#)
    );
    assert_eq!(
        removed(raw, &[], &["c"]).as_deref(),
        Some(r#"{"a":1,"b":2}"#)
    );
    assert_eq!(
        removed(raw, &[], &["a", "b"]).as_deref(),
        Some(r#"{"c":3}"#)
    );
    assert_eq!(
        removed(raw, &[], &["a", "c"]).as_deref(),
        Some(r#"{"b":2}"#)
    );
    assert_eq!(
        removed(raw, &[], &["b", "c"]).as_deref(),
        Some(r#"{"a":1}"#)
    );
    assert_eq!(removed(raw, &[], &["a", "b", "c"]).as_deref(), Some("{}"));
    assert_eq!(
        removed(raw, &[], &["x"]).as_deref(),
        Some(r#"{"a":1,"b":2,"c":3}"#)
    );
}

#[test]
fn remove_members_keeps_the_rest_whitespace() {
    let raw = b"{\n  \"a\": 1,\n  \"b\": [ 2 ],\n  \"c\": 3\n}";
    assert_eq!(
        removed(raw, &[], &["a"]).as_deref(),
        Some("{\n  \"b\": [ 2 ],\n  \"c\": 3\n}")
    );
    assert_eq!(
        removed(raw, &[], &["b"]).as_deref(),
        Some("{\n  \"a\": 1,\n  \"c\": 3\n}")
    );
    assert_eq!(
        removed(raw, &[], &["c"]).as_deref(),
        Some("{\n  \"a\": 1,\n  \"b\": [ 2 ]\n}")
    );
    assert_eq!(
        removed(raw, &[], &["a", "b", "c"]).as_deref(),
        Some("{\n  \n}")
    );
    assert_eq!(
        removed(b" { \"a\" : 1 , \"b\" : 2 } ", &[], &["a"]).as_deref(),
        Some(" { \"b\" : 2 } ")
    );
    assert_eq!(
        removed(b" { \"a\" : 1 , \"b\" : 2 } ", &[], &["b"]).as_deref(),
        Some(" { \"a\" : 1 } ")
    );
}

#[test]
fn remove_members_nested_escaped_duplicates_empty() {
    assert_eq!(
        removed(
            br#"{"params":{"name":"x","_meta":{"p":1},"arguments":{}},"id":1}"#,
            &["params"],
            &["_meta"]
        )
        .as_deref(),
        Some(r#"{"params":{"name":"x","arguments":{}},"id":1}"#)
    );
    assert_eq!(
        removed(br#"{"na\u006de":1,"x":2}"#, &[], &["name"]).as_deref(),
        Some(r#"{"x":2}"#)
    );
    assert_eq!(
        removed(br#"{"a":1,"b":2,"a":3}"#, &[], &["a"]).as_deref(),
        Some(r#"{"b":2}"#)
    );
    assert_eq!(removed(b"{}", &[], &["a"]).as_deref(), Some("{}"));
    assert_eq!(removed(b" { } ", &[], &["a"]).as_deref(), Some(" { } "));
    assert_eq!(
        remove_members(br#"{"a":{}}"#, &["a"], |_| true).as_deref(),
        Some(&br#"{"a":{}}"#[..])
    );
}

#[test]
fn remove_members_refuses() {
    assert_eq!(removed(b"[]", &[], &["a"]), None);
    assert_eq!(removed(br#"{"a":[1]}"#, &["a"], &["a"]), None);
    assert_eq!(removed(br#"{"a":1}"#, &["b"], &["a"]), None);
    assert_eq!(removed(br#"{"a":1,}"#, &[], &["a"]), None);
    assert_eq!(removed(b"", &[], &["a"]), None);
}

#[test]
fn members_in_document_order() {
    let raw = b"{ \"b\" : 1,\"na\\u006de\":\"x\" , \"b\":{\"c\":[]} }";
    let got = members(raw, &[]).unwrap_or_default();
    let texts: Vec<(&str, &str)> = got
        .iter()
        .map(|(k, s)| (k.as_str(), at(raw, s.clone())))
        .collect();
    assert_eq!(texts, [("b", "1"), ("name", "\"x\""), ("b", r#"{"c":[]}"#)]);
    assert_eq!(got[0].1, 8..9);
    assert_eq!(members(b"{}", &[]), Some(vec![]));
    assert_eq!(members(raw, &["b"]), Some(vec![("c".to_owned(), 37..39)]));
    assert_eq!(members(b"[]", &[]), None);
    assert_eq!(members(raw, &["name"]), None);
    assert_eq!(members(b"{\"a\":1", &[]), None);
}

#[test]
fn deep_nesting_neither_overflows_nor_panics() {
    let deep = |n: usize| {
        let mut v = b"{\"a\":".to_vec();
        v.extend(std::iter::repeat_n(b'[', n));
        v.extend(std::iter::repeat_n(b']', n));
        v.push(b'}');
        v
    };
    // Values are only skipped (serde_json does that without recursing) and each step of
    // a path parses one level, so any depth passes through, as bytes should.
    let raw = deep(100_000);
    assert_eq!(find(&raw, &["a"]), Some(5..200_005));
    let spans = elements(&raw, &["a"]).unwrap_or_default();
    assert_eq!((spans.len(), spans.first()), (1, Some(&(6..200_004))));
    assert_eq!(members(&raw, &[]), Some(vec![("a".to_owned(), 5..200_005)]));
    assert_eq!(
        remove_members(&raw, &[], |_| true).as_deref(),
        Some(&b"{}"[..])
    );
    let set = set_member(&raw, &[], "b", b"1").unwrap_or_default();
    assert_eq!(&set[..7], b"{\"b\":1,");
    assert_eq!(set.len(), raw.len() + 6);
    // Unbalanced, it is malformed.
    assert_eq!(find(&raw[..raw.len() - 2], &["a"]), None);
}
