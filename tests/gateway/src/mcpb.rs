//! The MCPB frame codec of the gateway's TCP protocol: a 12-byte big-endian header
//! (magic `MCPB`, version 1, type, length ≤ 10 MiB) and its payload.

use tokio::io::{AsyncRead, AsyncReadExt};

pub const MAGIC: u32 = 0x4D43_5042;
pub const VERSION: u16 = 1;
pub const HEADER_LEN: usize = 12;
pub const MAX_PAYLOAD: u32 = 10 * 1024 * 1024;

/// Frame types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Request = 1,
    Response = 2,
    Control = 3,
    HealthCheck = 4,
    Error = 5,
    VersionNegotiation = 6,
    VersionAck = 7,
}

impl Kind {
    fn from_u16(v: u16) -> Option<Kind> {
        Some(match v {
            1 => Kind::Request,
            2 => Kind::Response,
            3 => Kind::Control,
            4 => Kind::HealthCheck,
            5 => Kind::Error,
            6 => Kind::VersionNegotiation,
            7 => Kind::VersionAck,
            _ => return None,
        })
    }
}

/// One decoded frame.
#[derive(Debug)]
pub struct Frame {
    pub kind: Kind,
    pub payload: Vec<u8>,
}

/// Reads one frame. `Ok(None)` on a clean end of stream before a header; `Err(reason)` for
/// anything the gateway would close on (bad magic, version, type, length, short read).
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Frame>, String> {
    let mut header = [0u8; HEADER_LEN];
    let first = match r.read(&mut header).await {
        Ok(n) => n,
        // A TLS peer that closes without close_notify: still a clean end between frames.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
        Err(e) => return Err(format!("read error: {e}")),
    };
    if first == 0 {
        return Ok(None);
    }
    r.read_exact(&mut header[first..])
        .await
        .map_err(|e| format!("short header: {e}"))?;
    let magic = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    if magic != MAGIC {
        return Err(format!("invalid magic bytes: 0x{magic:08X}"));
    }
    let version = u16::from_be_bytes([header[4], header[5]]);
    if version != VERSION {
        return Err(format!("unsupported version: {version}"));
    }
    let kind_raw = u16::from_be_bytes([header[6], header[7]]);
    let len = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    if len > MAX_PAYLOAD {
        return Err(format!(
            "payload too large: {len} bytes (max {MAX_PAYLOAD})"
        ));
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload)
        .await
        .map_err(|e| format!("short payload: {e}"))?;
    let kind = Kind::from_u16(kind_raw)
        .ok_or_else(|| format!("unknown message type: 0x{kind_raw:04X}"))?;
    Ok(Some(Frame { kind, payload }))
}

/// Encodes a frame.
pub fn encode(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC.to_be_bytes());
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&(kind as u16).to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_rejections() {
        let ack = encode(Kind::VersionAck, br#"{"agreed_version":1}"#);
        assert_eq!(
            &ack[..12],
            &[0x4d, 0x43, 0x50, 0x42, 0, 1, 0, 7, 0, 0, 0, 0x14]
        );
        let frame = read_frame(&mut &ack[..]).await.unwrap().unwrap();
        assert_eq!(frame.kind, Kind::VersionAck);
        assert!(read_frame(&mut &b""[..]).await.unwrap().is_none());
        let mut bad = ack.clone();
        bad[3] = 0;
        assert!(read_frame(&mut &bad[..])
            .await
            .unwrap_err()
            .contains("0x4D435000"));
        let mut unknown = encode(Kind::Request, b"");
        unknown[7] = 9;
        assert!(read_frame(&mut &unknown[..]).await.is_err());
        let mut long = encode(Kind::Request, b"");
        long[8..12].copy_from_slice(&(MAX_PAYLOAD + 1).to_be_bytes());
        assert!(read_frame(&mut &long[..]).await.is_err());
    }
}
