//! HTTP: health, metrics and the call API (axum). CONTRACT STUB.

use crate::call::registry::CallRegistry;
use crate::observability::Metrics;
use crate::store::Store;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Readiness flags set by the subsystems as they come up.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    /// SIP sockets are bound.
    pub sip_bound: Arc<AtomicBool>,
    /// Store is open.
    pub store_open: Arc<AtomicBool>,
    /// Set on shutdown: ready turns false while draining.
    pub draining: Arc<AtomicBool>,
}

/// Everything handlers need.
#[derive(Clone)]
pub struct HttpState {
    /// Call records.
    pub store: Store,
    /// Live calls.
    pub registry: CallRegistry,
    /// Metrics.
    pub metrics: Metrics,
    /// Readiness.
    pub ready: Readiness,
}

/// The router: `/health/live`, `/health/ready`, `/metrics`, `/api/v1/calls…`.
pub fn router(state: HttpState) -> axum::Router {
    let _ = state;
    todo!()
}
