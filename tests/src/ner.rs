//! A mock NER service with Presidio's analyzer contract for the PII tests (being written).
