//! A mock prompt-injection classification service for the guard's tests (being written).
