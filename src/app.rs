//! Wires subsystems.
