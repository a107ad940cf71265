-- The audit table for ai-audit-log's ClickHouse sink (docs/audit.md). One row per request; the
-- gateway delivers at least once, so a row may arrive twice: ReplacingMergeTree keeps one per id
-- when parts merge, and `SELECT ... FINAL` collapses duplicates at query time.
-- Works on ClickHouse 18.16 and later. Replace the table name to match the sink's `table`.
CREATE TABLE IF NOT EXISTS ai_audit
(
    id String,
    ts DateTime,
    ts_ms UInt64,
    consumer String,
    route String,
    method String,
    path String,
    status UInt16,
    latency_ms UInt64,
    provider String,
    target String,
    model String,
    upstream_model String,
    prompt_tokens UInt64,
    completion_tokens UInt64,
    cached_tokens UInt64,
    reasoning_tokens UInt64,
    cost_usd Float64,
    decisions String,
    guard_verdict String,
    guard_family String,
    pii_total UInt64,
    ratelimit_decision String,
    router_rule String,
    capture String,
    request_bytes UInt64,
    response_bytes UInt64,
    request_excerpt String,
    response_excerpt String,
    summary String
)
ENGINE = ReplacingMergeTree
ORDER BY id
