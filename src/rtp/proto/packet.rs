//! RTP fixed header (RFC 3550 §5.1): zero-copy parse and serialization, and
//! the RTP/RTCP demultiplexing rule of RFC 5761 §4.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V=2|P|X|  CC   |M|     PT      |       sequence number         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           timestamp                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           synchronization source (SSRC) identifier            |
//! +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//! |            contributing source (CSRC) identifiers             |
//! |                             ....                              |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | header extension (§5.3.1), if X: profile (16) | length (16)   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | payload …                    | padding … | padding count (8)  |
//! ```
//!
//! Parsing never panics and never allocates: [`RtpPacket`] borrows the
//! datagram. Every malformed input returns [`RtpError::Malformed`] with a
//! static reason.

/// Errors for bad input (RTP and RTCP).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RtpError {
    /// Not a valid RTP/RTCP packet; the reason names the failed check.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
}

/// The only RTP version (RFC 3550 §5.1).
pub const RTP_VERSION: u8 = 2;

/// Size of the fixed RTP header, bytes.
pub const RTP_HEADER_LEN: usize = 12;

/// The fields of the fixed header that a sender chooses (no CSRCs, no
/// extension, no padding: what skald sends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// Marker bit (RFC 3551 §4.1: first packet of a talkspurt; RFC 4733
    /// §2.5.1.1: first packet of an event).
    pub marker: bool,
    /// Payload type, 0–127.
    pub payload_type: u8,
    /// Sequence number, +1 per packet sent (wraps at 65535 → 0).
    pub sequence: u16,
    /// Media timestamp in clock-rate units (wraps at 2³² → 0).
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
}

/// A parsed RTP packet borrowing the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// Fixed header fields.
    pub header: RtpHeader,
    /// Raw CSRC list, 4 bytes per entry (see [`RtpPacket::csrcs`]).
    csrc: &'a [u8],
    /// Header extension (RFC 3550 §5.3.1), if the X bit was set.
    pub extension: Option<HeaderExtension<'a>>,
    /// Payload, padding removed.
    pub payload: &'a [u8],
    /// Padding bytes removed from the end (0 when the P bit was clear).
    pub padding: u8,
}

/// An RTP header extension (RFC 3550 §5.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderExtension<'a> {
    /// The 16-bit "defined by profile" field (0xBEDE for RFC 8285 one-byte).
    pub profile: u16,
    /// Extension data (a multiple of 4 bytes).
    pub data: &'a [u8],
}

/// What a datagram on an RTP port is (RFC 5761 §4, RFC 7983 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// RTP (version 2, second byte not in the RTCP range).
    Rtp,
    /// RTCP: version 2 and packet type 192–223 (RTP PT 64–95 with the
    /// marker bit set or clear), which RFC 5761 reserves for RTCP.
    Rtcp,
    /// Neither (STUN, DTLS, garbage, too short).
    Other,
}

impl RtpHeader {
    /// Appends the 12-byte header followed by `payload` to `out`.
    pub fn write(&self, payload: &[u8], out: &mut Vec<u8>) {
        out.reserve(RTP_HEADER_LEN + payload.len());
        out.push(RTP_VERSION << 6);
        out.push((u8::from(self.marker) << 7) | (self.payload_type & 0x7f));
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(payload);
    }

    /// The header followed by `payload` as a new datagram.
    pub fn to_packet(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(RTP_HEADER_LEN + payload.len());
        self.write(payload, &mut out);
        out
    }
}

impl<'a> RtpPacket<'a> {
    /// Parses one RTP datagram (RFC 3550 §5.1, validity checks of A.1 that
    /// need no state: version 2, padding count within the packet, CSRC list
    /// and extension within the packet).
    ///
    /// # Errors
    /// [`RtpError::Malformed`] naming the failed check.
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        let Some(fixed) = buf.get(..RTP_HEADER_LEN) else {
            return Err(RtpError::Malformed("shorter than the RTP header"));
        };
        let b0 = fixed[0];
        let b1 = fixed[1];
        if b0 >> 6 != RTP_VERSION {
            return Err(RtpError::Malformed("RTP version is not 2"));
        }
        let has_padding = b0 & 0x20 != 0;
        let has_extension = b0 & 0x10 != 0;
        let csrc_len = usize::from(b0 & 0x0f) * 4;
        let header = RtpHeader {
            marker: b1 & 0x80 != 0,
            payload_type: b1 & 0x7f,
            sequence: u16::from_be_bytes([fixed[2], fixed[3]]),
            timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
        };
        let rest = &buf[RTP_HEADER_LEN..];
        let Some((csrc, mut rest)) = rest.split_at_checked(csrc_len) else {
            return Err(RtpError::Malformed("CSRC list past the end"));
        };
        let mut extension = None;
        if has_extension {
            let Some((ext_head, after)) = rest.split_at_checked(4) else {
                return Err(RtpError::Malformed("extension header past the end"));
            };
            let profile = u16::from_be_bytes([ext_head[0], ext_head[1]]);
            let words = usize::from(u16::from_be_bytes([ext_head[2], ext_head[3]]));
            let Some((data, after)) = after.split_at_checked(words * 4) else {
                return Err(RtpError::Malformed("extension data past the end"));
            };
            extension = Some(HeaderExtension { profile, data });
            rest = after;
        }
        let mut padding = 0u8;
        if has_padding {
            let Some(&count) = rest.last() else {
                return Err(RtpError::Malformed("padding bit set but no padding"));
            };
            if count == 0 || usize::from(count) > rest.len() {
                return Err(RtpError::Malformed("bad padding count"));
            }
            padding = count;
            rest = &rest[..rest.len() - usize::from(count)];
        }
        Ok(RtpPacket {
            header,
            csrc,
            extension,
            payload: rest,
            padding,
        })
    }

    /// The contributing sources (CSRC list), in order.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        self.csrc
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }
}

