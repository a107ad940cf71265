//! The PII redaction engine (being written).
