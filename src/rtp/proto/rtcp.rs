//! RTCP (RFC 3550 §6): sender and receiver reports, SDES CNAME, BYE.
//!
//! What skald sends is always a compound packet (§6.1): an SR when it sent
//! RTP since the previous report, else an RR, followed by an SDES chunk with
//! our CNAME. What it receives is walked packet by packet ([`parse_compound`]):
//! SR, RR, SDES and BYE are decoded, anything else (APP, RTPFB, PSFB, XR …)
//! is returned as [`RtcpPacket::Other`]. Parsing never panics; a packet
//! whose length runs past the datagram is [`RtpError::Malformed`].
//!
//! ```text
//! common header:  V=2 | P | RC/SC (5) | PT (8) | length in 32-bit words − 1 (16)
//! SR  (PT 200):   SSRC | NTP ts (64) | RTP ts | packet count | octet count | RC × report block
//! RR  (PT 201):   SSRC | RC × report block
//! report block:   SSRC | fraction lost (8) | cumulative lost (24, signed)
//!                 | extended highest seq | jitter | LSR | DLSR
//! SDES (PT 202):  SC × (SSRC, items (type, len, text)…, 0, pad to 4)
//! BYE (PT 203):   SC × SSRC [, len, reason]
//! ```

use super::packet::RtpError;

/// Sender report packet type.
pub const PT_SR: u8 = 200;
/// Receiver report packet type.
pub const PT_RR: u8 = 201;
/// Source description packet type.
pub const PT_SDES: u8 = 202;
/// Goodbye packet type.
pub const PT_BYE: u8 = 203;

const SDES_CNAME: u8 = 1;
const REPORT_BLOCK_LEN: usize = 24;

/// Sender information of an SR (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    /// NTP timestamp (64-bit fixed point, seconds since 1900 in the high
    /// word) of the instant this report was made.
    pub ntp: u64,
    /// The RTP timestamp of that same instant, clock-rate units.
    pub rtp_timestamp: u32,
    /// RTP packets sent since the start (wraps).
    pub packet_count: u32,
    /// RTP payload octets sent since the start (wraps).
    pub octet_count: u32,
}

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    /// The source this block reports on.
    pub ssrc: u32,
    /// Fraction of packets lost since the previous report, /256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed on the wire; duplicates can
    /// make it negative).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received (cycles << 16 | max seq).
    pub highest_seq: u32,
    /// Interarrival jitter estimate, timestamp units (A.8).
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received from
    /// this source, 0 if none.
    pub lsr: u32,
    /// Delay since that SR was received, 1/65536 s; 0 if none.
    pub dlsr: u32,
}

/// One packet of a compound RTCP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    /// Sender report.
    SenderReport {
        /// Sender's SSRC.
        ssrc: u32,
        /// What it sent.
        info: SenderInfo,
        /// What it received.
        reports: Vec<ReportBlock>,
    },
    /// Receiver report.
    ReceiverReport {
        /// Reporter's SSRC.
        ssrc: u32,
        /// What it received.
        reports: Vec<ReportBlock>,
    },
    /// Source description; only CNAME items are kept.
    SourceDescription {
        /// `(ssrc, cname)` per chunk; `cname` is `None` when the chunk had none.
        chunks: Vec<(u32, Option<String>)>,
    },
    /// Goodbye.
    Bye {
        /// Sources leaving.
        ssrcs: Vec<u32>,
        /// Optional reason text.
        reason: Option<String>,
    },
    /// A packet type skald does not interpret (APP, feedback, XR …).
    Other {
        /// Its packet type.
        packet_type: u8,
    },
}

