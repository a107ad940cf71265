//! The prompt-injection detector (being written).
