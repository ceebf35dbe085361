//! `skald loadtest`: a load generator that plays N concurrent callers over
//! Twilio Media Streams (signed as Twilio signs them) against a running
//! skald, and measures what callers get from outside the process.
//!
//! Each caller opens a stream ([`super::twilio::connect`]), then on its own
//! 20 ms media clock speaks the same real utterance every `every` seconds
//! (its first turn at a random offset, so turns spread), plays skald's
//! audio like Twilio's playout (marks echoed when reached, `clear`
//! honoured; [`TwilioPeer`]), and records per turn:
//! - reply latency: from the last frame of its speech to the first audible
//!   frame it hears;
//! - a missed reply: none before its next turn starts;
//! - outbound gaps: time between consecutive frames of skald's audio
//!   arriving inside one reply (pacing as the caller sees it).
//!
//! Per N it reports turns, replies, missed replies, latency p50/p99, gap
//! p99, and, when given the server's pid on this machine, its CPU (cores)
//! and RSS from `/proc`. The summary is a Markdown table on stdout and JSON.

use super::twilio::{FRAME_BYTES, TwilioOptions, TwilioPeer};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// µ-law silence.
const SILENCE: u8 = 0xFF;
/// A heard frame is audible above this level (linear PCM16 peak).
const AUDIBLE: i16 = 800;
/// Linux's USER_HZ: the unit of `/proc/PID/stat` CPU times.
const USER_HZ: f64 = 100.0;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The stream to open for each caller.
    pub stream: TwilioOptions,
    /// Concurrent callers, one step each (e.g. 1, 50, 100).
    pub ramp: Vec<usize>,
    /// How long each step runs.
    pub duration: Duration,
    /// A caller speaks every this often.
    pub every: Duration,
    /// The utterance: µ-law 8 kHz, whole 20 ms frames.
    pub utterance: Vec<u8>,
    /// The server's pid (local): CPU and RSS are read from `/proc`.
    pub pid: Option<u32>,
}

/// One step's figures.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepReport {
    /// Concurrent callers.
    pub calls: usize,
    /// Callers whose stream opened and ran to the end.
    pub completed: usize,
    /// Turns spoken and due an answer within the step (one the step's end
    /// cut short is not counted).
    pub turns: usize,
    /// Turns answered in time.
    pub replies: usize,
    /// Turns with no reply before the caller's next turn.
    pub missed: usize,
    /// Reply latency p50 from the end of the caller's speech, ms.
    pub latency_p50_ms: Option<f64>,
    /// Reply latency p99, ms.
    pub latency_p99_ms: Option<f64>,
    /// Gap between frames of one reply as they arrive, p99, ms.
    pub gap_p99_ms: Option<f64>,
    /// Server CPU, cores (local pid only).
    pub cpu_cores: Option<f64>,
    /// Server RSS at the end of the step, MiB (local pid only).
    pub rss_mib: Option<f64>,
    /// Why callers failed (first few).
    pub errors: Vec<String>,
}

/// One caller's figures.
#[derive(Debug, Default)]
struct CallerStats {
    turns: usize,
    latencies_ms: Vec<f64>,
    gaps_ms: Vec<f64>,
    missed: usize,
    completed: bool,
    error: Option<String>,
}

/// Runs every step of the ramp in turn; the reports in order.
pub async fn run(o: &LoadOptions) -> Vec<StepReport> {
    let mut out = Vec::new();
    for &n in &o.ramp {
        out.push(step(o, n).await);
    }
    out
}

async fn step(o: &LoadOptions, n: usize) -> StepReport {
    let cpu0 = o.pid.and_then(cpu_ticks);
    let t0 = std::time::Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let o = o.clone();
            // Spread the first turns over one period.
            let offset = o.every.mul_f64(i as f64 / n.max(1) as f64) + Duration::from_millis(2500);
            tokio::spawn(async move { caller(&o, offset).await })
        })
        .collect();
    let mut stats = Vec::new();
    for t in tasks {
        stats.push(t.await.unwrap_or_else(|e| CallerStats { error: Some(e.to_string()), ..Default::default() }));
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu_cores = match (cpu0, o.pid.and_then(cpu_ticks)) {
        (Some(a), Some(b)) => Some((b - a) as f64 / USER_HZ / wall),
        _ => None,
    };
    let mut lat: Vec<f64> = stats.iter().flat_map(|s| s.latencies_ms.iter().copied()).collect();
    let mut gaps: Vec<f64> = stats.iter().flat_map(|s| s.gaps_ms.iter().copied()).collect();
    StepReport {
        calls: n,
        completed: stats.iter().filter(|s| s.completed).count(),
        turns: stats.iter().map(|s| s.turns).sum(),
        replies: lat.len(),
        missed: stats.iter().map(|s| s.missed).sum(),
        latency_p50_ms: quantile(&mut lat, 0.5),
        latency_p99_ms: quantile(&mut lat, 0.99),
        gap_p99_ms: quantile(&mut gaps, 0.99),
        cpu_cores,
        rss_mib: o.pid.and_then(rss_mib),
        errors: stats.iter().filter_map(|s| s.error.clone()).take(5).collect(),
    }
}

