//! The crate's error type. It has no variants yet: nothing in this crate can fail until the
//! issue that builds it lands.

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
