//! Token rate-limit accounting and the counter store (being written).
