//! ai-token-ratelimit: Token-based rate limits and budgets per consumer and model, shared across workers. (Being written.)
