//! The coarse error classification every domain error maps onto.

/// What kind of failure an error is, independent of the subsystem that raised it.
///
/// The HTTP layer maps each kind to one status code in a single exhaustive match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    Conflict,
    Invalid,
    /// More bytes than allowed or declared.
    TooLarge,
    Unauthenticated,
    Forbidden,
    RateLimited,
    Unavailable,
    Internal,
}

/// Implemented by every domain error: a stable snake_case code and its kind.
pub trait DomainError: std::error::Error {
    fn kind(&self) -> ErrorKind;
    /// A stable machine-readable code, e.g. `user_not_found`.
    fn code(&self) -> &'static str;
}
