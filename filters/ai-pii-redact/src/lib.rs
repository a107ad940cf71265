//! ai-pii-redact: Redacts personal data and secrets in LLM prompts and responses, with restore. (Being written.)
