//! The versioned JSON API under `/api/v1`.

pub mod agents;
pub mod calls;
pub mod context;
pub mod queues;
pub mod supervise;
