//! Phones registered at skald's registrar (RFC 3261 §10), as the contact
//! center needs them: who came online or went, and where to ring a user.

use crate::sip::driver::RegistrarHandle;
use crate::sip::proto::registrar::RegistrarEvent;
use tokio::sync::broadcast;

/// A phone came or went.
#[derive(Debug, Clone, PartialEq)]
pub enum PhoneEvent {
    /// A binding of `user` was added or refreshed.
    Registered {
        /// The AOR's user part.
        user: String,
    },
    /// A binding of `user` was removed (it may have others).
    Unregistered {
        /// The AOR's user part.
        user: String,
    },
}

/// The registrar, seen from the contact center.
#[derive(Clone)]
pub struct Registrations(RegistrarHandle);

/// A subscription to [`PhoneEvent`]s (the default one never yields).
#[derive(Default)]
pub struct PhoneEvents(Option<broadcast::Receiver<RegistrarEvent>>);

impl Registrations {
    pub(super) fn new(r: RegistrarHandle) -> Self {
        Registrations(r)
    }

    /// Every phone event from now on.
    pub fn subscribe(&self) -> PhoneEvents {
        PhoneEvents(Some(self.0.subscribe()))
    }

    /// The contact URIs `user` is registered at, newest expiry first
    /// (empty when none, or when the registrar stopped).
    pub async fn contacts(&self, user: &str) -> Vec<String> {
        let mut bindings = self.0.lookup(user).await.unwrap_or_default();
        bindings.sort_by_key(|b| std::cmp::Reverse(b.expires_at));
        bindings.into_iter().map(|b| b.contact).collect()
    }
}

impl PhoneEvents {
    /// The next event; `None` once the registrar stopped (then pending
    /// forever on later calls).
    pub async fn next(&mut self) -> Option<PhoneEvent> {
        let rx = match self.0.as_mut() {
            Some(rx) => rx,
            None => return std::future::pending().await,
        };
        loop {
            match rx.recv().await {
                Ok(RegistrarEvent::Registered { aor, .. }) => return Some(PhoneEvent::Registered { user: aor }),
                Ok(RegistrarEvent::Unregistered { aor, .. }) => return Some(PhoneEvent::Unregistered { user: aor }),
                Err(broadcast::error::RecvError::Lagged(n)) => tracing::warn!(missed = n, "registrar events missed"),
                Err(broadcast::error::RecvError::Closed) => {
                    self.0 = None;
                    return None;
                }
            }
        }
    }
}
