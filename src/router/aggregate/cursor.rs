//! The router's own pagination cursor for a merged list: one opaque string that carries
//! each upstream's `nextCursor`, so the client's next `*/list` call can be fanned out to
//! exactly the servers that have more, each with its own cursor.
//!
//! The form is `mr1.` + base64url (no padding) of the compact JSON `[[name, cursor], …]`.
//! `unpack` accepts only what `pack` writes, byte for byte (the tag, canonical base64,
//! the exact JSON spelling): a stale or invented cursor from a client is `None`, never a
//! guess. Deliberately not here: which servers still have pages, or what to answer for a
//! cursor that does not unpack (the caller's); no I/O.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::wire::rewrite::quote;

/// Marks (and versions) a cursor this router made.
const TAG: &str = "mr1.";

/// Packs (server name, that server's cursor) pairs into one opaque cursor string:
/// `"mr1."` + base64url-no-pad of compact JSON `[[name, cursor], …]`.
pub fn pack(parts: &[(&str, &str)]) -> String {
    let mut json = String::from("[");
    for (i, (name, cursor)) in parts.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push('[');
        json.push_str(&quote(name));
        json.push(',');
        json.push_str(&quote(cursor));
        json.push(']');
    }
    json.push(']');
    let mut out = String::from(TAG);
    URL_SAFE_NO_PAD.encode_string(json, &mut out);
    out
}

/// The inverse of [`pack`]; `None` for anything that is not a cursor `pack` made (a
/// client's stale or invented cursor).
pub fn unpack(cursor: &str) -> Option<Vec<(String, String)>> {
    let json = URL_SAFE_NO_PAD.decode(cursor.strip_prefix(TAG)?).ok()?;
    let parts: Vec<(String, String)> = serde_json::from_slice(&json).ok()?;
    // Valid JSON is not enough: only the exact text pack writes (no whitespace, no `\/`,
    // no other escapes) is ours.
    let refs: Vec<(&str, &str)> = parts
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_str()))
        .collect();
    (pack(&refs) == cursor).then_some(parts)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn owned(parts: &[(&str, &str)]) -> Vec<(String, String)> {
        parts
            .iter()
            .map(|(n, c)| ((*n).to_owned(), (*c).to_owned()))
            .collect()
    }

    #[test]
    fn pack_writes_the_documented_form() {
        // [["gh","c1"],["fs","x\"y"]]
        assert_eq!(
            pack(&[("gh", "c1"), ("fs", "x\"y")]),
            "mr1.W1siZ2giLCJjMSJdLFsiZnMiLCJ4XCJ5Il1d"
        );
        assert_eq!(pack(&[]), "mr1.W10");
        // [["é",""]]: non-ASCII stays UTF-8 inside the JSON.
        assert_eq!(pack(&[("é", "")]), "mr1.W1siw6kiLCIiXV0");
    }

    #[test]
    fn unpack_inverts_pack() {
        assert_eq!(
            unpack("mr1.W1siZ2giLCJjMSJdLFsiZnMiLCJ4XCJ5Il1d"),
            Some(owned(&[("gh", "c1"), ("fs", "x\"y")]))
        );
        assert_eq!(unpack("mr1.W10"), Some(vec![]));
    }

    #[test]
    fn unpack_refuses_what_pack_did_not_write() {
        let b64 = |s: &str| format!("mr1.{}", URL_SAFE_NO_PAD.encode(s));
        for bad in [
            String::new(),
            "mr1.".into(),
            "mr1".into(),
            "W10".into(),
            "mr2.W10".into(),
            // Padding, standard alphabet, stray characters.
            "mr1.W10=".into(),
            "mr1.W1siYSIsIis/Il1d".into(),
            "mr1.W10 ".into(),
            // Valid JSON, but not as pack spells it.
            b64("[ ]"),
            b64(r#"[["a", "b"]]"#),
            b64(r#"[["a\/","b"]]"#),
            b64(r#"[["\u0061","b"]]"#),
            // Not pairs of strings.
            b64(r#"[["a"]]"#),
            b64(r#"[["a","b","c"]]"#),
            b64(r#"[["a",1]]"#),
            b64(r#"{"a":"b"}"#),
            b64("[]x"),
            "mr1.//8".into(),
        ] {
            assert_eq!(unpack(&bad), None, "{bad:?}");
        }
        // The one spelling pack would write is accepted.
        assert_eq!(unpack(&b64(r#"[["a","b"]]"#)), Some(owned(&[("a", "b")])));
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 1024,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn unpack_of_pack_is_identity(parts in prop::collection::vec((any::<String>(), prop_oneof![any::<String>(), "[\"\\\\/a-z=+]{0,12}"]), 0..6)) {
            let refs: Vec<(&str, &str)> = parts.iter().map(|(n, c)| (n.as_str(), c.as_str())).collect();
            let packed = pack(&refs);
            prop_assert!(packed.starts_with("mr1."));
            prop_assert!(packed[4..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            prop_assert_eq!(unpack(&packed), Some(parts));
        }

        #[test]
        fn unpack_never_panics(s in any::<String>(), b in "mr1\\.[A-Za-z0-9_=/+-]{0,40}") {
            let _ = unpack(&s);
            if let Some(parts) = unpack(&b) {
                let refs: Vec<(&str, &str)> = parts.iter().map(|(n, c)| (n.as_str(), c.as_str())).collect();
                prop_assert_eq!(pack(&refs), b);
            }
        }

        #[test]
        fn unpack_of_any_json_never_panics(json in "[\\[\\]\",a-z\\\\ ]{0,24}") {
            let c = format!("mr1.{}", URL_SAFE_NO_PAD.encode(&json));
            if let Some(parts) = unpack(&c) {
                let refs: Vec<(&str, &str)> = parts.iter().map(|(n, c)| (n.as_str(), c.as_str())).collect();
                prop_assert_eq!(pack(&refs), c);
            }
        }
    }
}