/// Builds a compound report: an SR when `sender` is `Some`, else an RR,
/// carrying up to 31 `reports`, followed by SDES with `cname`
/// (truncated to 255 bytes).
pub fn build_report(
    ssrc: u32,
    sender: Option<SenderInfo>,
    reports: &[ReportBlock],
    cname: &str,
) -> Vec<u8> {
    let reports = &reports[..reports.len().min(31)];
    let mut out = Vec::with_capacity(28 + reports.len() * REPORT_BLOCK_LEN + 12 + cname.len());
    let body_len = 4 + if sender.is_some() { 20 } else { 0 } + reports.len() * REPORT_BLOCK_LEN;
    let pt = if sender.is_some() { PT_SR } else { PT_RR };
    write_common_header(&mut out, reports.len() as u8, pt, body_len);
    out.extend_from_slice(&ssrc.to_be_bytes());
    if let Some(info) = sender {
        out.extend_from_slice(&info.ntp.to_be_bytes());
        out.extend_from_slice(&info.rtp_timestamp.to_be_bytes());
        out.extend_from_slice(&info.packet_count.to_be_bytes());
        out.extend_from_slice(&info.octet_count.to_be_bytes());
    }
    for r in reports {
        out.extend_from_slice(&r.ssrc.to_be_bytes());
        let lost = (r.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32) & 0x00ff_ffff;
        out.extend_from_slice(&((u32::from(r.fraction_lost) << 24) | lost).to_be_bytes());
        out.extend_from_slice(&r.highest_seq.to_be_bytes());
        out.extend_from_slice(&r.jitter.to_be_bytes());
        out.extend_from_slice(&r.lsr.to_be_bytes());
        out.extend_from_slice(&r.dlsr.to_be_bytes());
    }
    // SDES: one chunk, CNAME item, null terminator, pad to a 32-bit boundary.
    let cname = &cname.as_bytes()[..cname.len().min(255)];
    let chunk_len = (4 + 2 + cname.len() + 1).div_ceil(4) * 4;
    write_common_header(&mut out, 1, PT_SDES, chunk_len);
    let start = out.len();
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.push(SDES_CNAME);
    out.push(cname.len() as u8);
    out.extend_from_slice(cname);
    out.resize(start + chunk_len, 0);
    out
}

/// Builds a BYE for `ssrc` with an optional reason (truncated to 255 bytes).
pub fn build_bye(ssrc: u32, reason: Option<&str>) -> Vec<u8> {
    let reason = reason.map(|r| &r.as_bytes()[..r.len().min(255)]);
    let body = 4 + reason.map_or(0, |r| (1 + r.len()).div_ceil(4) * 4);
    let mut out = Vec::with_capacity(4 + body);
    write_common_header(&mut out, 1, PT_BYE, body);
    out.extend_from_slice(&ssrc.to_be_bytes());
    if let Some(r) = reason {
        out.push(r.len() as u8);
        out.extend_from_slice(r);
        out.resize(4 + body, 0);
    }
    out
}

/// Walks every packet of a compound RTCP datagram (RFC 3550 §6.1, A.2
/// checks: version 2 in each packet, lengths add up, padding only in the
/// last packet).
///
/// # Errors
/// [`RtpError::Malformed`] when a header, length, count or item runs past
/// its packet, or the version is not 2.
pub fn parse_compound(buf: &[u8]) -> Result<Vec<RtcpPacket>, RtpError> {
    if buf.len() < 4 {
        return Err(RtpError::Malformed("shorter than the RTCP header"));
    }
    let mut out = Vec::with_capacity(2);
    let mut rest = buf;
    while !rest.is_empty() {
        let Some(head) = rest.get(..4) else {
            return Err(RtpError::Malformed("trailing bytes after RTCP packet"));
        };
        if head[0] >> 6 != 2 {
            return Err(RtpError::Malformed("RTCP version is not 2"));
        }
        let padded = head[0] & 0x20 != 0;
        let count = usize::from(head[0] & 0x1f);
        let pt = head[1];
        let len = (usize::from(u16::from_be_bytes([head[2], head[3]])) + 1) * 4;
        let Some((packet, after)) = rest.split_at_checked(len) else {
            return Err(RtpError::Malformed("RTCP length past the end"));
        };
        let mut body = &packet[4..];
        if padded {
            if !after.is_empty() {
                return Err(RtpError::Malformed("RTCP padding before the last packet"));
            }
            let pad = usize::from(body.last().copied().unwrap_or(0));
            if pad == 0 || pad > body.len() {
                return Err(RtpError::Malformed("bad RTCP padding count"));
            }
            body = &body[..body.len() - pad];
        }
        out.push(parse_one(pt, count, body)?);
        rest = after;
    }
    Ok(out)
}

/// Middle 32 bits of a 64-bit NTP timestamp (the LSR / "A" of §6.4.1).
pub fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

fn write_common_header(out: &mut Vec<u8>, count: u8, pt: u8, body_len: usize) {
    debug_assert!(body_len.is_multiple_of(4));
    out.push(0x80 | (count & 0x1f));
    out.push(pt);
    out.extend_from_slice(&((body_len / 4) as u16).to_be_bytes());
}