/// Classifies a datagram that arrived on an RTP port (RFC 5761 §4: RTCP
/// packet types 192–223 occupy what would be RTP payload types 64–95).
pub fn classify(buf: &[u8]) -> PacketKind {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return PacketKind::Other;
    };
    if b0 >> 6 != RTP_VERSION {
        return PacketKind::Other;
    }
    if (192..=223).contains(&b1) {
        PacketKind::Rtcp
    } else if buf.len() >= RTP_HEADER_LEN {
        PacketKind::Rtp
    } else {
        PacketKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> RtpHeader {
        RtpHeader {
            marker: true,
            payload_type: 0,
            sequence: 0xfffe,
            timestamp: 0xdead_beef,
            ssrc: 0x1234_5678,
        }
    }

    #[test]
    fn round_trip_fixed_header() {
        let bytes = header().to_packet(&[1, 2, 3]);
        assert_eq!(bytes.len(), 15);
        assert_eq!(&bytes[..2], &[0x80, 0x80]);
        let p = RtpPacket::parse(&bytes).unwrap();
        assert_eq!(p.header, header());
        assert_eq!(p.payload, &[1, 2, 3]);
        assert_eq!(p.padding, 0);
        assert!(p.extension.is_none());
        assert_eq!(p.csrcs().count(), 0);
    }

    #[test]
    fn parses_csrc_extension_and_padding() {
        // V=2 P=1 X=1 CC=2, M=0 PT=8
        let mut b = vec![0xb2, 0x08, 0, 7, 0, 0, 1, 0, 0, 0, 0, 9];
        b.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]); // CSRCs
        b.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0]); // extension, 1 word
        b.extend_from_slice(&[5, 6, 7]); // payload
        b.extend_from_slice(&[0, 0, 3]); // 3 bytes padding
        let p = RtpPacket::parse(&b).unwrap();
        assert!(!p.header.marker);
        assert_eq!(p.header.payload_type, 8);
        assert_eq!(p.header.sequence, 7);
        assert_eq!(p.header.timestamp, 256);
        assert_eq!(p.header.ssrc, 9);
        assert_eq!(p.csrcs().collect::<Vec<_>>(), vec![1, 2]);
        let ext = p.extension.unwrap();
        assert_eq!(ext.profile, 0xbede);
        assert_eq!(ext.data, &[0x10, 0xaa, 0, 0]);
        assert_eq!(p.payload, &[5, 6, 7]);
        assert_eq!(p.padding, 3);
    }

    #[test]
    fn rejects_malformed() {
        let good = header().to_packet(&[1]);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "shorter than the RTP header"),
            (good[..11].to_vec(), "shorter than the RTP header"),
            (
                {
                    let mut b = good.clone();
                    b[0] = 0x40;
                    b
                },
                "RTP version is not 2",
            ),
            (
                {
                    let mut b = good.clone();
                    b[0] = 0x81;
                    b
                },
                "CSRC list past the end",
            ),
            (
                {
                    let mut b = good.clone();
                    b[0] = 0x90;
                    b
                },
                "extension header past the end",
            ),
            (
                {
                    let mut b = header().to_packet(&[0, 0, 0, 9]);
                    b[0] = 0x90;
                    b
                },
                "extension data past the end",
            ),
            (
                {
                    let mut b = header().to_packet(&[]);
                    b[0] = 0xa0;
                    b
                },
                "padding bit set but no padding",
            ),
            (
                {
                    let mut b = header().to_packet(&[1, 0]);
                    b[0] = 0xa0;
                    b
                },
                "bad padding count",
            ),
            (
                {
                    let mut b = header().to_packet(&[1, 9]);
                    b[0] = 0xa0;
                    b
                },
                "bad padding count",
            ),
        ];
        for (bytes, reason) in cases {
            assert_eq!(
                RtpPacket::parse(&bytes),
                Err(RtpError::Malformed(reason)),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn classify_demuxes_rtcp_range() {
        assert_eq!(classify(&header().to_packet(&[])), PacketKind::Rtp);
        assert_eq!(classify(&[0x80, 200, 0, 1]), PacketKind::Rtcp); // SR
        assert_eq!(classify(&[0x81, 201, 0, 7]), PacketKind::Rtcp); // RR
        assert_eq!(classify(&[0x80, 223, 0, 0]), PacketKind::Rtcp);
        assert_eq!(
            classify(&[0x80, 224, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            PacketKind::Rtp
        ); // PT 96 + M
        assert_eq!(classify(&[0x00, 0x01, 0, 0]), PacketKind::Other); // STUN
        assert_eq!(classify(&[0x80]), PacketKind::Other);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            if let Ok(p) = RtpPacket::parse(&bytes) {
                proptest::prop_assert!(p.payload.len() + RTP_HEADER_LEN <= bytes.len());
            }
            let _ = classify(&bytes);
        }
    }
}
