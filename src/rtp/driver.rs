//! RTP socket edge for one call: the only place where the RTP session meets
//! sockets and the clock.
//!
//! [`MediaStream::next_event`] runs the session's run loop (see
//! [`crate::rtp::proto::session`]): drain `poll_output` (send every
//! Transmit at once with `try_send_to`, never awaiting a send; return the
//! first Event), then wait for whichever comes first, a datagram on the RTP
//! socket, one on the RTCP socket, or the session's deadline, feed it in with
//! `Instant::now()`, and loop. The session decides what is due; this loop only
//! has to wake up on time (tokio's timer: about 1 ms late at most), which is
//! what keeps outbound packets on the 20 ms grid.
//!
//! Cancel safety: the only awaits are `recv_from` (cancel-safe) and the
//! sleep; every input is fully handled before the next await, so dropping
//! the future in a `select!` loses nothing: pending transmits and events
//! stay in the session for the next call.
//!
//! Metrics: RTP packets in and out are counted per packet; at every RTCP
//! report sent, the loss since the previous report and the current jitter
//! are pushed.

use super::ports::RtpSockets;
use super::proto::packet::{PacketKind, classify};
use super::proto::session::{Output, RtpEvent, RtpSession, SessionConfig, Transmit};
use crate::observability::{Dir, Metrics};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Largest datagram read; larger ones are truncated (and then fail to parse).
const RECV_BUF: usize = 2048;

/// Sockets + session; the call actor awaits [`MediaStream::next_event`].
#[derive(Debug)]
pub struct MediaStream {
    /// The bound RTP/RTCP pair (holds the port lease).
    sockets: RtpSockets,
    /// The sans-IO session.
    session: RtpSession,
    /// Metrics sink (`None` only in unit tests).
    metrics: Option<Metrics>,
    /// Receive buffer of the RTP socket.
    rtp_buf: Box<[u8]>,
    /// Receive buffer of the RTCP socket.
    rtcp_buf: Box<[u8]>,
    /// Cumulative loss already pushed to metrics.
    lost_reported: u64,
}

impl MediaStream {
    /// Wraps bound sockets and a new session.
    pub fn new(sockets: RtpSockets, cfg: SessionConfig, metrics: Metrics, now: Instant) -> Self {
        Self::build(sockets, cfg, Some(metrics), now)
    }