fn parse_one(pt: u8, count: usize, body: &[u8]) -> Result<RtcpPacket, RtpError> {
    let mut r = Reader(body);
    Ok(match pt {
        PT_SR => {
            let ssrc = r.u32().ok_or(RtpError::Malformed("SR too short"))?;
            let info = (|| {
                Some(SenderInfo {
                    ntp: (u64::from(r.u32()?) << 32) | u64::from(r.u32()?),
                    rtp_timestamp: r.u32()?,
                    packet_count: r.u32()?,
                    octet_count: r.u32()?,
                })
            })()
            .ok_or(RtpError::Malformed("SR sender info too short"))?;
            let reports = parse_blocks(&mut r, count)?;
            RtcpPacket::SenderReport {
                ssrc,
                info,
                reports,
            }
        }
        PT_RR => {
            let ssrc = r.u32().ok_or(RtpError::Malformed("RR too short"))?;
            let reports = parse_blocks(&mut r, count)?;
            RtcpPacket::ReceiverReport { ssrc, reports }
        }
        PT_SDES => {
            let mut chunks = Vec::with_capacity(count);
            for _ in 0..count {
                chunks.push(parse_sdes_chunk(&mut r)?);
            }
            RtcpPacket::SourceDescription { chunks }
        }
        PT_BYE => {
            let mut ssrcs = Vec::with_capacity(count);
            for _ in 0..count {
                ssrcs.push(
                    r.u32()
                        .ok_or(RtpError::Malformed("BYE SSRC list too short"))?,
                );
            }
            let reason = match r.u8() {
                None => None,
                Some(n) => {
                    let text = r
                        .take(usize::from(n))
                        .ok_or(RtpError::Malformed("BYE reason too short"))?;
                    Some(String::from_utf8_lossy(text).into_owned())
                }
            };
            RtcpPacket::Bye { ssrcs, reason }
        }
        other => RtcpPacket::Other { packet_type: other },
    })
}

fn parse_blocks(r: &mut Reader<'_>, count: usize) -> Result<Vec<ReportBlock>, RtpError> {
    if r.0.len() < count * REPORT_BLOCK_LEN {
        return Err(RtpError::Malformed("report blocks past the end"));
    }
    let mut blocks = Vec::with_capacity(count);
    for _ in 0..count {
        let block = (|| {
            let ssrc = r.u32()?;
            let word = r.u32()?;
            // Sign-extend the 24-bit cumulative loss.
            let cumulative_lost = ((word << 8) as i32) >> 8;
            Some(ReportBlock {
                ssrc,
                fraction_lost: (word >> 24) as u8,
                cumulative_lost,
                highest_seq: r.u32()?,
                jitter: r.u32()?,
                lsr: r.u32()?,
                dlsr: r.u32()?,
            })
        })()
        .ok_or(RtpError::Malformed("report blocks past the end"))?;
        blocks.push(block);
    }
    Ok(blocks)
}

fn parse_sdes_chunk(r: &mut Reader<'_>) -> Result<(u32, Option<String>), RtpError> {
    let start = r.0.len();
    let ssrc = r.u32().ok_or(RtpError::Malformed("SDES chunk too short"))?;
    let mut cname = None;
    loop {
        let kind = r
            .u8()
            .ok_or(RtpError::Malformed("SDES items not terminated"))?;
        if kind == 0 {
            break;
        }
        let len = r.u8().ok_or(RtpError::Malformed("SDES item too short"))?;
        let text = r
            .take(usize::from(len))
            .ok_or(RtpError::Malformed("SDES item past the end"))?;
        if kind == SDES_CNAME {
            cname = Some(String::from_utf8_lossy(text).into_owned());
        }
    }
    // Skip the null padding up to the next 32-bit boundary.
    let used = start - r.0.len();
    let pad = (4 - used % 4) % 4;
    r.take(pad.min(r.0.len()));
    Ok((ssrc, cname))
}