/// One caller for `o.duration`, first speaking after `offset`.
async fn caller(o: &LoadOptions, offset: Duration) -> CallerStats {
    let mut st = CallerStats::default();
    let (mut sink, mut stream) = match super::twilio::connect(&o.stream).await {
        Ok(x) => x,
        Err(e) => {
            st.error = Some(e.to_string());
            return st;
        }
    };
    let mut peer = TwilioPeer::new(&o.stream.account_sid);
    for m in peer.opening(&o.stream.parameters) {
        if sink.send(Message::Text(m.into())).await.is_err() {
            st.error = Some("the stream closed at once".into());
            return st;
        }
    }
    let start = Instant::now();
    let end = start + o.duration;
    let mut next_turn = start + offset;
    let mut speaking: Option<usize> = None;
    let mut spoke_at: Option<Instant> = None;
    let mut last_arrival: Option<Instant> = None;
    let mut in_reply = false;
    let mut quiet_ticks = 0u32;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        let mut send = Vec::new();
        tokio::select! {
            _ = tick.tick() => {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                if speaking.is_none() && now >= next_turn {
                    if spoke_at.take().is_some() {
                        st.missed += 1;
                    }
                    speaking = Some(0);
                    st.turns += 1;
                    next_turn += o.every;
                }
                let frame = match speaking {
                    Some(pos) if pos < o.utterance.len() => {
                        speaking = Some(pos + FRAME_BYTES);
                        o.utterance[pos..(pos + FRAME_BYTES).min(o.utterance.len())].to_vec()
                    }
                    Some(_) => {
                        speaking = None;
                        spoke_at = Some(now);
                        vec![SILENCE; FRAME_BYTES]
                    }
                    None => vec![SILENCE; FRAME_BYTES],
                };
                send.push(peer.media(&frame));
                let (heard, marks) = peer.play_tick();
                send.extend(marks);
                let audible = heard.as_deref().is_some_and(|f| f.iter().any(|b| crate::rtp::codec::g711::Law::Mu.decode_sample(*b).unsigned_abs() > AUDIBLE as u16));
                if audible {
                    quiet_ticks = 0;
                    if let Some(t) = spoke_at.take() {
                        st.latencies_ms.push(now.duration_since(t).as_secs_f64() * 1000.0);
                        in_reply = true;
                        last_arrival = None;
                    }
                } else if in_reply {
                    quiet_ticks += 1;
                    if quiet_ticks >= 15 {
                        in_reply = false;
                    }
                }
            }
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    if in_reply && t.contains("\"media\"") {
                        let now = Instant::now();
                        if let Some(prev) = last_arrival.replace(now) {
                            st.gaps_ms.push(now.duration_since(prev).as_secs_f64() * 1000.0);
                        }
                    }
                    send.extend(peer.handle_text(&t));
                }
                Some(Ok(Message::Close(_))) | None => {
                    st.error = Some("skald closed the stream early".into());
                    return st;
                }
                Some(Err(e)) => {
                    st.error = Some(format!("stream error: {e}"));
                    return st;
                }
                Some(Ok(_)) => {}
            },
        }
        for m in send {
            if sink.send(Message::Text(m.into())).await.is_err() {
                st.error = Some("the stream closed".into());
                return st;
            }
        }
    }
    // A turn the step's end cut short (still speaking, or its reply not due
    // yet) is not counted.
    if speaking.is_some() || spoke_at.is_some() {
        st.turns -= 1;
    }
    let _ = sink.send(Message::Text(peer.stop().into())).await;
    let _ = sink.close().await;
    st.completed = true;
    st
}

/// The `q` quantile (nearest rank) of `v`; `None` when empty.
fn quantile(v: &mut [f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    Some((v[i] * 10.0).round() / 10.0)
}

/// utime + stime of `pid`, in USER_HZ ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Resident memory of `pid`, MiB.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some((kb / 1024.0 * 10.0).round() / 10.0)
}

/// The reports as a Markdown table.
pub fn markdown(reports: &[StepReport]) -> String {
    let f = |x: Option<f64>| x.map(|v| format!("{v}")).unwrap_or_else(|| "–".into());
    let mut s = String::from(
        "| calls | completed | turns | replies | missed | latency p50 ms | latency p99 ms | gap p99 ms | CPU cores | RSS MiB |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in reports {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.calls,
            r.completed,
            r.turns,
            r.replies,
            r.missed,
            f(r.latency_p50_ms),
            f(r.latency_p99_ms),
            f(r.gap_p99_ms),
            f(r.cpu_cores.map(|c| (c * 100.0).round() / 100.0)),
            f(r.rss_mib)
        ));
    }
    s
}

/// Exit-worthy: a step in which callers failed or replies were missed.
pub fn failed(reports: &[StepReport]) -> bool {
    reports.iter().any(|r| r.completed < r.calls || r.missed > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&mut v, 0.5), Some(50.0));
        assert_eq!(quantile(&mut v, 0.99), Some(99.0));
        assert_eq!(quantile(&mut [], 0.5), None);
        assert_eq!(quantile(&mut [7.0], 0.99), Some(7.0));
    }

    #[test]
    fn this_process_has_cpu_time_and_rss() {
        let pid = std::process::id();
        assert!(cpu_ticks(pid).is_some());
        assert!(rss_mib(pid).is_some_and(|m| m > 1.0));
    }
}
