//! Newline-delimited JSON framing with a size limit, for stdio on both sides.
//!
//! A `tokio_util` [`Decoder`]: it yields each line's bytes (zero-copy from the read buffer,
//! `\r\n` accepted, blank lines skipped) or, for a line past the limit, an
//! [`Frame::Oversized`] carrying the request id when one could be found. An oversized line
//! is never held whole: its bytes are scanned for the id as they pass and dropped, so a
//! 1 GiB line costs no more memory than a small one. It does not parse JSON otherwise.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

use super::id::Id;
use super::id_scan::IdScanner;

/// One unit read from a newline-delimited stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A line's bytes, without the line terminator.
    Line(Bytes),
    /// A line longer than the limit; its bytes were discarded.
    Oversized { id: Option<Id>, len: usize },
}

/// The line codec. `max_len` bounds a line, terminator excluded.
#[derive(Debug)]
pub struct NdjsonCodec {
    max_len: usize,
    /// Bytes of `src` already searched for `\n` (so a long line is not rescanned).
    searched: usize,
    discarding: Option<(IdScanner, usize)>,
}

impl NdjsonCodec {
    pub fn new(max_len: usize) -> Self {
        Self {
            max_len,
            searched: 0,
            discarding: None,
        }
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }
}

impl Decoder for NdjsonCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        loop {
            if let Some((scanner, len)) = &mut self.discarding {
                match memchr::memchr(b'\n', src) {
                    Some(pos) => {
                        scanner.feed(&src[..pos]);
                        let frame = Frame::Oversized {
                            id: scanner.id(),
                            len: *len + pos,
                        };
                        src.advance(pos + 1);
                        self.discarding = None;
                        return Ok(Some(frame));
                    }
                    None => {
                        scanner.feed(src);
                        *len += src.len();
                        src.clear();
                        return Ok(None);
                    }
                }
            }
            let start = self.searched.min(src.len());
            match memchr::memchr(b'\n', &src[start..]) {
                Some(rel) => {
                    let pos = start + rel;
                    self.searched = 0;
                    let mut line = src.split_to(pos + 1);
                    line.truncate(pos);
                    if line.last() == Some(&b'\r') {
                        line.truncate(pos - 1);
                    }
                    if line.len() > self.max_len {
                        let mut scanner = IdScanner::new();
                        scanner.feed(&line);
                        return Ok(Some(Frame::Oversized {
                            id: scanner.id(),
                            len: line.len(),
                        }));
                    }
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    return Ok(Some(Frame::Line(line.freeze())));
                }
                None if src.len() > self.max_len + 1 => {
                    // Too long already: stop buffering, keep only what finds the id.
                    let mut scanner = IdScanner::new();
                    scanner.feed(src);
                    let len = src.len();
                    src.clear();
                    self.searched = 0;
                    self.discarding = Some((scanner, len));
                }
                None => {
                    self.searched = src.len();
                    return Ok(None);
                }
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        if let Some(frame) = self.decode(src)? {
            return Ok(Some(frame));
        }
        // A final line without a newline still counts.
        if let Some((scanner, len)) = self.discarding.take() {
            return Ok(Some(Frame::Oversized {
                id: scanner.id(),
                len,
            }));
        }
        self.searched = 0;
        if src.is_empty() || src.iter().all(u8::is_ascii_whitespace) {
            src.clear();
            return Ok(None);
        }
        let mut line = src.split();
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        if line.len() > self.max_len {
            let mut scanner = IdScanner::new();
            scanner.feed(&line);
            return Ok(Some(Frame::Oversized {
                id: scanner.id(),
                len: line.len(),
            }));
        }
        Ok(Some(Frame::Line(line.freeze())))
    }
}