/// A bounds-checked big-endian cursor.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block() -> ReportBlock {
        ReportBlock {
            ssrc: 0xaabb_ccdd,
            fraction_lost: 13,
            cumulative_lost: -3,
            highest_seq: 0x0001_0005,
            jitter: 42,
            lsr: 0x1234_5678,
            dlsr: 65536,
        }
    }

    #[test]
    fn sr_with_sdes_round_trips() {
        let info = SenderInfo {
            ntp: 0x0102_0304_0506_0708,
            rtp_timestamp: 160,
            packet_count: 50,
            octet_count: 8000,
        };
        let bytes = build_report(7, Some(info), &[block()], "abc@skald");
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(bytes[1], PT_SR);
        let packets = parse_compound(&bytes).unwrap();
        assert_eq!(
            packets,
            vec![
                RtcpPacket::SenderReport {
                    ssrc: 7,
                    info,
                    reports: vec![block()]
                },
                RtcpPacket::SourceDescription {
                    chunks: vec![(7, Some("abc@skald".into()))]
                },
            ]
        );
    }

    #[test]
    fn rr_without_blocks_round_trips() {
        let bytes = build_report(9, None, &[], "x");
        let packets = parse_compound(&bytes).unwrap();
        assert_eq!(
            packets[0],
            RtcpPacket::ReceiverReport {
                ssrc: 9,
                reports: vec![]
            }
        );
        assert_eq!(
            packets[1],
            RtcpPacket::SourceDescription {
                chunks: vec![(9, Some("x".into()))]
            }
        );
    }

    #[test]
    fn cname_of_every_length_pads_correctly() {
        for n in 0..12 {
            let cname = "c".repeat(n);
            let bytes = build_report(1, None, &[block()], &cname);
            let packets = parse_compound(&bytes).unwrap();
            assert_eq!(
                packets[1],
                RtcpPacket::SourceDescription {
                    chunks: vec![(1, Some(cname))]
                }
            );
        }
    }

    #[test]
    fn bye_and_unknown_packets_in_one_compound() {
        let mut bytes = build_report(1, None, &[], "a");
        bytes.extend_from_slice(&[0x80, 206, 0, 0]); // PSFB, empty body
        bytes.extend(build_bye(1, Some("hangup")));
        let packets = parse_compound(&bytes).unwrap();
        assert_eq!(packets.len(), 4);
        assert_eq!(packets[2], RtcpPacket::Other { packet_type: 206 });
        assert_eq!(
            packets[3],
            RtcpPacket::Bye {
                ssrcs: vec![1],
                reason: Some("hangup".into())
            }
        );
        assert_eq!(
            parse_compound(&build_bye(5, None)).unwrap(),
            vec![RtcpPacket::Bye {
                ssrcs: vec![5],
                reason: None
            }]
        );
    }

    #[test]
    fn padding_on_last_packet() {
        // RR with no blocks + 4 bytes padding (P bit, length 2 words after header).
        let bytes = [0xa0, PT_RR, 0, 2, 0, 0, 0, 1, 0, 0, 0, 4];
        assert_eq!(
            parse_compound(&bytes).unwrap(),
            vec![RtcpPacket::ReceiverReport {
                ssrc: 1,
                reports: vec![]
            }]
        );
    }

    #[test]
    fn rejects_malformed() {
        let rr = build_report(1, None, &[block()], "a");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![0x80, 201], "shorter than the RTCP header"),
            (
                {
                    let mut b = rr.clone();
                    b[0] = 0x41;
                    b
                },
                "RTCP version is not 2",
            ),
            (rr[..rr.len() - 4].to_vec(), "RTCP length past the end"),
            (
                {
                    let mut b = rr.clone();
                    b.push(0);
                    b
                },
                "trailing bytes after RTCP packet",
            ),
            (
                vec![
                    0x82, PT_RR, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    0, 0, 0, 0, 0, 0, 0, 0,
                ],
                "report blocks past the end",
            ),
            (
                vec![0x80, PT_SR, 0, 1, 0, 0, 0, 1],
                "SR sender info too short",
            ),
            (
                {
                    let mut b = rr.clone();
                    b[0] |= 0x20;
                    b
                },
                "RTCP padding before the last packet",
            ),
            (
                vec![0x81, PT_SDES, 0, 1, 0, 0, 0, 1],
                "SDES items not terminated",
            ),
            (
                vec![0x81, PT_BYE, 0, 2, 0, 0, 0, 1, 9, b'a', 0, 0],
                "BYE reason too short",
            ),
        ];
        for (bytes, reason) in cases {
            assert_eq!(
                parse_compound(&bytes),
                Err(RtpError::Malformed(reason)),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn cumulative_lost_sign_extends_and_clamps() {
        let mut b = block();
        b.cumulative_lost = -0x100_0000; // below the 24-bit range
        let bytes = build_report(1, None, &[b], "a");
        let RtcpPacket::ReceiverReport { reports, .. } = &parse_compound(&bytes).unwrap()[0] else {
            panic!()
        };
        assert_eq!(reports[0].cumulative_lost, -0x80_0000);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..96)) {
            let _ = parse_compound(&bytes);
        }
    }
}
