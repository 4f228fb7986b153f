//! The checkpoint of prepared claims.
