//! RTP/RTCP port allocation.
//!
//! [`PortAllocator`] hands out *pairs*: an even RTP port and RTCP on the
//! next odd port (RFC 3550 §11), both bound with tokio on the configured IP,
//! from the configured inclusive range. Rules:
//! - a pair is leased before it is bound, so concurrent calls never race
//!   for the same pair; a pair whose bind fails (some other program holds
//!   either port) is released again and skipped;
//! - the search starts after the last pair handed out (round robin), so a
//!   pair freed by a call that just ended is reused last, after stale
//!   packets for it have stopped arriving;
//! - the lease returns to the pool when [`RtpSockets`] is dropped (a guard
//!   field), so a call cannot leak ports however it ends;
//! - [`PortError::Exhausted`] when every pair is leased or fails to bind.
//!
//! The pool sits behind a mutex: this is the call-setup path, never the
//! 20 ms audio path.

use crate::config::PortRange;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

/// Errors allocating ports.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// Every pair in the range is taken.
    #[error("no free RTP port pair in {low}-{high}")]
    Exhausted {
        /// Range start.
        low: u16,
        /// Range end.
        high: u16,
    },
}

/// Hands out even RTP ports (RTCP = port + 1) from a range; released on drop.
#[derive(Debug, Clone)]
pub struct PortAllocator {
    /// The pool shared by every clone and every lease.
    pool: Arc<Pool>,
}

/// A bound RTP/RTCP socket pair; its ports return to the pool on drop.
#[derive(Debug)]
pub struct RtpSockets {
    /// RTP socket.
    pub rtp: tokio::net::UdpSocket,
    /// RTCP socket.
    pub rtcp: tokio::net::UdpSocket,
    /// Returns the pair to the pool when the sockets are dropped.
    lease: Lease,
}

#[derive(Debug)]
struct Pool {
    /// IP to bind on.
    ip: IpAddr,
    /// The configured range, for errors.
    range: PortRange,
    /// First even RTP port of the range.
    first: u32,
    /// Number of pairs in the range.
    pairs: u32,
    /// Leases and the round-robin cursor.
    state: Mutex<PoolState>,
}

#[derive(Debug, Default)]
struct PoolState {
    /// RTP ports leased (bound or being bound).
    leased: HashSet<u16>,
    /// Index of the pair to try first next time.
    cursor: u32,
}

/// A leased pair; dropping it frees the pair.
#[derive(Debug)]
struct Lease {
    /// The RTP port (RTCP is +1).
    port: u16,
    /// Where to return it.
    pool: Arc<Pool>,
}

impl PortAllocator {
    /// Allocator binding on `ip` in `range` (inclusive; an odd `low` starts
    /// at `low + 1`, a pair whose RTCP port would pass `high` is unused).
    pub fn new(range: PortRange, ip: IpAddr) -> Self {
        let first = u32::from(range.low) + u32::from(range.low % 2);
        let pairs = (u32::from(range.high) + 1).saturating_sub(first) / 2;
        let pool = Pool {
            ip,
            range,
            first,
            pairs,
            state: Mutex::new(PoolState::default()),
        };
        Self {
            pool: Arc::new(pool),
        }
    }

    /// Binds the next free pair.
    ///
    /// # Errors
    /// [`PortError::Exhausted`] when every pair is leased or fails to bind.
    ///
    /// Cancel-safe: a lease taken before an interrupted bind is released.
    pub async fn allocate(&self) -> Result<RtpSockets, PortError> {
        for _ in 0..self.pool.pairs {
            let Some(lease) = self.pool.lease() else {
                break;
            };
            let rtp_addr = SocketAddr::new(self.pool.ip, lease.port);
            let rtcp_addr = SocketAddr::new(self.pool.ip, lease.port + 1);
            let bound = match tokio::net::UdpSocket::bind(rtp_addr).await {
                Ok(rtp) => tokio::net::UdpSocket::bind(rtcp_addr)
                    .await
                    .map(|rtcp| (rtp, rtcp)),
                Err(e) => Err(e),
            };
            match bound {
                Ok((rtp, rtcp)) => return Ok(RtpSockets { rtp, rtcp, lease }),
                Err(e) => {
                    tracing::debug!(port = lease.port, error = %e, "RTP port pair busy; skipped")
                }
            }
        }
        Err(PortError::Exhausted {
            low: self.pool.range.low,
            high: self.pool.range.high,
        })
    }

    /// Pairs in use.
    pub fn in_use(&self) -> usize {
        self.pool.lock().leased.len()
    }

    /// Pairs in the range.
    pub fn capacity(&self) -> usize {
        self.pool.pairs as usize
    }
}

