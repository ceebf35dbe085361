//! RFC 3261 timer values (§17, Table 4 of Appendix A).
//!
//! T1 is the RTT estimate, T2 the cap of non-INVITE retransmit intervals, T4
//! the maximum time a message stays in the network. Every timer A–K derives
//! from them; the `reliable` flag (TCP) zeroes the ones that only exist to
//! absorb UDP retransmissions (D, I, J, K) and disables retransmit timers
//! (A, E, G).

use crate::config::SipConfig;
use std::time::Duration;

/// T1/T2/T4 and the timers derived from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// T1, RTT estimate (default 500 ms).
    pub t1: Duration,
    /// T2, maximum retransmit interval for non-INVITE requests and INVITE
    /// responses (default 4 s).
    pub t2: Duration,
    /// T4, maximum duration a message remains in the network (default 5 s).
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// From the `t1_ms`/`t2_ms`/`t4_ms` config keys.
    pub fn from_config(cfg: &SipConfig) -> Timers {
        Timers {
            t1: Duration::from_millis(cfg.t1_ms.max(1)),
            t2: Duration::from_millis(cfg.t2_ms.max(1)),
            t4: Duration::from_millis(cfg.t4_ms.max(1)),
        }
    }

    /// 64·T1: Timers B, F, H, J (unreliable), L and M, and the §13.3.1.4 ACK
    /// wait.
    pub fn t1x64(&self) -> Duration {
        self.t1 * 64
    }

    /// Initial value of the retransmit timers A, E and G (T1); `None` on a
    /// reliable transport, where nothing is retransmitted.
    pub fn retransmit(&self, reliable: bool) -> Option<Duration> {
        (!reliable).then_some(self.t1)
    }

    /// Timer D (client INVITE, Completed): ≥ 32 s on UDP, 0 on TCP.
    pub fn d(&self, reliable: bool) -> Duration {
        if reliable { Duration::ZERO } else { Duration::from_secs(32).max(self.t1x64() / 2) }
    }

    /// Timers I and K: T4 on UDP, 0 on TCP.
    pub fn t4_or_zero(&self, reliable: bool) -> Duration {
        if reliable { Duration::ZERO } else { self.t4 }
    }

    /// Timer J (server non-INVITE, Completed): 64·T1 on UDP, 0 on TCP.
    pub fn j(&self, reliable: bool) -> Duration {
        if reliable { Duration::ZERO } else { self.t1x64() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_rfc() {
        let t = Timers::default();
        assert_eq!(t.t1x64(), Duration::from_secs(32));
        assert_eq!(t.d(false), Duration::from_secs(32));
        assert_eq!(t.d(true), Duration::ZERO);
        assert_eq!(t.retransmit(true), None);
        assert_eq!(t.t4_or_zero(false), Duration::from_secs(5));
        let cfg = SipConfig { t1_ms: 100, t2_ms: 1000, t4_ms: 2000, ..SipConfig::default() };
        assert_eq!(Timers::from_config(&cfg).t1x64(), Duration::from_millis(6400));
    }
}
