//! ai-prompt-guard: Validates chat requests, applies allow/deny rules and scores prompt injection. (Being written.)