impl RtpSockets {
    /// Local RTP port.
    pub fn rtp_port(&self) -> u16 {
        self.lease.port
    }

    /// Local RTCP port (RTP + 1).
    pub fn rtcp_port(&self) -> u16 {
        self.lease.port + 1
    }
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Leases the next unleased pair from the cursor on.
    fn lease(self: &Arc<Self>) -> Option<Lease> {
        let mut st = self.lock();
        for i in 0..self.pairs {
            let idx = (st.cursor + i) % self.pairs;
            let port = (self.first + idx * 2) as u16;
            if st.leased.insert(port) {
                st.cursor = (idx + 1) % self.pairs;
                return Some(Lease {
                    port,
                    pool: Arc::clone(self),
                });
            }
        }
        None
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pool.lock().leased.remove(&self.port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// A range of `pairs` pairs where nothing is bound right now.
    fn free_range(pairs: u16) -> PortRange {
        let mut low = 42_000 + (std::process::id() % 500) as u16 * 2 * 8;
        loop {
            let busy =
                (low..low + pairs * 2).any(|p| std::net::UdpSocket::bind((LOCALHOST, p)).is_err());
            if !busy {
                return PortRange {
                    low,
                    high: low + pairs * 2 - 1,
                };
            }
            low += pairs * 2;
        }
    }

    #[tokio::test]
    async fn allocates_even_pairs_and_releases_on_drop() {
        let range = free_range(3);
        let alloc = PortAllocator::new(range, LOCALHOST);
        assert_eq!(alloc.capacity(), 3);
        let a = alloc.allocate().await.unwrap();
        let b = alloc.allocate().await.unwrap();
        assert_eq!(alloc.in_use(), 2);
        for s in [&a, &b] {
            assert_eq!(s.rtp_port() % 2, 0);
            assert!(s.rtp_port() >= range.low && s.rtcp_port() <= range.high);
            assert_eq!(s.rtp.local_addr().unwrap().port(), s.rtp_port());
            assert_eq!(s.rtcp.local_addr().unwrap().port(), s.rtp_port() + 1);
        }
        assert_ne!(a.rtp_port(), b.rtp_port());
        drop(a);
        assert_eq!(alloc.in_use(), 1);
        drop(b);
        assert_eq!(alloc.in_use(), 0);
    }

    #[tokio::test]
    async fn exhausted_when_all_pairs_leased() {
        let range = free_range(2);
        let alloc = PortAllocator::new(range, LOCALHOST);
        let _a = alloc.allocate().await.unwrap();
        let b = alloc.allocate().await.unwrap();
        let err = alloc.allocate().await.unwrap_err();
        assert!(
            matches!(err, PortError::Exhausted { low, high } if low == range.low && high == range.high)
        );
        drop(b);
        assert!(
            alloc.allocate().await.is_ok(),
            "a released pair is usable again"
        );
    }

    #[tokio::test]
    async fn skips_a_pair_bound_by_someone_else() {
        let range = free_range(3);
        // Someone else holds the RTCP port of the first pair.
        let _squatter = std::net::UdpSocket::bind((LOCALHOST, range.low + 1)).unwrap();
        let alloc = PortAllocator::new(range, LOCALHOST);
        let a = alloc.allocate().await.unwrap();
        assert_eq!(a.rtp_port(), range.low + 2);
        assert_eq!(alloc.in_use(), 1, "the failed pair is not left leased");
        let b = alloc.allocate().await.unwrap();
        assert_eq!(b.rtp_port(), range.low + 4);
        assert!(
            alloc.allocate().await.is_err(),
            "the busy pair stays unusable"
        );
    }

    #[tokio::test]
    async fn round_robin_does_not_reuse_a_just_freed_pair() {
        let range = free_range(3);
        let alloc = PortAllocator::new(range, LOCALHOST);
        let a = alloc.allocate().await.unwrap();
        let first = a.rtp_port();
        drop(a);
        let b = alloc.allocate().await.unwrap();
        assert_ne!(b.rtp_port(), first);
        let c = alloc.allocate().await.unwrap();
        let d = alloc.allocate().await.unwrap();
        assert_eq!(d.rtp_port(), first, "reused only after the others");
        drop((b, c));
    }

    #[test]
    fn odd_bounds_are_rounded_inward() {
        let alloc = PortAllocator::new(
            PortRange {
                low: 10_001,
                high: 10_006,
            },
            LOCALHOST,
        );
        assert_eq!(alloc.capacity(), 2); // 10002/3, 10004/5; 10006 has no RTCP port
        let alloc = PortAllocator::new(
            PortRange {
                low: 65_534,
                high: 65_535,
            },
            LOCALHOST,
        );
        assert_eq!(alloc.capacity(), 1);
    }
}