/// Gives a large message's memory back: a read buffer that held one keeps the allocation
/// alive after the message is gone (the remainder shares it, and `BytesMut` reclaims it on
/// the next reserve). After a line longer than `normal`, start a fresh buffer of `normal`
/// capacity holding only the bytes not yet framed; the big allocation is then freed when
/// the message itself is dropped, so resting memory returns to the baseline.
pub fn release_after_large(buf: &mut BytesMut, line_len: usize, normal: usize) {
    if line_len > normal {
        let mut fresh = BytesMut::with_capacity(normal.max(buf.len()));
        fresh.extend_from_slice(buf);
        *buf = fresh;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(codec: &mut NdjsonCodec, chunks: &[&[u8]]) -> Vec<Frame> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for c in chunks {
            buf.extend_from_slice(c);
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        while let Some(f) = codec.decode_eof(&mut buf).unwrap() {
            out.push(f);
        }
        out
    }

    fn line(s: &str) -> Frame {
        Frame::Line(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn splits_lines_crlf_blank_and_final_unterminated() {
        let mut c = NdjsonCodec::new(100);
        let frames = decode_all(&mut c, &[b"{\"a\":1}\r\n\n  \n{\"b\"", b":2}\n{\"c\":3}"]);
        assert_eq!(
            frames,
            vec![line("{\"a\":1}"), line("{\"b\":2}"), line("{\"c\":3}")]
        );
    }

    #[test]
    fn oversized_line_is_reported_with_its_id_and_the_next_line_survives() {
        let mut c = NdjsonCodec::new(32);
        let big = format!(
            r#"{{"jsonrpc":"2.0","method":"x","params":"{}","id":77}}"#,
            "a".repeat(200)
        );
        let frames = decode_all(
            &mut c,
            &[
                &big.as_bytes()[..50],
                &big.as_bytes()[50..],
                b"\n{\"ok\":1}\n",
            ],
        );
        assert_eq!(
            frames,
            vec![
                Frame::Oversized {
                    id: Some(Id::from_raw_json("77")),
                    len: big.len()
                },
                line("{\"ok\":1}")
            ]
        );
    }

    #[test]
    fn oversized_buffer_does_not_grow_past_the_limit() {
        let mut c = NdjsonCodec::new(1024);
        let mut buf = BytesMut::new();
        for _ in 0..1000 {
            buf.extend_from_slice(&[b'x'; 4096]);
            assert!(c.decode(&mut buf).unwrap().is_none());
            assert!(buf.len() <= 4096 + 1025);
        }
        buf.extend_from_slice(b"\n");
        assert!(matches!(
            c.decode(&mut buf).unwrap(),
            Some(Frame::Oversized {
                id: None,
                len: 4_096_000
            })
        ));
    }

    #[test]
    fn a_large_line_does_not_pin_the_buffer() {
        let mut codec = NdjsonCodec::new(1 << 20);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&vec![b'a'; 300_000]);
        buf.extend_from_slice(b"\n{\"next\"");
        let Some(Frame::Line(line)) = codec.decode(&mut buf).unwrap() else {
            panic!()
        };
        release_after_large(&mut buf, line.len(), 4096);
        assert_eq!(&buf[..], b"{\"next\"");
        assert!(buf.capacity() < 300_000, "capacity {}", buf.capacity());
        let before = buf.capacity();
        release_after_large(&mut buf, 100, 4096);
        assert_eq!(buf.capacity(), before, "small lines leave the buffer alone");
    }

    #[test]
    fn exactly_max_len_is_accepted() {
        let mut c = NdjsonCodec::new(5);
        assert_eq!(
            decode_all(&mut c, &[b"12345\n123456\n"]),
            vec![line("12345"), Frame::Oversized { id: None, len: 6 }]
        );
    }

    proptest! {
        #[test]
        fn any_chunking_yields_the_same_frames(
            lines in proptest::collection::vec("[a-z{}\":0-9 ]{1,60}", 0..20),
            cuts in proptest::collection::vec(0usize..2000, 0..10),
        ) {
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let bytes = text.as_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut prev = 0;
            for c in cuts { chunks.push(&bytes[prev..c]); prev = c; }
            chunks.push(&bytes[prev..]);
            let mut a = NdjsonCodec::new(40);
            let mut b = NdjsonCodec::new(40);
            prop_assert_eq!(decode_all(&mut a, &chunks), decode_all(&mut b, &[bytes]));
        }

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048), max in 0usize..64) {
            let mut c = NdjsonCodec::new(max);
            let frames = decode_all(&mut c, &[&data]);
            for f in frames {
                if let Frame::Line(l) = f { prop_assert!(l.len() <= max); }
            }
        }
    }
}
