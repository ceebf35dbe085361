//! The call actor.