    /// Reads sockets, fires timers, sends due packets, until the next event.
    /// Cancel-safe (usable in `select!`).
    pub async fn next_event(&mut self) -> RtpEvent {
        loop {
            let deadline = loop {
                match self.session.poll_output() {
                    Output::Transmit(t) => self.transmit(t),
                    Output::Event(e) => return e,
                    Output::Timeout(t) => break t,
                }
            };
            tokio::select! {
                r = self.sockets.rtp.recv_from(&mut self.rtp_buf) => match r {
                    Ok((n, from)) => self.on_rtp(from, n),
                    Err(e) => tracing::debug!(error = %e, "RTP socket receive failed"),
                },
                r = self.sockets.rtcp.recv_from(&mut self.rtcp_buf) => match r {
                    Ok((n, from)) => self.on_rtcp(from, n),
                    Err(e) => tracing::debug!(error = %e, "RTCP socket receive failed"),
                },
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                    let now = Instant::now();
                    if let Some(m) = &self.metrics {
                        m.rtp_send_lateness_ms(now.saturating_duration_since(deadline).as_secs_f64() * 1000.0);
                    }
                    self.session.handle_timeout(now);
                }
            }
        }
    }

    /// The session, for commands (queue audio, set remote, …).
    pub fn session_mut(&mut self) -> &mut RtpSession {
        &mut self.session
    }

    /// The session, for reading stats.
    pub fn session(&self) -> &RtpSession {
        &self.session
    }

    /// Local RTP port.
    pub fn local_port(&self) -> u16 {
        self.sockets.rtp_port()
    }

    fn build(
        sockets: RtpSockets,
        cfg: SessionConfig,
        metrics: Option<Metrics>,
        now: Instant,
    ) -> Self {
        let mut session = RtpSession::new(cfg, now);
        if let Ok(wall) = SystemTime::now().duration_since(UNIX_EPOCH) {
            session.set_wallclock(wall, Instant::now());
        }
        Self {
            sockets,
            session,
            metrics,
            rtp_buf: vec![0; RECV_BUF].into_boxed_slice(),
            rtcp_buf: vec![0; RECV_BUF].into_boxed_slice(),
            lost_reported: 0,
        }
    }

    fn transmit(&mut self, t: Transmit) {
        let is_rtcp = t.rtcp || classify(&t.payload) == PacketKind::Rtcp;
        let socket = if t.rtcp {
            &self.sockets.rtcp
        } else {
            &self.sockets.rtp
        };
        match socket.try_send_to(&t.payload, t.dest) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                tracing::debug!("socket send buffer full; datagram dropped");
            }
            Err(e) => tracing::debug!(error = %e, rtcp = is_rtcp, "send failed"),
        }
        let Some(m) = &self.metrics else { return };
        if is_rtcp {
            let stats = self.session.stats();
            m.rtp_lost(stats.packets_lost.saturating_sub(self.lost_reported));
            m.rtp_jitter_ms(stats.jitter_ms);
            self.lost_reported = self.lost_reported.max(stats.packets_lost);
        } else {
            m.rtp_packets(Dir::Out, 1);
        }
    }

    fn on_rtp(&mut self, from: SocketAddr, n: usize) {
        let datagram = &self.rtp_buf[..n.min(RECV_BUF)];
        let is_rtp = classify(datagram) == PacketKind::Rtp;
        if let Err(e) = self.session.handle_rtp(from, datagram, Instant::now()) {
            tracing::debug!(error = %e, len = n, "RTP datagram dropped");
        } else if is_rtp && let Some(m) = &self.metrics {
            m.rtp_packets(Dir::In, 1);
        }
    }

    fn on_rtcp(&mut self, from: SocketAddr, n: usize) {
        let datagram = &self.rtcp_buf[..n.min(RECV_BUF)];
        if let Err(e) = self.session.handle_rtcp(from, datagram, Instant::now()) {
            tracing::debug!(error = %e, len = n, "RTCP datagram dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PortRange;
    use crate::rtp::ports::PortAllocator;
    use crate::rtp::proto::packet::{RtpHeader, RtpPacket};
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn rtp(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        RtpHeader {
            marker: false,
            payload_type: pt,
            sequence: seq,
            timestamp: ts,
            ssrc: 0xcafe,
        }
        .to_packet(payload)
    }

    /// Real sockets on loopback: a peer sends RTP and a DTMF event; the
    /// stream latches to it, plays the audio out, reports the digit once
    /// and sends its own RTP back to the peer. (No timing assertions: the
    /// pacing itself is tested in virtual time in the session.)
    #[tokio::test]
    async fn media_stream_latches_plays_and_answers_over_loopback() {
        let alloc = PortAllocator::new(
            PortRange {
                low: 43_000,
                high: 43_999,
            },
            LOCALHOST,
        );
        let sockets = alloc.allocate().await.unwrap();
        let cfg = SessionConfig {
            ssrc: 0xbeef,
            payload_type: 0,
            dtmf_payload_type: Some(101),
            clock_rate: 8000,
            ptime: Duration::from_millis(20),
            remote: None,
            symmetric: true,
            jitter_target: Duration::from_millis(40),
            inactivity_timeout: Duration::from_secs(30),
            silence_payload: vec![0xff; 160],
        };
        let mut stream = MediaStream::build(sockets, cfg, None, Instant::now());
        let stream_addr = SocketAddr::new(LOCALHOST, stream.local_port());
        let peer = tokio::net::UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
        let peer_addr = peer.local_addr().unwrap();
        for i in 0..5u16 {
            peer.send_to(&rtp(0, i, u32::from(i) * 160, &[i as u8; 160]), stream_addr)
                .await
                .unwrap();
        }
        for (j, end) in [false, false, true, true, true].into_iter().enumerate() {
            let dur = (j as u16 + 1) * 160;
            let payload = [7, (u8::from(end) << 7) | 10, (dur >> 8) as u8, dur as u8];
            peer.send_to(&rtp(101, 5 + j as u16, 800, &payload), stream_addr)
                .await
                .unwrap();
        }
        let mut events = Vec::new();
        let guard = tokio::time::timeout(Duration::from_secs(5), async {
            while events
                .iter()
                .filter(|e| matches!(e, RtpEvent::Audio(_)))
                .count()
                < 10
            {
                events.push(stream.next_event().await);
            }
        });
        guard.await.expect("events within 5 s");
        assert_eq!(events[0], RtpEvent::Latched(peer_addr));
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, RtpEvent::Dtmf { digit: '7', .. }))
                .count(),
            1
        );
        let heard: Vec<u8> = events
            .iter()
            .filter_map(|e| match e {
                RtpEvent::Audio(Some(p)) => Some(p[0]),
                _ => None,
            })
            .collect();
        assert_eq!(heard, vec![0, 1, 2, 3, 4]);
        // The stream sends its silence to the latched peer.
        let mut buf = [0u8; 2048];
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(from, stream_addr);
        let pkt = RtpPacket::parse(&buf[..n]).unwrap();
        assert_eq!(
            (pkt.header.ssrc, pkt.header.payload_type, pkt.payload.len()),
            (0xbeef, 0, 160)
        );
        assert_eq!(stream.session().stats().packets_received, 10);
    }
}
