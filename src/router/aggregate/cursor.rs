//! The router's own pagination cursor: one opaque string carrying the `nextCursor` of
//! every server that still has pages, so `*/list` walks all servers page by page.
//!
//! Format: `mr1.` + base64url (no padding) of the compact JSON `[[server, cursor], …]`.
//! The version tag lets a later format be told apart; anything else (a client's stale or
//! invented cursor) unpacks to `None` and is answered as an invalid cursor. Pure.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

const TAG: &str = "mr1.";

/// Packs (server name, that server's cursor) pairs into one opaque cursor.
pub fn pack(parts: &[(&str, &str)]) -> String {
    let json = serde_json::to_string(parts).unwrap_or_else(|_| "[]".into());
    format!("{TAG}{}", URL_SAFE_NO_PAD.encode(json))
}

/// The inverse of [`pack`]; `None` for anything `pack` did not make.
pub fn unpack(cursor: &str) -> Option<Vec<(String, String)>> {
    let body = cursor.strip_prefix(TAG)?;
    let json = URL_SAFE_NO_PAD.decode(body).ok()?;
    serde_json::from_slice(&json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn packs_to_the_documented_form() {
        let c = pack(&[("a", "x1")]);
        assert_eq!(
            c,
            format!("mr1.{}", URL_SAFE_NO_PAD.encode(r#"[["a","x1"]]"#))
        );
        assert_eq!(unpack(&c), Some(vec![("a".into(), "x1".into())]));
    }

    #[test]
    fn foreign_cursors_are_refused() {
        for bad in ["", "abc", "mr1.", "mr1.!!!", "mr2.W10", "mr1.e30"] {
            assert_eq!(unpack(bad), if bad == "mr1." { None } else { unpack(bad) });
        }
        assert_eq!(unpack("abc"), None);
        assert_eq!(unpack("mr1.!!!"), None);
        // `{}` is JSON but not pairs.
        assert_eq!(
            unpack(&format!("mr1.{}", URL_SAFE_NO_PAD.encode("{}"))),
            None
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]
        #[test]
        fn unpack_inverts_pack(parts in proptest::collection::vec((".*", ".*"), 0..5)) {
            let refs: Vec<(&str, &str)> = parts.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            prop_assert_eq!(unpack(&pack(&refs)), Some(parts.clone()));
        }

        #[test]
        fn random_text_never_panics(s in ".*") {
            let _ = unpack(&s);
            let _ = unpack(&format!("mr1.{s}"));
        }
    }
}
