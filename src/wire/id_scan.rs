//! Finds the top-level `"id"` of a JSON object fed in chunks, without buffering it.
//!
//! Used for oversized messages: the router refuses to hold a message past the size limit,
//! yet the client deserves an error *for that request*, and the id may sit anywhere in the
//! object (SDKs put it first or last). No crate offers a bounded-memory streaming key
//! lookup, so this is a small hand-written state machine: it tracks strings, escapes and
//! nesting depth, keeps at most a few bytes, and never panics on any input.

use super::id::Id;

const MAX_ID_LEN: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the top-level `{`.
    Start,
    ExpectKey,
    InKey,
    ExpectColon,
    ExpectValue,
    /// Inside a top-level scalar or string value.
    InValue,
    /// Inside a nested object/array value.
    Nested,
    AfterValue,
    Done,
}

/// Streaming top-level id finder; feed chunks, then call [`IdScanner::id`].
#[derive(Debug)]
pub struct IdScanner {
    state: State,
    in_string: bool,
    escape: bool,
    depth: u32,
    key: Vec<u8>,
    key_is_id: bool,
    value: Vec<u8>,
    value_overflow: bool,
    found: Option<Id>,
}

impl Default for IdScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl IdScanner {
    pub fn new() -> Self {
        Self {
            state: State::Start,
            in_string: false,
            escape: false,
            depth: 0,
            key: Vec::with_capacity(4),
            key_is_id: false,
            value: Vec::new(),
            value_overflow: false,
            found: None,
        }
    }

    /// The id, once seen (a string or number at the top level of an object).
    pub fn id(&self) -> Option<Id> {
        self.found.clone()
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.state == State::Done {
                return;
            }
            self.step(b);
        }
    }

    fn step(&mut self, b: u8) {
        if self.in_string {
            self.string_byte(b);
            return;
        }
        match (self.state, b) {
            (_, b' ' | b'\t' | b'\r' | b'\n') => {
                if self.state == State::InValue {
                    self.end_value();
                }
            }
            (State::Start, b'{') => {
                self.depth = 1;
                self.state = State::ExpectKey;
            }
            (State::Start, _) => self.state = State::Done,
            (State::ExpectKey, b'"') => {
                self.in_string = true;
                self.key.clear();
                self.state = State::InKey;
            }
            (State::ExpectColon, b':') => self.state = State::ExpectValue,
            (State::ExpectValue, b'{' | b'[') => {
                self.depth += 1;
                self.state = State::Nested;
            }
            (State::ExpectValue, b'"') => {
                self.in_string = true;
                self.start_value(b);
            }
            (State::ExpectValue, _) => self.start_value(b),
            (State::InValue, b',') => {
                self.end_value();
                self.state = State::ExpectKey;
            }
            (State::InValue, b'}') => {
                self.end_value();
                self.state = State::Done;
            }
            (State::InValue, _) => self.push_value(b),
            (State::Nested, b'"') => self.in_string = true,
            (State::Nested, b'{' | b'[') => self.depth = self.depth.saturating_add(1),
            (State::Nested, b'}' | b']') => {
                self.depth = self.depth.saturating_sub(1);
                if self.depth <= 1 {
                    self.state = State::AfterValue;
                }
            }
            (State::Nested, _) => {}
            (State::AfterValue | State::ExpectKey, b',') => self.state = State::ExpectKey,
            (State::AfterValue | State::ExpectKey, b'}') => self.state = State::Done,
            // Anything else is not well-formed JSON: stop looking.
            _ => self.state = State::Done,
        }
    }

    fn string_byte(&mut self, b: u8) {
        let escaped = self.escape;
        self.escape = !escaped && b == b'\\';
        let closing = !escaped && b == b'"';
        match self.state {
            State::InKey => {
                if closing {
                    self.in_string = false;
                    self.key_is_id = self.key == b"id";
                    self.state = State::ExpectColon;
                } else if self.key.len() < 3 {
                    self.key.push(b);
                } else {
                    self.key.push(b'*'); // longer than "id": can never match
                    self.key.truncate(3);
                }
            }
            State::InValue => {
                self.push_value(b);
                if closing {
                    self.in_string = false;
                    self.end_value();
                    self.state = State::AfterValue;
                }
            }
            _ => {
                if closing {
                    self.in_string = false;
                }
            }
        }
    }

    fn start_value(&mut self, b: u8) {
        self.value.clear();
        self.value_overflow = false;
        self.state = State::InValue;
        self.push_value(b);
    }

    fn push_value(&mut self, b: u8) {
        if !self.key_is_id {
            return;
        }
        if self.value.len() < MAX_ID_LEN {
            self.value.push(b);
        } else {
            self.value_overflow = true;
        }
    }

    fn end_value(&mut self) {
        if self.state != State::InValue {
            return;
        }
        self.state = State::AfterValue;
        if !self.key_is_id || self.value_overflow {
            return;
        }
        let Ok(text) = std::str::from_utf8(&self.value) else {
            return;
        };
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
            if v.is_string() || v.is_number() {
                self.found = Some(Id::from_raw_json(text));
                self.state = State::Done;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scan(chunks: &[&[u8]]) -> Option<String> {
        let mut s = IdScanner::new();
        for c in chunks {
            s.feed(c);
        }
        s.id().map(|i| i.as_json().to_owned())
    }

    #[test]
    fn finds_id_first_last_and_across_chunks() {
        assert_eq!(
            scan(&[br#"{"jsonrpc":"2.0","id":42,"method":"x","params":{"id":7}}"#]),
            Some("42".into())
        );
        assert_eq!(
            scan(&[br#"{"method":"x","params":{"id":7,"s":"\"id\":9"},"id":"a\"b"}"#]),
            Some(r#""a\"b""#.into())
        );
        assert_eq!(
            scan(&[br#"{"params":[1,{"id":2}],"i"#, br#"d"  :  -1.5e3 }"#]),
            Some("-1.5e3".into())
        );
    }

    #[test]
    fn no_id_for_nested_only_or_non_objects() {
        assert_eq!(scan(&[br#"{"params":{"id":1}}"#]), None);
        assert_eq!(scan(&[br#"[{"id":1}]"#]), None);
        assert_eq!(scan(&[br#"{"id":{"x":1}}"#]), None);
        assert_eq!(scan(&[br#"{"idx":1,"xid":2}"#]), None);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512), split in 0usize..512) {
            let split = split.min(data.len());
            let mut s = IdScanner::new();
            s.feed(&data[..split]);
            s.feed(&data[split..]);
            let _ = s.id();
        }

        #[test]
        fn finds_any_id_in_any_chunking(id in -1_000_000i64..1_000_000, pad in "[a-z]{0,40}", split in 0usize..200) {
            let line = format!(r#"{{"jsonrpc":"2.0","params":{{"p":"{pad}","id":0}},"id":{id},"method":"m"}}"#);
            let b = line.as_bytes();
            let split = split.min(b.len());
            let mut s = IdScanner::new();
            s.feed(&b[..split]);
            s.feed(&b[split..]);
            prop_assert_eq!(s.id().map(|i| i.as_json().to_owned()), Some(id.to_string()));
        }
    }
}
